//! Loaded models and their inference threads.
//!
//! Each loaded model owns one or more OS threads ("workers"), each with its own ONNX
//! Runtime session, fed by one bounded queue. Callers submit a [`Job`] and get the answer
//! on a oneshot channel, which they can await (HTTP) or block on (CLI). A full queue is
//! refused at once ([`TaskError::Busy`]) instead of growing without bound. Model code never
//! runs on the caller's thread, so never on an async executor.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use ort::session::Session;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::config::{Config, Paths};
use crate::core::generate::tenant::{Tenants, Ticket};
use crate::core::generate::{
    self, ChatMessage, ChatTemplate, GenJob, GenerateRequest, GenerateStream, Generation,
};
use crate::core::manifest::{Manifest, Task};
use crate::core::providers::{self, ProviderReport};
use crate::core::runtime::{self, RuntimeError};
use crate::core::store::{ModelStore, StoreError};
use crate::core::tensor::{self, NamedTensor, TensorError, TensorSpec};
use crate::core::text::{Entity, Input, LabelScore, TextEncoder, TextError, Truncation};
use crate::core::worker::{BatchLimits, ModelStats, WorkerCtx, worker};

/// Errors loading a model.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Store problem (unknown, not pulled, corrupt).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Runtime missing or broken.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// Strict provider refusal.
    #[error("model {model}: {source}")]
    Provider {
        /// Model.
        model: String,
        /// Cause.
        #[source]
        source: providers::StrictRefusal,
    },
    /// ONNX Runtime could not create the session (bad file, unsupported op, …).
    #[error("model {model}: ONNX Runtime cannot load {file}: {message}")]
    Session {
        /// Model.
        model: String,
        /// File.
        file: String,
        /// ort's message.
        message: String,
    },
    /// Tokenizer, labels or the graph's inputs do not fit the task.
    #[error("model {model}: {message}")]
    Invalid {
        /// Model.
        model: String,
        /// What is wrong.
        message: String,
    },
}

/// Errors of one request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TaskError {
    /// Bad text input.
    #[error(transparent)]
    Text(#[from] TextError),
    /// Bad tensor input.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// The model does not do that task.
    #[error(
        "model {model} does {task}, not {wanted}; pick a model whose task is {wanted} (see `llmos models list`)"
    )]
    WrongTask {
        /// Model.
        model: String,
        /// Its task.
        task: &'static str,
        /// What was asked.
        wanted: &'static str,
    },
    /// The queue is full.
    #[error("model {model} is busy: its queue of {capacity} requests is full; retry shortly")]
    Busy {
        /// Model.
        model: String,
        /// Queue bound.
        capacity: usize,
    },
    /// The workers are gone (shutting down).
    #[error("model {0} is shutting down")]
    Stopped(String),
    /// The request's deadline passed before it finished: dropped by the inference thread
    /// (before running, or between sub-batches) so that no model time is spent on it.
    #[error(
        "model {model}: the caller's deadline passed before the request finished; it was dropped"
    )]
    Expired {
        /// Model.
        model: String,
    },
    /// The request has more tokens than its caller may still spend (a plugin's quota).
    #[error("model {model}: the request has {tokens} tokens, {max} allowed to this caller")]
    TokenBudget {
        /// Model.
        model: String,
        /// Tokens of the request.
        tokens: usize,
        /// Tokens allowed.
        max: usize,
    },
    /// Prompt plus `max_tokens` do not fit the model's context.
    #[error(
        "model {model}: the prompt has {prompt_tokens} tokens and max_tokens is {max_tokens}, but the context length is {context_length}; shorten the prompt or lower max_tokens"
    )]
    ContextOverflow {
        /// Model.
        model: String,
        /// Tokens of the prompt.
        prompt_tokens: usize,
        /// Tokens asked for.
        max_tokens: usize,
        /// The model's context length.
        context_length: usize,
    },
    /// The prompt cannot be built (empty, no chat template, the template refused it).
    #[error("model {model}: {message}")]
    Prompt {
        /// Model.
        model: String,
        /// What is wrong and what is accepted.
        message: String,
    },
    /// ONNX Runtime failed while running.
    #[error("model {model}: inference failed: {message}")]
    Runtime {
        /// Model.
        model: String,
        /// ort's message.
        message: String,
    },
}

/// Result of an embedding request.
#[derive(Debug, Clone)]
pub struct Embeddings {
    /// One vector per input.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens processed (special tokens included).
    pub tokens: usize,
}

/// Result of a classification request.
#[derive(Debug, Clone)]
pub struct Classes {
    /// Label scores per input, highest first.
    pub scores: Vec<Vec<LabelScore>>,
    /// Tokens processed.
    pub tokens: usize,
}

/// Result of a token-classification request.
#[derive(Debug, Clone)]
pub struct Entities {
    /// Entities per input.
    pub entities: Vec<Vec<Entity>>,
    /// Tokens processed.
    pub tokens: usize,
}

type Reply<T> = oneshot::Sender<Result<T, TaskError>>;

/// What a text job may spend. The default (no deadline, no token cap) is what HTTP and CLI
/// requests get; plugin host calls pass their call's remaining budget. Whatever the bounds,
/// a job whose caller has gone (reply receiver dropped, e.g. an HTTP request that timed
/// out) is dropped by the inference thread before it runs and between sub-batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bounds {
    /// Dropped ([`TaskError::Expired`]) when not finished by then: checked before
    /// tokenising and between sub-batches.
    pub deadline: Option<Instant>,
    /// Most tokens (all inputs together); more is refused ([`TaskError::TokenBudget`])
    /// after tokenising, before any model run.
    pub max_tokens: Option<usize>,
}

/// One unit of work for a model's workers.
#[derive(Debug)]
pub enum Job {
    /// Embed texts or token ids.
    Embed(Input, Truncation, Bounds, Reply<Embeddings>),
    /// Classify texts or token ids.
    Classify(Input, Truncation, Bounds, Reply<Classes>),
    /// Find entities in texts.
    Entities(Vec<String>, Truncation, Bounds, Reply<Entities>),
    /// Generate text (a generation model's engine thread).
    Generate(Box<GenJob>),
    /// Raw tensors; optional output selection.
    Infer(
        Vec<NamedTensor>,
        Option<Vec<String>>,
        Reply<Vec<NamedTensor>>,
    ),
}

/// A loaded model: its description, how it is served, and its queue.
#[derive(Debug)]
pub struct Model {
    /// The manifest.
    pub manifest: Manifest,
    /// Which provider serves it and why others did not.
    pub provider: ProviderReport,
    /// Graph inputs.
    pub inputs: Vec<TensorSpec>,
    /// Graph outputs.
    pub outputs: Vec<TensorSpec>,
    /// Labels for classification tasks.
    pub labels: Option<Vec<String>>,
    /// Tokenizer (text tasks).
    pub encoder: Option<TextEncoder>,
    /// Queue bound.
    pub queue_capacity: usize,
    /// Number of inference threads.
    pub workers: usize,
    /// Counters for metrics.
    pub stats: Arc<ModelStats>,
    /// Generation models: `generation.json` and the chat template.
    pub generation: Option<Arc<Generation>>,
    queue: SyncSender<Job>,
    tenants: Arc<Tenants>,
}

/// Summary for listings.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// Name.
    pub name: String,
    /// Task.
    pub task: Task,
    /// Licence.
    pub license: String,
    /// Attribution.
    pub attribution: Option<String>,
    /// Provider report.
    pub provider: ProviderReport,
    /// Inputs.
    pub inputs: Vec<TensorSpec>,
    /// Outputs.
    pub outputs: Vec<TensorSpec>,
    /// Labels.
    pub labels: Option<Vec<String>>,
    /// Max tokens.
    pub max_sequence_length: Option<usize>,
    /// Embedding size.
    pub dimensions: Option<usize>,
    /// Inference threads.
    pub workers: usize,
    /// Queue bound.
    pub queue_capacity: usize,
}

impl Model {
    /// Name.
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// Embedding size (last dimension of the first output) for embedding models.
    pub fn dimensions(&self) -> Option<usize> {
        (self.manifest.task == Task::Embed)
            .then(|| self.outputs.first()?.shape.last().copied())
            .flatten()
            .and_then(|d| usize::try_from(d).ok())
    }

    /// Summary.
    pub fn info(&self) -> ModelInfo {
        ModelInfo {
            name: self.manifest.name.clone(),
            task: self.manifest.task,
            license: self.manifest.license.clone(),
            attribution: self.manifest.attribution.clone(),
            provider: self.provider.clone(),
            inputs: self.inputs.clone(),
            outputs: self.outputs.clone(),
            labels: self.labels.clone(),
            max_sequence_length: self.encoder.as_ref().map(TextEncoder::max_len),
            dimensions: self.dimensions(),
            workers: self.workers,
            queue_capacity: self.queue_capacity,
        }
    }

    fn check_task(&self, wanted: Task) -> Result<(), TaskError> {
        if self.manifest.task == wanted {
            Ok(())
        } else {
            Err(TaskError::WrongTask {
                model: self.manifest.name.clone(),
                task: self.manifest.task.as_str(),
                wanted: wanted.as_str(),
            })
        }
    }

    /// Queues a job. Fails at once when the queue is full.
    pub fn submit(&self, job: Job) -> Result<(), TaskError> {
        let wanted = match &job {
            Job::Embed(..) => Task::Embed,
            Job::Classify(..) => Task::Classify,
            Job::Entities(..) => Task::TokenClassify,
            Job::Generate(..) => Task::Generate,
            Job::Infer(..) => self.manifest.task, // every model accepts raw tensors
        };
        self.check_task(wanted)?;
        // Counted before sending so the worker's decrement never underflows.
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        let sent = self.queue.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => TaskError::Busy {
                model: self.manifest.name.clone(),
                capacity: self.queue_capacity,
            },
            TrySendError::Disconnected(_) => TaskError::Stopped(self.manifest.name.clone()),
        });
        if sent.is_err() {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
        }
        sent
    }

    fn call<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> Job,
    ) -> Result<oneshot::Receiver<Result<T, TaskError>>, TaskError> {
        let (tx, rx) = oneshot::channel();
        self.submit(make(tx))?;
        Ok(rx)
    }

    /// Embeds texts; await or block on the receiver.
    pub fn embed(
        &self,
        texts: Vec<String>,
        policy: Truncation,
    ) -> Result<Pending<Embeddings>, TaskError> {
        self.embed_input(Input::Texts(texts), policy)
    }

    /// Embeds texts or token ids.
    pub fn embed_input(
        &self,
        input: Input,
        policy: Truncation,
    ) -> Result<Pending<Embeddings>, TaskError> {
        self.embed_within(input, policy, Bounds::default())
    }

    /// Embeds texts or token ids within `bounds` (a deadline, a token cap).
    pub fn embed_within(
        &self,
        input: Input,
        policy: Truncation,
        bounds: Bounds,
    ) -> Result<Pending<Embeddings>, TaskError> {
        self.call(|r| Job::Embed(input, policy, bounds, r))
            .map(|rx| Pending(rx, self.name().into()))
    }

    /// Classifies texts.
    pub fn classify(
        &self,
        texts: Vec<String>,
        policy: Truncation,
    ) -> Result<Pending<Classes>, TaskError> {
        self.classify_input(Input::Texts(texts), policy)
    }

    /// Classifies texts or token ids.
    pub fn classify_input(
        &self,
        input: Input,
        policy: Truncation,
    ) -> Result<Pending<Classes>, TaskError> {
        self.classify_within(input, policy, Bounds::default())
    }

    /// Classifies texts or token ids within `bounds`.
    pub fn classify_within(
        &self,
        input: Input,
        policy: Truncation,
        bounds: Bounds,
    ) -> Result<Pending<Classes>, TaskError> {
        self.call(|r| Job::Classify(input, policy, bounds, r))
            .map(|rx| Pending(rx, self.name().into()))
    }

    /// Finds entities.
    pub fn entities(
        &self,
        texts: Vec<String>,
        policy: Truncation,
    ) -> Result<Pending<Entities>, TaskError> {
        self.entities_within(texts, policy, Bounds::default())
    }

    /// Finds entities within `bounds`.
    pub fn entities_within(
        &self,
        texts: Vec<String>,
        policy: Truncation,
        bounds: Bounds,
    ) -> Result<Pending<Entities>, TaskError> {
        self.call(|r| Job::Entities(texts, policy, bounds, r))
            .map(|rx| Pending(rx, self.name().into()))
    }

    /// Runs raw tensors, validated against the graph first.
    pub fn infer(
        &self,
        inputs: Vec<NamedTensor>,
        outputs: Option<Vec<String>>,
    ) -> Result<Pending<Vec<NamedTensor>>, TaskError> {
        tensor::validate_inputs(&self.inputs, &inputs)?;
        if let Some(names) = &outputs {
            let known: Vec<String> = self.outputs.iter().map(|o| o.name.clone()).collect();
            if let Some(bad) = names.iter().find(|n| !known.contains(n)) {
                return Err(TensorError::Unknown {
                    kind: "output",
                    name: bad.clone(),
                    known,
                }
                .into());
            }
        }
        self.call(|r| Job::Infer(inputs, outputs, r))
            .map(|rx| Pending(rx, self.name().into()))
    }
}

impl Model {
    fn generation(&self) -> Result<&Generation, TaskError> {
        self.check_task(Task::Generate)?;
        self.generation
            .as_deref()
            .ok_or_else(|| TaskError::Stopped(self.name().into()))
    }

    fn prompt_err(&self, message: String) -> TaskError {
        TaskError::Prompt {
            model: self.name().into(),
            message,
        }
    }

    /// Token ids of a completion prompt (with BOS when the model wants it).
    pub fn prompt_ids(&self, text: &str) -> Result<Vec<u32>, TaskError> {
        let g = self.generation()?;
        let enc = self.encoder.as_ref().ok_or_else(|| self.prompt_err("no tokenizer".into()))?;
        let mut ids = Vec::new();
        if g.config.add_bos_token
            && let Some(bos) = g.config.bos_token_id
        {
            ids.push(bos);
        }
        ids.extend(enc.ids(text, false)?);
        Ok(ids)
    }

    /// Token ids of a chat, rendered with the model's chat template.
    pub fn chat_ids(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, TaskError> {
        self.chat_ids_with_tools(messages, None)
    }

    /// Whether the model's chat template reads `tools` itself.
    pub fn template_takes_tools(&self) -> bool {
        self.generation
            .as_ref()
            .and_then(|g| g.template.as_ref())
            .is_some_and(ChatTemplate::takes_tools)
    }

    /// [`Self::chat_ids`] with the template's `tools` variable set (function calling).
    pub fn chat_ids_with_tools(
        &self,
        messages: &[ChatMessage],
        tools: Option<&serde_json::Value>,
    ) -> Result<Vec<u32>, TaskError> {
        let text = self.chat_text_with_tools(messages, tools)?;
        self.rendered_ids(&text)
    }

    /// Token ids of a chat already rendered with the chat template ([`Self::chat_text`]).
    pub fn rendered_ids(&self, text: &str) -> Result<Vec<u32>, TaskError> {
        // As Hugging Face's apply_chat_template: the template writes any BOS itself.
        let enc = self.encoder.as_ref().ok_or_else(|| self.prompt_err("no tokenizer".into()))?;
        Ok(enc.ids(text, false)?)
    }

    /// A chat rendered with the model's chat template (the prompt text).
    pub fn chat_text(&self, messages: &[ChatMessage]) -> Result<String, TaskError> {
        self.chat_text_with_tools(messages, None)
    }

    /// [`Self::chat_text`] with the template's `tools` variable set.
    pub fn chat_text_with_tools(
        &self,
        messages: &[ChatMessage],
        tools: Option<&serde_json::Value>,
    ) -> Result<String, TaskError> {
        let g = self.generation()?;
        let t = g.template.as_ref().ok_or_else(|| {
            self.prompt_err(
                "it has no chat_template in its generation.json, so it cannot chat; use /v1/completions with a prompt".into(),
            )
        })?;
        t.render_with_tools(messages, &g.bos_token, &g.eos_token, tools)
            .map_err(|m| self.prompt_err(m))
    }

    /// The token table of a generation model (each token's bytes and a trie), built on
    /// first use and kept: structured output masks tokens with it.
    pub fn token_table(&self) -> Result<Arc<crate::core::generate::grammar::TokenTable>, TaskError> {
        let g = self.generation()?;
        let enc = self.encoder.as_ref().ok_or_else(|| self.prompt_err("no tokenizer".into()))?;
        g.token_table
            .get_or_init(|| crate::core::generate::grammar::TokenTable::new(enc.tokenizer()).map(Arc::new))
            .clone()
            .map_err(|m| self.prompt_err(m))
    }

    /// Context length of a generation model.
    pub fn context_length(&self) -> Option<usize> {
        self.generation.as_ref().map(|g| g.config.context_length)
    }

    /// Starts a generation of the local tenant (no limits); read (or drop, to cancel) the
    /// stream.
    pub fn generate(&self, request: GenerateRequest) -> Result<GenerateStream, TaskError> {
        let tokens = request.prompt.len().saturating_add(request.max_tokens);
        let ticket = Ticket::local(&self.tenants, tokens);
        self.generate_for(request, ticket)
    }

    /// Starts a generation counted against `ticket`'s tenant
    /// ([`crate::core::generate::tenant::Tenants::admit`]).
    pub fn generate_for(
        &self,
        request: GenerateRequest,
        ticket: Option<Ticket>,
    ) -> Result<GenerateStream, TaskError> {
        let g = self.generation()?;
        if request.prompt.is_empty() {
            return Err(self.prompt_err("the prompt is empty: give at least one token".into()));
        }
        let context_length = g.config.context_length;
        if request.prompt.len().saturating_add(request.max_tokens) > context_length {
            return Err(TaskError::ContextOverflow {
                model: self.name().into(),
                prompt_tokens: request.prompt.len(),
                max_tokens: request.max_tokens,
                context_length,
            });
        }
        let (tx, stream) = GenerateStream::channel();
        self.submit(Job::Generate(Box::new(GenJob {
            request,
            tx,
            ticket,
            submitted: std::time::Instant::now(),
        })))?;
        Ok(stream)
    }
}

/// An answer on its way from an inference thread.
#[derive(Debug)]
pub struct Pending<T>(oneshot::Receiver<Result<T, TaskError>>, String);

impl<T> Pending<T> {
    /// Blocks the current thread until the answer arrives. Safe on any thread, also one
    /// that belongs to an async runtime's blocking pool or a plugin worker (tokio's own
    /// `blocking_recv` refuses those); never call it on an async executor's worker.
    pub fn wait(self) -> Result<T, TaskError> {
        pollster::block_on(self.0).map_err(|_| TaskError::Stopped(self.1))?
    }

    /// Awaits the answer.
    pub async fn recv(self) -> Result<T, TaskError> {
        self.0.await.map_err(|_| TaskError::Stopped(self.1))?
    }
}

/// Every loaded model, plus what is needed to load more.
#[derive(Debug)]
pub struct Core {
    /// Manifests and files.
    pub store: ModelStore,
    config: Config,
    paths: Paths,
    models: RwLock<BTreeMap<String, Arc<Model>>>,
    loading: Mutex<()>,
    tenants: Arc<Tenants>,
}

impl Core {
    /// Opens the store; loads nothing yet.
    pub fn new(config: Config, paths: Paths) -> Result<Self, StoreError> {
        let store = ModelStore::open(&paths.models, &paths.manifest_dirs(&config))?;
        Ok(Self {
            store,
            config,
            paths,
            models: RwLock::new(BTreeMap::new()),
            loading: Mutex::new(()),
            tenants: Arc::default(),
        })
    }

    /// The tenants of generation: their limits' counts and their metrics.
    pub fn tenants(&self) -> &Arc<Tenants> {
        &self.tenants
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The paths in force.
    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// Loaded models.
    pub fn loaded(&self) -> Vec<Arc<Model>> {
        self.models
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// A loaded model, if loaded.
    pub fn get_loaded(&self, name: &str) -> Option<Arc<Model>> {
        self.models.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    /// A model, loading it if needed.
    pub fn model(&self, name: &str) -> Result<Arc<Model>, LoadError> {
        if let Some(m) = self.get_loaded(name) {
            return Ok(m);
        }
        let _one_at_a_time = self.loading.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = self.get_loaded(name) {
            return Ok(m);
        }
        let model = Arc::new(self.load(name)?);
        self.models
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), model.clone());
        Ok(model)
    }

    fn load(&self, name: &str) -> Result<Model, LoadError> {
        let manifest = self.store.manifest(name)?.clone();
        let dir = self.store.verified_dir(name)?;
        let rt = runtime::init(&self.config.runtime, &self.paths.cache)?;
        let ov = self
            .config
            .models
            .overrides
            .get(name)
            .cloned()
            .unwrap_or_default();
        let preference = ov
            .providers
            .clone()
            .unwrap_or_else(|| manifest.providers.clone());
        let strict = ov.strict.unwrap_or(manifest.strict);
        // Default: two inference threads sharing the cores (on 2 cores, two single-threaded
        // sessions served 188 req/s where one two-threaded session served 142; BENCHMARKS.md).
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        // A generation model has one engine thread that batches every sequence itself.
        let workers = if manifest.task == Task::Generate {
            1
        } else {
            ov.workers.unwrap_or(cores.min(2)).max(1)
        };
        let intra = ov
            .intra_threads
            .or((self.config.runtime.intra_threads > 0)
                .then_some(self.config.runtime.intra_threads))
            .unwrap_or(cores.checked_div(workers).unwrap_or(1).max(1));
        let queue_capacity = ov.queue_capacity.unwrap_or(256).max(1);
        let invalid = |message: String| LoadError::Invalid {
            model: name.into(),
            message,
        };
        let model_file = manifest
            .model_file()
            .ok_or_else(|| invalid("no file has role = \"model\": list the ONNX file".into()))?
            .name
            .clone();
        let session_err = |e: ort::Error| LoadError::Session {
            model: name.into(),
            file: model_file.clone(),
            message: e.to_string(),
        };

        let mut sessions = Vec::with_capacity(workers);
        let mut report = None;
        for _ in 0..workers {
            let mut builder = Session::builder(&rt.env).map_err(session_err)?;
            builder = builder
                .with_intra_threads(intra)
                .map_err(|e| session_err(ort::Error::<()>::from(e)))?;
            if workers > 1 && intra > 1 {
                // Several sessions take turns: an idle session's spinning pool threads would
                // steal the cores from the busy one (measured: half the throughput).
                builder = builder
                    .with_intra_op_spinning(false)
                    .map_err(|e| session_err(ort::Error::<()>::from(e)))?;
            }
            let (mut builder, r) =
                providers::register(builder, &preference, &self.config.providers, strict).map_err(
                    |source| LoadError::Provider {
                        model: name.into(),
                        source,
                    },
                )?;
            let session = builder
                .commit_from_file(dir.join(&model_file))
                .map_err(session_err)?;
            sessions.push(session);
            report = Some(r);
        }
        let (Some(provider), Some(first)) = (report, sessions.first()) else {
            return Err(invalid("no inference thread was started (workers = 0)".into()));
        };
        let inputs: Vec<TensorSpec> = first
            .inputs()
            .iter()
            .map(|o| TensorSpec::from_outlet(o.name(), o.dtype()))
            .collect();
        let outputs: Vec<TensorSpec> = first
            .outputs()
            .iter()
            .map(|o| TensorSpec::from_outlet(o.name(), o.dtype()))
            .collect();

        let encoder = match &manifest.tokenizer {
            Some(t) => Some(
                TextEncoder::load(&dir.join(t), manifest.max_sequence_length)
                    .map_err(|e| invalid(e.to_string()))?,
            ),
            None => None,
        };
        let labels = match (&manifest.labels, &manifest.labels_from) {
            (Some(l), _) => Some(l.clone()),
            (None, Some(file)) => Some(read_labels(&dir.join(file)).map_err(invalid)?),
            _ => None,
        };
        if manifest.task != Task::Infer {
            if !inputs.iter().any(|i| i.name == "input_ids") {
                return Err(invalid(format!(
                    "task {} needs a graph input named input_ids; the graph has {}",
                    manifest.task.as_str(),
                    names(&inputs)
                )));
            }
            if outputs.is_empty() {
                return Err(invalid("the graph has no outputs".into()));
            }
        }
        if let (Some(l), Some(out)) = (&labels, outputs.first()) {
            let last = out.shape.last().copied().unwrap_or(-1);
            if let Ok(classes) = usize::try_from(last)
                && classes != l.len()
            {
                return Err(invalid(format!(
                    "{} labels, but output {} has {last} classes",
                    l.len(),
                    out.name
                )));
            }
        }

        let (tx, rx) = sync_channel::<Job>(queue_capacity);
        let rx = Arc::new(Mutex::new(rx));
        let stats = Arc::new(ModelStats::default());
        let defaults = BatchLimits::default();
        let limits = BatchLimits {
            max_batch: ov.max_batch.unwrap_or(defaults.max_batch).max(1),
            max_tokens: ov.max_batch_tokens.unwrap_or(defaults.max_tokens).max(1),
            max_wait: ov
                .max_wait_ms
                .map_or(defaults.max_wait, std::time::Duration::from_millis),
            max_request_inputs: ov
                .max_request_inputs
                .unwrap_or(defaults.max_request_inputs)
                .max(1),
            max_request_tokens: ov
                .max_request_tokens
                .unwrap_or(defaults.max_request_tokens)
                .max(1),
        };
        let ctx = Arc::new(WorkerCtx {
            name: name.to_string(),
            pooling: manifest.pooling,
            normalize: manifest.normalize,
            encoder: encoder.clone(),
            labels: labels.clone(),
            input_names: inputs.iter().map(|i| i.name.clone()).collect(),
            limits,
            stats: stats.clone(),
            ns_per_token: std::sync::atomic::AtomicU64::new(0),
        });
        let generation = if manifest.task == Task::Generate {
            let config = manifest
                .files
                .iter()
                .find(|f| f.role == crate::core::manifest::FileRole::Config)
                .ok_or_else(|| invalid("no file has role = \"config\" (generation.json)".into()))?;
            // The graph's optional `logits_to_keep` (an overridable initializer, so not among
            // the session's inputs).
            let keep_logits = sessions.last().is_some_and(|s| {
                s.overridable_initializers()
                    .iter()
                    .any(|o| o.name() == generate::LOGITS_TO_KEEP)
            });
            let (generation, mut gctx) = generate::setup(
                &dir.join(&config.name),
                &inputs,
                encoder.clone(),
                ctx.clone(),
                limits.max_batch,
                &self.config.generation,
                queue_capacity,
            )
            .map_err(invalid)?;
            gctx.keep_logits = keep_logits;
            let session = sessions
                .pop()
                .ok_or_else(|| invalid("no session was created".into()))?;
            let grx = rx.clone();
            std::thread::Builder::new()
                .name(format!("gen-{name}"))
                .spawn(move || {
                    let rx = grx.lock().unwrap_or_else(|e| e.into_inner());
                    generate::engine::run(session, &gctx, &rx);
                })
                .map_err(|e| invalid(format!("cannot start the engine thread: {e}")))?;
            Some(Arc::new(generation))
        } else {
            None
        };
        for (i, session) in sessions.into_iter().enumerate() {
            let (rx, ctx) = (rx.clone(), ctx.clone());
            std::thread::Builder::new()
                .name(format!("infer-{name}-{i}"))
                .spawn(move || worker(session, &ctx, &rx))
                .map_err(|e| invalid(format!("cannot start an inference thread: {e}")))?;
        }
        tracing::info!(model = name, provider = %provider.serving, workers, "model loaded");
        Ok(Model {
            manifest,
            provider,
            inputs,
            outputs,
            labels,
            encoder,
            queue_capacity,
            workers,
            stats,
            generation,
            queue: tx,
            tenants: self.tenants.clone(),
        })
    }
}

fn names(specs: &[TensorSpec]) -> String {
    specs
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Labels from a JSON list, or from `id2label` of a Hugging Face config.
fn read_labels(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Ok(list) = serde_json::from_value::<Vec<String>>(v.clone()) {
        return Ok(list);
    }
    let map = v
        .get("id2label")
        .and_then(|m| m.as_object())
        .ok_or_else(|| {
            format!(
                "{}: expected a JSON list of labels or an object with id2label",
                path.display()
            )
        })?;
    let mut labels = vec![None; map.len()];
    for (k, l) in map {
        let i: usize = k
            .parse()
            .map_err(|_| format!("{}: id2label key {k:?} is not a number", path.display()))?;
        let slot = labels
            .get_mut(i)
            .ok_or_else(|| format!("{}: id2label ids are not 0..{}", path.display(), map.len()))?;
        *slot = l.as_str().map(str::to_string);
    }
    labels
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| format!("{}: id2label has a non-string label", path.display()))
}

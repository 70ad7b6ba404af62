//! Where requests meet plugins and models: the plugin host wired to the core, the
//! configured pipelines, and the task results in the JSON shape the HTTP API returns (which
//! is also what response policies see). Shared by `llmos run` and the HTTP routes.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::core::Core;
use crate::core::engine::{Classes, Embeddings, Entities, LoadError, Model, TaskError};
use crate::core::manifest::Task;
use crate::core::text::{Input, Truncation};
use crate::plugins::core_backend::CoreBackend;
use crate::plugins::pipeline::{self, Chain, Outcome, PipelineError, Pipelines};
use crate::plugins::{HostSettings, PluginError, PluginHost, RequestContext, ToolCatalog};

/// A text task and how its answer is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextTask {
    /// Embeddings; `base64` encodes each vector as little-endian f32 bytes.
    Embed {
        /// Base64 vectors (OpenAI's `encoding_format`).
        base64: bool,
    },
    /// Label scores.
    Classify,
    /// Entity spans.
    Entities,
}

impl TextTask {
    /// The task a model must have.
    pub fn task(self) -> Task {
        match self {
            Self::Embed { .. } => Task::Embed,
            Self::Classify => Task::Classify,
            Self::Entities => Task::TokenClassify,
        }
    }

    /// The name plugins see in the request context.
    pub fn name(self) -> &'static str {
        match self {
            Self::Embed { .. } => "embed",
            Self::Classify => "classify",
            Self::Entities => "entities",
        }
    }

    /// The default text task of a model.
    pub fn of(task: Task) -> Option<Self> {
        match task {
            Task::Embed => Some(Self::Embed { base64: false }),
            Task::Classify => Some(Self::Classify),
            Task::TokenClassify => Some(Self::Entities),
            Task::Infer | Task::Generate => None,
        }
    }
}

fn usage(tokens: usize) -> Value {
    json!({"prompt_tokens": tokens, "total_tokens": tokens})
}

/// OpenAI's embeddings response.
pub fn embeddings_json(model: &str, out: &Embeddings, base64: bool) -> Value {
    let data: Vec<Value> = out
        .vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    json!({"object": "list", "data": data, "model": model, "usage": usage(out.tokens)})
}

/// `/v1/classify`'s response.
pub fn classes_json(model: &str, out: &Classes) -> Value {
    let data: Vec<Value> = out
        .scores
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"object": "classification", "index": i, "label": s.first().map(|t| &t.label), "score": s.first().map(|t| t.score), "scores": s}))
        .collect();
    json!({"object": "list", "data": data, "model": model, "usage": usage(out.tokens)})
}

/// `/v1/entities`' response.
pub fn entities_json(model: &str, out: &Entities) -> Value {
    let data: Vec<Value> = out
        .entities
        .iter()
        .enumerate()
        .map(|(i, e)| json!({"object": "entities", "index": i, "entities": e}))
        .collect();
    json!({"object": "list", "data": data, "model": model, "usage": usage(out.tokens)})
}

/// Runs a text task and waits (blocking) for its JSON answer. Not for an async executor.
pub fn run_task_blocking(
    m: &Model,
    task: TextTask,
    input: Input,
    policy: Truncation,
) -> Result<Value, TaskError> {
    // The future only waits on the model's oneshot reply: no runtime needed to drive it.
    pollster::block_on(run_task(m, task, input, policy))
}

/// Runs a text task and awaits its JSON answer.
pub async fn run_task(
    m: &Model,
    task: TextTask,
    input: Input,
    policy: Truncation,
) -> Result<Value, TaskError> {
    let name = m.name();
    Ok(match task {
        TextTask::Embed { base64 } => {
            embeddings_json(name, &m.embed_input(input, policy)?.recv().await?, base64)
        }
        TextTask::Classify => classes_json(name, &m.classify_input(input, policy)?.recv().await?),
        TextTask::Entities => {
            let Input::Texts(texts) = input else {
                return Err(TaskError::Text(crate::core::text::TextError::Tokenizer(
                    "entities need texts, not token ids".into(),
                )));
            };
            entities_json(name, &m.entities(texts, policy)?.recv().await?)
        }
    })
}

/// The result of a request that went through a pipeline.
#[derive(Debug)]
pub enum Routed {
    /// The (possibly policy-modified) answer.
    Done(Value),
    /// A policy refused.
    Denied {
        /// The policy plugin.
        plugin: String,
        /// Its reason.
        reason: String,
        /// `request` or `response`.
        stage: &'static str,
    },
}

/// Why a routed request failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The model could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The model refused the request.
    #[error(transparent)]
    Task(#[from] TaskError),
    /// A plugin failed or broke the contract.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The model is not a text model.
    #[error("model {0} takes tensors, not texts: use `llmos infer` or POST /v2/models/{0}/infer")]
    NotText(String),
}

/// The plugin host wired to the models, with the configured pipelines.
pub struct Gateway {
    /// The models.
    pub core: Arc<Core>,
    /// The plugin host.
    pub host: PluginHost,
    /// The tools of `tool` plugins and registered MCP servers (docs/tools.md).
    pub tools: Arc<ToolCatalog>,
    /// The registered MCP servers (`llmos mcp add`), one of the providers in `tools`; their
    /// connections start with [`crate::plugins::mcp::McpTools::start`].
    pub mcp: Arc<crate::plugins::mcp::McpTools>,
    pipelines: Pipelines,
    policy_denials: Mutex<std::collections::BTreeMap<String, u64>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("pipelines", &self.pipelines)
            .finish()
    }
}

/// What plugins are told about a request.
pub fn context(
    model: &str,
    task: TextTask,
    route: &str,
    key_id: Option<String>,
    request_id: String,
) -> RequestContext {
    RequestContext {
        request_id,
        key_id,
        model: model.to_string(),
        task: task.name().to_string(),
        route: route.to_string(),
    }
}

impl Gateway {
    /// Opens the plugin host in the core's home with the core as its inference backend.
    /// `host` replaces the default (tests and the benchmark pass their own).
    pub fn open(core: Arc<Core>, host: Option<PluginHost>) -> Result<Self, PluginError> {
        let config = core.config().clone();
        let host = match host {
            Some(h) => h,
            None => PluginHost::open(
                &core.paths().home,
                HostSettings::from(&config.plugins),
                Some(Arc::new(CoreBackend(core.clone()))),
            )?,
        };
        let tools = Arc::new(ToolCatalog::new());
        tools.add(Arc::new(crate::plugins::PluginTools::new(host.clone())));
        let mcp = Arc::new(crate::plugins::mcp::McpTools::with_config(host.store().clone(), &config.mcp));
        tools.add(mcp.clone());
        Ok(Self {
            core,
            host,
            tools,
            mcp,
            pipelines: config.pipelines,
            policy_denials: Mutex::default(),
        })
    }

    /// Policy denials per plugin since the gateway opened.
    pub fn policy_denials(&self) -> Vec<(String, u64)> {
        let m = self
            .policy_denials
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        m.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Counts a policy's denial made outside [`Self::route`] (the generation routes).
    pub fn note_denial(&self, plugin: &str) {
        let mut denials = self
            .policy_denials
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let n = denials.entry(plugin.to_string()).or_default();
        *n = n.saturating_add(1);
    }

    /// The chain for a model on a route.
    pub fn chain(&self, model: &str, route: &str) -> Chain {
        pipeline::resolve(&self.pipelines, model, route)
    }

    /// Runs texts through the model's chain (for `context.route`) and task. Plugins and the
    /// model answer on their own threads, so this is safe on an async executor; dropping the
    /// future (a request that timed out) stops the pipeline before its next stage.
    pub async fn route(
        &self,
        m: &Arc<Model>,
        task: TextTask,
        context: RequestContext,
        texts: Vec<String>,
        policy: Truncation,
    ) -> Result<Routed, GatewayError> {
        let infer = async |texts: Vec<String>| {
            run_task(m, task, Input::Texts(texts), policy).await
        };
        self.route_with(context, texts, infer).await
    }

    /// [`Gateway::route`] with the model step given as `infer` (e.g. zero-shot
    /// classification, which is not one of the model's own tasks).
    pub async fn route_with(
        &self,
        context: RequestContext,
        texts: Vec<String>,
        infer: impl AsyncFnOnce(Vec<String>) -> Result<Value, TaskError>,
    ) -> Result<Routed, GatewayError> {
        let chain = self.chain(&context.model, &context.route);
        // The model's typed error survives the pipeline's string-typed inference step.
        let failure: Mutex<Option<TaskError>> = Mutex::new(None);
        let infer = async |texts: Vec<String>| {
            infer(texts).await.map_err(|e| {
                let msg = e.to_string();
                *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                msg
            })
        };
        let outcome = pipeline::run_async(&self.host, &chain, context, texts, infer).await;
        let failure = failure.into_inner().unwrap_or_else(|p| p.into_inner());
        self.routed(outcome, failure)
    }

    /// [`Gateway::route`] for callers that are not on an async executor (the CLI): blocks
    /// the calling thread.
    pub fn route_blocking(
        &self,
        m: &Arc<Model>,
        task: TextTask,
        context: RequestContext,
        texts: Vec<String>,
        policy: Truncation,
    ) -> Result<Routed, GatewayError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| PipelineError::Inference(format!("pipeline executor: {e}")))?;
        rt.block_on(self.route(m, task, context, texts, policy))
    }

    fn routed(
        &self,
        outcome: Result<Outcome, PipelineError>,
        failure: Option<TaskError>,
    ) -> Result<Routed, GatewayError> {
        match outcome {
            Ok(Outcome::Completed { output, .. }) => Ok(Routed::Done(output)),
            Ok(Outcome::Denied {
                plugin,
                reason,
                stage,
            }) => {
                {
                    let mut denials = self
                        .policy_denials
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    let n = denials.entry(plugin.clone()).or_default();
                    *n = n.saturating_add(1);
                }
                Ok(Routed::Denied {
                    plugin,
                    reason,
                    stage,
                })
            }
            Err(PipelineError::Inference(msg)) => Err(match failure {
                Some(e) => GatewayError::Task(e),
                None => GatewayError::Pipeline(PipelineError::Inference(msg)),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// `llmos run`: the model's default text task through its chain, as JSON.
    pub fn run_blocking(
        &self,
        model: &str,
        route: &str,
        key_id: Option<String>,
        texts: Vec<String>,
        policy: Truncation,
    ) -> Result<Value, GatewayError> {
        let m = self.core.model(model)?;
        let task = TextTask::of(m.manifest.task)
            .ok_or_else(|| GatewayError::NotText(model.to_string()))?;
        let id = format!("cli-{}", std::process::id());
        let ctx = context(model, task, route, key_id, id);
        Ok(match self.route_blocking(&m, task, ctx, texts, policy)? {
            Routed::Done(v) => v,
            Routed::Denied {
                plugin,
                reason,
                stage,
            } => {
                json!({"denied": {"plugin": plugin, "reason": reason, "stage": stage}})
            }
        })
    }
}

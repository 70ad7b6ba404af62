//! The collections' [`Embedder`]: a collection's preprocessors run the way a model
//! pipeline's preprocessors run ([`pipeline::run`]), then its model embeds through the
//! normal queue and batching path. Blocking: call it from a thread of its own (a job, the
//! CLI, `spawn_blocking`), never on an async executor's worker.

use std::sync::Arc;
use std::time::Duration;

use crate::core::engine::{Model, TaskError};
use crate::core::manifest::Task;
use crate::core::text::{TokenSpan, Truncation};
use crate::data::Store;
use crate::data::collections::{CollectionRecord, DataError};
use crate::data::ingest::Embedder;
use crate::plugins::pipeline::{self, Chain, Outcome};
use crate::plugins::{PluginHost, RequestContext, World, registry};

/// How long an ingest waits, in all, for room in a busy model's queue before failing.
const BUSY_WAIT: Duration = Duration::from_secs(60);

/// A collection's preprocessors and model.
pub struct CollectionEmbedder<'a> {
    host: &'a PluginHost,
    model: Arc<Model>,
    chain: Chain,
    context: RequestContext,
}

impl<'a> CollectionEmbedder<'a> {
    /// `route` and `key_id` are what the plugins are told about the request.
    pub fn new(
        host: &'a PluginHost,
        model: Arc<Model>,
        preprocessors: &[String],
        route: &str,
        key_id: Option<String>,
    ) -> Self {
        let context = RequestContext {
            request_id: format!("data-{}", crate::security::audit::now_ms()),
            key_id,
            model: model.name().to_string(),
            task: "embed".into(),
            route: route.into(),
        };
        Self {
            host,
            model,
            chain: Chain {
                preprocessors: preprocessors.to_vec(),
                ..Chain::default()
            },
            context,
        }
    }

    /// A search query's vector: the query runs through the same preprocessors as chunks.
    pub fn query(&mut self, text: &str) -> Result<Vec<f32>, String> {
        let texts = self.preprocess(vec![text.to_string()])?;
        if texts.iter().all(|t| t.trim().is_empty()) {
            return Err("the query is empty after the collection's preprocessors".into());
        }
        self.embed(texts)?
            .into_iter()
            .next()
            .ok_or_else(|| "the model returned no vector".to_string())
    }
}

impl Embedder for CollectionEmbedder<'_> {
    fn spans(&self, text: &str) -> Result<(Vec<TokenSpan>, usize), String> {
        let enc = self.model.encoder.as_ref().ok_or_else(|| {
            format!("model {} has no tokenizer: it cannot embed collections", self.model.name())
        })?;
        enc.spans(text).map_err(|e| e.to_string())
    }

    fn preprocess(&mut self, texts: Vec<String>) -> Result<Vec<String>, String> {
        if self.chain.preprocessors.is_empty() {
            return Ok(texts);
        }
        let ctx = self.context.clone();
        match pipeline::run(self.host, &self.chain, ctx, texts, |_| Ok(serde_json::Value::Null)) {
            Ok(Outcome::Completed { inputs, .. }) => Ok(inputs),
            Ok(Outcome::Denied { plugin, reason, .. }) => Err(format!("denied by plugin {plugin}: {reason}")),
            Err(e) => Err(format!("preprocessor: {e}")),
        }
    }

    fn embed(&mut self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, String> {
        let started = std::time::Instant::now();
        loop {
            // Truncate: a chunk cut at token boundaries may tokenise a token or two longer
            // once preprocessed; the overlap keeps what the cut drops.
            match self.model.embed(texts.clone(), Truncation::Truncate) {
                Ok(p) => return p.wait().map(|e| e.vectors).map_err(|e| e.to_string()),
                Err(TaskError::Busy { .. }) if started.elapsed() < BUSY_WAIT => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

/// Checks that a model can embed collections and returns its maximum sequence length.
pub fn check_model(model: &Model) -> Result<usize, String> {
    if model.manifest.task != Task::Embed {
        return Err(format!(
            "model {} is a {} model: a collection needs an embedding model (e.g. minilm)",
            model.name(),
            model.manifest.task.as_str()
        ));
    }
    model
        .encoder
        .as_ref()
        .map(|e| e.max_len())
        .ok_or_else(|| format!("model {} has no tokenizer", model.name()))
}

/// Checks that every name is an installed preprocessor plugin.
pub fn check_preprocessors(store: &Store, names: &[String]) -> Result<(), String> {
    for n in names {
        match registry::world_of(store, n) {
            Ok(World::Preprocessor) => {}
            Ok(w) => {
                return Err(format!(
                    "plugin {n} is a {} plugin: `preprocessors` takes preprocessor plugins",
                    w.name()
                ));
            }
            Err(_) => {
                let installed: Vec<String> = registry::list(store)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|p| p.manifest.world == World::Preprocessor)
                    .map(|p| p.manifest.name)
                    .collect();
                return Err(format!(
                    "no preprocessor plugin {n:?} is installed (installed preprocessors: {})",
                    if installed.is_empty() { "none".into() } else { installed.join(", ") }
                ));
            }
        }
    }
    Ok(())
}

/// Changes to a collection's settings (`None`: keep, or the default for a new collection).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsUpdate {
    /// The embedding model [default `minilm`].
    pub model: Option<String>,
    /// Tokens per chunk, special tokens included [default: the model's maximum].
    pub chunk_tokens: Option<usize>,
    /// Tokens shared by consecutive chunks [default 32, at most half a chunk].
    pub overlap_tokens: Option<usize>,
    /// Preprocessor plugins, in order [default none].
    pub preprocessors: Option<Vec<String>>,
}

/// The default embedding model of a collection.
pub const DEFAULT_MODEL: &str = "minilm";
/// The default overlap of consecutive chunks, in tokens.
pub const DEFAULT_OVERLAP: usize = 32;
/// The smallest chunk, in tokens.
pub const MIN_CHUNK: usize = 8;

/// A collection's record with `update` applied to `old` (or to the defaults), checked
/// against the model (loaded here) and the installed plugins.
pub fn resolve_settings(
    core: &crate::core::Core,
    store: &Store,
    name: &str,
    old: Option<&CollectionRecord>,
    update: &SettingsUpdate,
) -> Result<CollectionRecord, DataError> {
    let bad = DataError::BadSettings;
    let model = update
        .model
        .clone()
        .or_else(|| old.map(|o| o.model.clone()))
        .unwrap_or_else(|| DEFAULT_MODEL.into());
    let m = core
        .model(&model)
        .map_err(|e| bad(format!("model {model:?}: {e}")))?;
    let max = check_model(&m).map_err(bad)?;
    let same_model = old.is_some_and(|o| o.model == model);
    let chunk_tokens = update
        .chunk_tokens
        .or_else(|| old.filter(|_| same_model).map(|o| o.chunk_tokens))
        .unwrap_or(max);
    if !(MIN_CHUNK..=max).contains(&chunk_tokens) {
        return Err(bad(format!(
            "chunk_tokens {chunk_tokens}: accepted {MIN_CHUNK} to {max} (model {model}'s maximum)"
        )));
    }
    let overlap_tokens = update
        .overlap_tokens
        .or_else(|| old.map(|o| o.overlap_tokens))
        .unwrap_or_else(|| DEFAULT_OVERLAP.min(chunk_tokens / 4));
    if overlap_tokens > chunk_tokens / 2 {
        return Err(bad(format!(
            "overlap_tokens {overlap_tokens}: accepted 0 to {} (half of chunk_tokens {chunk_tokens})",
            chunk_tokens / 2
        )));
    }
    let preprocessors = update
        .preprocessors
        .clone()
        .or_else(|| old.map(|o| o.preprocessors.clone()))
        .unwrap_or_default();
    check_preprocessors(store, &preprocessors).map_err(bad)?;
    let now = crate::security::audit::now_ms();
    Ok(CollectionRecord {
        v: 1,
        name: name.to_string(),
        model,
        chunk_tokens,
        overlap_tokens,
        preprocessors,
        documents: old.map_or(0, |o| o.documents),
        chunks: old.map_or(0, |o| o.chunks),
        created_ms: old.map_or(now, |o| o.created_ms),
        updated_ms: now,
    })
}

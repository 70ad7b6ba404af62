//! Text generation (docs/generation.md §4): one engine thread per causal-LM model runs
//! prefill and KV-cache decode steps, batching the running sequences continuously.
//!
//! A caller builds a [`GenerateRequest`] (prompt token ids, sampling, stop strings,
//! `max_tokens`), submits it with [`crate::core::Model::generate`] and reads a
//! [`GenerateStream`] of [`GenEvent`]s: one `Token` per generated token (its text only in
//! complete UTF-8 characters, stop strings held back and never emitted), then `Done`.
//! Dropping the stream cancels the sequence before the engine's next step.

mod cache;
mod detok;
pub(crate) mod engine;
mod fair;
pub mod grammar;
mod lookup;
mod sampling;
pub mod tenant;
mod template;

use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::core::engine::TaskError;

pub use detok::{Detokenizer, StopMatcher};
pub use sampling::{Rng, Sampling};
pub use template::{ChatMessage, ChatTemplate};

/// The optional graph input (an overridable initializer, default 0 = every position) that
/// asks for the logits of the last `k` positions only; the engine feeds 1 to a prefill
/// (docs/generation.md §1). Graphs without it return every position's logits.
pub const LOGITS_TO_KEEP: &str = "logits_to_keep";

/// `generation.json` (role `config`) of a generation model; other keys are kept by the
/// importer for people (e.g. `import`) and ignored here.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct GenerationConfig {
    /// Model family (`llama`).
    #[serde(default)]
    pub architecture: Option<String>,
    /// Most tokens (prompt + generated) the model attends to.
    pub context_length: usize,
    /// Beginning-of-sequence token.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// Tokens that end a sequence (never emitted).
    #[serde(default)]
    pub eos_token_ids: Vec<u32>,
    /// Whether prompts start with the BOS token.
    #[serde(default)]
    pub add_bos_token: bool,
    /// Jinja chat template (Hugging Face variables); absent ⇒ no chat.
    #[serde(default)]
    pub chat_template: Option<String>,
}

impl GenerationConfig {
    /// Reads `generation.json`.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let c: Self = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{}: {e} (expected context_length, eos_token_ids, chat_template, …; docs/generation.md §2)",
                path.display()
            )
        })?;
        if c.context_length == 0 {
            return Err(format!("{}: context_length is 0", path.display()));
        }
        Ok(c)
    }
}

/// One generation: a prompt and how to continue it.
#[derive(Debug, Clone, Default)]
pub struct GenerateRequest {
    /// Prompt token ids (BOS and chat template already applied).
    pub prompt: Vec<u32>,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// How the next token is chosen.
    pub sampling: Sampling,
    /// Strings that end the generation; never part of the text.
    pub stop: Vec<String>,
    /// `Some(n)`: report each token's log-probability and the `n` most likely alternatives.
    pub logprobs: Option<usize>,
    /// What the text must be (a grammar): applied before each draw (docs/generation.md §6a).
    pub constraint: Option<Arc<dyn grammar::Constraint>>,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// An end-of-sequence token or a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The caller went away.
    Cancelled,
}

impl FinishReason {
    /// OpenAI's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Token counts of one generation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Generated tokens (an end-of-sequence token included).
    pub completion_tokens: usize,
}

/// A token and its log-probability.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenLogprob {
    /// Token id.
    pub token_id: u32,
    /// Its text (lossy for a partial UTF-8 character).
    pub token: String,
    /// Natural log of its probability under the model.
    pub logprob: f32,
}

/// What a generation stream yields.
#[derive(Debug, Clone, PartialEq)]
pub enum GenEvent {
    /// One generated token; `text` is what it adds (complete characters only, possibly empty
    /// while a character or a possible stop string is incomplete).
    Token {
        /// Text to append.
        text: String,
        /// The token.
        token_id: u32,
        /// Its log-probability (when asked).
        logprob: Option<TokenLogprob>,
        /// The most likely alternatives (when asked).
        top_logprobs: Vec<TokenLogprob>,
    },
    /// The end.
    Done {
        /// Why.
        finish_reason: FinishReason,
        /// Counts.
        usage: Usage,
    },
}

pub(crate) type EventSender = mpsc::UnboundedSender<Result<GenEvent, TaskError>>;

/// The events of one generation. Dropping it cancels the sequence.
#[derive(Debug)]
pub struct GenerateStream {
    rx: mpsc::UnboundedReceiver<Result<GenEvent, TaskError>>,
}

/// A whole generation, collected.
#[derive(Debug, Clone, Default)]
pub struct Completion {
    /// The text.
    pub text: String,
    /// Per token: id, log-probability, alternatives, and the text it added.
    pub tokens: Vec<(String, Option<TokenLogprob>, Vec<TokenLogprob>)>,
    /// Why it ended (`None` only if the engine went away).
    pub finish_reason: Option<FinishReason>,
    /// Counts.
    pub usage: Usage,
}

impl GenerateStream {
    pub(crate) fn channel() -> (EventSender, Self) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, Self { rx })
    }

    /// The next event; `None` after `Done` or an error.
    pub async fn next(&mut self) -> Option<Result<GenEvent, TaskError>> {
        self.rx.recv().await
    }

    /// The next event, blocking this thread (CLI; never on an async executor).
    pub fn next_blocking(&mut self) -> Option<Result<GenEvent, TaskError>> {
        pollster::block_on(self.rx.recv())
    }

    /// Reads the stream to its end.
    pub async fn collect(mut self) -> Result<Completion, TaskError> {
        let mut c = Completion::default();
        while let Some(ev) = self.next().await {
            match ev? {
                GenEvent::Token {
                    text,
                    logprob,
                    top_logprobs,
                    ..
                } => {
                    c.text.push_str(&text);
                    c.tokens.push((text, logprob, top_logprobs));
                }
                GenEvent::Done {
                    finish_reason,
                    usage,
                } => {
                    c.finish_reason = Some(finish_reason);
                    c.usage = usage;
                }
            }
        }
        Ok(c)
    }
}

impl futures_core::Stream for GenerateStream {
    type Item = Result<GenEvent, TaskError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// What the engine needs to know about a generation model besides its session.
#[derive(Debug)]
pub struct Generation {
    /// `generation.json`.
    pub config: GenerationConfig,
    /// The compiled chat template, if the model has one.
    pub template: Option<ChatTemplate>,
    /// BOS token text (for templates).
    pub bos_token: String,
    /// First EOS token text (for templates).
    pub eos_token: String,
    /// Each token's bytes and a trie over them, built on first use (structured output).
    pub token_table: OnceLock<Result<Arc<grammar::TokenTable>, String>>,
}

/// A generation request on its way to the engine thread.
#[derive(Debug)]
pub struct GenJob {
    /// What to generate.
    pub request: GenerateRequest,
    pub(crate) tx: EventSender,
    /// Its tenant's counts (docs/generation.md, "Scheduling").
    pub(crate) ticket: Option<tenant::Ticket>,
    /// When it was queued (time to first token is measured from here).
    pub(crate) submitted: std::time::Instant,
}

/// Reads `generation.json` and the cache geometry of the graph (count of
/// `past_key_values.*`, their dims) and prepares the engine thread's context.
pub(crate) fn setup(
    config_path: &Path,
    inputs: &[crate::core::tensor::TensorSpec],
    encoder: Option<crate::core::text::TextEncoder>,
    raw: std::sync::Arc<crate::core::worker::WorkerCtx>,
    max_batch: usize,
    settings: &crate::config::GenerationSettings,
    queue_capacity: usize,
) -> Result<(Generation, engine::GenCtx), String> {
    let config = GenerationConfig::load(config_path)?;
    let encoder = encoder.ok_or("a generation model needs a tokenizer")?;
    let needed = ["input_ids", "attention_mask", "position_ids"];
    if let Some(missing) = needed.iter().find(|n| !inputs.iter().any(|i| i.name == **n)) {
        return Err(format!(
            "the graph has no input {missing}: a generation model takes input_ids, attention_mask, position_ids and past_key_values.{{i}}.key/value (docs/generation.md §1)"
        ));
    }
    let mut cache = Vec::new();
    let mut geometry = None;
    for i in inputs.iter().filter(|i| i.name.starts_with("past_key_values.")) {
        let (heads, head_dim) = match i.shape.as_slice() {
            [_, h, _, d] => (usize::try_from(*h).ok(), usize::try_from(*d).ok()),
            _ => (None, None),
        };
        let (Some(heads), Some(head_dim)) = (heads, head_dim) else {
            return Err(format!(
                "input {} has shape {:?}: expected [batch, kv_heads, past, head_dim] with fixed kv_heads and head_dim",
                i.name, i.shape
            ));
        };
        geometry.get_or_insert(cache::Geometry { heads, head_dim });
        let present = i.name.replacen("past_key_values.", "present.", 1);
        cache.push((i.name.clone(), present));
    }
    let geometry = geometry.ok_or("the graph has no past_key_values.* inputs (docs/generation.md §1)")?;
    let token = |id: Option<u32>| {
        id.and_then(|id| encoder.decode(&[id], false).ok())
            .unwrap_or_default()
    };
    let template = match &config.chat_template {
        Some(t) => Some(ChatTemplate::new(t)?),
        None => None,
    };
    let generation = Generation {
        bos_token: token(config.bos_token_id),
        eos_token: token(config.eos_token_ids.first().copied()),
        template,
        config: config.clone(),
        token_table: OnceLock::new(),
    };
    // KV-cache positions the engine may hold at most (`/metrics`: KV-cache utilisation).
    let capacity = max_batch.max(1).saturating_mul(config.context_length.max(1));
    raw.stats.gen_kv_capacity.store(
        u64::try_from(capacity).unwrap_or(u64::MAX),
        std::sync::atomic::Ordering::Relaxed,
    );
    let ctx = engine::GenCtx {
        name: raw.name.clone(),
        encoder,
        cache,
        geometry,
        // Set by the loader, which sees the session's overridable initializers.
        keep_logits: false,
        context_length: config.context_length,
        max_batch,
        eos: config.eos_token_ids.clone(),
        scheduler: settings.scheduler,
        quantum: settings.quantum.max(1),
        queue_capacity: queue_capacity.max(1),
        fair_step_budget: settings.fair_step_budget,
        speculative: (settings.speculative == crate::config::Speculative::PromptLookup)
            .then_some(engine::Drafts {
                tokens: settings.draft_tokens.max(1),
                min_match: settings.draft_min_match.max(1),
            }),
        raw,
    };
    Ok((generation, ctx))
}

//! The `inference` capability's backend: a trait the core implements.
//!
//! The plugin host never depends on the core's internals; the process that owns both wires
//! an implementation in (see `PluginHost::open`). Without one, inference calls from plugins
//! return `unavailable` after the capability check.
//!
//! Every call carries a [`Budget`]: the plugin call's deadline and the tokens it may still
//! spend. Backends pass both to the model's queue (a late request is dropped there, before
//! running or between sub-batches) and return a future, so the waiting plugin call can be
//! stopped at its deadline instead of blocking its thread on the model.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

/// An error of the backend, mapped to the WIT `error` variant for the guest.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InferenceError {
    /// No model with this name is loaded (guest: `not-found`).
    #[error("unknown model {0}")]
    UnknownModel(String),
    /// The model refused the input (guest: `invalid-input`).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The model's queue is full (guest: `unavailable`).
    #[error("model busy")]
    Busy,
    /// Inference failed (guest: `unavailable`).
    #[error("inference failed: {0}")]
    Failed(String),
    /// The call's deadline passed; the model dropped the request (guest: `limit-exceeded`).
    #[error("the deadline passed before the model answered")]
    Expired,
    /// The request has more tokens than the budget allows (guest: `limit-exceeded`).
    #[error("the request has {tokens} tokens, {max} left in the budget")]
    TokenBudget {
        /// Tokens of the request.
        tokens: usize,
        /// Tokens the budget had left.
        max: usize,
    },
}

/// What one inference call may spend: the plugin call's deadline and remaining tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The model must answer by then; the request is dropped after it.
    pub deadline: Instant,
    /// Most tokens (all texts together) this request may use.
    pub max_tokens: usize,
}

/// An answer and the tokens it cost (special tokens included).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer<T> {
    /// The answer.
    pub value: T,
    /// Tokens the model processed for it.
    pub tokens: usize,
}

/// A backend's answer on its way. Dropping it tells the model the caller has gone.
pub type InferenceFuture<T> =
    Pin<Box<dyn Future<Output = Result<Answer<T>, InferenceError>> + Send + 'static>>;

/// A label with its score.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelScore {
    /// The label.
    pub label: String,
    /// Its score (probability).
    pub score: f32,
}

/// A named entity found in a text.
#[derive(Debug, Clone, PartialEq)]
pub struct EntitySpan {
    /// The entity label, e.g. `PER`.
    pub label: String,
    /// Byte offset of the first byte in the text.
    pub start: usize,
    /// Byte offset one past the last byte.
    pub end: usize,
    /// The entity's text.
    pub text: String,
    /// Its score.
    pub score: f32,
}

/// What plugins can ask of the models. Implementations queue the request at once (a full
/// queue is an immediate error) and return a future of the answer; they must not run model
/// code on the calling thread, and must drop the request when the budget's deadline passes.
pub trait InferenceBackend: Send + Sync + 'static {
    /// One embedding per text.
    fn embed(
        &self,
        model: &str,
        texts: Vec<String>,
        budget: Budget,
    ) -> InferenceFuture<Vec<Vec<f32>>>;
    /// Labels per text, sorted by score, highest first.
    fn classify(
        &self,
        model: &str,
        texts: Vec<String>,
        budget: Budget,
    ) -> InferenceFuture<Vec<Vec<LabelScore>>>;
    /// Entities of one text.
    fn entities(
        &self,
        model: &str,
        text: String,
        budget: Budget,
    ) -> InferenceFuture<Vec<EntitySpan>>;
    /// Greedy continuation of a raw prompt (no chat template), at most `max_tokens` tokens
    /// (fewer when the model's context or the budget's tokens leave less room). Dropping the
    /// future cancels the generation before the model's next step. Backends without
    /// generation answer `Failed` (guest: `unavailable`).
    fn generate(
        &self,
        model: &str,
        prompt: String,
        max_tokens: usize,
        budget: Budget,
    ) -> InferenceFuture<String> {
        let _ = (prompt, max_tokens, budget);
        ready(Err(InferenceError::Failed(format!(
            "text generation is not supported by this inference backend (model {model})"
        ))))
    }
}

/// A future that is already done (backends that answer at once, test doubles).
pub fn ready<T: Send + 'static>(r: Result<Answer<T>, InferenceError>) -> InferenceFuture<T> {
    Box::pin(std::future::ready(r))
}

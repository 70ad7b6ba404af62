//! The `inference` capability's backend: a trait the core implements.
//!
//! The plugin host never depends on the core's internals; the process that owns both wires
//! an implementation in (see `PluginHost::open`). Without one, inference calls from plugins
//! return `unavailable` after the capability check.

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
}

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

/// What plugins can ask of the models. Implementations block the calling (plugin) thread
/// until the answer is ready; they must not run model code on an async executor.
pub trait InferenceBackend: Send + Sync + 'static {
    /// One embedding per text.
    fn embed(&self, model: &str, texts: &[String]) -> Result<Vec<Vec<f32>>, InferenceError>;
    /// Labels per text, sorted by score, highest first.
    fn classify(
        &self,
        model: &str,
        texts: &[String],
    ) -> Result<Vec<Vec<LabelScore>>, InferenceError>;
    /// Entities of one text.
    fn entities(&self, model: &str, text: &str) -> Result<Vec<EntitySpan>, InferenceError>;
}

//! Constructors for [`Error`], the error every export and host call returns.

use crate::Error;

impl Error {
    /// The arguments were rejected; say what is accepted.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Error::InvalidInput(message.into())
    }

    /// The named thing (model, key, secret) does not exist.
    pub fn not_found(what: impl Into<String>) -> Self {
        Error::NotFound(what.into())
    }

    /// A size or count limit was reached.
    pub fn limit_exceeded(message: impl Into<String>) -> Self {
        Error::LimitExceeded(message.into())
    }

    /// The service is temporarily unavailable; the call may succeed later.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Error::Unavailable(message.into())
    }

    /// The plugin lacks the capability `capability` (e.g. `kv`, `inference:minilm`).
    pub fn denied(capability: impl Into<String>) -> Self {
        Error::Denied(capability.into())
    }
}

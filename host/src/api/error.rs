//! HTTP errors: one type, two body shapes (OpenAI's and KServe's).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::core::engine::{LoadError, TaskError};
use crate::core::store::StoreError;

/// Which API family answers, so the error body has the shape its clients parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `{"error":{"message","type","param","code"}}`
    OpenAi,
    /// `{"error":"..."}`
    KServe,
}

/// An error answered to a client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What was wrong and what is accepted.
    pub message: String,
    /// OpenAI `type`.
    pub kind: &'static str,
    /// OpenAI `param`: the request field at fault.
    pub param: Option<String>,
    /// OpenAI `code`.
    pub code: Option<&'static str>,
    /// Seconds for `Retry-After` (429/503).
    pub retry_after: Option<u32>,
    /// Body shape.
    pub flavor: Flavor,
}

impl ApiError {
    /// A 400 naming the field at fault.
    pub fn invalid(param: impl Into<Option<String>>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
            .with_param(param.into())
    }

    /// Any status.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after: None,
            flavor: Flavor::OpenAi,
        }
    }

    /// Sets `param`.
    pub fn with_param(mut self, param: Option<String>) -> Self {
        self.param = param;
        self
    }

    /// Sets `code`.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// Answers in KServe's shape.
    pub fn kserve(mut self) -> Self {
        self.flavor = Flavor::KServe;
        self
    }

    /// Unknown model.
    pub fn model_not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", message)
            .with_param(Some("model".into()))
            .with_code("model_not_found")
    }
}

impl From<TaskError> for ApiError {
    fn from(e: TaskError) -> Self {
        let message = e.to_string();
        match e {
            TaskError::Busy { .. } => {
                let mut a = Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", message)
                    .with_code("queue_full");
                a.retry_after = Some(1);
                a
            }
            TaskError::Stopped(_) => {
                let mut a = Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message);
                a.retry_after = Some(5);
                a
            }
            TaskError::Expired { .. } => {
                Self::new(StatusCode::GATEWAY_TIMEOUT, "server_error", message)
                    .with_code("deadline_exceeded")
            }
            TaskError::TokenBudget { .. } => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", message)
                    .with_code("token_quota")
            }
            TaskError::Runtime { .. } => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
            }
            TaskError::WrongTask { .. } => {
                Self::invalid(Some("model".into()), message).with_code("wrong_task")
            }
            TaskError::ContextOverflow { .. } => {
                Self::invalid(Some("max_tokens".into()), message).with_code("context_length_exceeded")
            }
            TaskError::Prompt { .. } => Self::invalid(Some("messages".into()), message),
            TaskError::Text(_) | TaskError::Tensor(_) => {
                Self::invalid(Some("input".into()), message)
            }
        }
    }
}

impl From<LoadError> for ApiError {
    fn from(e: LoadError) -> Self {
        let message = e.to_string();
        match e {
            LoadError::Store(StoreError::UnknownModel { .. })
            | LoadError::Store(StoreError::NotPulled { .. }) => Self::model_not_found(message),
            _ => Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
                .with_code("model_unavailable"),
        }
    }
}

impl ApiError {
    /// The OpenAI error object `{"error": {message, type, param, code}}` (also sent as the
    /// last event of a stream that fails).
    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.flavor {
            Flavor::OpenAi => json!({"error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }}),
            Flavor::KServe => json!({"error": self.message}),
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

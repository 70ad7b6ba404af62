//! The `inference` capability served by the real models: [`InferenceBackend`] over
//! [`crate::core::Core`]. Requests go into the same queues (and batches) as HTTP requests,
//! carrying the plugin call's deadline and token budget; the plugin awaits the answer, and
//! the model's inference thread drops the request once the deadline has passed or the plugin
//! call has gone.

use std::sync::Arc;

use crate::core::Core;
use crate::core::engine::{Bounds, LoadError, Model, Pending, TaskError};
use crate::core::store::StoreError;
use crate::core::text::{Input, Truncation};
use crate::plugins::inference::{
    Answer, Budget, EntitySpan, InferenceBackend, InferenceError, InferenceFuture, LabelScore,
    ready,
};

/// Plugins' view of the loaded models.
#[derive(Debug, Clone)]
pub struct CoreBackend(pub Arc<Core>);

fn load_err(e: LoadError) -> InferenceError {
    match e {
        LoadError::Store(StoreError::UnknownModel { name, .. }) => {
            InferenceError::UnknownModel(name)
        }
        other => InferenceError::Failed(other.to_string()),
    }
}

fn task_err(e: TaskError) -> InferenceError {
    match e {
        TaskError::Busy { .. } => InferenceError::Busy,
        TaskError::Expired { .. } => InferenceError::Expired,
        TaskError::TokenBudget { tokens, max, .. } => InferenceError::TokenBudget { tokens, max },
        TaskError::Text(_) | TaskError::Tensor(_) | TaskError::WrongTask { .. } => {
            InferenceError::InvalidInput(e.to_string())
        }
        other => InferenceError::Failed(other.to_string()),
    }
}

fn bounds(b: Budget) -> Bounds {
    Bounds {
        deadline: Some(b.deadline),
        max_tokens: Some(b.max_tokens),
    }
}

impl CoreBackend {
    /// Queues a job on `model` now and returns the future of its mapped answer.
    fn queue<R: Send + 'static, T: Send + 'static>(
        &self,
        model: &str,
        submit: impl FnOnce(&Model) -> Result<Pending<R>, TaskError>,
        map: impl FnOnce(R) -> Answer<T> + Send + 'static,
    ) -> InferenceFuture<T> {
        let pending = match self.0.model(model) {
            Ok(m) => submit(&m).map_err(task_err),
            Err(e) => Err(load_err(e)),
        };
        match pending {
            Ok(p) => Box::pin(async move { Ok(map(p.recv().await.map_err(task_err)?)) }),
            Err(e) => ready(Err(e)),
        }
    }
}

impl InferenceBackend for CoreBackend {
    fn embed(
        &self,
        model: &str,
        texts: Vec<String>,
        budget: Budget,
    ) -> InferenceFuture<Vec<Vec<f32>>> {
        self.queue(
            model,
            |m| m.embed_within(Input::Texts(texts), Truncation::Truncate, bounds(budget)),
            |out| Answer {
                tokens: out.tokens,
                value: out.vectors,
            },
        )
    }

    fn classify(
        &self,
        model: &str,
        texts: Vec<String>,
        budget: Budget,
    ) -> InferenceFuture<Vec<Vec<LabelScore>>> {
        self.queue(
            model,
            |m| m.classify_within(Input::Texts(texts), Truncation::Truncate, bounds(budget)),
            |out| Answer {
                tokens: out.tokens,
                value: out
                    .scores
                    .into_iter()
                    .map(|row| {
                        row.into_iter()
                            .map(|s| LabelScore {
                                label: s.label,
                                score: s.score,
                            })
                            .collect()
                    })
                    .collect(),
            },
        )
    }

    fn entities(
        &self,
        model: &str,
        text: String,
        budget: Budget,
    ) -> InferenceFuture<Vec<EntitySpan>> {
        self.queue(
            model,
            |m| m.entities_within(vec![text], Truncation::Truncate, bounds(budget)),
            |mut out| Answer {
                tokens: out.tokens,
                value: out
                    .entities
                    .pop()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|e| EntitySpan {
                        label: e.label,
                        start: e.start_byte,
                        end: e.end_byte,
                        text: e.text,
                        score: e.score,
                    })
                    .collect(),
            },
        )
    }
}

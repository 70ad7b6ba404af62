//! The `inference` capability served by the real models: [`InferenceBackend`] over
//! [`crate::core::Core`]. Requests go into the same queues (and batches) as HTTP requests,
//! carrying the plugin call's deadline and token budget; the plugin awaits the answer, and
//! the model's inference thread drops the request once the deadline has passed or the plugin
//! call has gone.

use std::sync::Arc;

use crate::core::Core;
use crate::core::engine::{Bounds, LoadError, Model, Pending, TaskError};
use crate::core::generate::{GenerateRequest, Sampling};
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

    fn generate(
        &self,
        model: &str,
        prompt: String,
        max_tokens: usize,
        budget: Budget,
    ) -> InferenceFuture<String> {
        let request = match self.0.model(model) {
            Ok(m) => generation(&m, &prompt, max_tokens, budget).map(|r| (m, r)),
            Err(e) => Err(load_err(e)),
        };
        let stream = request.and_then(|(m, r)| m.generate(r).map_err(task_err));
        match stream {
            Ok(s) => Box::pin(async move {
                let c = s.collect().await.map_err(task_err)?;
                Ok(Answer {
                    tokens: c
                        .usage
                        .prompt_tokens
                        .saturating_add(c.usage.completion_tokens),
                    value: c.text,
                })
            }),
            Err(e) => ready(Err(e)),
        }
    }
}

/// A plugin's generation: greedy (reproducible), `max_tokens` capped by the room the model's
/// context and the budget's tokens leave after the prompt.
fn generation(
    m: &Model,
    prompt: &str,
    max_tokens: usize,
    budget: Budget,
) -> Result<GenerateRequest, InferenceError> {
    let ids = m.prompt_ids(prompt).map_err(task_err)?;
    let context = m.context_length().unwrap_or(0);
    if ids.len() >= context {
        return Err(InferenceError::InvalidInput(format!(
            "the prompt is {} tokens; model {} attends to {context} in all, so nothing is left to generate",
            ids.len(),
            m.name()
        )));
    }
    if ids.len() >= budget.max_tokens {
        return Err(InferenceError::TokenBudget {
            tokens: ids.len().saturating_add(1),
            max: budget.max_tokens,
        });
    }
    let room = context
        .saturating_sub(ids.len())
        .min(budget.max_tokens.saturating_sub(ids.len()));
    Ok(GenerateRequest {
        prompt: ids,
        max_tokens: max_tokens.clamp(1, room),
        sampling: Sampling {
            temperature: 0.0,
            ..Sampling::default()
        },
        stop: Vec::new(),
        logprobs: None,
        constraint: None,
    })
}

//! The `inference` capability served by the real models: [`InferenceBackend`] over
//! [`crate::core::Core`]. Plugin threads block on the answer; model code runs on the
//! models' own inference threads, as for every other caller.

use std::sync::Arc;

use crate::core::Core;
use crate::core::engine::{LoadError, TaskError};
use crate::core::store::StoreError;
use crate::core::text::Truncation;
use crate::plugins::inference::{EntitySpan, InferenceBackend, InferenceError, LabelScore};

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
        TaskError::Text(_) | TaskError::Tensor(_) | TaskError::WrongTask { .. } => {
            InferenceError::InvalidInput(e.to_string())
        }
        other => InferenceError::Failed(other.to_string()),
    }
}

impl InferenceBackend for CoreBackend {
    fn embed(&self, model: &str, texts: &[String]) -> Result<Vec<Vec<f32>>, InferenceError> {
        let m = self.0.model(model).map_err(load_err)?;
        let out = m
            .embed(texts.to_vec(), Truncation::Truncate)
            .map_err(task_err)?;
        Ok(out.wait().map_err(task_err)?.vectors)
    }

    fn classify(
        &self,
        model: &str,
        texts: &[String],
    ) -> Result<Vec<Vec<LabelScore>>, InferenceError> {
        let m = self.0.model(model).map_err(load_err)?;
        let out = m
            .classify(texts.to_vec(), Truncation::Truncate)
            .map_err(task_err)?;
        Ok(out
            .wait()
            .map_err(task_err)?
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
            .collect())
    }

    fn entities(&self, model: &str, text: &str) -> Result<Vec<EntitySpan>, InferenceError> {
        let m = self.0.model(model).map_err(load_err)?;
        let out = m
            .entities(vec![text.to_string()], Truncation::Truncate)
            .map_err(task_err)?;
        let mut all = out.wait().map_err(task_err)?.entities;
        Ok(all
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
            .collect())
    }
}

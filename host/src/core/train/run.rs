//! One training run: embed the texts (through an [`Embedder`], in chunks, with progress and
//! cancellation), split, fit, measure.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::data::{DataError, Dataset};
use super::fit::{self, Rows, Settings};
use super::head::Head;
use super::metrics;
use super::recipe::{Metrics, Recipe};
use super::split;
use crate::core::engine::{Model, TaskError};
use crate::core::text::Truncation;

/// Texts per embedding call (and per progress report).
pub const CHUNK: usize = 64;

/// How long a busy model queue is retried before giving up.
const BUSY_WAIT: Duration = Duration::from_secs(60);

/// Turns texts into pooled embeddings, one vector per text, in order.
pub trait Embedder: Sync {
    /// Embeds `texts`; the error says what failed.
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, String>;

    /// Texts answered from a cache so far (0 for a model).
    fn cached(&self) -> usize {
        0
    }
}

impl Embedder for Model {
    /// Through the model's normal batched path, [`CHUNK`] texts a call, in order. Texts longer
    /// than the model's maximum are cut there (as collections do), not refused: a data file's
    /// long rows still train. A busy queue is retried for up to a minute.
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, String> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(CHUNK) {
            let started = Instant::now();
            let pending = loop {
                match Model::embed(self, chunk.to_vec(), Truncation::Truncate) {
                    Ok(p) => break p,
                    Err(TaskError::Busy { .. }) if started.elapsed() < BUSY_WAIT => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => return Err(e.to_string()),
                }
            };
            out.extend(pending.wait().map_err(|e| e.to_string())?.vectors);
        }
        Ok(out)
    }
}

/// Where a run is.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// After each chunk of texts embedded.
    Embedding {
        /// Texts done.
        done: usize,
        /// Texts in all.
        total: usize,
        /// Of those done, answered from the cache.
        cached: usize,
    },
    /// After each epoch.
    Fitting {
        /// 1-based.
        epoch: usize,
        /// The most there can be.
        epochs: usize,
        /// Training loss before the epoch's step.
        train_loss: f64,
        /// Validation loss after it.
        validation_loss: f64,
    },
}

/// A trained head and how it was made.
#[derive(Debug, Clone, PartialEq)]
pub struct Trained {
    /// The weights.
    pub head: Head,
    /// Class names, in output order.
    pub classes: Vec<String>,
    /// Validation figures.
    pub metrics: Metrics,
    /// Seconds spent embedding.
    pub embed_seconds: f64,
    /// Seconds spent fitting.
    pub fit_seconds: f64,
    /// Texts the base model embedded.
    pub embedded: usize,
    /// Texts answered from the cache.
    pub cached: usize,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The data cannot be used.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A setting of the recipe is out of range.
    #[error("training setting {field} = {value}: {accepted}")]
    Recipe {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// What is accepted.
        accepted: &'static str,
    },
    /// The base model failed, or gave vectors that cannot be trained on.
    #[error("embedding the training texts: {0}")]
    Embed(String),
    /// Cancelled (between two chunks or two epochs).
    #[error("training was cancelled")]
    Cancelled,
}

fn check(recipe: &Recipe) -> Result<(), TrainError> {
    let bad = |field, value: String, accepted| {
        Err(TrainError::Recipe {
            field,
            value,
            accepted,
        })
    };
    if recipe.epochs == 0 {
        return bad("epochs", "0".into(), "at least 1");
    }
    if !(recipe.validation > 0.0 && recipe.validation < 1.0) {
        return bad("validation", recipe.validation.to_string(), "a share strictly between 0 and 1 (e.g. 0.2)");
    }
    if !(recipe.learning_rate.is_finite() && recipe.learning_rate > 0.0) {
        return bad("learning_rate", recipe.learning_rate.to_string(), "a positive number (e.g. 0.01)");
    }
    if !(recipe.l2.is_finite() && recipe.l2 >= 0.0) {
        return bad("l2", recipe.l2.to_string(), "zero or a positive number (e.g. 0.0001)");
    }
    Ok(())
}

/// Embeds every text in chunks of [`CHUNK`], reporting after each and checking `cancel`
/// before each. Returns the vectors, flattened row-major, and their width.
fn embed_all(
    texts: &[String],
    embedder: &dyn Embedder,
    progress: &dyn Fn(&Progress),
    cancel: &AtomicBool,
) -> Result<(Vec<f32>, usize), TrainError> {
    let before = embedder.cached();
    let mut flat = Vec::new();
    let mut dim = 0usize;
    let mut done = 0usize;
    for chunk in texts.chunks(CHUNK) {
        if cancel.load(Ordering::Relaxed) {
            return Err(TrainError::Cancelled);
        }
        let vectors = embedder.embed(chunk).map_err(TrainError::Embed)?;
        if vectors.len() != chunk.len() {
            return Err(TrainError::Embed(format!(
                "{} vectors for {} texts",
                vectors.len(),
                chunk.len()
            )));
        }
        for v in vectors {
            if dim == 0 {
                dim = v.len();
            }
            if v.len() != dim || dim == 0 || v.iter().any(|x| !x.is_finite()) {
                return Err(TrainError::Embed(format!(
                    "text {done} got a vector of {} values (not all finite, or not {dim} wide)",
                    v.len()
                )));
            }
            flat.extend(v);
            done = done.saturating_add(1);
        }
        progress(&Progress::Embedding {
            done,
            total: texts.len(),
            cached: embedder.cached().saturating_sub(before),
        });
    }
    Ok((flat, dim))
}

/// Rows `idx` of `x` (width `dim`) and their labels.
fn gather(x: &[f32], dim: usize, labels: &[usize], idx: &[usize]) -> (Vec<f32>, Vec<usize>) {
    let mut xs = Vec::with_capacity(idx.len().saturating_mul(dim));
    let mut ys = Vec::with_capacity(idx.len());
    for i in idx {
        let row = x.chunks_exact(dim.max(1)).nth(*i).unwrap_or(&[]);
        xs.extend_from_slice(row);
        ys.push(labels.get(*i).copied().unwrap_or(0));
    }
    (xs, ys)
}

/// Trains a head on `ds` as `recipe` says: embeds (progress per chunk), splits (stratified,
/// seeded), fits (progress per epoch), measures on the validation split. `cancel` is checked
/// between chunks and between epochs.
pub fn train(
    ds: &Dataset,
    recipe: &Recipe,
    embedder: &dyn Embedder,
    progress: &dyn Fn(&Progress),
    cancel: &AtomicBool,
) -> Result<Trained, TrainError> {
    check(recipe)?;
    let cached_before = embedder.cached();
    let started = Instant::now();
    let (x, dim) = embed_all(&ds.texts, embedder, progress, cancel)?;
    let embed_seconds = started.elapsed().as_secs_f64();
    let cached = embedder.cached().saturating_sub(cached_before);
    let classes = ds.classes.len();
    let parts = split::stratified(&ds.labels, classes, recipe.validation, recipe.seed);
    let (tx, ty) = gather(&x, dim, &ds.labels, &parts.train);
    let (vx, vy) = gather(&x, dim, &ds.labels, &parts.validation);
    let train_rows = Rows { x: &tx, dim, y: &ty };
    let validation_rows = Rows { x: &vx, dim, y: &vy };
    let started = Instant::now();
    let mut on_epoch = |e: &fit::Epoch| {
        progress(&Progress::Fitting {
            epoch: e.epoch,
            epochs: e.epochs,
            train_loss: e.train_loss,
            validation_loss: e.validation_loss,
        });
        !cancel.load(Ordering::Relaxed)
    };
    let fitted = fit::fit(train_rows, validation_rows, &Settings::of(recipe, classes), &mut on_epoch)
        .ok_or(TrainError::Cancelled)?;
    let fit_seconds = started.elapsed().as_secs_f64();
    let (confusion, loss) = metrics::confusion(&fitted.head, validation_rows, classes);
    let mut m = metrics::from_confusion(confusion, &ds.classes, loss);
    m.train_rows = ty.len();
    m.dropped_rows = ds.dropped;
    m.epochs = fitted.epochs;
    Ok(Trained {
        head: fitted.head,
        classes: ds.classes.clone(),
        metrics: m,
        embed_seconds,
        fit_seconds,
        embedded: ds.texts.len().saturating_sub(cached),
        cached,
    })
}

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

/// Texts per embedding call (and per progress report, and cancel check).
pub const CHUNK: usize = 256;

/// Texts per request a model embedder queues at once (several in flight keep every worker busy).
pub const SUB_CHUNK: usize = 32;

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
        // Every sub-chunk is queued before the first is awaited, so the model's workers all
        // run (a text's vector does not depend on what shares its batch).
        let mut pending = Vec::new();
        for chunk in texts.chunks(SUB_CHUNK) {
            let started = Instant::now();
            pending.push(loop {
                match Model::embed(self, chunk.to_vec(), Truncation::Truncate) {
                    Ok(p) => break p,
                    Err(TaskError::Busy { .. }) if started.elapsed() < BUSY_WAIT => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => return Err(e.to_string()),
                }
            });
        }
        let mut out = Vec::with_capacity(texts.len());
        for p in pending {
            out.extend(p.wait().map_err(|e| e.to_string())?.vectors);
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

/// What the fitting loop needs from a recipe, for `classes` classes.
fn settings(recipe: &Recipe, classes: usize) -> Settings {
    Settings {
        classes,
        hidden: recipe.hidden,
        epochs: recipe.epochs,
        learning_rate: recipe.learning_rate,
        l2: recipe.l2,
        patience: recipe.patience,
        class_weights: recipe.class_weights,
        seed: recipe.seed,
    }
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
    let fitted = fit::fit(train_rows, validation_rows, &settings(recipe, classes), &mut on_epoch)
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

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)] // why: test data built from small counts and f64 samples
pub(crate) mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::core::train::data::{RawRow, dataset};

    /// A bag-of-words embedder for tests of the callers: each word hashed (FNV-1a) into one of
    /// 64 dimensions, L2-normalised. Counts the texts it is asked for.
    #[derive(Default)]
    pub(crate) struct Words {
        pub calls: Mutex<Vec<Vec<String>>>,
        pub texts: AtomicUsize,
    }

    impl Embedder for Words {
        fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, String> {
            self.calls.lock().unwrap().push(texts.to_vec());
            self.texts.fetch_add(texts.len(), Ordering::Relaxed);
            Ok(texts
                .iter()
                .map(|t| {
                    let mut v = vec![0.0f32; 64];
                    for w in t.split_whitespace() {
                        let h = w.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
                        v[(h % 64) as usize] += 1.0;
                    }
                    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
                    v.iter().map(|x| x / n).collect()
                })
                .collect())
        }
    }

    pub(crate) fn recipe() -> Recipe {
        serde_json::from_value(serde_json::json!({
            "base": "words", "base_sha256": "00",
            "data": {"kind": "local", "path": "d", "sha256": "00"},
            "epochs": 300, "learning_rate": 0.05,
        }))
        .unwrap()
    }

    /// 150 texts: "good …" and "bad …" sentences.
    pub(crate) fn sentences() -> Dataset {
        let good = ["great", "lovely", "wonderful", "fine", "excellent"];
        let bad = ["awful", "terrible", "horrid", "dreadful", "poor"];
        let things = ["film", "meal", "day", "book", "trip", "song", "show", "game", "talk", "walk", "room", "team", "car", "town", "idea"];
        let mut rows = Vec::new();
        for (i, thing) in things.iter().enumerate() {
            for (j, (g, b)) in good.iter().zip(bad).enumerate() {
                let line = rows.len() + 1;
                if (i + j) % 3 != 0 {
                    rows.push(RawRow { line, text: format!("a {g} {thing}"), label: "pos".into() });
                } else {
                    rows.push(RawRow { line, text: format!("the {b} {thing}"), label: "neg".into() });
                }
            }
        }
        dataset(rows, "t", &recipe()).unwrap()
    }

    #[test]
    fn trains_reports_progress_and_measures() {
        let ds = sentences();
        let events = Mutex::new(Vec::new());
        let t = train(&ds, &recipe(), &Words::default(), &|p| events.lock().unwrap().push(p.clone()), &AtomicBool::new(false)).unwrap();
        let events = events.into_inner().unwrap();
        let embedding: Vec<_> = events.iter().filter(|e| matches!(e, Progress::Embedding { .. })).collect();
        assert_eq!(embedding.len(), ds.texts.len().div_ceil(CHUNK), "one report per chunk");
        assert_eq!(embedding.last(), Some(&&Progress::Embedding { done: 75, total: 75, cached: 0 }));
        let epochs = events.iter().filter(|e| matches!(e, Progress::Fitting { .. })).count();
        assert_eq!(epochs, t.metrics.epochs);
        assert_eq!(t.classes, vec!["neg", "pos"]);
        assert!(t.metrics.accuracy >= 0.9, "{:?}", t.metrics);
        assert_eq!(t.metrics.train_rows + t.metrics.validation_rows, 75);
        assert_eq!(t.metrics.classes.iter().map(|c| c.support).sum::<usize>(), t.metrics.validation_rows);
        assert_eq!((t.embedded, t.cached), (75, 0));
        assert_eq!(t.head.inputs(), 64);
        let again = train(&ds, &recipe(), &Words::default(), &|_| {}, &AtomicBool::new(false)).unwrap();
        assert_eq!(again.head, t.head, "same data, recipe and seed: the same head");
        assert_eq!(again.metrics, t.metrics);
    }

    #[test]
    fn cancel_stops_between_chunks_and_between_epochs() {
        let mut ds = sentences();
        while ds.texts.len() <= CHUNK {
            ds.texts.extend(ds.texts.clone());
            ds.labels.extend(ds.labels.clone());
        }
        let chunks = ds.texts.len().div_ceil(CHUNK);
        assert!(chunks > 1);
        for stage in ["embedding", "fitting"] {
            let cancel = AtomicBool::new(false);
            let words = Words::default();
            let progress = |p: &Progress| match (stage, p) {
                ("embedding", Progress::Embedding { .. }) => cancel.store(true, Ordering::Relaxed),
                ("fitting", Progress::Fitting { epoch: 3, .. }) => cancel.store(true, Ordering::Relaxed),
                _ => {}
            };
            let e = train(&ds, &recipe(), &words, &progress, &cancel).unwrap_err();
            assert!(matches!(e, TrainError::Cancelled), "{e}");
            let calls = words.calls.lock().unwrap().len();
            assert_eq!(calls, if stage == "embedding" { 1 } else { chunks }, "{stage}");
        }
    }

    #[test]
    fn bad_settings_and_bad_vectors_are_refused() {
        let ds = sentences();
        let no = AtomicBool::new(false);
        let mut r = recipe();
        r.validation = 1.0;
        let e = train(&ds, &r, &Words::default(), &|_| {}, &no).unwrap_err().to_string();
        assert_eq!(e, "training setting validation = 1: a share strictly between 0 and 1 (e.g. 0.2)");
        struct Nan;
        impl Embedder for Nan {
            fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, String> {
                Ok(texts.iter().map(|_| vec![f32::NAN; 4]).collect())
            }
        }
        let e = train(&ds, &recipe(), &Nan, &|_| {}, &no).unwrap_err().to_string();
        assert!(e.starts_with("embedding the training texts: text 0 got a vector of 4 values"), "{e}");
    }
}

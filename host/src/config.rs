//! Configuration: one TOML file, then `LLMOS_*` environment variables, then CLI flags.
//!
//! The file is `llmos.toml` in `LLMOS_HOME` (or the path given with `--config`).
//! Unknown keys are errors, so a typo never silently falls back to a default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::core::providers::{ProviderKind, ProviderOptions};

/// Errors while locating or reading configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file exists but could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has unknown keys / wrong types.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said, including the offending key and what is accepted.
        message: String,
    },
    /// An environment variable override has a value of the wrong form.
    #[error("invalid value {value:?} for environment variable {name}: expected {expected}")]
    Env {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
}

/// The whole configuration file. Every field has a documented default.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// HTTP server settings.
    pub server: ServerConfig,
    /// ONNX Runtime settings.
    pub runtime: RuntimeConfig,
    /// Model store and loading.
    pub models: ModelsConfig,
    /// Execution-provider options shared by all models.
    pub providers: ProviderOptions,
    /// The plugin host.
    pub plugins: crate::plugins::PluginsConfig,
    /// Plugin chains per model (and route): `[pipelines.<model>]`, `[pipelines."*"]`.
    pub pipelines: crate::plugins::pipeline::Pipelines,
}

/// `[server]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:8080`. Env `LLMOS_LISTEN`.
    pub listen: String,
    /// Longest a request may take before 504, milliseconds. Default 60000.
    pub request_timeout_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            request_timeout_ms: 60_000,
        }
    }
}

/// `[runtime]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Path of `libonnxruntime.so`. Default: resolved (env `LLMOS_ORT_DYLIB`, `ORT_DYLIB_PATH`,
    /// next to the binary, then the cache filled by `llmos runtime install`).
    pub ort_dylib: Option<PathBuf>,
    /// Intra-op threads per session; 0 (default) gives each of a model's inference threads
    /// an equal share of the cores. Env `LLMOS_INTRA_THREADS`.
    pub intra_threads: usize,
}

/// `[models]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// Where pulled model files live. Default `$LLMOS_HOME/models`. Env `LLMOS_MODELS_DIR`.
    pub dir: Option<PathBuf>,
    /// Extra folders of model manifests (`*.toml`), read after the built-in ones.
    /// Default `[$LLMOS_HOME/manifests]`.
    pub manifest_dirs: Vec<PathBuf>,
    /// Models loaded when the server starts. Default: every built-in default model.
    pub load: Option<Vec<String>>,
    /// Per-model overrides of the manifest's runtime settings.
    pub overrides: BTreeMap<String, ModelOverride>,
}

/// `[models.overrides.NAME]`: replaces what the manifest says.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelOverride {
    /// Ordered provider preference, e.g. `["tensorrt", "cuda", "cpu"]`.
    pub providers: Option<Vec<ProviderKind>>,
    /// Refuse to load when the first provider is unavailable.
    pub strict: Option<bool>,
    /// Intra-op threads for this model's sessions.
    pub intra_threads: Option<usize>,
    /// Inference threads (one session each). Default: 2 on machines with 2 or more cores.
    pub workers: Option<usize>,
    /// Bound of the request queue; a full queue is refused instead of growing.
    pub queue_capacity: Option<usize>,
    /// Most texts in one model run (requests are coalesced up to this). Default 32.
    pub max_batch: Option<usize>,
    /// Most padded tokens in one model run. Default 8192.
    pub max_batch_tokens: Option<usize>,
    /// Wait this long for more requests before running a batch. Default 0: run at once
    /// with whatever queued while the previous batch ran.
    pub max_wait_ms: Option<u64>,
    /// Most inputs in one request (more: 400). Default 2048.
    pub max_request_inputs: Option<usize>,
    /// Most tokens in one request, all inputs together (more: 400). Default 262144.
    pub max_request_tokens: Option<usize>,
}

impl Config {
    /// Reads `path` if it exists; a missing file gives the defaults.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.into(),
                    source,
                });
            }
        };
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.into(),
            message,
        })
    }

    /// Parses TOML text; the error names the bad key and what is accepted.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Applies `LLMOS_*` environment overrides.
    pub fn apply_env(&mut self) -> Result<(), ConfigError> {
        if let Some(v) = env_nonempty("LLMOS_LISTEN") {
            self.server.listen = v;
        }
        if let Some(v) = env_nonempty("LLMOS_ORT_DYLIB") {
            self.runtime.ort_dylib = Some(v.into());
        }
        if let Some(v) = env_nonempty("LLMOS_MODELS_DIR") {
            self.models.dir = Some(v.into());
        }
        if let Some(v) = env_nonempty("LLMOS_INTRA_THREADS") {
            self.runtime.intra_threads = v.parse().map_err(|_| ConfigError::Env {
                name: "LLMOS_INTRA_THREADS",
                value: v,
                expected: "a whole number of threads (0 = let ONNX Runtime choose)",
            })?;
        }
        Ok(())
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Where llmos keeps things on disk.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Data location: config, store, installed plugins (`LLMOS_HOME`).
    pub home: PathBuf,
    /// Pulled model files.
    pub models: PathBuf,
    /// Download cache shared by every home: wheels and the ONNX Runtime library (`LLMOS_CACHE`).
    pub cache: PathBuf,
}

impl Paths {
    /// Default data location: `$LLMOS_HOME`, else `$XDG_DATA_HOME/llmos` (`~/.local/share/llmos`),
    /// else `./.llmos`.
    pub fn default_home() -> PathBuf {
        env_nonempty("LLMOS_HOME")
            .map(PathBuf::from)
            .or_else(|| dirs::data_dir().map(|d| d.join("llmos")))
            .unwrap_or_else(|| PathBuf::from(".llmos"))
    }

    /// Default cache: `$LLMOS_CACHE`, else `$XDG_CACHE_HOME/llmos` (`~/.cache/llmos`),
    /// else `<home>/cache`.
    pub fn default_cache(home: &Path) -> PathBuf {
        env_nonempty("LLMOS_CACHE")
            .map(PathBuf::from)
            .or_else(|| dirs::cache_dir().map(|d| d.join("llmos")))
            .unwrap_or_else(|| home.join("cache"))
    }

    /// Resolves every path from the home folder and the configuration.
    pub fn resolve(home: PathBuf, config: &Config) -> Self {
        let models = config
            .models
            .dir
            .clone()
            .unwrap_or_else(|| home.join("models"));
        let cache = Self::default_cache(&home);
        Self {
            home,
            models,
            cache,
        }
    }

    /// Manifest folders: the configured ones, or `$LLMOS_HOME/manifests`.
    pub fn manifest_dirs(&self, config: &Config) -> Vec<PathBuf> {
        if config.models.manifest_dirs.is_empty() {
            vec![self.home.join("manifests")]
        } else {
            config.models.manifest_dirs.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let err = Config::parse("[server]\nlisten = \"127.0.0.1:1\"\nlistn = 3\n").unwrap_err();
        assert!(err.contains("listn"), "{err}");
        assert!(
            err.contains("listen"),
            "error should list accepted keys: {err}"
        );
    }

    #[test]
    fn defaults_are_loopback() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:8080");
        assert_eq!(c.runtime.intra_threads, 0);
    }

    #[test]
    fn overrides_parse_providers() {
        let c = Config::parse(
            "[models.overrides.minilm]\nproviders = [\"cuda\", \"cpu\"]\nstrict = true\n",
        )
        .unwrap();
        let o = &c.models.overrides["minilm"];
        assert_eq!(
            o.providers.as_deref(),
            Some(&[ProviderKind::Cuda, ProviderKind::Cpu][..])
        );
        assert_eq!(o.strict, Some(true));
    }
}

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
    /// The audit log.
    pub audit: AuditConfig,
    /// Text generation's scheduling across tenants.
    pub generation: GenerationSettings,
    /// The chat tool loop (docs/tools.md §3).
    pub tools: ToolsConfig,
    /// llmos as the client of registered MCP servers (docs/tools.md §5).
    pub mcp: McpConfig,
    /// Extra names of the engine metrics (docs/scale-out.md, "Metrics").
    pub metrics: MetricsConfig,
    /// Where the data store lives (docs/scale-out.md, "Shared state").
    pub store: StoreConfig,
}

/// The per-model engine metrics that `[metrics] aliases` may rename, and what each is.
pub const ENGINE_METRICS: [(&str, &str); 5] = [
    ("llmos_generate_queued_requests", "gauge"),
    ("llmos_generate_running_requests", "gauge"),
    ("llmos_generate_kv_cache_usage_ratio", "gauge"),
    ("llmos_generate_time_to_first_token_seconds", "histogram"),
    ("llmos_generate_time_per_output_token_seconds", "histogram"),
];

/// `[metrics]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// More names for an engine metric, served with the same labels and values: e.g.
    /// `llmos_generate_queued_requests = ["vllm:num_requests_waiting"]` for the Gateway API
    /// inference extension's endpoint picker and its vLLM defaults.
    pub aliases: BTreeMap<String, Vec<String>>,
    /// Serve `/metrics` without a key (default false): for scrapers inside a cluster that
    /// send none, such as the endpoint picker. The text names models and tenants.
    pub public: bool,
}

impl MetricsConfig {
    /// Checks the aliases; the error names the key and what is accepted.
    pub fn check(&self) -> Result<(), String> {
        let known: Vec<&str> = ENGINE_METRICS.iter().map(|(n, _)| *n).collect();
        let mut seen: Vec<&str> = Vec::new();
        for (name, aliases) in &self.aliases {
            if !known.contains(&name.as_str()) {
                return Err(format!(
                    "[metrics.aliases] {name:?} is not an engine metric: accepted are {}",
                    known.join(", ")
                ));
            }
            for alias in aliases {
                let mut chars = alias.chars();
                let first_ok = chars
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
                if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                    return Err(format!(
                        "[metrics.aliases] {name}: {alias:?} is not a Prometheus metric name: it must match [a-zA-Z_:][a-zA-Z0-9_:]*"
                    ));
                }
                if alias.starts_with("llmos_") || seen.contains(&alias.as_str()) {
                    return Err(format!(
                        "[metrics.aliases] {name}: {alias:?} is used twice or is an llmos_ name; each alias must be unique and outside the llmos_ prefix"
                    ));
                }
                seen.push(alias);
            }
        }
        Ok(())
    }

    /// The names `metric` is served under: its own, then its aliases.
    pub fn names<'a>(&'a self, metric: &'a str) -> Vec<&'a str> {
        let mut names = vec![metric];
        if let Some(a) = self.aliases.get(metric) {
            names.extend(a.iter().map(String::as_str));
        }
        names
    }
}

/// `[store]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `postgres://user:password@host:port/database`: keep the store in PostgreSQL, shared
    /// by every replica given the same URL and master key. Unset (the default): the embedded
    /// store in `<home>/store`. Env `LLMOS_STORE_URL`.
    pub url: Option<String>,
}

/// `[generation]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerationSettings {
    /// How an engine shares its batch: `fair` (default: deficit round-robin across
    /// tenants) or `fifo` (arrival order). docs/generation.md, "Scheduling".
    pub scheduler: Scheduler,
    /// Fair scheduler: decode steps (tokens per running sequence) between two plans of the
    /// batch while requests wait. Default 16.
    pub quantum: usize,
    /// Fair scheduler, cost-aware cap: while more than one tenant has work, the rows of a
    /// decode step are capped so that its predicted time (measured per batch size, online)
    /// stays within this factor of a 1-row step. 0 (default) = off; otherwise 1.0-100.
    pub fair_step_budget: f64,
    /// Speculative decoding of a lone running sequence: `off` (default) or `prompt-lookup`
    /// (drafts from earlier occurrences of its last tokens, checked in one step).
    /// docs/generation.md, "Speculative decoding".
    pub speculative: Speculative,
    /// Most tokens drafted per step (1-16, default 3).
    pub draft_tokens: usize,
    /// Shortest match (in tokens) a draft is looked up from (1-3, default 1).
    pub draft_min_match: usize,
}

impl Default for GenerationSettings {
    fn default() -> Self {
        Self {
            scheduler: Scheduler::Fair,
            quantum: 16,
            fair_step_budget: 0.0,
            speculative: Speculative::Off,
            draft_tokens: 3,
            draft_min_match: 1,
        }
    }
}

impl GenerationSettings {
    /// Checks the values; the error names the key and what is accepted.
    pub fn check(&self) -> Result<(), String> {
        let b = self.fair_step_budget;
        if !(b == 0.0 || (1.0..=100.0).contains(&b)) {
            return Err(format!(
                "[generation] fair_step_budget is {b}: it must be 0 (off) or between 1.0 and 100"
            ));
        }
        if !(1..=16).contains(&self.draft_tokens) {
            return Err(format!(
                "[generation] draft_tokens is {}: it must be between 1 and 16 (speculative = \"off\" turns drafts off)",
                self.draft_tokens
            ));
        }
        if !(1..=3).contains(&self.draft_min_match) {
            return Err(format!(
                "[generation] draft_min_match is {}: it must be 1, 2 or 3 (tokens)",
                self.draft_min_match
            ));
        }
        Ok(())
    }
}

/// `[generation] scheduler`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheduler {
    /// Deficit round-robin across tenants.
    #[default]
    Fair,
    /// First come, first served.
    Fifo,
}

/// `[generation] speculative`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Speculative {
    /// Prompt-lookup drafts for a lone running sequence.
    PromptLookup,
    /// One token per step.
    #[default]
    Off,
}

/// `[tools]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToolsConfig {
    /// Most llmos tool calls one chat choice makes before its answer ends with
    /// `finish_reason: "length"` (a request's `llmos_max_steps` may only lower it). 1-64,
    /// default 8.
    pub max_steps: usize,
}

impl Default for ToolsConfig {
    fn default() -> Self {
        Self { max_steps: 8 }
    }
}

impl ToolsConfig {
    /// The most steps a tool loop may take (out-of-range values are refused when the server
    /// starts; here they are clamped to 1-64).
    pub fn max_steps(&self) -> usize {
        self.max_steps.clamp(1, 64)
    }

    /// Checks the values; the error names the key and the accepted range.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=64).contains(&self.max_steps) {
            return Err(format!("[tools] max_steps is {}: it must be between 1 and 64", self.max_steps));
        }
        Ok(())
    }
}

/// `[mcp]`: llmos as the client of registered MCP servers (docs/tools.md §5).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpConfig {
    /// Longest wait, in milliseconds, to connect to a registered server (its TCP and TLS
    /// connection and the MCP `initialize`), and again for its tool list. 100-600000,
    /// default 10000.
    pub connect_timeout_ms: u64,
    /// Longest wait, in milliseconds, for one tool call's answer. 100-3600000, default 60000.
    pub call_timeout_ms: u64,
}

impl Default for McpConfig {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 10_000,
            call_timeout_ms: 60_000,
        }
    }
}

impl McpConfig {
    /// Checks the values; the error names the key and the accepted range.
    pub fn check(&self) -> Result<(), String> {
        if !(100..=600_000).contains(&self.connect_timeout_ms) {
            return Err(format!(
                "[mcp] connect_timeout_ms is {}: it must be between 100 and 600000 (milliseconds)",
                self.connect_timeout_ms
            ));
        }
        if !(100..=3_600_000).contains(&self.call_timeout_ms) {
            return Err(format!(
                "[mcp] call_timeout_ms is {}: it must be between 100 and 3600000 (milliseconds)",
                self.call_timeout_ms
            ));
        }
        Ok(())
    }
}

/// `[audit]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Most records kept; past it the oldest are dropped (and a record says how many).
    /// Default 1000000. Env `LLMOS_AUDIT_MAX_RECORDS`.
    pub max_records: u64,
    /// Entries per segment, the unit in which old entries are removed (each removal leaves a
    /// checkpoint the rest verifies from); at most a tenth of `max_records` is used.
    /// Default 10000. Env `LLMOS_AUDIT_SEGMENT_RECORDS`.
    pub segment_records: u64,
    /// Unauthenticated refusals from one source within this many milliseconds are written
    /// once, then counted into one summary record. Default 60000.
    pub refusal_window_ms: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            max_records: 1_000_000,
            segment_records: 10_000,
            refusal_window_ms: 60_000,
        }
    }
}

impl AuditConfig {
    /// Checks the values; the error names the key and the accepted range.
    pub fn check(&self) -> Result<(), String> {
        if !(100..=1_000_000_000).contains(&self.max_records) {
            return Err(format!(
                "[audit] max_records is {}: it must be between 100 and 1000000000",
                self.max_records
            ));
        }
        if !(1..=100_000_000).contains(&self.segment_records) {
            return Err(format!(
                "[audit] segment_records is {}: it must be between 1 and 100000000",
                self.segment_records
            ));
        }
        if !(1..=86_400_000).contains(&self.refusal_window_ms) {
            return Err(format!(
                "[audit] refusal_window_ms is {}: it must be between 1 and 86400000 milliseconds (one day)",
                self.refusal_window_ms
            ));
        }
        Ok(())
    }
}

/// `[server]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:8080`. Env `LLMOS_LISTEN`.
    pub listen: String,
    /// A request's head must arrive within this many milliseconds of the connection opening
    /// or of its previous answer (so it also bounds keep-alive waits); past it the connection
    /// is closed. Default 10000. Env `LLMOS_HEADER_READ_TIMEOUT_MS`.
    pub header_read_timeout_ms: u64,
    /// A connection with no byte moving either way and no request running for this many
    /// milliseconds is closed. Default 60000. Env `LLMOS_IDLE_TIMEOUT_MS`.
    pub idle_timeout_ms: u64,
    /// Most connections open at once; past it a new one is answered 503 and closed.
    /// Default 1024. Env `LLMOS_MAX_CONNECTIONS`.
    pub max_connections: u32,
    /// Longest a request may take before 504, milliseconds. Default 60000.
    /// Env `LLMOS_REQUEST_TIMEOUT_MS`.
    pub request_timeout_ms: u64,
    /// Also listen on `$LLMOS_HOME/admin.sock` (a Unix socket, mode 0600), through which the
    /// owner's `llmos plugin …` and `llmos keys …` commands reach the running server
    /// (`api/local.rs`). Default true.
    pub admin_socket: bool,
    /// Serve the operator console and playground at `/` (docs/console.md). Default true.
    pub console: bool,
    /// Also serve KServe v2's gRPC `GRPCInferenceService` on this address (`IP:PORT`); off
    /// unless set. Env `LLMOS_GRPC_LISTEN`; `llmos serve --grpc-listen`.
    pub grpc_listen: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections: 1024,
            request_timeout_ms: 60_000,
            admin_socket: true,
            console: true,
            grpc_listen: None,
        }
    }
}

impl ServerConfig {
    /// Checks the connection settings; the error names the key and the accepted range.
    pub fn check(&self) -> Result<(), String> {
        let ms = |key: &str, v: u64| {
            if (1..=3_600_000).contains(&v) {
                Ok(())
            } else {
                Err(format!(
                    "[server] {key} is {v}: it must be between 1 and 3600000 milliseconds (one hour)"
                ))
            }
        };
        ms("header_read_timeout_ms", self.header_read_timeout_ms)?;
        ms("idle_timeout_ms", self.idle_timeout_ms)?;
        ms("request_timeout_ms", self.request_timeout_ms)?;
        if !(1..=1_000_000).contains(&self.max_connections) {
            return Err(format!(
                "[server] max_connections is {}: it must be between 1 and 1000000",
                self.max_connections
            ));
        }
        Ok(())
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
        if let Some(v) = env_nonempty("LLMOS_GRPC_LISTEN") {
            self.server.grpc_listen = Some(v);
        }
        if let Some(v) = env_nonempty("LLMOS_HEADER_READ_TIMEOUT_MS") {
            self.server.header_read_timeout_ms = env_number("LLMOS_HEADER_READ_TIMEOUT_MS", v)?;
        }
        if let Some(v) = env_nonempty("LLMOS_IDLE_TIMEOUT_MS") {
            self.server.idle_timeout_ms = env_number("LLMOS_IDLE_TIMEOUT_MS", v)?;
        }
        if let Some(v) = env_nonempty("LLMOS_MAX_CONNECTIONS") {
            self.server.max_connections = env_number("LLMOS_MAX_CONNECTIONS", v)?;
        }
        if let Some(v) = env_nonempty("LLMOS_REQUEST_TIMEOUT_MS") {
            self.server.request_timeout_ms = env_number("LLMOS_REQUEST_TIMEOUT_MS", v)?;
        }
        if let Some(v) = env_nonempty("LLMOS_AUDIT_MAX_RECORDS") {
            self.audit.max_records = env_number("LLMOS_AUDIT_MAX_RECORDS", v)?;
        }
        if let Some(v) = env_nonempty("LLMOS_AUDIT_SEGMENT_RECORDS") {
            self.audit.segment_records = env_number("LLMOS_AUDIT_SEGMENT_RECORDS", v)?;
        }
        if let Some(v) = env_nonempty("LLMOS_STORE_URL") {
            self.store.url = Some(v);
        }
        if let Some(url) = &self.store.url
            && !crate::data::postgres::is_url(url)
        {
            return Err(ConfigError::Env {
                name: "LLMOS_STORE_URL / [store] url",
                value: crate::data::postgres::redact(url),
                expected: "a PostgreSQL URL, postgres://user:password@host:port/database \
                           (leave it unset for the embedded store in <home>/store)",
            });
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

fn env_number<T: std::str::FromStr>(name: &'static str, value: String) -> Result<T, ConfigError> {
    value.trim().parse().map_err(|_| ConfigError::Env {
        name,
        value,
        expected: "a whole number (see [server] in the README for the accepted range)",
    })
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

    /// Manifest folders: `$LLMOS_HOME/manifests`, then the configured extra ones.
    pub fn manifest_dirs(&self, config: &Config) -> Vec<PathBuf> {
        // The home's own folder first (where `llmos models import` writes), then the extra
        // folders of `[models] manifest_dirs`.
        let own = self.home.join("manifests");
        let mut dirs = vec![own.clone()];
        dirs.extend(config.models.manifest_dirs.iter().filter(|d| **d != own).cloned());
        dirs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_and_audit_settings_are_read_and_checked() {
        let c = Config::parse(
            "[server]\nheader_read_timeout_ms = 500\nidle_timeout_ms = 700\nmax_connections = 3\n\
             [audit]\nmax_records = 1000\nrefusal_window_ms = 10\n",
        )
        .unwrap();
        assert_eq!(c.server.header_read_timeout_ms, 500);
        assert_eq!(c.server.idle_timeout_ms, 700);
        assert_eq!(c.server.max_connections, 3);
        assert!(c.server.check().is_ok() && c.audit.check().is_ok());
        let e = Config::parse("[server]\nheader_timeout_ms = 5\n").unwrap_err();
        assert!(e.contains("header_timeout_ms"), "{e}");
        let mut c = Config::default();
        c.server.max_connections = 0;
        let e = c.server.check().unwrap_err();
        assert!(
            e.contains("max_connections") && e.contains("between 1 and"),
            "{e}"
        );
        c.server.max_connections = 1;
        c.server.idle_timeout_ms = 0;
        assert!(c.server.check().unwrap_err().contains("idle_timeout_ms"));
        c.audit.max_records = 5;
        assert!(c.audit.check().unwrap_err().contains("between 100 and"));
        c.audit.max_records = 100;
        c.audit.segment_records = 0;
        assert!(c.audit.check().unwrap_err().contains("segment_records"));
    }

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
    fn mcp_timeouts_are_read_and_checked() {
        let c = Config::parse("").unwrap();
        assert_eq!((c.mcp.connect_timeout_ms, c.mcp.call_timeout_ms), (10_000, 60_000));
        assert!(c.mcp.check().is_ok());
        let c = Config::parse("[mcp]\nconnect_timeout_ms = 500\ncall_timeout_ms = 1500\n").unwrap();
        assert_eq!((c.mcp.connect_timeout_ms, c.mcp.call_timeout_ms), (500, 1500));
        assert!(c.mcp.check().is_ok());
        let e = Config::parse("[mcp]\ntimeout_ms = 5\n").unwrap_err();
        assert!(e.contains("timeout_ms") && e.contains("connect_timeout_ms"), "{e}");
        let mut c = Config::default();
        c.mcp.connect_timeout_ms = 0;
        let e = c.mcp.check().unwrap_err();
        assert!(e.contains("[mcp] connect_timeout_ms is 0") && e.contains("between 100 and 600000"), "{e}");
        c.mcp.connect_timeout_ms = 100;
        c.mcp.call_timeout_ms = 3_600_001;
        assert!(c.mcp.check().unwrap_err().contains("call_timeout_ms"));
    }

    #[test]
    fn speculative_decoding_settings_are_read_and_checked() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.generation.speculative, Speculative::Off);
        assert_eq!((c.generation.draft_tokens, c.generation.draft_min_match), (3, 1));
        assert!(c.generation.check().is_ok());
        let c = Config::parse("[generation]\nspeculative = \"prompt-lookup\"\ndraft_tokens = 8\n").unwrap();
        assert_eq!(c.generation.speculative, Speculative::PromptLookup);
        assert_eq!(c.generation.draft_tokens, 8);
        let e = Config::parse("[generation]\nspeculative = \"medusa\"\n").unwrap_err();
        assert!(e.contains("medusa") && e.contains("prompt-lookup") && e.contains("off"), "{e}");
        let mut c = Config::default();
        c.generation.draft_tokens = 0;
        let e = c.generation.check().unwrap_err();
        assert!(e.contains("draft_tokens is 0") && e.contains("between 1 and 16"), "{e}");
        c.generation.draft_tokens = 16;
        c.generation.draft_min_match = 4;
        let e = c.generation.check().unwrap_err();
        assert!(e.contains("draft_min_match is 4") && e.contains("1, 2 or 3"), "{e}");
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

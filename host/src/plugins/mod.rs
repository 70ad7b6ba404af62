//! The plugin host: WebAssembly components (WIT package `llmos:plugin@0.1.1`, in
//! `wit/llmos-plugin@0.1.1/`; components built against `0.1.0` link unchanged) that act as
//! preprocessors, policies, integrations and tools, each
//! sandboxed and limited to the capabilities its manifest requested *and* the operator granted.
//!
//! - [`engine`]: the wasmtime engine (pooling allocator, epoch interruption), the epoch ticker
//!   and the precompiled-component cache.
//! - [`host`]: [`PluginHost`], which loads plugins (one `InstancePre` each), runs every call on
//!   its own worker threads in a fresh store with per-call [`limits`].
//! - [`state`]: the host side of each WIT interface; every call checks the capabilities.
//! - [`registry`]: install, upgrade, grant, revoke, enable, disable, configure, remove.
//! - [`pipeline`]: preprocessors → request policies → inference → response policies →
//!   integrations.
//! - [`inference`]: the trait through which plugins reach the models.
//!
//! See `docs/plugins.md` for the author's guide and the sandbox's design.

pub mod bindings;
pub mod core_backend;
pub mod data_backend;
pub mod embedder;
pub mod engine;
pub mod gateway;
pub mod host;
pub mod inference;
pub mod limits;
pub mod manifest;
pub mod mcp;
mod outbound;
pub mod pipeline;
pub mod plugin_tools;
pub mod registry;
pub mod state;
pub mod tools;
pub mod trace;

pub use bindings::types::{
    Error as GuestError, Event, Request, RequestContext, RequestVerdict, Response, ResponseVerdict,
};
pub use engine::EngineSettings;
pub use host::{HostSettings, LocalRunner, PluginHost, WarmPreprocessor};
pub use inference::{EntitySpan, InferenceBackend, InferenceError, LabelScore};
pub use limits::{LimitKind, Limits};
pub use manifest::{Manifest, World};
pub use data_backend::{CollectionsBackend, DataBackend, DataBackendError, DataHit};
pub use plugin_tools::PluginTools;
pub use tools::{ToolCatalog, ToolProvider, ToolSpec};
pub use registry::{InstallReport, InstallRequest, PluginRecord, SignedBy};

use crate::data::StoreError;

/// `[plugins]` of `llmos.toml`: the plugin host's settings. Unknown keys are errors.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Worker threads running plugin code. Default: half the available cores, 1 to 8.
    pub threads: usize,
    /// Worker threads delivering events to integrations. Default 1.
    pub event_threads: usize,
    /// Largest component `install` accepts, bytes. Default 32 MiB.
    pub max_component_bytes: u64,
    /// When set, `install` only accepts components inside this folder.
    pub install_root: Option<std::path::PathBuf>,
    /// wasmtime `concurrency_support` (part of the cache key). Default true.
    pub concurrency_support: bool,
    /// Plugin instances alive at once (pooling allocator slots). Default 64.
    pub max_instances: u32,
    /// Plugin calls waiting for a worker; beyond it requests get 429. Default 256.
    pub queue_capacity: usize,
    /// Events waiting for an integration worker; beyond it events are dropped and counted.
    /// Default 1024.
    pub event_queue_capacity: usize,
    /// Plugin calls each worker thread runs at once (a call waiting for a model lets the
    /// others run, so their model calls batch). 0 (default): the `max_instances` slots left
    /// after the event threads, shared by the threads, at most 16 each.
    pub calls_per_thread: usize,
    /// Refuse to install or upgrade a plugin that is unsigned or not signed by a trusted
    /// publisher (`llmos plugin publisher add`). Default false: unsigned plugins install
    /// (shown as `unsigned`); a present but invalid signature is always refused.
    pub require_signature: bool,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        let h = HostSettings::default();
        Self {
            threads: h.threads,
            event_threads: h.event_threads,
            max_component_bytes: h.max_component_bytes,
            install_root: h.install_root,
            concurrency_support: h.engine.concurrency_support,
            max_instances: h.engine.max_instances,
            queue_capacity: h.queue_capacity,
            event_queue_capacity: h.event_queue_capacity,
            calls_per_thread: 0,
            require_signature: false,
        }
    }
}

impl From<&PluginsConfig> for HostSettings {
    fn from(c: &PluginsConfig) -> Self {
        let calls_per_thread = match c.calls_per_thread {
            0 => host::default_calls_per_thread(
                c.threads.max(1),
                c.event_threads.max(1),
                c.max_instances.max(1),
            ),
            n => n,
        };
        HostSettings {
            engine: EngineSettings {
                concurrency_support: c.concurrency_support,
                max_instances: c.max_instances.max(1),
                ..EngineSettings::default()
            },
            threads: c.threads.max(1),
            event_threads: c.event_threads.max(1),
            max_component_bytes: c.max_component_bytes,
            install_root: c.install_root.clone(),
            queue_capacity: c.queue_capacity.max(1),
            event_queue_capacity: c.event_queue_capacity.max(1),
            calls_per_thread,
            require_signature: c.require_signature,
        }
    }
}

/// Errors of the plugin host. Messages name the plugin, and for limits the limit.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// No plugin of this name is installed.
    #[error("plugin {0} is not installed (see `llmos plugin list`)")]
    NotInstalled(String),
    /// Install of a name that exists.
    #[error("plugin {0} is already installed; use `llmos plugin upgrade {0} FILE.wasm`")]
    Exists(String),
    /// The plugin is disabled.
    #[error("plugin {0} is disabled; enable it with `llmos plugin enable {0}`")]
    Disabled(String),
    /// A call for another world (e.g. a policy used as a preprocessor).
    #[error("plugin {plugin} targets the {actual} world, not {expected}")]
    WrongWorld {
        /// The plugin.
        plugin: String,
        /// Its world.
        actual: World,
        /// The world the caller needed.
        expected: World,
    },
    /// A per-call limit stopped the plugin.
    #[error("plugin {plugin} stopped: {kind} limit exceeded ({detail})")]
    Limit {
        /// The plugin.
        plugin: String,
        /// Which limit.
        kind: LimitKind,
        /// The limit's value and what was asked.
        detail: String,
    },
    /// The plugin trapped (a panic, an unreachable instruction, a host fault).
    #[error("plugin {plugin} failed: {message}")]
    Trap {
        /// The plugin.
        plugin: String,
        /// The trap.
        message: String,
    },
    /// The plugin returned an error value.
    #[error("plugin {plugin} returned an error: {error:?}{hint}")]
    Guest {
        /// The plugin.
        plugin: String,
        /// Its error.
        error: GuestError,
        /// For a propagated `denied`, how to grant the capability (else empty).
        hint: String,
    },
    /// Install refused: not a component, wrong world, imports, size, path.
    #[error("invalid plugin: {0}")]
    Invalid(String),
    /// The manifest is missing or invalid.
    #[error("invalid manifest: {0}")]
    Manifest(String),
    /// The manifest raises limits above the host's defaults and the operator did not approve.
    #[error(
        "plugin {plugin} asks for limits above the host's defaults: {raised}; approve them with `--approve-limits` (admin API: \"approve_limits\": true), or lower them in the manifest's [limits]"
    )]
    LimitsNotApproved {
        /// The plugin.
        plugin: String,
        /// Each raised limit, asked vs default.
        raised: String,
    },
    /// Config values that do not fit the plugin's schema.
    #[error("invalid plugin config: {0}")]
    Config(String),
    /// A bad capability name, or revoking what was not granted.
    #[error("{0}")]
    Grant(String),
    /// A signature check refused the install or upgrade (which check, and how to fix it).
    #[error("plugin {plugin} refused: {reason}")]
    Signature {
        /// The plugin.
        plugin: String,
        /// Unsigned under require_signature, bad, unknown key or revoked publisher.
        reason: String,
    },
    /// A trusted-publisher change was refused (duplicate name or key, unknown name, bad key).
    #[error("{0}")]
    Publisher(String),
    /// The component's sha256 is not the expected one.
    #[error("sha256 mismatch: expected {expected}, the file has {actual}")]
    Digest {
        /// Expected digest.
        expected: String,
        /// Actual digest.
        actual: String,
    },
    /// Files under the data location.
    #[error("plugin files: {0}")]
    Io(String),
    /// The engine could not be built or a component not serialised.
    #[error("plugin engine: {0}")]
    Engine(String),
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A bounded queue of the plugin host is full; retry shortly.
    #[error(
        "the plugin host is busy: its queue of {capacity} {queue} is full; retry shortly (the operator can raise `[plugins] {setting}` in llmos.toml)"
    )]
    Busy {
        /// Which queue: `plugin calls` or `events`.
        queue: &'static str,
        /// Its bound.
        capacity: usize,
        /// The setting that sizes it.
        setting: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_config_rejects_unknown_keys_and_maps_to_settings() {
        let c: PluginsConfig =
            toml::from_str("threads = 3\nconcurrency_support = false\n").unwrap();
        let s = HostSettings::from(&c);
        assert_eq!(s.threads, 3);
        assert!(!s.engine.concurrency_support);
        let e = toml::from_str::<PluginsConfig>("thread = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("thread"), "{e}");
    }
}

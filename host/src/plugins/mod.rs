//! The plugin host: WebAssembly components (WIT package `llmos:plugin@0.1.0`, in
//! `wit/llmos-plugin@0.1.0/`) that act as preprocessors, policies and integrations, each
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
pub mod engine;
pub mod host;
pub mod inference;
pub mod limits;
pub mod manifest;
pub mod pipeline;
pub mod registry;
pub mod state;

pub use bindings::types::{
    Error as GuestError, Event, Request, RequestContext, RequestVerdict, Response, ResponseVerdict,
};
pub use engine::EngineSettings;
pub use host::{HostSettings, LocalRunner, PluginHost, WarmPreprocessor};
pub use inference::{EntitySpan, InferenceBackend, InferenceError, LabelScore};
pub use limits::{LimitKind, Limits};
pub use manifest::{Manifest, World};
pub use registry::{InstallReport, InstallRequest, PluginRecord};

use crate::data::StoreError;

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
    #[error("plugin {plugin} returned an error: {error:?}")]
    Guest {
        /// The plugin.
        plugin: String,
        /// Its error.
        error: GuestError,
    },
    /// Install refused: not a component, wrong world, imports, size, path.
    #[error("invalid plugin: {0}")]
    Invalid(String),
    /// The manifest is missing or invalid.
    #[error("invalid manifest: {0}")]
    Manifest(String),
    /// Config values that do not fit the plugin's schema.
    #[error("invalid plugin config: {0}")]
    Config(String),
    /// A bad capability name, or revoking what was not granted.
    #[error("{0}")]
    Grant(String),
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
}

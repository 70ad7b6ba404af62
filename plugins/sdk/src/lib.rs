//! `llmos-plugin`: the Rust guest SDK of llmos plugins (WIT package `llmos:plugin@0.1.1`).
//!
//! One dependency, no WIT path: the crate carries the WIT and re-exports the generated
//! bindings, so a preprocessor is
//!
//! ```text
//! use llmos_plugin::preprocessor::{Guest, Request};
//! use llmos_plugin::{Error, config};
//!
//! struct Shout;
//!
//! impl Guest for Shout {
//!     fn preprocess(request: Request) -> Result<Vec<String>, Error> {
//!         let suffix = config::get_or("suffix", "");
//!         Ok(request.inputs.iter().map(|t| format!("{}{suffix}", t.to_uppercase())).collect())
//!     }
//! }
//!
//! llmos_plugin::export_preprocessor!(Shout);
//! ```
//!
//! with `llmos-plugin = { path = "…", features = ["preprocessor"] }` in `Cargo.toml`.
//!
//! **One world per component.** Each world's generated bindings carry a description of that
//! world (a custom section) that `wasm-component-ld` reads when it makes the component; were
//! two worlds' descriptions linked into one guest, it would have to export the functions of
//! both. So each world is a cargo feature (`preprocessor`, `policy`, `integration`, `tool`) and a
//! plugin enables the one it exports. When cargo unifies features across a workspace, only
//! the world whose export macro the plugin calls is linked: the plugins workspace builds
//! `normalize` (preprocessor) and `content-policy` (policy) with both features on, and each
//! component describes its own world only. The host interfaces (`config`, `log`, `kv`,
//! `inference`, `secrets`, `data`) and the shared types are always available.
//!
//! The `tool` feature (WIT 0.1.1) also brings serde and serde_json: a tool's arguments and
//! results are JSON ([`tool::arguments`], [`tool::to_json`]).

#![warn(missing_docs)]

/// The generated bindings of the host interfaces, shared by every world.
#[allow(missing_docs)]
mod host {
    wit_bindgen::generate!({
        world: "imports",
        path: "wit",
        generate_all,
    });
}

pub mod config;
mod error;

pub use host::llmos::plugin::types::{self, Error, Event, Request, RequestContext, Response};
pub use host::llmos::plugin::{data, inference, kv, secrets};

/// The host's log, tagged with the plugin's name (always available; 4 KiB per message).
pub mod log {
    pub use crate::host::llmos::plugin::log::{Level, log};

    /// Logs `message` at `trace`.
    pub fn trace(message: &str) {
        log(Level::Trace, message);
    }
    /// Logs `message` at `debug`.
    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }
    /// Logs `message` at `info`.
    pub fn info(message: &str) {
        log(Level::Info, message);
    }
    /// Logs `message` at `warn`.
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }
    /// Logs `message` at `error`.
    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}

/// The version of the WIT package these bindings target.
pub const WIT_VERSION: &str = "0.1.1";

/// The `preprocessor` world: transforms a request's inputs before policies and the model.
#[cfg(feature = "preprocessor")]
#[allow(missing_docs, clippy::too_many_arguments)] // generated glue
pub mod preprocessor {
    wit_bindgen::generate!({
        world: "preprocessor",
        path: "wit",
        with: {
            "llmos:plugin/types@0.1.1": crate::host::llmos::plugin::types,
            "llmos:plugin/log@0.1.1": crate::host::llmos::plugin::log,
            "llmos:plugin/config@0.1.1": crate::host::llmos::plugin::config,
            "llmos:plugin/kv@0.1.1": crate::host::llmos::plugin::kv,
            "llmos:plugin/inference@0.1.1": crate::host::llmos::plugin::inference,
            "llmos:plugin/secrets@0.1.1": crate::host::llmos::plugin::secrets,
            "llmos:plugin/data@0.1.1": crate::host::llmos::plugin::data,
        },
        pub_export_macro: true,
        export_macro_name: "__llmos_export_preprocessor",
        default_bindings_module: "::llmos_plugin::preprocessor",
    });
}

/// The `policy` world: allows, denies or modifies requests and responses.
#[cfg(feature = "policy")]
#[allow(missing_docs, clippy::too_many_arguments)] // generated glue
pub mod policy {
    wit_bindgen::generate!({
        world: "policy",
        path: "wit",
        with: {
            "llmos:plugin/types@0.1.1": crate::host::llmos::plugin::types,
            "llmos:plugin/log@0.1.1": crate::host::llmos::plugin::log,
            "llmos:plugin/config@0.1.1": crate::host::llmos::plugin::config,
            "llmos:plugin/kv@0.1.1": crate::host::llmos::plugin::kv,
            "llmos:plugin/inference@0.1.1": crate::host::llmos::plugin::inference,
            "llmos:plugin/secrets@0.1.1": crate::host::llmos::plugin::secrets,
            "llmos:plugin/data@0.1.1": crate::host::llmos::plugin::data,
        },
        pub_export_macro: true,
        export_macro_name: "__llmos_export_policy",
        default_bindings_module: "::llmos_plugin::policy",
    });
}

/// The `integration` world: acts on other systems after the response was sent.
#[cfg(feature = "integration")]
#[allow(missing_docs, clippy::too_many_arguments)] // generated glue
pub mod integration {
    wit_bindgen::generate!({
        world: "integration",
        path: "wit",
        with: {
            "llmos:plugin/types@0.1.1": crate::host::llmos::plugin::types,
            "llmos:plugin/log@0.1.1": crate::host::llmos::plugin::log,
            "llmos:plugin/config@0.1.1": crate::host::llmos::plugin::config,
            "llmos:plugin/kv@0.1.1": crate::host::llmos::plugin::kv,
            "llmos:plugin/inference@0.1.1": crate::host::llmos::plugin::inference,
            "llmos:plugin/secrets@0.1.1": crate::host::llmos::plugin::secrets,
            "llmos:plugin/data@0.1.1": crate::host::llmos::plugin::data,
        },
        pub_export_macro: true,
        export_macro_name: "__llmos_export_integration",
        default_bindings_module: "::llmos_plugin::integration",
    });
}

/// The `tool` world: offers tools to models and MCP clients (since WIT 0.1.1).
#[cfg(feature = "tool")]
pub mod tool;

/// Exports `T` (which implements [`tool::Guest`]) as the component's tools.
#[cfg(feature = "tool")]
#[macro_export]
macro_rules! export_tool {
    ($t:ident) => {
        $crate::tool::__llmos_export_tool!($t with_types_in $crate::tool);
    };
}

/// Exports `T` (which implements [`preprocessor::Guest`]) as the component's preprocessor.
#[cfg(feature = "preprocessor")]
#[macro_export]
macro_rules! export_preprocessor {
    ($t:ident) => {
        $crate::preprocessor::__llmos_export_preprocessor!($t with_types_in $crate::preprocessor);
    };
}

/// Exports `T` (which implements [`policy::Guest`]) as the component's policy.
#[cfg(feature = "policy")]
#[macro_export]
macro_rules! export_policy {
    ($t:ident) => {
        $crate::policy::__llmos_export_policy!($t with_types_in $crate::policy);
    };
}

/// Exports `T` (which implements [`integration::Guest`]) as the component's integration.
#[cfg(feature = "integration")]
#[macro_export]
macro_rules! export_integration {
    ($t:ident) => {
        $crate::integration::__llmos_export_integration!($t with_types_in $crate::integration);
    };
}

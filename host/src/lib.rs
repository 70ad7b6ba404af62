//! llmos: one host process that runs ONNX models and sandboxed WebAssembly plugins
//! behind a local HTTP endpoint.
//!
//! Modules follow the design in `docs/design.md`: data flows one way,
//! `api` → `plugins` (pipeline) → `core` → store. Nothing in `core` knows about
//! plugins or HTTP.

/// Request-path hygiene: a module declared through this macro handles request- or
/// guest-derived data, and clippy denies there what could panic or wrap on such data:
/// `unwrap`/`expect`, slice indexing, unchecked arithmetic, `panic!`/`unreachable!` and
/// truncating casts. The set is written once, here; `cargo clippy -- -D warnings` enforces
/// it. Tests inside such a module may `#[allow]` them (see `clippy.toml`).
macro_rules! request_path {
    ($(#[$m:meta])* $vis:vis mod $name:ident;) => {
        $(#[$m])*
        #[deny(
            clippy::unwrap_used,
            clippy::expect_used,
            clippy::indexing_slicing,
            clippy::arithmetic_side_effects,
            clippy::panic,
            clippy::unreachable,
            clippy::cast_possible_truncation
        )]
        $vis mod $name;
    };
}

request_path! { pub mod api; }
pub mod cli;
request_path! { pub mod config; }
pub mod core;
pub mod data;
#[doc(hidden)]
pub mod fuzzing;
pub mod plugins;
pub mod security;

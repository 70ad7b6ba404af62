//! llmos: one host process that runs ONNX models and sandboxed WebAssembly plugins
//! behind a local HTTP endpoint.
//!
//! Modules follow the design in `docs/design.md`: data flows one way,
//! `api` → `plugins` (pipeline) → `core` → store. Nothing in `core` knows about
//! plugins or HTTP.

pub mod api;
pub mod cli;
pub mod config;
pub mod core;
pub mod data;
#[doc(hidden)]
pub mod fuzzing;
pub mod plugins;
pub mod security;

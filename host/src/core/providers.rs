//! Placeholder so the `plugins` branch builds on its own (config.rs names these types);
//! main's `core::providers` replaces this file when the branch is merged.

use serde::{Deserialize, Serialize};

/// An execution provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// CPU.
    Cpu,
    /// CUDA.
    Cuda,
    /// TensorRT.
    Tensorrt,
}

/// Options shared by all providers.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderOptions {}

//! Execution providers: an ordered preference per model, checked and registered in order.
//!
//! ONNX Runtime falls back to the CPU silently when a provider fails to register; llmos
//! does not. Each preference is checked (compiled into llmos? present in the loaded
//! library? registration accepted?) and the provider that actually serves the model is
//! recorded, together with the reason every earlier choice was skipped. In strict mode a
//! failed first choice refuses the load with that reason.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use ort::ep::ExecutionProvider;
use ort::session::builder::SessionBuilder;
use serde::{Deserialize, Serialize};

/// One execution provider llmos knows how to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// NVIDIA TensorRT (needs the `tensorrt` feature and `onnxruntime-gpu`).
    Tensorrt,
    /// NVIDIA CUDA (needs the `cuda` feature and `onnxruntime-gpu`).
    Cuda,
    /// The CPU provider, always present.
    Cpu,
}

impl ProviderKind {
    /// Every kind, in the order a GPU user would usually prefer them.
    pub const ALL: [ProviderKind; 3] = [Self::Tensorrt, Self::Cuda, Self::Cpu];

    /// The name used in manifests, config and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tensorrt => "tensorrt",
            Self::Cuda => "cuda",
            Self::Cpu => "cpu",
        }
    }

    /// ONNX Runtime's own name for it.
    pub fn ort_name(self) -> &'static str {
        match self {
            Self::Tensorrt => TensorRtProbe::NAME,
            Self::Cuda => CudaProbe::NAME,
            Self::Cpu => "CPUExecutionProvider",
        }
    }

    /// Whether this build of llmos was compiled with support for the provider.
    pub fn compiled_in(self) -> bool {
        match self {
            Self::Tensorrt => cfg!(feature = "tensorrt"),
            Self::Cuda => cfg!(feature = "cuda"),
            Self::Cpu => true,
        }
    }

    /// Whether the loaded ONNX Runtime library contains the provider.
    /// Needs the runtime to be initialised.
    pub fn in_library(self) -> Result<bool, String> {
        let r = match self {
            Self::Tensorrt => TensorRtProbe::is_available(),
            Self::Cuda => CudaProbe::is_available(),
            Self::Cpu => return Ok(true),
        };
        r.map_err(|e| e.to_string())
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProviderKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tensorrt" | "trt" => Ok(Self::Tensorrt),
            "cuda" => Ok(Self::Cuda),
            "cpu" => Ok(Self::Cpu),
            other => Err(format!(
                "unknown execution provider {other:?}: accepted are tensorrt, cuda, cpu"
            )),
        }
    }
}

/// Parses a comma-separated preference such as `tensorrt,cuda,cpu`.
pub fn parse_preference(s: &str) -> Result<Vec<ProviderKind>, String> {
    let list = s
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(ProviderKind::from_str)
        .collect::<Result<Vec<_>, _>>()?;
    if list.is_empty() {
        return Err(
            "empty execution-provider list: give at least one of tensorrt, cuda, cpu".into(),
        );
    }
    Ok(list)
}

// Probes that carry ONNX Runtime's provider names, so that availability can be asked of the
// loaded library even when llmos was built without the provider's feature.
struct CudaProbe;
impl ExecutionProvider for CudaProbe {
    const NAME: &'static str = "CUDAExecutionProvider";
    fn register(&self, _: &mut SessionBuilder) -> ort::Result<()> {
        Err(ort::Error::new("probe only"))
    }
}
struct TensorRtProbe;
impl ExecutionProvider for TensorRtProbe {
    const NAME: &'static str = "TensorrtExecutionProvider";
    fn register(&self, _: &mut SessionBuilder) -> ort::Result<()> {
        Err(ort::Error::new("probe only"))
    }
}

/// `[providers]` options shared by every model.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderOptions {
    /// `[providers.cuda]`
    pub cuda: CudaOptions,
    /// `[providers.tensorrt]`
    pub tensorrt: TensorRtOptions,
}

/// CUDA provider options.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CudaOptions {
    /// GPU ordinal. Default 0.
    pub device_id: i32,
    /// Arena memory limit in bytes. Default: no limit.
    pub memory_limit: Option<usize>,
}

/// TensorRT provider options.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TensorRtOptions {
    /// GPU ordinal. Default 0.
    pub device_id: i32,
    /// Allow FP16 kernels. Default false.
    pub fp16: bool,
    /// Folder where built engines are cached across restarts. Default: no cache.
    pub engine_cache_dir: Option<PathBuf>,
}

/// Which provider serves a model, and why earlier preferences did not.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderReport {
    /// The provider that serves the model.
    pub serving: ProviderKind,
    /// The preference it was chosen from.
    pub preference: Vec<ProviderKind>,
    /// Each preference tried before `serving`, with the reason it was skipped.
    pub skipped: Vec<SkippedProvider>,
}

/// A provider that could not be used.
#[derive(Debug, Clone, Serialize)]
pub struct SkippedProvider {
    /// Which.
    pub provider: ProviderKind,
    /// Why, in words a user can act on.
    pub reason: String,
}

/// The first choice was unavailable and the model is strict.
#[derive(Debug, thiserror::Error)]
#[error("execution provider {provider} is required (strict mode) but unavailable: {reason}")]
pub struct StrictRefusal {
    /// The first choice.
    pub provider: ProviderKind,
    /// Why it is unavailable.
    pub reason: String,
}

/// Registers the first usable provider of `preference` on `builder`.
///
/// Returns the builder and the report; CPU is the last resort when not `strict` (ONNX
/// Runtime always has it). With `strict`, a failed first choice is an error.
pub fn register(
    mut builder: SessionBuilder,
    preference: &[ProviderKind],
    options: &ProviderOptions,
    strict: bool,
) -> Result<(SessionBuilder, ProviderReport), StrictRefusal> {
    let mut skipped = Vec::new();
    for &kind in preference {
        match try_register(&mut builder, kind, options) {
            Ok(()) => {
                let report = ProviderReport {
                    serving: kind,
                    preference: preference.to_vec(),
                    skipped,
                };
                return Ok((builder, report));
            }
            Err(reason) => {
                if strict && skipped.is_empty() {
                    return Err(StrictRefusal {
                        provider: kind,
                        reason,
                    });
                }
                // Absent from this build: expected on CPU machines. Refused: a real problem.
                if reason.starts_with("ONNX Runtime refused") {
                    tracing::warn!(provider = %kind, %reason, "execution provider skipped");
                } else {
                    tracing::info!(provider = %kind, %reason, "execution provider skipped");
                }
                skipped.push(SkippedProvider {
                    provider: kind,
                    reason,
                });
            }
        }
    }
    // Nothing in the preference worked: ONNX Runtime runs on its CPU provider.
    Ok((
        builder,
        ProviderReport {
            serving: ProviderKind::Cpu,
            preference: preference.to_vec(),
            skipped,
        },
    ))
}

/// Why `kind` cannot be used, or `Ok` once registered.
fn try_register(
    builder: &mut SessionBuilder,
    kind: ProviderKind,
    options: &ProviderOptions,
) -> Result<(), String> {
    if kind == ProviderKind::Cpu {
        return Ok(());
    }
    let in_library = kind.in_library()?;
    if !in_library {
        return Err(format!(
            "the loaded ONNX Runtime library has no {} (it is a CPU-only build); install \
             onnxruntime-gpu==1.31.1 (CUDA 13, cuDNN 9) and point LLMOS_ORT_DYLIB at its \
             libonnxruntime.so.1.31.1 (see docs/gpu.md)",
            kind.ort_name()
        ));
    }
    if !kind.compiled_in() {
        return Err(format!(
            "this llmos binary was built without the `{kind}` feature; rebuild with \
             `cargo build --release --features {kind}`"
        ));
    }
    register_gpu(builder, kind, options)
}

#[cfg(any(feature = "cuda", feature = "tensorrt"))]
fn register_gpu(
    builder: &mut SessionBuilder,
    kind: ProviderKind,
    options: &ProviderOptions,
) -> Result<(), String> {
    let result = match kind {
        #[cfg(feature = "cuda")]
        ProviderKind::Cuda => {
            let mut ep = ort::ep::CUDA::default().with_device_id(options.cuda.device_id);
            if let Some(limit) = options.cuda.memory_limit {
                ep = ep.with_memory_limit(limit);
            }
            ep.register(builder)
        }
        #[cfg(feature = "tensorrt")]
        ProviderKind::Tensorrt => {
            let t = &options.tensorrt;
            let mut ep = ort::ep::TensorRT::default()
                .with_device_id(t.device_id)
                .with_fp16(t.fp16);
            if let Some(dir) = &t.engine_cache_dir {
                ep = ep
                    .with_engine_cache(true)
                    .with_engine_cache_path(dir.display());
            }
            ep.register(builder)
        }
        _ => return Err(format!("llmos was built without the `{kind}` feature")),
    };
    result.map_err(|e| format!("ONNX Runtime refused to register {}: {e}", kind.ort_name()))
}

#[cfg(not(any(feature = "cuda", feature = "tensorrt")))]
fn register_gpu(
    _builder: &mut SessionBuilder,
    kind: ProviderKind,
    _options: &ProviderOptions,
) -> Result<(), String> {
    Err(format!(
        "this llmos binary was built without the `{kind}` feature"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preference_parses_and_rejects_unknown_names() {
        assert_eq!(
            parse_preference("tensorrt, cuda,cpu").unwrap(),
            vec![
                ProviderKind::Tensorrt,
                ProviderKind::Cuda,
                ProviderKind::Cpu
            ]
        );
        let err = parse_preference("cuda,rocm").unwrap_err();
        assert!(
            err.contains("rocm") && err.contains("tensorrt, cuda, cpu"),
            "{err}"
        );
        assert!(parse_preference(" , ").is_err());
    }
}

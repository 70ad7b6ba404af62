//! The ONNX Runtime library: where it comes from, how it is verified, how it is loaded.
//!
//! llmos never downloads ONNX Runtime from ort's own hosts. The CPU library is taken from
//! the PyPI wheel `onnxruntime==1.31.1`, verified by sha256 and loaded with
//! [`ort::init_from`]. Resolution order:
//! 1. `[runtime] ort_dylib` in the config, `LLMOS_ORT_DYLIB`, or `ORT_DYLIB_PATH`
//!    (a user's choice, e.g. the `onnxruntime-gpu` build: loaded as given);
//! 2. `libonnxruntime.so.1.31.1` next to the `llmos` binary;
//! 3. the cache filled by `llmos runtime install` (verified against the pinned sha256).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use serde::Serialize;

use crate::config::RuntimeConfig;
use crate::core::fetch::{self, FetchError, Fetcher};

/// The ONNX Runtime version llmos is built and tested against.
pub const ORT_VERSION: &str = "1.31.1";
/// File name of the shared library inside the wheel and in the cache.
pub const ORT_LIB_NAME: &str = "libonnxruntime.so.1.31.1";
/// sha256 of `onnxruntime/capi/libonnxruntime.so.1.31.1` in the CPU wheel.
pub const ORT_LIB_SHA256: &str = "fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3";
/// The wheel it comes from (the library is the same in every CPython tag of this release).
pub const ORT_WHEEL: &str = "onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl";
/// sha256 of that wheel, as the package index publishes it.
pub const ORT_WHEEL_SHA256: &str =
    "5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f";
/// The command that installs the library into the cache.
pub const INSTALL_COMMAND: &str = "llmos runtime install";

/// Errors finding, verifying or loading ONNX Runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No library anywhere llmos looks.
    #[error(
        "ONNX Runtime {ORT_VERSION} was not found. Looked in:\n{}\nInstall it with `{INSTALL_COMMAND}` \
         (downloads the onnxruntime=={ORT_VERSION} wheel and verifies it), or point LLMOS_ORT_DYLIB \
         at an existing libonnxruntime.so",
        .looked.iter().map(|(p, why)| format!("  - {} ({why})", p.display())).collect::<Vec<_>>().join("\n")
    )]
    NotFound {
        /// Each place, with what was wrong there.
        looked: Vec<(PathBuf, String)>,
    },
    /// The cached library does not have the pinned digest.
    #[error(
        "{path} is corrupt or not the expected ONNX Runtime {ORT_VERSION} build (sha256 {actual}, \
         expected {ORT_LIB_SHA256}); run `{INSTALL_COMMAND} --force` to replace it"
    )]
    Digest {
        /// The file.
        path: PathBuf,
        /// Its digest.
        actual: String,
    },
    /// The library exists but could not be loaded.
    #[error("cannot load ONNX Runtime from {path}: {message}")]
    Load {
        /// The file.
        path: PathBuf,
        /// ONNX Runtime's or the loader's message.
        message: String,
    },
    /// Download or extraction failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

/// Where the loaded library came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LibrarySource {
    /// `[runtime] ort_dylib` or `LLMOS_ORT_DYLIB`.
    Configured,
    /// `ORT_DYLIB_PATH`.
    OrtDylibPath,
    /// Next to the `llmos` binary.
    NextToBinary,
    /// The verified cache.
    Cache,
}

/// The initialised runtime: one per process.
#[derive(Debug)]
pub struct Runtime {
    /// ort's environment; every session is built from it.
    pub env: ort::environment::Environment,
    /// The library file.
    pub path: PathBuf,
    /// How it was found.
    pub source: LibrarySource,
}

/// Path of the library in the cache.
pub fn cached_library(cache: &Path) -> PathBuf {
    cache
        .join("runtime")
        .join(format!("onnxruntime-{ORT_VERSION}"))
        .join(ORT_LIB_NAME)
}

/// Finds the library without loading it.
pub fn resolve(
    config: &RuntimeConfig,
    cache: &Path,
) -> Result<(PathBuf, LibrarySource), RuntimeError> {
    let mut looked = Vec::new();
    let explicit = config
        .ort_dylib
        .clone()
        .map(|p| {
            (
                p,
                LibrarySource::Configured,
                "[runtime] ort_dylib / LLMOS_ORT_DYLIB",
            )
        })
        .or_else(|| {
            std::env::var_os("ORT_DYLIB_PATH")
                .filter(|v| !v.is_empty())
                .map(|p| {
                    (
                        PathBuf::from(p),
                        LibrarySource::OrtDylibPath,
                        "ORT_DYLIB_PATH",
                    )
                })
        });
    if let Some((path, source, what)) = explicit {
        // An explicit choice that is wrong is an error, never a silent fallback.
        if path.is_file() {
            return Ok((path, source));
        }
        looked.push((path, format!("set by {what}, but no such file")));
        return Err(RuntimeError::NotFound { looked });
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        let path = dir.join(ORT_LIB_NAME);
        if path.is_file() {
            return Ok((path, LibrarySource::NextToBinary));
        }
        looked.push((path, "next to the llmos binary: no such file".into()));
    }
    let path = cached_library(cache);
    if path.is_file() {
        return Ok((path, LibrarySource::Cache));
    }
    looked.push((path, "the llmos cache: not installed".into()));
    Err(RuntimeError::NotFound { looked })
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static INIT: Mutex<()> = Mutex::new(());

/// Loads ONNX Runtime once per process and returns it.
///
/// A library from the cache is verified against the pinned sha256 before loading.
pub fn init(config: &RuntimeConfig, cache: &Path) -> Result<&'static Runtime, RuntimeError> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let (path, source) = resolve(config, cache)?;
    if source == LibrarySource::Cache {
        let actual = fetch::sha256_file(&path)?;
        if actual != ORT_LIB_SHA256 {
            return Err(RuntimeError::Digest { path, actual });
        }
    }
    let load_err = |message: String| RuntimeError::Load {
        path: path.clone(),
        message,
    };
    let builder = ort::init_from(&path).map_err(|e| load_err(e.to_string()))?;
    let env = builder
        .with_name("llmos")
        .with_telemetry(false)
        .build()
        .map_err(|e| load_err(e.to_string()))?;
    tracing::info!(path = %path.display(), ?source, "ONNX Runtime loaded");
    Ok(RUNTIME.get_or_init(|| Runtime { env, path, source }))
}

/// Downloads the `onnxruntime==1.31.1` wheel (cached), extracts the library into the cache
/// and verifies it. Returns the library's path. Does nothing when a verified copy exists
/// and `force` is false.
pub fn install(fetcher: &Fetcher, cache: &Path, force: bool) -> Result<PathBuf, RuntimeError> {
    let dest = cached_library(cache);
    if !force && dest.is_file() && fetch::sha256_file(&dest)? == ORT_LIB_SHA256 {
        tracing::info!(path = %dest.display(), "ONNX Runtime already installed and verified");
        return Ok(dest);
    }
    let wheel = fetcher.wheel(
        "onnxruntime",
        ORT_VERSION,
        Some(ORT_WHEEL),
        Some(ORT_WHEEL_SHA256),
    )?;
    fetch::extract_member(
        &wheel,
        &format!("onnxruntime/capi/{ORT_LIB_NAME}"),
        &dest,
        Some(ORT_LIB_SHA256),
    )?;
    Ok(dest)
}

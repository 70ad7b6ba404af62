//! JavaScript (jco componentize) projects: a placeholder that part b of issue 11 replaces
//! (docs/plugin-authors.md, "Contract of the first slice").

use std::path::Path;

use crate::plugins::Manifest;

/// Builds the project in `dir` (its manifest already read) into `out` (a .wasm path).
pub(super) fn build(
    _dir: &Path,
    _manifest: &Manifest,
    _out: &Path,
    _release: bool,
) -> anyhow::Result<()> {
    anyhow::bail!("js plugins: see part b")
}

/// Ok when the toolchain is there; else an error naming exactly what to install.
pub(super) fn check_toolchain(_dir: &Path) -> anyhow::Result<()> {
    anyhow::bail!("js plugins: see part b")
}

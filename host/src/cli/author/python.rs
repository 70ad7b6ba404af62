//! Python back end of `llmos plugin build` (docs/plugin-authors.md, part b): componentize-py.
//!
//! A project from `llmos plugin new NAME --world W --lang python` has `app.py` (a class
//! `WitWorld` implementing the world), `wit/` (the WIT package), the type stubs generated
//! from it (`wit_world/`, `componentize_py_types.py`, … — the editor's view of the host
//! interfaces; regenerate them with `componentize-py -d wit -w W bindings .` after deleting
//! them), `manifest.toml` and `example.txt`. The build runs
//! `componentize-py -d wit -w W componentize app -o dist/NAME.wasm`: a component of about
//! 18 MB (CPython and the standard library; the host's limit is 32 MiB, and install compiles
//! it once into the engine cache). componentize-py has no optimisation level, so `--debug`
//! builds the same component.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use super::toolchain;
use crate::plugins::Manifest;

/// The componentize-py release the templates and their stubs were made with.
pub(super) const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// Overrides where componentize-py is (a path to the program).
pub(super) const COMPONENTIZE_PY_ENV: &str = "LLMOS_COMPONENTIZE_PY";

fn install_hint() -> String {
    format!(
        "install it with `pip install componentize-py=={COMPONENTIZE_PY_VERSION}` (into a venv \
         whose bin/ is on PATH), or point {COMPONENTIZE_PY_ENV} at the program"
    )
}

/// `$LLMOS_COMPONENTIZE_PY`, else `componentize-py` on `PATH`.
fn componentize_py() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os(COMPONENTIZE_PY_ENV) {
        let p = PathBuf::from(p);
        if !toolchain::is_executable(&p) {
            bail!(
                "{COMPONENTIZE_PY_ENV}={}: no such program; {}",
                p.display(),
                install_hint()
            );
        }
        return Ok(p);
    }
    toolchain::on_path("componentize-py").with_context(|| {
        format!(
            "Python plugins are built with componentize-py, which is not on PATH: {}",
            install_hint()
        )
    })
}

/// Ok when componentize-py runs; a version other than the templates' is a warning only.
pub(super) fn check_toolchain(dir: &Path) -> anyhow::Result<()> {
    let exe = componentize_py()?;
    let version = toolchain::output(&exe, ["--version"], dir)
        .with_context(|| format!("{} does not run; {}", exe.display(), install_hint()))?;
    let version = version.trim();
    if version.rsplit(' ').next() != Some(COMPONENTIZE_PY_VERSION) {
        eprintln!(
            "warning: {} is {version:?}; the template was made with componentize-py \
             {COMPONENTIZE_PY_VERSION} (`pip install componentize-py=={COMPONENTIZE_PY_VERSION}`)",
            exe.display()
        );
    }
    Ok(())
}

/// Builds `dir/app.py` against `dir/wit` into the component `out`.
pub(super) fn build(dir: &Path, manifest: &Manifest, out: &Path, _release: bool) -> anyhow::Result<()> {
    if !dir.join("app.py").is_file() {
        bail!(
            "{}: missing; a Python plugin's code is app.py, with a class WitWorld \
             implementing the {} world",
            dir.join("app.py").display(),
            manifest.world
        );
    }
    toolchain::wit_dir(dir)?;
    let exe = componentize_py()?;
    let partial = toolchain::partial(out)?;
    let mut cmd = Command::new(exe);
    cmd.args(["-d", "wit", "-w", manifest.world.name(), "componentize", "app", "-o"])
        .arg(&partial);
    let result = toolchain::run(cmd, dir, "componentize-py");
    toolchain::finish(result, &partial, out)
}

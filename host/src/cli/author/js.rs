//! JavaScript back end of `llmos plugin build` (docs/plugin-authors.md, part b): jco
//! componentize.
//!
//! A project from `llmos plugin new NAME --world W --lang js` has `app.js` (the world's
//! exports as functions, `// @ts-check` with the types in `types/`, generated from `wit/`
//! by `npx jco guest-types`), `package.json` (jco pinned, `@bytecodealliance/preview2-shim`
//! pinned through `overrides`) with its `package-lock.json`, `manifest.toml` and
//! `example.txt`. The build runs `npm install` when `node_modules/` has no jco, then
//! `jco componentize app.js --wit wit --world-name W [--backend quickjs] -o dist/NAME.wasm`.
//!
//! The back end is `package.json`'s `llmos.backend`: `quickjs` (the default: ~1.6 MiB,
//! fast on strings, no Web APIs such as `TextEncoder` or `fetch`; it needs the host's
//! `[plugins] concurrency_support`, on by default, and creates several linear memories,
//! which the plugin's memory limit caps together) or `starlingmonkey` (~12 MiB, Web APIs,
//! slow on strings). Neither has an optimisation level, so `--debug` builds the same.
//!
//! A TypeScript project (`--lang ts`: `app.ts`, `tsconfig.json`, typescript pinned in
//! `package.json` beside jco) is type-checked and compiled by the project's own `tsc`
//! (`tsc -p tsconfig.json`: strict, no output on error) into `dist/js/app.js` (under `dist/`,
//! which `plugin dev` does not watch), which is then built as above. A type error fails the
//! build with tsc's messages, naming the file and line.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use super::toolchain;
use crate::plugins::Manifest;

/// The jco release of the templates' `package.json`.
pub(super) const JCO_VERSION: &str = "1.35.0";

/// The TypeScript release of the TypeScript template's `package.json`.
pub(super) const TYPESCRIPT_VERSION: &str = "7.0.2";

/// Where `tsc` writes the JavaScript that jco builds (tsconfig.json's `outDir`).
const TS_OUT: &str = "dist/js/app.js";

/// The oldest Node.js jco runs on.
const NODE_MAJOR_MIN: u32 = 18;

const NODE_HINT: &str = "install Node.js 18 or later with npm (https://nodejs.org, or the \
     `nodejs` and `npm` packages of your system)";

/// The componentize back ends `llmos.backend` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    QuickJs,
    StarlingMonkey,
}

impl Backend {
    fn parse(package: &serde_json::Value, path: &Path) -> anyhow::Result<Backend> {
        match package.pointer("/llmos/backend") {
            None => Ok(Backend::QuickJs),
            Some(serde_json::Value::String(s)) if s == "quickjs" => Ok(Backend::QuickJs),
            Some(serde_json::Value::String(s)) if s == "starlingmonkey" => {
                Ok(Backend::StarlingMonkey)
            }
            Some(other) => bail!(
                "{}: llmos.backend is {other}: expected \"quickjs\" (small and fast, the default) \
                 or \"starlingmonkey\" (Web APIs)",
                path.display()
            ),
        }
    }
}

fn program(name: &str) -> anyhow::Result<PathBuf> {
    toolchain::on_path(name).with_context(|| {
        format!("JavaScript plugins are built with jco, which needs {name}, not on PATH: {NODE_HINT}")
    })
}

/// Ok when node (18 or later) and npm are on PATH; jco itself comes from `npm install`.
pub(super) fn check_toolchain(dir: &Path) -> anyhow::Result<()> {
    let node = program("node")?;
    program("npm")?;
    let version = toolchain::output(&node, ["--version"], dir)?;
    let major = version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(m) if m >= NODE_MAJOR_MIN => Ok(()),
        _ => bail!("{} is Node.js {}: {NODE_HINT}", node.display(), version.trim()),
    }
}

/// The project's `package.json`, parsed.
fn package(dir: &Path) -> anyhow::Result<(PathBuf, serde_json::Value)> {
    let path = dir.join("package.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let v = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    Ok((path, v))
}

/// `npm install` unless `node_modules/` already has jco (npm's cache makes a second
/// project's install quick and offline).
fn install_packages(dir: &Path) -> anyhow::Result<PathBuf> {
    let jco = dir.join("node_modules").join(".bin").join("jco");
    // Absolute: the build runs in `dir`.
    let jco = std::path::absolute(&jco).with_context(|| format!("{}", jco.display()))?;
    if !toolchain::is_executable(&jco) {
        let mut cmd = Command::new(program("npm")?);
        cmd.args(["install", "--prefer-offline", "--no-audit", "--no-fund"]);
        toolchain::run(cmd, dir, "npm install")?;
        if !toolchain::is_executable(&jco) {
            bail!(
                "{}: npm install did not install jco; package.json's devDependencies need \
                 \"@bytecodealliance/jco\": \"{JCO_VERSION}\"",
                dir.display()
            );
        }
    }
    Ok(jco)
}

/// What a JavaScript and a TypeScript build share: the back end named in package.json, the
/// source file present, the WIT folder, the project's npm packages (returns jco's path).
fn prepare(
    dir: &Path,
    manifest: &Manifest,
    source: &str,
    language: &str,
) -> anyhow::Result<(Backend, PathBuf)> {
    let (path, package) = package(dir)?;
    let backend = Backend::parse(&package, &path)?;
    if !dir.join(source).is_file() {
        bail!(
            "{}: missing; a {language} plugin's code is {source}, exporting the {} world's functions",
            dir.join(source).display(),
            manifest.world
        );
    }
    toolchain::wit_dir(dir)?;
    let jco = install_packages(dir)?;
    Ok((backend, jco))
}

/// Builds `dir/app.js` against `dir/wit` into the component `out`.
pub(super) fn build(dir: &Path, manifest: &Manifest, out: &Path, _release: bool) -> anyhow::Result<()> {
    let (backend, jco) = prepare(dir, manifest, "app.js", "JavaScript")?;
    componentize(dir, &jco, "app.js", backend, manifest, out)
}

/// Type-checks and compiles `dir/app.ts` with the project's tsc into [`TS_OUT`], then builds
/// that against `dir/wit` into the component `out`.
pub(super) fn build_ts(
    dir: &Path,
    manifest: &Manifest,
    out: &Path,
    _release: bool,
) -> anyhow::Result<()> {
    let (backend, jco) = prepare(dir, manifest, "app.ts", "TypeScript")?;
    let tsc = dir.join("node_modules").join(".bin").join("tsc");
    let tsc = std::path::absolute(&tsc).with_context(|| format!("{}", tsc.display()))?;
    if !toolchain::is_executable(&tsc) {
        bail!(
            "{}: no TypeScript compiler in node_modules/.bin; package.json's devDependencies \
             need \"typescript\": \"{TYPESCRIPT_VERSION}\" (then run llmos plugin build again)",
            dir.display()
        );
    }
    // No stale output: a failed compile leaves nothing for jco to build.
    let js = dir.join(TS_OUT);
    match std::fs::remove_file(&js) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing {}", js.display()));
        }
        _ => {}
    }
    let mut cmd = Command::new(tsc);
    cmd.args(["-p", "tsconfig.json", "--pretty", "false"]);
    toolchain::run(cmd, dir, "tsc (type-checking and compiling app.ts)")?;
    if !js.is_file() {
        bail!(
            "tsc wrote no {}: tsconfig.json must compile app.ts with \"outDir\": \"dist/js\" \
             (as the template's does)",
            js.display()
        );
    }
    // Absolute: jco reads a relative source from the source's own folder.
    let js = std::path::absolute(&js).with_context(|| format!("{}", js.display()))?;
    componentize(dir, &jco, js.as_os_str(), backend, manifest, out)
}

/// `jco componentize SOURCE --wit wit --world-name W [--backend quickjs] -o out`, in `dir`.
fn componentize(
    dir: &Path,
    jco: &Path,
    source: impl AsRef<std::ffi::OsStr>,
    backend: Backend,
    manifest: &Manifest,
    out: &Path,
) -> anyhow::Result<()> {
    let partial = toolchain::partial(out)?;
    let mut cmd = Command::new(jco);
    cmd.arg("componentize")
        .arg(source)
        .args(["--wit", "wit", "--world-name"])
        .arg(manifest.world.name());
    if backend == Backend::QuickJs {
        cmd.args(["--backend", "quickjs"]);
    }
    cmd.arg("-o").arg(&partial);
    let result = toolchain::run(cmd, dir, "jco componentize");
    toolchain::finish(result, &partial, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn backend_defaults_to_quickjs_and_names_the_accepted_values() {
        let p = Path::new("package.json");
        assert_eq!(Backend::parse(&json!({}), p).unwrap(), Backend::QuickJs);
        let sm = json!({"llmos": {"backend": "starlingmonkey"}});
        assert_eq!(Backend::parse(&sm, p).unwrap(), Backend::StarlingMonkey);
        let e = Backend::parse(&json!({"llmos": {"backend": "v8"}}), p).unwrap_err();
        let e = e.to_string();
        assert!(e.contains("\"v8\"") && e.contains("quickjs") && e.contains("starlingmonkey"), "{e}");
    }
}

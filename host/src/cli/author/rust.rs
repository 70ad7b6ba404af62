//! Rust projects: the `llmos-plugin` SDK written into the data location, and
//! `cargo build --target wasm32-wasip2`.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, anyhow, bail};
use include_dir::{Dir, include_dir};

use super::{WIT, collect, write_file};
use crate::plugins::Manifest;

static SDK_SRC: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/../plugins/sdk/src");
static SDK_CARGO: &str = include_str!("../../../../plugins/sdk/Cargo.toml");

const TARGET: &str = "wasm32-wasip2";

/// The SDK's version (from its embedded Cargo.toml).
fn sdk_version() -> anyhow::Result<String> {
    let t: toml::Table = toml::from_str(SDK_CARGO).context("the embedded SDK's Cargo.toml")?;
    t.get("package")
        .and_then(|p| p.get("version"))
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| anyhow!("the embedded SDK's Cargo.toml has no package.version"))
}

/// The SDK crate's files: Cargo.toml, src/**, wit/** (the WIT package as plain files).
fn sdk_files() -> BTreeMap<PathBuf, &'static [u8]> {
    let mut files = BTreeMap::new();
    let mut src = BTreeMap::new();
    collect(&SDK_SRC, SDK_SRC.path(), &mut src);
    files.extend(src.into_iter().map(|(p, b)| (Path::new("src").join(p), b)));
    let mut wit = BTreeMap::new();
    collect(&WIT, WIT.path(), &mut wit);
    files.extend(wit.into_iter().map(|(p, b)| (Path::new("wit").join(p), b)));
    files.insert(PathBuf::from("Cargo.toml"), SDK_CARGO.as_bytes());
    files
}

/// Writes the SDK to `home/sdk/rust/llmos-plugin-<version>/` (only the files that are absent
/// or different) and returns its absolute path, escaped for a TOML basic string.
pub(super) fn install_sdk(home: &Path) -> anyhow::Result<String> {
    let home = std::path::absolute(home).with_context(|| format!("{}", home.display()))?;
    let root = home
        .join("sdk")
        .join("rust")
        .join(format!("llmos-plugin-{}", sdk_version()?));
    for (rel, bytes) in sdk_files() {
        let path = root.join(&rel);
        if std::fs::read(&path).ok().as_deref() != Some(bytes) {
            write_file(&path, bytes)?;
        }
    }
    let text = root
        .to_str()
        .ok_or_else(|| anyhow!("{}: the data location's path is not UTF-8", root.display()))?;
    if text.chars().any(char::is_control) {
        bail!("{text:?}: a path with control characters cannot go into Cargo.toml");
    }
    Ok(text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Names cargo refuses as package names: Rust keywords and the standard crates.
pub(super) fn reserved(name: &str) -> bool {
    const RESERVED: &[&str] = &[
        "abstract", "alloc", "as", "async", "await", "become", "box", "break", "const",
        "continue", "core", "crate", "do", "dyn", "else", "enum", "extern", "false", "final",
        "fn", "for", "gen", "if", "impl", "in", "let", "loop", "macro", "match", "mod", "move",
        "mut", "override", "priv", "proc-macro", "pub", "ref", "return", "self", "static", "std",
        "struct", "super", "test", "trait", "true", "try", "type", "typeof", "unsafe", "unsized",
        "use", "virtual", "where", "while", "yield",
    ];
    RESERVED.contains(&name)
}

fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Ok when cargo runs and the wasm32-wasip2 target is installed for the toolchain that
/// builds `dir`; else an error naming what to install.
pub(super) fn check_toolchain(dir: &Path) -> anyhow::Result<()> {
    let version = Command::new(cargo())
        .arg("--version")
        .current_dir(dir)
        .output();
    if !version.is_ok_and(|o| o.status.success()) {
        bail!(
            "Rust plugins need cargo, which did not run: install Rust with rustup \
             (https://rustup.rs), then `rustup target add {TARGET}`"
        );
    }
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .current_dir(dir)
        .output()
        .context("running rustc --print sysroot")?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout);
    if !Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(TARGET)
        .is_dir()
    {
        bail!(
            "the Rust target {TARGET} is not installed (in {}): run `rustup target add {TARGET}`",
            sysroot.trim()
        );
    }
    Ok(())
}

/// Builds the project in `dir` with cargo and copies its component to `out`.
pub(super) fn build(
    dir: &Path,
    manifest: &Manifest,
    out: &Path,
    release: bool,
) -> anyhow::Result<()> {
    let mut cmd = Command::new(cargo());
    cmd.args(["build", "--target", TARGET, "--message-format=json-render-diagnostics"])
        .current_dir(dir)
        .stdout(Stdio::piped());
    if release {
        cmd.arg("--release");
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("running cargo build in {}", dir.display()))?;
    let ours = std::fs::canonicalize(dir.join("Cargo.toml"))
        .with_context(|| format!("{}", dir.join("Cargo.toml").display()))?;
    let mut wasm = None;
    if let Some(stdout) = child.stdout.take() {
        for line in std::io::BufReader::new(stdout).lines() {
            wasm = artifact(&line?, &ours).or(wasm);
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!(
            "cargo build of {} failed ({status}); its errors are above",
            dir.display()
        );
    }
    let wasm = wasm.ok_or_else(|| {
        anyhow!(
            "cargo built no .wasm for {}: its Cargo.toml needs [lib] crate-type = [\"cdylib\"]",
            manifest.name
        )
    })?;
    let bytes = std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;
    write_file(out, &bytes)
}

/// The .wasm of a cdylib of the package at `manifest_path`, from one line of cargo's JSON.
fn artifact(line: &str, manifest_path: &Path) -> Option<PathBuf> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v.get("reason")?.as_str()? != "compiler-artifact"
        || Path::new(v.get("manifest_path")?.as_str()?) != manifest_path
        || !v
            .get("target")?
            .get("kind")?
            .as_array()?
            .iter()
            .any(|k| k.as_str() == Some("cdylib"))
    {
        return None;
    }
    v.get("filenames")?
        .as_array()?
        .iter()
        .filter_map(|f| f.as_str())
        .find(|f| f.ends_with(".wasm"))
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_sdk_is_complete_and_versioned() {
        assert_eq!(sdk_version().unwrap(), "0.1.1");
        let files = sdk_files();
        for f in [
            "Cargo.toml",
            "src/lib.rs",
            "src/config.rs",
            "src/tool.rs",
            "wit/worlds.wit",
            "wit/data.wit",
        ] {
            assert!(files.contains_key(Path::new(f)), "{f} missing");
        }
    }

    #[test]
    fn install_sdk_is_idempotent_and_repairs() {
        let home = tempfile::tempdir().unwrap();
        let path = install_sdk(home.path()).unwrap();
        let lib = Path::new(&path).join("src/lib.rs");
        let before = std::fs::metadata(&lib).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(install_sdk(home.path()).unwrap(), path);
        assert_eq!(std::fs::metadata(&lib).unwrap().modified().unwrap(), before);
        std::fs::write(&lib, "broken").unwrap();
        install_sdk(home.path()).unwrap();
        assert!(std::fs::read_to_string(&lib).unwrap().contains("llmos-plugin"));
    }

    /// The template's Cargo.lock (so a project builds offline from cargo's cache) pins what
    /// the plugins workspace builds the SDK with.
    #[test]
    fn the_template_lock_matches_the_plugins_workspace() {
        let lock = |text: &str| -> Vec<(String, String)> {
            let t: toml::Table = toml::from_str(text).unwrap();
            t["package"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p["name"].as_str().unwrap().into(), p["version"].as_str().unwrap().into()))
                .collect()
        };
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let workspace = lock(&std::fs::read_to_string(repo.join("plugins/Cargo.lock")).unwrap());
        for world in ["common", "tool"] {
            let path = repo.join(format!("plugins/templates/rust/{world}/Cargo.lock"));
            let template = lock(&std::fs::read_to_string(path).unwrap());
            assert!(template.iter().any(|(n, _)| n == "wit-bindgen"));
            assert!(template.contains(&("llmos-plugin".into(), "0.1.1".into())));
            for p in template {
                if p.0 != "{{name}}" {
                    assert!(workspace.contains(&p), "{world}: {p:?} is not in plugins/Cargo.lock");
                }
            }
        }
    }

    #[test]
    fn picks_the_cdylib_of_the_project_only() {
        let me = Path::new("/p/Cargo.toml");
        let line = |mp: &str, kind: &str| {
            serde_json::json!({"reason": "compiler-artifact", "manifest_path": mp,
                "target": {"kind": [kind]}, "filenames": ["/t/x.rlib", "/t/x.wasm"]})
            .to_string()
        };
        assert_eq!(
            artifact(&line("/p/Cargo.toml", "cdylib"), me),
            Some(PathBuf::from("/t/x.wasm"))
        );
        assert_eq!(artifact(&line("/dep/Cargo.toml", "cdylib"), me), None);
        assert_eq!(artifact(&line("/p/Cargo.toml", "lib"), me), None);
        assert_eq!(artifact("not json", me), None);
    }
}

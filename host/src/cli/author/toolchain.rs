//! What the Python and JavaScript back ends share: finding a program, running it with its
//! output on stderr (stdout stays the build's report), and writing the component through a
//! partial file so that a failed build never leaves a half-written `dist/NAME.wasm`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// The first executable file called `name` in the folders of `$PATH`.
pub(super) fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

/// A regular file with an execute bit (on Unix; any file elsewhere).
pub(super) fn is_executable(p: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(p) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.is_file() && meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        meta.is_file()
    }
}

/// Runs `program args` in `dir` and returns its stdout (stderr passes through), or an error
/// naming the command and its output.
pub(super) fn output<I, S>(program: &Path, args: I, dir: &Path) -> anyhow::Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}{}",
            program.display(),
            out.status,
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(text)
}

/// Runs a build step in `dir` with its output on stderr; `what` names it in the error.
pub(super) fn run(mut cmd: Command, dir: &Path, what: &str) -> anyhow::Result<()> {
    let status = cmd
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .with_context(|| format!("{what}: could not start {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status}) in {}; its output is above", dir.display());
    }
    Ok(())
}

/// Where a tool writes the component before it becomes `out`: `out` with `.partial` added.
pub(super) fn partial(out: &Path) -> anyhow::Result<PathBuf> {
    let out = std::path::absolute(out).with_context(|| format!("{}", out.display()))?;
    let mut name = out
        .file_name()
        .with_context(|| format!("{}: not a file name", out.display()))?
        .to_os_string();
    name.push(".partial");
    Ok(out.with_file_name(name))
}

/// Moves the finished `partial` onto `out`; a build that failed removes it instead.
pub(super) fn finish(result: anyhow::Result<()>, partial: &Path, out: &Path) -> anyhow::Result<()> {
    match result {
        Ok(()) if partial.is_file() => std::fs::rename(partial, out)
            .with_context(|| format!("moving {} to {}", partial.display(), out.display())),
        Ok(()) => bail!("the build reported success but wrote no {}", partial.display()),
        Err(e) => {
            let _ = std::fs::remove_file(partial);
            Err(e)
        }
    }
}

/// The project's `wit/` folder, or an error saying how to get one.
pub(super) fn wit_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    let wit = dir.join("wit");
    if !wit.is_dir() {
        bail!(
            "{}: no wit/ folder (the WIT package llmos:plugin the project builds against); \
             `llmos plugin wit --out {}` writes it",
            wit.display(),
            wit.display()
        );
    }
    Ok(wit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_build_leaves_no_partial_file_and_the_previous_component_as_it_was() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("x.wasm");
        std::fs::write(&out, b"old").unwrap();
        let p = partial(&out).unwrap();
        assert_eq!(p, d.path().join("x.wasm.partial"));
        std::fs::write(&p, b"half").unwrap();
        let e = finish(Err(anyhow::anyhow!("boom")), &p, &out).unwrap_err();
        assert_eq!(e.to_string(), "boom");
        assert!(!p.exists());
        assert_eq!(std::fs::read(&out).unwrap(), b"old");
        // A tool that says it succeeded but wrote nothing is an error, not a stale success.
        let e = finish(Ok(()), &p, &out).unwrap_err().to_string();
        assert!(e.contains("wrote no") && e.contains("x.wasm.partial"), "{e}");
        std::fs::write(&p, b"new").unwrap();
        finish(Ok(()), &p, &out).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"new");
        assert!(!p.exists());
    }

    #[test]
    fn programs_are_found_on_path_only_when_executable() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("tool");
        std::fs::write(&f, b"#!/bin/sh\n").unwrap();
        assert!(!is_executable(&f) || cfg!(not(unix)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        assert!(is_executable(&f));
        assert!(!is_executable(d.path()), "a folder is not a program");
        let e = wit_dir(d.path()).unwrap_err().to_string();
        assert!(e.contains("no wit/ folder") && e.contains("llmos plugin wit --out"), "{e}");
    }
}

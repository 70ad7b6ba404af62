//! `llmos plugin dev` through the real binary: a Rust policy from the template, installed and
//! reloaded on every edit while `llmos serve` keeps running and answering; a build error
//! keeps the old version serving; a capability the new version requests is asked for, and a
//! "no" installs it without the grant; without a server, `--once --yes` installs into the
//! store directly.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{Home, Server, call, text};

/// The cargo target folder the Rust authoring tests share: wit-bindgen builds once.
fn target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("author-rust-target")
}

/// `llmos ARGS` in `cwd`, the way an author runs it.
fn llmos(home: &Home, cwd: &Path, args: &[&str]) -> Command {
    let mut c = home.cmd(args);
    c.current_dir(cwd)
        .env("CARGO_TARGET_DIR", target_dir())
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    c
}

fn ok(home: &Home, cwd: &Path, args: &[&str]) -> String {
    let out = llmos(home, cwd, args).output().unwrap();
    assert!(out.status.success(), "llmos {args:?}:\n{}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// A running `llmos plugin dev`, its output collected as it comes (prompts have no newline).
pub(crate) struct Dev {
    child: Child,
    stdin: ChildStdin,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
    /// How much of `out` the test has looked at.
    seen: usize,
}

fn collect(mut from: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let buf = Arc::new(Mutex::new(String::new()));
    let to = buf.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = from.read(&mut chunk) {
            if n == 0 {
                break;
            }
            to.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    buf
}

impl Dev {
    pub(crate) fn start(home: &Home, cwd: &Path, args: &[&str]) -> Dev {
        let mut all = vec!["plugin", "dev"];
        all.extend(args);
        let mut child = llmos(home, cwd, &all)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Dev {
            stdin: child.stdin.take().unwrap(),
            out: collect(child.stdout.take().unwrap()),
            err: collect(child.stderr.take().unwrap()),
            child,
            seen: 0,
        }
    }

    /// Waits (up to 5 minutes: a Rust build on a busy machine) for `needle` in stdout after
    /// what was seen; returns the new output up to and including it.
    pub(crate) fn wait_for(&mut self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            let out = self.out.lock().unwrap().clone();
            if let Some(at) = out[self.seen..].find(needle) {
                let end = self.seen + at + needle.len();
                let new = out[self.seen..end].to_string();
                self.seen = end;
                return new;
            }
            if start.elapsed() > Duration::from_secs(300)
                || self.child.try_wait().unwrap().is_some()
            {
                panic!(
                    "no {needle:?} from plugin dev; stdout:\n{out}\nstderr:\n{}",
                    self.err.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn answer(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    pub(crate) fn stderr(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    /// Ctrl-C: ends with status 0.
    pub(crate) fn interrupt(mut self) -> String {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-INT", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let out = self.out.lock().unwrap().clone();
        assert!(status.success(), "{status}\n{out}\n{}", self.stderr());
        out
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The denial message of the policy for an input containing its word (the policy's effect).
fn denial(s: &Server) -> String {
    let (code, body) = call(
        s,
        "POST",
        "/v1/embeddings",
        None,
        Some(json!({"model": "minilm", "input": "this text is forbidden"})),
    );
    assert_eq!(code, 403, "{body}");
    assert_eq!(body["error"]["param"], "guard", "{body}");
    body["error"]["message"].as_str().unwrap().to_string()
}

/// The policy's denial says `want`.
fn has(s: &Server, want: &str) {
    let m = denial(s);
    assert!(m.contains(want), "{m:?} does not say {want:?}");
}

/// Rewrites `path`, replacing `from` by `to` (which must be there).
pub(crate) fn edit(path: &Path, from: &str, to: &str) {
    let t = std::fs::read_to_string(path).unwrap();
    assert!(t.contains(from), "{from:?} not in {}:\n{t}", path.display());
    std::fs::write(path, t.replacen(from, to, 1)).unwrap();
}

const TEMPLATE_REASON: &str = "format!(\"input {i} contains {word:?}\")";

#[test]
fn plugin_dev_reloads_a_rust_plugin_while_serving() {
    let home = Home::new();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    ok(
        &home,
        w,
        &[
            "plugin", "new", "guard", "--world", "policy", "--lang", "rust",
        ],
    );
    let project = w.join("guard");
    let lib = project.join("src/lib.rs");
    let cfg = home.dir.path().join("llmos.toml");
    let mut t = std::fs::read_to_string(&cfg).unwrap();
    t.push_str("\n[pipelines.minilm]\nrequest_policies = [\"guard\"]\n");
    std::fs::write(&cfg, t).unwrap();
    let s = home.serve(&["--models", "minilm"]);

    // First install, through the server: the template requests nothing, so nothing is asked.
    let mut dev = Dev::start(&home, w, &["guard", "--interval-ms", "100"]);
    let first = dev.wait_for("installed guard 0.1.0 (policy)");
    assert!(
        first.contains("installing through the running server"),
        "{first}"
    );
    assert!(!first.contains("[y/N]"), "{first}");
    dev.wait_for("watching");
    has(
        &s,
        "denied by plugin guard (request policy): input 0 contains \"forbidden\"",
    );

    // An edit: rebuilt and reloaded, the server answers with the new version at once.
    let started = Instant::now();
    edit(
        &lib,
        TEMPLATE_REASON,
        "format!(\"dev v2: input {i} has {word:?}\")",
    );
    dev.wait_for("reloaded guard 0.1.0 sha256 ");
    let line = dev.wait_for("\n");
    eprintln!(
        "author_dev: edit -> reloaded in {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        line.trim()
    );
    has(
        &s,
        "denied by plugin guard (request policy): dev v2: input 0 has \"forbidden\"",
    );

    // A syntax error: the compiler's output, and the installed version keeps serving.
    edit(&lib, "struct ", "struct struct ");
    dev.wait_for("keeps serving");
    let err = dev.stderr();
    assert!(
        err.contains("error") && err.contains("the build failed"),
        "{err}"
    );
    assert!(
        err.contains("src/lib.rs"),
        "the compiler's output names the file:\n{err}"
    );
    has(
        &s,
        "denied by plugin guard (request policy): dev v2: input 0 has \"forbidden\"",
    );

    // Fixed, and the new version requests kv: asked for kv only; "n" installs without it.
    // (The source in one write, then the manifest: a round may run between the two.)
    let v3 = std::fs::read_to_string(&lib)
        .unwrap()
        .replacen("struct struct ", "struct ", 1)
        .replacen(
            "format!(\"dev v2: input {i} has {word:?}\")",
            "format!(\"dev v3 ({}): input {i} has {word:?}\", \
             match llmos_plugin::kv::set(\"seen\", b\"1\") { Ok(()) => \"kv ok\".to_string(), \
             Err(Error::Denied(c)) => format!(\"{c} denied\"), Err(e) => format!(\"{e:?}\") })",
            1,
        );
    assert!(v3.contains("dev v3") && !v3.contains("struct struct"));
    std::fs::write(&lib, v3).unwrap();
    edit(
        &project.join("manifest.toml"),
        "capabilities = []",
        "capabilities = [\"kv\"]",
    );
    let asked = dev.wait_for("grant kv to guard? [y/N] ");
    assert!(asked.contains("guard now also requests kv"), "{asked}");
    dev.answer("n");
    let reloaded = dev.wait_for("reloaded guard");
    assert!(
        reloaded.contains("not granted: calls that need kv will be denied"),
        "{reloaded}"
    );
    let after = dev.wait_for("    llmos plugin grant guard kv\n");
    assert!(after.contains("effective (none)"), "{after}");
    has(
        &s,
        "denied by plugin guard (request policy): dev v3 (kv denied): input 0 has \"forbidden\"",
    );
    // Granted later, the way the output says (the CLI goes to the server too).
    ok(&home, w, &["plugin", "grant", "guard", "kv"]);
    has(
        &s,
        "denied by plugin guard (request policy): dev v3 (kv ok): input 0 has \"forbidden\"",
    );
    // A touch that changes nothing built is not an upgrade.
    std::fs::write(project.join("notes.txt"), "n").unwrap();
    let same = dev.wait_for("\n");
    assert!(same.starts_with("unchanged guard 0.1.0 sha256 "), "{same}");
    let out = dev.interrupt();
    assert!(out.trim_end().ends_with("stopped"), "{out}");
    let list = ok(&home, w, &["plugin", "list"]);
    assert!(list.contains("guard") && list.contains("kv"), "{list}");
    assert!(s.terminate());

    // No server: --once --yes installs into the store directly, granting without asking.
    edit(
        &project.join("manifest.toml"),
        "capabilities = [\"kv\"]",
        "capabilities = [\"kv\", \"secret:token\"]",
    );
    let once = ok(&home, w, &["plugin", "dev", "guard", "--once", "--yes"]);
    assert!(once.contains("no server running"), "{once}");
    assert!(
        once.contains("grant secret:token to guard? [y/N] y (--yes)"),
        "{once}"
    );
    assert!(
        once.contains("upgraded guard 0.1.0 -> 0.1.0 (policy)"),
        "{once}"
    );
    let info = ok(&home, w, &["plugin", "info", "guard"]);
    assert!(
        info.lines().any(|l| l.starts_with("  effective")
            && l.contains("kv")
            && l.contains("secret:token")),
        "{info}"
    );
}

#[test]
fn plugin_dev_refuses_bad_input_and_unapproved_limits() {
    let home = Home::new();
    let work = tempfile::tempdir().unwrap();
    let out = llmos(&home, work.path(), &["plugin", "dev", "nowhere", "--once"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("nowhere/manifest.toml") && e.contains("llmos plugin new"),
        "{e}"
    );
    let out = llmos(&home, work.path(), &["plugin", "dev", "--interval-ms", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("--interval-ms") && e.contains("10..=60000"),
        "{e}"
    );

    // Raised limits: a "no" (or no answer) installs nothing and fails `--once`; a "y" installs.
    let w = work.path();
    ok(
        &home,
        w,
        &[
            "plugin",
            "new",
            "slow",
            "--world",
            "preprocessor",
            "--lang",
            "rust",
        ],
    );
    edit(
        &w.join("slow/manifest.toml"),
        "\n[config.suffix]",
        "\n[limits]\ntimeout_ms = 5000\n\n[config.suffix]",
    );
    let answered = |answer: &str| {
        let mut c = llmos(&home, w, &["plugin", "dev", "slow", "--once"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(answer.as_bytes())
            .unwrap();
        c.wait_with_output().unwrap()
    };
    let out = answered("n\n");
    assert!(!out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("slow raises limits above the defaults: timeout_ms 5000 (default 100)")
            && said.contains("approve these limits? [y/N] n")
            && said.contains("slow 0.1.0 not installed: its raised limits were not approved"),
        "{said}"
    );
    let list = ok(&home, w, &["plugin", "list"]);
    assert!(list.contains("no plugins installed"), "{list}");
    let out = answered("y\n");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("raised limit (approved) timeout_ms 5000"),
        "{}",
        text(&out)
    );

    // A build error fails `--once` with the compiler's output; the installed version stays.
    edit(&w.join("slow/src/lib.rs"), "struct ", "struct struct ");
    let out = llmos(&home, w, &["plugin", "dev", "slow", "--once"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("the build failed") && e.contains("src/lib.rs"),
        "{e}"
    );
    let info = ok(&home, w, &["plugin", "info", "slow"]);
    assert!(info.starts_with("slow 0.1.0 (preprocessor)"), "{info}");
}

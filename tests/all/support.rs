//! Shared helpers: run the real binary with an isolated home, and make sure the runtime
//! and the default models are present once per test run (fetched by the test command
//! itself, cached across runs).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

/// The `llmos` binary built for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_llmos");

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Models shared by every test of this run (pulled once; a second run fetches nothing).
pub fn shared_models() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("models")
}

/// Manifests that `llmos models pull` recorded for this machine in [`ready`]: a model trained
/// from its recipe whose files differ from the shipped sha256 (another CPU rounds the base
/// model's embeddings differently) gets a manifest with this machine's digests, which every
/// home must see to load the shared files.
pub fn shared_manifests() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("manifests")
}

/// An isolated llmos home; fixture manifests are visible, models are shared.
pub struct Home {
    pub dir: tempfile::TempDir,
    pub models: PathBuf,
}

impl Home {
    /// A home that sees the fixture manifests and the shared model folder.
    pub fn new() -> Self {
        ready();
        Self::with_models(shared_models())
    }

    /// A home with its own, empty, model folder.
    pub fn isolated() -> Self {
        ready();
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        Self::at(dir, models)
    }

    fn with_models(models: PathBuf) -> Self {
        Self::at(tempfile::tempdir().unwrap(), models)
    }

    fn at(dir: tempfile::TempDir, models: PathBuf) -> Self {
        let fixtures = repo().join("tests/fixtures/manifests");
        let manifests = dir.path().join("manifests");
        std::fs::create_dir_all(&manifests).unwrap();
        std::fs::write(
            dir.path().join("llmos.toml"),
            format!(
                "[models]\ndir = {:?}\nmanifest_dirs = [{:?}, {:?}, {:?}]\n",
                models.display().to_string(),
                fixtures.display().to_string(),
                shared_manifests().display().to_string(),
                manifests.display().to_string()
            ),
        )
        .unwrap();
        Self { dir, models }
    }

    /// Folder for extra manifests of this home.
    pub fn manifests(&self) -> PathBuf {
        self.dir.path().join("manifests")
    }

    /// `llmos ARGS` with this home.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("LLMOS_HOME", self.dir.path())
            .env_remove("LLMOS_CONFIG")
            .env_remove("LLMOS_ORT_DYLIB")
            .env_remove("ORT_DYLIB_PATH")
            .env_remove("LLMOS_MODELS_DIR")
            .env("LLMOS_LOG", "warn");
        c
    }

    /// Runs and expects success; returns stdout parsed as JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.cmd(args).output().unwrap();
        assert!(
            out.status.success(),
            "llmos {args:?} failed:\n{}",
            text(&out)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("llmos {args:?}: stdout is not JSON ({e}):\n{}", text(&out)))
    }

    /// Runs and expects failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().unwrap();
        assert!(
            !out.status.success(),
            "llmos {args:?} should fail:\n{}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

/// stdout and stderr of a finished command, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Installs the runtime and pulls the default and fixture models once per run.
pub fn ready() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let home = Home::with_models(shared_models());
        for args in [
            &["runtime", "install"][..],
            &["models", "pull", "--all"],
            &[
                "models",
                "pull",
                "add",
                "dtypes",
                "bad",
                "tiny-classifier",
                "tiny-ner",
                "tiny-llama",
            ],
        ] {
            let out = home.cmd(args).output().unwrap();
            assert!(
                out.status.success(),
                "setup `llmos {args:?}` failed:\n{}",
                text(&out)
            );
        }
        // Keep what the pulls recorded for this machine (see `shared_manifests`).
        let shared = shared_manifests();
        std::fs::create_dir_all(&shared).unwrap();
        for e in std::fs::read_dir(home.manifests()).into_iter().flatten() {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == "toml") {
                std::fs::copy(&path, shared.join(path.file_name().unwrap())).unwrap();
            }
        }
    });
}

/// Cosine similarity.
pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// A JSON array of numbers as a vector.
pub fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// A running `llmos serve` on a free loopback port; killed on drop.
pub struct Server {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
}

impl Home {
    /// Starts `llmos serve --listen 127.0.0.1:0 ARGS` and waits until it listens.
    pub fn serve(&self, args: &[&str]) -> Server {
        use std::io::BufRead;
        let mut all = vec!["serve", "--listen", "127.0.0.1:0"];
        all.extend(args);
        let mut child = self
            .cmd(&all)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("llmos listening on ")
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!("llmos serve did not start: first line {line:?}")
            })
            .to_string();
        Server { child, url }
    }
}

impl Server {
    /// A server started by a test itself (e.g. on another address); killed on drop.
    pub fn from_child(child: std::process::Child, url: String) -> Self {
        Self { child, url }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `url + path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Stops with SIGTERM and returns whether it exited cleanly (status 0).
    pub fn terminate(mut self) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let ok = self.child.wait().map(|s| s.success()).unwrap_or(false);
        std::mem::forget(self);
        ok
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Python with the real client libraries (`openai`, `tritonclient`), set up by
/// scripts/test.sh. Fails the test, saying how to get it, when it is missing.
pub fn client_python() -> PathBuf {
    if let Some(p) = std::env::var_os("LLMOS_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let p = repo().join("target/pyenv/bin/python");
    assert!(
        p.exists(),
        "the client-library tests need Python with openai and tritonclient: run ./scripts/test.sh \
         (it creates that environment and sets LLMOS_TEST_PYTHON)"
    );
    p
}

/// Calls `method path` on a running server with an optional key and JSON body; returns the
/// status and the JSON answer (`null` when the body is not JSON).
pub fn call(
    s: &Server,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let client = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .unwrap();
    let mut r = client.request(method.parse().unwrap(), s.at(path));
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().unwrap();
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

/// Creates an API key with `scopes` through the CLI; returns its secret.
pub fn create_key(home: &Home, scopes: &[&str]) -> String {
    let mut args = vec!["keys", "create"];
    for s in scopes {
        args.extend(["--scope", s]);
    }
    home.json(&args)["secret"].as_str().unwrap().to_string()
}

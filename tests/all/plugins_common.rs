//! Shared test helpers: building the plugins once, a host in a temporary data location, and a
//! deterministic test double of the inference backend.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use llmos::plugins::inference::{Answer, Budget, InferenceFuture, ready};
use llmos::plugins::registry::{self, InstallRequest};
use llmos::plugins::{
    EngineSettings, EntitySpan, HostSettings, InferenceBackend, InferenceError, LabelScore,
    PluginHost, Request, RequestContext,
};

/// The plugins workspace.
pub(crate) fn plugins_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins")
}

/// Builds every plugin once per test process (`cargo build --target wasm32-wasip2 --release`
/// in plugins/, target dir plugins/target) and returns the output folder.
pub(crate) fn built() -> &'static Path {
    static OUT: OnceLock<PathBuf> = OnceLock::new();
    OUT.get_or_init(|| {
        let dir = plugins_dir();
        let target = dir.join("target");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--target", "wasm32-wasip2", "--release", "--quiet"])
            .current_dir(&dir)
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .status()
            .expect("running cargo to build the plugins");
        assert!(
            status.success(),
            "building plugins failed (is the wasm32-wasip2 target installed? `rustup target add wasm32-wasip2`)"
        );
        target.join("wasm32-wasip2").join("release")
    })
}

/// Path of a plugin's component; `dir` is its folder under plugins/ (e.g. `testing/echo`).
pub(crate) fn wasm(dir: &str) -> PathBuf {
    let krate = Path::new(dir).file_name().unwrap().to_str().unwrap();
    let file = if dir.starts_with("testing/") {
        format!("test_{krate}.wasm")
    } else {
        format!("{}.wasm", krate.replace('-', "_"))
    };
    let p = built().join(file);
    assert!(p.exists(), "{} was not built", p.display());
    p
}

/// Path of a plugin's manifest.
pub(crate) fn manifest(dir: &str) -> PathBuf {
    plugins_dir().join(dir).join("manifest.toml")
}

/// A test double of the models (never shipped): deterministic answers computed from the text.
/// Models: `minilm` (embed: 4 numbers from the text; classify: `positive` when the text
/// contains "good"), `pii-ner` (entities: the capitalised words Alice, Bob (PER) and Berlin
/// (LOC)). Any other model is unknown. A text costs one token per word.
pub(crate) struct FakeModels;

fn answer<T: Send + 'static>(texts: &[String], r: Result<T, InferenceError>) -> InferenceFuture<T> {
    let tokens = texts.iter().map(|t| t.split_whitespace().count()).sum();
    ready(r.map(|value| Answer { value, tokens }))
}

impl InferenceBackend for FakeModels {
    fn embed(&self, model: &str, texts: Vec<String>, _: Budget) -> InferenceFuture<Vec<Vec<f32>>> {
        let r = FakeModels::embed(model, &texts);
        answer(&texts, r)
    }

    fn classify(
        &self,
        model: &str,
        texts: Vec<String>,
        _: Budget,
    ) -> InferenceFuture<Vec<Vec<LabelScore>>> {
        let r = FakeModels::classify(model, &texts);
        answer(&texts, r)
    }

    fn entities(&self, model: &str, text: String, _: Budget) -> InferenceFuture<Vec<EntitySpan>> {
        let r = FakeModels::entities(model, &text);
        answer(&[text], r)
    }
}

impl FakeModels {
    fn embed(model: &str, texts: &[String]) -> Result<Vec<Vec<f32>>, InferenceError> {
        if model != "minilm" {
            return Err(InferenceError::UnknownModel(model.into()));
        }
        Ok(texts
            .iter()
            .map(|t| {
                vec![
                    t.len() as f32,
                    t.split_whitespace().count() as f32,
                    t.bytes().filter(u8::is_ascii_uppercase).count() as f32,
                    1.0,
                ]
            })
            .collect())
    }

    fn classify(model: &str, texts: &[String]) -> Result<Vec<Vec<LabelScore>>, InferenceError> {
        if model != "minilm" {
            return Err(InferenceError::UnknownModel(model.into()));
        }
        Ok(texts
            .iter()
            .map(|t| {
                let pos = if t.contains("good") { 0.9 } else { 0.2 };
                let mut v = vec![
                    LabelScore {
                        label: "positive".into(),
                        score: pos,
                    },
                    LabelScore {
                        label: "negative".into(),
                        score: 1.0 - pos,
                    },
                ];
                v.sort_by(|a, b| b.score.total_cmp(&a.score));
                v
            })
            .collect())
    }

    fn entities(model: &str, text: &str) -> Result<Vec<EntitySpan>, InferenceError> {
        if model != "pii-ner" {
            return Err(InferenceError::UnknownModel(model.into()));
        }
        let mut out = Vec::new();
        for (word, label) in [("Alice", "PER"), ("Bob", "PER"), ("Berlin", "LOC")] {
            for (start, _) in text.match_indices(word) {
                out.push(EntitySpan {
                    label: label.into(),
                    start,
                    end: start + word.len(),
                    text: word.into(),
                    score: 0.99,
                });
            }
        }
        Ok(out)
    }
}

/// Host settings for tests: few threads and slots.
pub(crate) fn settings() -> HostSettings {
    HostSettings {
        engine: EngineSettings {
            max_instances: 16,
            ..EngineSettings::default()
        },
        threads: 2,
        ..HostSettings::default()
    }
}

/// A host in a fresh temporary data location, with the test double of the models.
pub(crate) fn host() -> (tempfile::TempDir, PluginHost) {
    let dir = tempfile::tempdir().unwrap();
    let host = PluginHost::open(dir.path(), settings(), Some(Arc::new(FakeModels))).unwrap();
    (dir, host)
}

/// Installs the plugin in `dir` with grants and config; returns its name.
pub(crate) fn install(
    host: &PluginHost,
    dir: &str,
    grants: &[&str],
    config: &[(&str, &str)],
) -> String {
    let req = InstallRequest {
        component: wasm(dir),
        manifest: Some(manifest(dir)),
        grants: grants.iter().map(|s| s.to_string()).collect(),
        sha256: None,
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        // The repository's own guests; tests of the approval itself are in plugins_hardening.
        approve_limits: true,
        signature: None,
    };
    registry::install(host, &req)
        .unwrap_or_else(|e| panic!("installing {dir}: {e}"))
        .record
        .manifest
        .name
}

/// A request context for tests.
pub(crate) fn ctx(model: &str) -> RequestContext {
    RequestContext {
        request_id: "req-1".into(),
        key_id: Some("key-a".into()),
        model: model.into(),
        task: "embed".into(),
        route: "test".into(),
    }
}

/// A request with these inputs.
pub(crate) fn request(inputs: &[&str]) -> Request {
    Request {
        context: ctx("minilm"),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
    }
}

/// A loopback HTTP server (127.0.0.1, port chosen by the OS) that counts connections and
/// answers every request with 200, handing each request's head and body to the test.
pub(crate) struct TestServer {
    /// Where it listens.
    pub(crate) addr: std::net::SocketAddr,
    /// Connections accepted so far.
    pub(crate) connections: Arc<std::sync::atomic::AtomicUsize>,
    /// (request head, body) of each request.
    pub(crate) requests: std::sync::mpsc::Receiver<(String, String)>,
}

/// Starts a [`TestServer`].
pub(crate) fn serve() -> TestServer {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (tx, requests) = std::sync::mpsc::channel();
    let count = connections.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0usize);
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let _ = tx.send((head, String::from_utf8_lossy(&body).into_owned()));
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    TestServer {
        addr,
        connections,
        requests,
    }
}

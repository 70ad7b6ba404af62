//! What the Python and JavaScript authoring tests share (author_python.rs, author_js.rs):
//! the tutorial's steps run through the real binary — `plugin new`, `plugin build`,
//! `plugin install` — and a template preprocessor checked behind `llmos serve`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{Home, Server, call, cosine, floats, text};

/// Runs `cmd` and expects success; returns stdout.
pub fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?} failed:\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `cmd` and expects failure; returns stderr.
pub fn fails(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        !out.status.success(),
        "{cmd:?} should fail:\n{}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A project written by `llmos plugin new` in a temporary folder, with a home to install into.
pub struct Project {
    pub home: Home,
    pub work: tempfile::TempDir,
    pub name: String,
    /// The project folder (`work/NAME`).
    pub dir: PathBuf,
}

impl Project {
    /// `llmos plugin new NAME --world WORLD --lang LANG` in a new folder.
    pub fn new(lang: &str, name: &str, world: &str) -> Self {
        let home = Home::new();
        let work = tempfile::tempdir().unwrap();
        let out = ok(home
            .cmd(&["plugin", "new", name, "--world", world, "--lang", lang])
            .current_dir(work.path()));
        let dir = work.path().join(name);
        assert!(dir.is_dir(), "{out}");
        for f in ["manifest.toml", "example.txt", "wit/worlds.wit"] {
            assert!(dir.join(f).is_file(), "plugin new wrote no {f}: {out}");
        }
        let manifest = std::fs::read_to_string(dir.join("manifest.toml")).unwrap();
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "{manifest}"
        );
        assert!(
            manifest.contains(&format!("world = \"{world}\"")),
            "{manifest}"
        );
        Self {
            home,
            work,
            name: name.to_string(),
            dir,
        }
    }

    /// `llmos ARGS` run in the project folder.
    pub fn llmos(&self, args: &[&str]) -> Command {
        let mut c = self.home.cmd(args);
        c.current_dir(&self.dir);
        c
    }

    /// `llmos plugin build` in the project: returns the component's path.
    pub fn build(&self) -> PathBuf {
        let out = ok(&mut self.llmos(&["plugin", "build"]));
        let wasm = self.dir.join("dist").join(format!("{}.wasm", self.name));
        assert!(
            out.contains(&format!("dist/{}.wasm", self.name)) && out.contains("sha256"),
            "{out}"
        );
        let size = std::fs::metadata(&wasm).unwrap().len();
        assert!(size > 100_000, "{} is {size} bytes", wasm.display());
        assert!(
            !self
                .dir
                .join("dist")
                .join(format!("{}.wasm.partial", self.name))
                .exists(),
            "a partial file was left behind"
        );
        wasm
    }

    /// `llmos plugin install dist/NAME.wasm --manifest manifest.toml EXTRA…`: the report.
    pub fn install(&self, extra: &[&str]) -> String {
        let wasm = format!("dist/{}.wasm", self.name);
        let mut args = vec!["plugin", "install", &wasm, "--manifest", "manifest.toml"];
        args.extend(extra);
        ok(&mut self.llmos(&args))
    }

    /// Appends TOML to the home's llmos.toml.
    pub fn add_config(&self, toml: &str) {
        let cfg = self.home.dir.path().join("llmos.toml");
        let mut t = std::fs::read_to_string(&cfg).unwrap();
        t.push_str(toml);
        std::fs::write(&cfg, t).unwrap();
    }
}

/// The embedding `/v1/embeddings` returns for `input` (through minilm's pipeline).
fn embed(s: &Server, input: &str) -> Vec<f64> {
    let (code, body) = call(
        s,
        "POST",
        "/v1/embeddings",
        None,
        Some(json!({"model": "minilm", "input": [input]})),
    );
    assert_eq!(code, 200, "{body}");
    floats(&body["data"][0]["embedding"])
}

/// minilm's embedding of `text` itself: KServe, whose route has an empty chain.
fn reference(s: &Server, text: &str) -> Vec<f64> {
    let (code, body) = call(
        s,
        "POST",
        "/v2/models/minilm/infer",
        None,
        Some(
            json!({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [text]}]}),
        ),
    );
    assert_eq!(code, 200, "{body}");
    let out = body["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "embedding")
        .unwrap_or_else(|| panic!("{body}"));
    floats(&out["data"])
}

/// Asserts that `got` is the embedding of `expected` (and closer to it than to `other`).
fn assert_embeds(s: &Server, got: &[f64], expected: &str, other: &str) {
    let (want, not) = (reference(s, expected), reference(s, other));
    let (c, d) = (cosine(got, &want), cosine(got, &not));
    assert!(
        c > 0.9999 && d < c,
        "cosine {c} with {expected:?}, {d} with {other:?}"
    );
}

/// The template preprocessor of `lang`, from `plugin new` to HTTP: upper-cases and appends
/// `suffix` with the kv call counter (`kv` requested and granted), and reports the denial of
/// `inference.embed` (imported by the whole world, never requested: a denied import).
pub fn preprocessor_round_trip(lang: &str) -> Project {
    let p = Project::new(lang, &format!("shout-{lang}"), "preprocessor");
    p.build();
    let name = p.name.clone();
    let report = p.install(&["--grant", "kv", "--set", "suffix= #{n}"]);
    assert!(report.contains("effective kv"), "{report}");
    for iface in ["inference", "secrets"] {
        assert!(
            report.contains(&format!("denied import llmos:plugin/{iface}@0.1.0")),
            "{report}"
        );
    }
    assert!(
        !report.contains("denied import llmos:plugin/kv"),
        "{report}"
    );
    let cache = p.home.dir.path().join("plugin-cache");
    let compiled = std::fs::read_dir(&cache).map(Iterator::count).unwrap_or(0);
    assert_eq!(
        compiled,
        1,
        "install compiles the component into {}",
        cache.display()
    );

    // The test machine is shared by parallel tests: a kv write (fsync) or a first call can
    // pass the template's 100 ms there, and the counter would read "?" (handled, not failed).
    ok(&mut p.llmos(&["plugin", "limits", &name, "--timeout-ms", "5000"]));
    p.add_config(&format!(
        "\n[pipelines.minilm]\npreprocessors = [\"{name}\"]\n\n\
         [pipelines.minilm.routes.\"/v2/models/{{name}}/infer\"]\npreprocessors = []\n"
    ));
    let s = p.home.serve(&["--models", "minilm"]);
    // The counter is in kv: each call sees the previous one's value.
    let first = embed(&s, "hello");
    assert_embeds(&s, &first, "HELLO #1", "hello");
    let second = embed(&s, "hello");
    assert_embeds(&s, &second, "HELLO #2", "HELLO #1");
    // `embed:` calls inference.embed, which the host denies (not requested, not granted).
    let denied = embed(&s, "embed: hi");
    assert_embeds(
        &s,
        &denied,
        "embed failed: denied: inference:minilm",
        "HELLO #3",
    );
    assert!(s.terminate(), "serve did not stop cleanly");

    let audit = ok(&mut p.llmos(&["plugin", "audit"]));
    assert!(
        audit
            .lines()
            .any(|l| l.contains("denied") && l.contains(&name) && l.contains("inference:minilm")),
        "{audit}"
    );
    let info = ok(&mut p.llmos(&["plugin", "info", &name]));
    assert!(
        info.contains("denied import llmos:plugin/inference@0.1.0"),
        "{info}"
    );
    assert!(
        info.contains(", 1 of 10000 keys"),
        "the counter is one kv key: {info}"
    );
    p
}

/// Builds and installs the policy template, then runs its example through `llmos run`:
/// the example contains the denied word, so the request is denied by the plugin.
pub fn policy_denies_its_example(lang: &str) {
    let p = Project::new(lang, &format!("guard-{lang}"), "policy");
    p.build();
    let report = p.install(&[]);
    assert!(report.contains("(policy)"), "{report}");
    p.add_config(&format!(
        "\n[pipelines.minilm]\nrequest_policies = [\"{}\"]\n",
        p.name
    ));
    let example = std::fs::read_to_string(p.dir.join("example.txt")).unwrap();
    let err = fails(&mut p.llmos(&["run", "--model", "minilm", "--text", example.trim()]));
    assert!(
        err.contains(&format!("denied by plugin \"{}\"", p.name))
            && err.contains("the input contains 'forbidden'"),
        "{err}"
    );
    ok(&mut p.llmos(&["run", "--model", "minilm", "--text", "a fine text"]));
}

/// Builds and installs the integration template (install checks the world's exports).
pub fn integration_installs(lang: &str) {
    let p = Project::new(lang, &format!("hook-{lang}"), "integration");
    p.build();
    let report = p.install(&[]);
    assert!(report.contains("(integration)"), "{report}");
}

/// Every file of `generated` is the same as the template's `common/` or `<world>/` copy
/// (`prefix` is where the template keeps them, e.g. `types`).
pub fn assert_same_files(generated: &Path, template: &Path, world: &str, prefix: &str) {
    let mut n = 0;
    for f in walk(generated) {
        let rel = Path::new(prefix).join(f.strip_prefix(generated).unwrap());
        // The world's files overlay the common ones (as `plugin new` writes them).
        let shipped = [
            template.join(world).join(&rel),
            template.join("common").join(&rel),
        ]
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{} is generated but not in {}",
                rel.display(),
                template.display()
            )
        });
        assert_eq!(
            std::fs::read(&f).unwrap(),
            std::fs::read(&shipped).unwrap(),
            "{} differs from what the toolchain generates from the WIT: regenerate it",
            shipped.display()
        );
        n += 1;
    }
    assert!(n > 3, "only {n} files generated in {}", generated.display());
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// One row of the authoring figures in BENCHMARKS.md ("Plugin authoring").
struct Figures {
    what: String,
    size: u64,
    build: Duration,
    install: Duration,
    first_after_restart: Duration,
    warm: (Duration, Duration),
}

/// (median, p99) of call times.
fn median_p99(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

/// Installs `wasm` into a fresh host (compiling it), reopens the host as a restart would,
/// times the first call and then `calls` calls with a 1 KiB input (fresh instance each, the
/// production path).
fn measure(
    what: &str,
    (wasm, manifest): (&Path, &Path),
    build: Duration,
    calls: usize,
    starts: &str,
) -> Figures {
    use crate::plugins_common::{FakeModels, request, settings};
    use llmos::plugins::PluginHost;
    use llmos::plugins::registry::{self, InstallRequest};
    use std::sync::Arc;

    let home = tempfile::tempdir().unwrap();
    let open = || PluginHost::open(home.path(), settings(), Some(Arc::new(FakeModels))).unwrap();
    let host = open();
    let req = InstallRequest {
        component: wasm.to_path_buf(),
        manifest: Some(manifest.to_path_buf()),
        grants: vec!["kv".into()],
        sha256: None,
        approve_limits: true,
        ..Default::default()
    };
    let t = Instant::now();
    let name = registry::install(&host, &req).unwrap().record.manifest.name;
    let install = t.elapsed();
    drop(host);
    let cache = home.path().join("plugin-cache");
    let stamp = |p: &Path| -> Vec<_> {
        let mut v: Vec<_> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().modified().unwrap())
            .collect();
        v.sort();
        v
    };
    let before = stamp(&cache);

    let host = open();
    let t = Instant::now();
    host.preprocess(&name, request(&["hello"])).unwrap();
    let first_after_restart = t.elapsed();
    assert_eq!(stamp(&cache), before, "the restart recompiled {what}");

    let input = "a".repeat(1024);
    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        let out = host.preprocess(&name, request(&[&input])).unwrap();
        times.push(t.elapsed());
        assert!(out[0].starts_with(starts), "{what}: {}", &out[0][..16]);
    }
    Figures {
        what: what.into(),
        size: std::fs::metadata(wasm).unwrap().len(),
        build,
        install,
        first_after_restart,
        warm: median_p99(times),
    }
}

/// The template preprocessor of `lang` without its kv counter (whose fsync per call would
/// be measured instead of the language), built with `backend` for JS. The Rust template
/// keeps no counter; it builds in the Rust authoring tests' cargo target folder (the SDK's
/// dependencies built once, as for an author's second project).
fn template_without_counter(lang: &str, backend: Option<&str>) -> (Project, Duration) {
    let p = Project::new(
        lang,
        &format!("bench-{}", backend.unwrap_or(lang)),
        "preprocessor",
    );
    if lang == "rust" {
        let t = Instant::now();
        let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("author-rust-target");
        ok(p.llmos(&["plugin", "build"])
            .env("CARGO_TARGET_DIR", target)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS"));
        return (p, t.elapsed());
    }
    let (file, from, to) = match lang {
        "python" => ("app.py", "n = count_call()", "n = \"0\""),
        "ts" => ("app.ts", "const n = countCall();", "const n = '0';"),
        _ => ("app.js", "const n = countCall();", "const n = '0';"),
    };
    let path = p.dir.join(file);
    let src = std::fs::read_to_string(&path).unwrap();
    assert!(src.contains(from), "{file} no longer has {from:?}");
    std::fs::write(&path, src.replace(from, to)).unwrap();
    if let Some(b) = backend {
        let path = p.dir.join("package.json");
        let pkg = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            pkg.replace("\"backend\": \"quickjs\"", &format!("\"backend\": \"{b}\"")),
        )
        .unwrap();
    }
    let t = Instant::now();
    p.build();
    (p, t.elapsed())
}

/// BENCHMARKS.md, "Plugin authoring": `cargo test -p llmos --test all -- --ignored
/// author_figures --nocapture` (after scripts/test.sh has installed the toolchains);
/// `LLMOS_AUTHOR_FIGURES=ts,python` measures only those languages (and the shipped Rust row).
#[test]
#[ignore = "measurement: prints the table of BENCHMARKS.md"]
fn author_figures() {
    let mut rows = Vec::new();
    let normalize = crate::plugins_common::wasm("normalize");
    let m = crate::plugins_common::manifest("normalize");
    let normalize = (normalize.as_path(), m.as_path());
    rows.push(measure(
        "Rust (shipped normalize)",
        normalize,
        Duration::ZERO,
        1000,
        "aaaa",
    ));
    let only = std::env::var("LLMOS_AUTHOR_FIGURES").ok();
    for (lang, backend, calls) in [
        ("rust", None, 1000),
        ("python", None, 300),
        ("js", Some("quickjs"), 1000),
        ("js", Some("starlingmonkey"), 300),
        ("ts", Some("quickjs"), 1000),
    ] {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|l| l == lang))
        {
            continue;
        }
        let (p, build) = template_without_counter(lang, backend);
        let what = match (lang, backend) {
            ("rust", _) => "rust template (SDK)".to_string(),
            (_, b) => format!("{lang} {}", b.unwrap_or("componentize-py")),
        };
        let wasm = p.dir.join("dist").join(format!("{}.wasm", p.name));
        let manifest = p.dir.join("manifest.toml");
        rows.push(measure(&what, (&wasm, &manifest), build, calls, "AAAA"));
    }
    println!(
        "| template | component | build | install (compile) | first call after restart | fresh-instance call, 1 KiB (median / p99) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {:.1} MiB | {:.1} s | {:.2} s | {:.1} ms | {:.0} µs / {:.0} µs |",
            r.what,
            r.size as f64 / 1048576.0,
            r.build.as_secs_f64(),
            r.install.as_secs_f64(),
            r.first_after_restart.as_secs_f64() * 1e3,
            r.warm.0.as_secs_f64() * 1e6,
            r.warm.1.as_secs_f64() * 1e6,
        );
    }
}

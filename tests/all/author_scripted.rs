//! What the Python and JavaScript authoring tests share (author_python.rs, author_js.rs):
//! the tutorial's steps run through the real binary — `plugin new`, `plugin build`,
//! `plugin install` — and a template preprocessor checked behind `llmos serve`.

use std::path::{Path, PathBuf};
use std::process::Command;

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
        let shipped = [
            template.join("common").join(&rel),
            template.join(world).join(&rel),
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

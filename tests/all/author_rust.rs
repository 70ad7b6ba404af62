//! Rust plugin authoring through the real binary, as the tutorial in docs/plugins.md runs it:
//! `llmos plugin new` → `llmos plugin build` → `llmos plugin install` → a pipeline behind
//! `llmos serve`, one plugin per world; and the authoring commands' errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{Home, Server, call, cosine, floats, repo, text};

/// One cargo target folder for every project of every run: wit-bindgen builds once.
fn target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("author-rust-target")
}

/// `llmos ARGS` in `cwd`, the way an author runs it (cargo from the toolchain of this test).
fn llmos(home: &Home, cwd: &Path, args: &[&str]) -> Command {
    let mut c = home.cmd(args);
    c.current_dir(cwd)
        .env("CARGO_TARGET_DIR", target_dir())
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    c
}

/// Runs and expects success; returns stdout.
fn ok(home: &Home, cwd: &Path, args: &[&str]) -> String {
    let out = llmos(home, cwd, args).output().unwrap();
    assert!(out.status.success(), "llmos {args:?}:\n{}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// Runs and expects failure; returns stderr.
fn fails(home: &Home, cwd: &Path, args: &[&str]) -> String {
    let out = llmos(home, cwd, args).output().unwrap();
    assert!(
        !out.status.success(),
        "llmos {args:?} should fail:\n{}",
        text(&out)
    );
    String::from_utf8(out.stderr).unwrap()
}

/// The tutorial's three commands for plugin `name` of `world` in `work/name`; returns the
/// time they took.
fn author(home: &Home, work: &Path, name: &str, world: &str, set: &[&str]) -> Duration {
    let start = Instant::now();
    let made = ok(
        home,
        work,
        &["plugin", "new", name, "--world", world, "--lang", "rust"],
    );
    assert!(made.contains("llmos plugin build"), "{made}");
    let dir = work.join(name);
    // As docs/plugins.md shows it: one dependency, the SDK that `plugin new` wrote.
    let cargo = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let sdk = home.dir.path().join("sdk/rust/llmos-plugin-0.1.1");
    assert!(
        cargo.contains(&format!(
            "llmos-plugin = {{ path = \"{}\", features = [\"{world}\"] }}",
            sdk.display()
        )) && sdk.join("Cargo.toml").is_file(),
        "{cargo}"
    );
    for f in [
        "Cargo.lock",
        "README.md",
        ".gitignore",
        "src/lib.rs",
        "wit/worlds.wit",
    ] {
        assert!(dir.join(f).is_file(), "plugin new wrote no {f}");
    }
    let built = ok(home, &dir, &["plugin", "build"]);
    let wasm = format!("dist/{name}.wasm");
    assert!(
        built.contains(&wasm) && built.contains("sha256") && dir.join(&wasm).is_file(),
        "{built}"
    );
    // The digest `plugin build` printed, checked by install (`--sha256`).
    let sha = llmos::plugins::engine::sha256_hex(&std::fs::read(dir.join(&wasm)).unwrap());
    assert!(built.contains(&sha), "{built}");
    let mut args = vec!["plugin", "install", &wasm, "--manifest", "manifest.toml"];
    args.extend(set);
    args.extend(["--sha256", &sha]);
    let installed = ok(home, &dir, &args);
    assert!(
        installed.contains(&format!("installed {name} 0.1.0 ({world})")),
        "{installed}"
    );
    let took = start.elapsed();
    eprintln!(
        "author_rust: {name} ({world}): plugin new + build + install: 3 commands, {:.1} s, component {} bytes",
        took.as_secs_f64(),
        std::fs::metadata(dir.join(&wasm)).unwrap().len()
    );
    took
}

/// `llmos embed TEXT…` (no pipeline: the model alone).
fn embed(home: &Home, texts: &[&str]) -> Vec<Vec<f64>> {
    let mut args = vec!["embed"];
    args.extend(texts);
    let out = home.json(&args);
    let all = out["embeddings"].as_array().unwrap();
    assert_eq!(all.len(), texts.len(), "{out}");
    all.iter().map(floats).collect()
}

/// What the model saw of "hello world" through minilm's pipeline; `Err(message)` when the
/// pipeline refused the request.
fn through(s: &Server) -> Result<Vec<f64>, String> {
    let (code, body) = call(
        s,
        "POST",
        "/v1/embeddings",
        None,
        Some(json!({"model": "minilm", "input": ["hello world"]})),
    );
    if code == 200 {
        Ok(floats(&body["data"][0]["embedding"]))
    } else {
        Err(format!("{code} {body}"))
    }
}

/// `seen` is the embedding of `want`'s text.
fn is(seen: Result<Vec<f64>, String>, want: &[f64], what: &str) {
    let seen = seen.unwrap_or_else(|e| panic!("{what}: {e}"));
    let c = cosine(&seen, want);
    assert!(c > 0.9999, "{what}: cosine {c}");
}

/// Starts `llmos serve --models minilm` with plugin logs (info) written to `log`.
fn serve_logging(home: &Home, log: &Path) -> Server {
    use std::io::BufRead;
    let mut child = home
        .cmd(&["serve", "--listen", "127.0.0.1:0", "--models", "minilm"])
        .env("LLMOS_LOG", "warn,llmos::plugins=info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("llmos listening on ")
        .map(str::to_string);
    let Some(url) = url else {
        let _ = child.kill();
        panic!(
            "llmos serve did not start: {line:?}\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    };
    Server::from_child(child, url)
}

/// Waits up to 20 s for `needle` in the file `log`.
fn wait_for_log(log: &Path, needle: &str) -> String {
    let start = Instant::now();
    loop {
        let t = std::fs::read_to_string(log).unwrap_or_default();
        if t.contains(needle) || start.elapsed() > Duration::from_secs(20) {
            return t;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_plugin_of_each_world_from_new_to_a_serving_pipeline() {
    let home = Home::new();
    let work = tempfile::tempdir().unwrap();
    let mut total = Duration::ZERO;
    for (name, world, set) in [
        ("shout", "preprocessor", vec!["--set", "suffix=!!"]),
        ("guard", "policy", vec!["--set", "denied_word=ufo"]),
        (
            "tell",
            "integration",
            vec!["--set", "prefix=author-rust-event"],
        ),
    ] {
        total += author(&home, work.path(), name, world, &set);
    }
    eprintln!(
        "author_rust: three plugins from nothing to installed: 9 commands, {:.1} s",
        total.as_secs_f64()
    );
    // The model alone, for comparison (before serve holds the data location): the inputs
    // the preprocessor makes with the installed suffix, a configured one and the default.
    let texts = [
        "HELLO WORLD!!",
        "hello world",
        "HELLO WORLD?",
        "HELLO WORLD!",
    ];
    let mut refs = embed(&home, &texts).into_iter();
    let mut next = || refs.next().unwrap();
    let (shouted, plain, asked, default) = (next(), next(), next(), next());
    for (a, b) in [(&shouted, &asked), (&shouted, &default), (&asked, &default)] {
        let c = cosine(a, b);
        assert!(c < 0.9999, "the suffixes must be told apart: cosine {c}");
    }
    assert!(
        cosine(&shouted, &plain) < 0.999,
        "the suffix must change the embedding"
    );

    let cfg = home.dir.path().join("llmos.toml");
    let mut t = std::fs::read_to_string(&cfg).unwrap();
    t.push_str(
        "\n[pipelines.minilm]\npreprocessors = [\"shout\"]\nrequest_policies = [\"guard\"]\n\
         integrations = [\"tell\"]\n",
    );
    std::fs::write(&cfg, t).unwrap();
    let log = work.path().join("serve.log");
    let s = serve_logging(&home, &log);

    // The preprocessor: the model saw "HELLO WORLD!!".
    let (code, body) = call(
        &s,
        "POST",
        "/v1/embeddings",
        None,
        Some(json!({"model": "minilm", "input": ["hello world"]})),
    );
    assert_eq!(code, 200, "{body}");
    let seen = floats(&body["data"][0]["embedding"]);
    assert!(
        cosine(&seen, &shouted) > 0.9999,
        "the model did not see the preprocessed text"
    );
    assert!(cosine(&seen, &plain) < 0.999);

    // The policy: the configured word is denied, naming the plugin.
    let (code, body) = call(
        &s,
        "POST",
        "/v1/embeddings",
        None,
        Some(json!({"model": "minilm", "input": "I saw a UFO"})),
    );
    assert_eq!(code, 403, "{body}");
    assert_eq!(body["error"]["param"], "guard", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("denied by plugin guard") && message.contains("\"ufo\""),
        "{body}"
    );

    // The integration logged both events.
    let logged = wait_for_log(&log, "author-rust-event: request.denied");
    for kind in ["inference.finished", "request.denied"] {
        assert!(
            logged.contains(&format!(
                "author-rust-event: {kind} model=minilm route=/v1/embeddings"
            )),
            "no {kind} line from tell:\n{logged}"
        );
    }

    // Step 4's operator commands as the tutorial writes them, sent to the running server
    // (the CLI forwards them), each one's effect seen by the next request or `info`.
    let dir = work.path().join("shout");
    let cli = |args: &[&str]| ok(&home, &dir, args);
    let has = |out: &str, want: &[&str]| {
        for w in want {
            assert!(out.contains(w), "{w:?} not in:\n{out}");
        }
    };
    has(
        &cli(&["plugin", "info", "shout"]),
        &[
            "shout 0.1.0 (preprocessor)",
            "config suffix (String) = \"!!\"",
        ],
    );
    has(
        &cli(&["plugin", "grant", "shout", "kv"]),
        &["does not request kv; the grant is kept but has no effect"],
    );
    has(
        &cli(&["plugin", "revoke", "shout", "kv"]),
        &["shout: effective (none)"],
    );
    cli(&["plugin", "configure", "shout", "suffix=?"]);
    is(through(&s), &asked, "configure shout suffix=?");
    cli(&["plugin", "configure", "shout", "--unset", "suffix"]);
    is(through(&s), &default, "configure shout --unset suffix");
    std::fs::write(dir.join("token.txt"), "s3cret\n").unwrap();
    let out = llmos(&home, &dir, &["plugin", "secret", "shout", "token"])
        .stdin(std::fs::File::open(dir.join("token.txt")).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    has(&text(&out), &["secret token stored for shout"]);
    has(
        &cli(&[
            "plugin",
            "limits",
            "shout",
            "--timeout-ms",
            "50",
            "--memory-mib",
            "16",
        ]),
        &["limits     50 ms, 16 MiB,"],
    );
    // Each `limits` replaces the operator's overrides: the second line repeats the first's.
    has(
        &cli(&[
            "plugin",
            "limits",
            "shout",
            "--timeout-ms",
            "50",
            "--memory-mib",
            "16",
            "--max-inference-calls",
            "8",
            "--max-inference-tokens",
            "4096",
            "--kv-max-bytes",
            "1048576",
            "--kv-max-keys",
            "100",
            "--kv-max-value-bytes",
            "4096",
        ]),
        &[
            "limits     50 ms, 16 MiB,",
            "quotas     8 inference calls and 4096 inference tokens per call; kv 1048576 \
             bytes, 100 keys, values up to 4096 bytes",
        ],
    );
    is(through(&s), &default, "within the operator's limits");
    cli(&["plugin", "disable", "shout"]);
    let e = through(&s).unwrap_err();
    has(
        &e,
        &["plugin shout is disabled; enable it with `llmos plugin enable shout`"],
    );
    cli(&["plugin", "enable", "shout"]);
    is(through(&s), &default, "enabled again");
    // The same component as a new version that also requests kv.
    std::fs::copy(dir.join("dist/shout.wasm"), dir.join("new.wasm")).unwrap();
    let manifest = std::fs::read_to_string(dir.join("manifest.toml")).unwrap();
    std::fs::write(
        dir.join("new.toml"),
        manifest
            .replacen("version = \"0.1.0\"", "version = \"0.2.0\"", 1)
            .replacen("capabilities = []", "capabilities = [\"kv\"]", 1),
    )
    .unwrap();
    has(
        &cli(&[
            "plugin",
            "upgrade",
            "shout",
            "new.wasm",
            "--manifest",
            "new.toml",
        ]),
        &[
            "upgraded shout 0.1.0 -> 0.2.0 (preprocessor)",
            "new capabilities      kv",
            "    llmos plugin grant shout kv",
        ],
    );
    let audit = cli(&["plugin", "audit"]);
    for (what, detail) in [
        ("granted", "kv"),
        ("revoked", "kv"),
        ("secret-set", "secret:token"),
        ("upgraded", "0.1.0 -> 0.2.0"),
    ] {
        assert!(
            audit
                .lines()
                .any(|l| l.contains(what) && l.contains("shout") && l.contains(detail)),
            "no {what} {detail} for shout in:\n{audit}"
        );
    }
    has(
        &cli(&["plugin", "remove", "shout"]),
        &["removed shout 0.2.0"],
    );
    let e = through(&s).unwrap_err();
    has(&e, &["plugin shout is not installed"]);
}

#[test]
fn authoring_commands_refuse_bad_input_and_name_it() {
    let home = Home::new();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let new = |name: &str, world: &str, lang: &str| {
        fails(
            &home,
            w,
            &["plugin", "new", name, "--world", world, "--lang", lang],
        )
    };
    let e = new("Shout", "preprocessor", "rust");
    assert!(
        e.contains("plugin name \"Shout\"") && e.contains("a-z, 0-9 and '-'"),
        "{e}"
    );
    let e = new("self", "preprocessor", "rust");
    assert!(e.contains("cargo refuses it"), "{e}");
    let e = new("shout", "filter", "rust");
    assert!(
        e.contains("'filter'") && e.contains("preprocessor, policy, integration"),
        "{e}"
    );
    let e = new("shout", "policy", "cobol");
    assert!(
        e.contains("'cobol'") && e.contains("rust, python, js"),
        "{e}"
    );
    // An existing, non-empty folder is left alone.
    std::fs::create_dir(w.join("taken")).unwrap();
    std::fs::write(w.join("taken/notes.txt"), "mine").unwrap();
    let e = fails(
        &home,
        w,
        &[
            "plugin", "new", "shout", "--world", "policy", "--lang", "rust", "--dir", "taken",
        ],
    );
    assert!(e.contains("taken") && e.contains("not empty"), "{e}");
    assert_eq!(std::fs::read_dir(w.join("taken")).unwrap().count(), 1);
    // An empty folder is fine; the project has its manifest, example, WIT and no staging left.
    std::fs::create_dir(w.join("empty")).unwrap();
    ok(
        &home,
        w,
        &[
            "plugin", "new", "shout", "--world", "policy", "--lang", "rust", "--dir", "empty",
        ],
    );
    for f in [
        "manifest.toml",
        "example.txt",
        "src/lib.rs",
        "wit/worlds.wit",
        ".gitignore",
    ] {
        assert!(w.join("empty").join(f).is_file(), "{f} missing");
    }
    let left: Vec<_> = std::fs::read_dir(w)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("llmos-new"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // Build: no manifest; a manifest but no language; a missing toolchain.
    let e = fails(&home, w, &["plugin", "build", "taken"]);
    assert!(
        e.contains("manifest.toml") && e.contains("llmos plugin new"),
        "{e}"
    );
    std::fs::write(
        w.join("taken/manifest.toml"),
        "name = \"t\"\nversion = \"0.1.0\"\nworld = \"policy\"\n",
    )
    .unwrap();
    let e = fails(&home, w, &["plugin", "build", "taken"]);
    assert!(
        e.contains("Cargo.toml (Rust), app.py (Python), package.json (JavaScript)")
            && e.contains("tsconfig.json (TypeScript)"),
        "{e}"
    );
    // A rustc without the wasm32-wasip2 target, and no cargo at all.
    let fake = w.join("fake-rustc");
    std::fs::write(&fake, "#!/bin/sh\necho /nonexistent-sysroot\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = llmos(&home, w, &["plugin", "build", "empty"])
        .env("RUSTC", &fake)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("rustup target add wasm32-wasip2"), "{e}");
    let out = llmos(&home, w, &["plugin", "build", "empty"])
        .env_remove("CARGO")
        .env("PATH", w.join("no-such-bin"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("install Rust with rustup"), "{e}");
    assert!(!w.join("empty/dist/shout.wasm").exists());
}

#[test]
fn plugin_wit_prints_and_writes_the_package() {
    let home = Home::new();
    let work = tempfile::tempdir().unwrap();
    let wit = repo().join("wit/llmos-plugin@0.1.1");
    let printed = ok(&home, work.path(), &["plugin", "wit"]);
    let out = work.path().join("wit");
    ok(
        &home,
        work.path(),
        &["plugin", "wit", "--out", out.to_str().unwrap()],
    );
    let mut n = 0;
    for e in std::fs::read_dir(&wit).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        let want = std::fs::read_to_string(wit.join(&name)).unwrap();
        assert!(
            printed.contains(&format!("// file: {name}\n{want}")),
            "{name}"
        );
        assert_eq!(
            std::fs::read_to_string(out.join(&name)).unwrap(),
            want,
            "{name}"
        );
        n += 1;
    }
    assert!(n >= 8, "{n} files");
}

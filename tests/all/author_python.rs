//! Python plugins (componentize-py 0.25.1, installed by scripts/test.sh into the test venv
//! and named by `LLMOS_COMPONENTIZE_PY`): the tutorial of docs/plugins.md, step by step, and
//! `llmos plugin dev` on a policy behind `llmos serve` (one capability granted after the
//! confirmation, one denied).

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use serde_json::json;

use crate::author_dev::{Dev, edit};
use crate::author_scripted::{
    Project, assert_same_files, fails, integration_installs, ok, preprocessor_round_trip,
};
use crate::support::{Server, call, repo};

/// The componentize-py the build uses: `$LLMOS_COMPONENTIZE_PY`, else the one on PATH.
fn componentize_py() -> PathBuf {
    std::env::var_os("LLMOS_COMPONENTIZE_PY")
        .map(PathBuf::from)
        .unwrap_or_else(|| "componentize-py".into())
}

#[test]
fn python_preprocessor_from_the_template_counts_in_kv_and_is_denied_inference_behind_serve() {
    preprocessor_round_trip("python");
}

/// The Python policy's answer to its example (which contains its word): 403, the reason.
fn denial(s: &Server, example: &str) -> String {
    let (code, body) = call(
        s,
        "POST",
        "/v1/embeddings",
        None,
        Some(json!({"model": "minilm", "input": example})),
    );
    assert_eq!(code, 403, "{body}");
    assert_eq!(body["error"]["param"], "guard-python", "{body}");
    body["error"]["message"].as_str().unwrap().to_string()
}

/// The policy template, made to use `kv` (requested in its manifest), built and installed by
/// `llmos plugin dev` behind `llmos serve`: the loop asks, "y" grants kv and the call
/// succeeds; an edit of app.py (it also reads a secret, never requested) is rebuilt and
/// reloaded, and the server answers with it, the secret denied. Then the integration
/// template installs.
#[test]
fn python_policy_template_is_reloaded_by_plugin_dev_behind_serve_and_the_integration_installs() {
    let p = Project::new("python", "guard-python", "policy");
    let (app, manifest) = (p.dir.join("app.py"), p.dir.join("manifest.toml"));
    edit(&manifest, "capabilities = []", "capabilities = [\"kv\"]");
    edit(
        &app,
        "from wit_world.imports import config, log\n",
        "from componentize_py_types import Err\n\
         from wit_world.imports import config, kv, log, secrets\n\n\n\
         def state(call) -> str:\n    try:\n        call()\n        return \"ok\"\n    \
         except Err as e:\n        return f\"{type(e.value).__name__}: {e.value.value}\"\n",
    );
    let reason = "RequestVerdict_Deny(f\"the input contains {word!r}\")";
    let kv = "kv {state(lambda: kv.set('seen', b'1'))}";
    edit(
        &app,
        reason,
        &format!("RequestVerdict_Deny(f\"{kv}: the input contains {{word!r}}\")"),
    );
    p.add_config("\n[pipelines.minilm]\nrequest_policies = [\"guard-python\"]\n");
    let example = std::fs::read_to_string(p.dir.join("example.txt")).unwrap();
    let example = example.trim();
    let s = p.home.serve(&["--models", "minilm"]);

    let started = Instant::now();
    let mut dev = Dev::start(&p.home, &p.dir, &["--interval-ms", "100"]);
    let asked = dev.wait_for("grant kv to guard-python? [y/N] ");
    assert!(
        asked.contains("installing through the running server")
            && asked.contains("guard-python requests kv"),
        "{asked}"
    );
    dev.answer("y");
    let installed = dev.wait_for("watching");
    assert!(
        installed.contains("installed guard-python 0.1.0 (policy)"),
        "{installed}"
    );
    eprintln!(
        "author_python: plugin dev: first build and install in {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        installed
            .lines()
            .find(|l| l.contains("built in"))
            .unwrap_or_default()
            .trim()
    );
    // As preprocessor_round_trip does: a kv write (fsync) on a busy test machine can pass the
    // template's 100 ms. The operator's override is kept across the loop's upgrades.
    ok(&mut p.llmos(&["plugin", "limits", "guard-python", "--timeout-ms", "5000"]));
    let m = denial(&s, example);
    assert!(
        m.contains(
            "denied by plugin guard-python (request policy): kv ok: the input contains 'forbidden'"
        ),
        "{m}"
    );
    let (code, body) = call(
        &s,
        "POST",
        "/v1/embeddings",
        None,
        Some(json!({"model": "minilm", "input": "a fine text"})),
    );
    assert_eq!(code, 200, "{body}");

    // An edit: rebuilt, reloaded and served at once; its secrets.get call is denied.
    edit(
        &app,
        kv,
        &format!("v2, secret {{state(lambda: secrets.get('token'))}}, {kv}"),
    );
    let edited = Instant::now();
    dev.wait_for("reloaded guard-python 0.1.0 sha256 ");
    let line = dev.wait_for("\n");
    eprintln!(
        "author_python: plugin dev: edit -> reloaded in {:.1} s (sha256 {})",
        edited.elapsed().as_secs_f64(),
        line.trim()
    );
    let m = denial(&s, example);
    assert!(
        m.contains("guard-python (request policy): v2, secret Error_Denied: secret:token, kv ok: the input contains 'forbidden'"),
        "{m}"
    );
    let out = dev.interrupt();
    assert!(out.trim_end().ends_with("stopped"), "{out}");
    let audit = ok(&mut p.llmos(&["plugin", "audit"]));
    assert!(
        audit.lines().any(|l| l.contains("denied")
            && l.contains("guard-python")
            && l.contains("secret:token")),
        "{audit}"
    );
    assert!(s.terminate(), "serve did not stop cleanly");

    integration_installs("python");
}

#[test]
fn python_build_without_componentize_py_says_what_to_install_and_writes_nothing() {
    let p = Project::new("python", "no-toolchain", "preprocessor");
    let missing = p.work.path().join("missing/componentize-py");
    let err = fails(
        p.llmos(&["plugin", "build"])
            .env("LLMOS_COMPONENTIZE_PY", &missing),
    );
    assert!(
        err.contains("pip install componentize-py==0.25.1")
            && err.contains("LLMOS_COMPONENTIZE_PY")
            && err.contains(&missing.display().to_string()),
        "{err}"
    );
    let dist = p.dir.join("dist");
    let left = std::fs::read_dir(&dist).map(Iterator::count).unwrap_or(0);
    assert_eq!(left, 0, "{} has files after a failed build", dist.display());
}

#[test]
fn python_type_stubs_of_the_templates_are_what_componentize_py_generates_from_the_wit() {
    let template = repo().join("plugins/templates/python");
    // The worlds of 0.1.0 stay on 0.1.0; the tool world is 0.1.1's.
    for (world, version) in [
        ("preprocessor", "0.1.0"),
        ("policy", "0.1.0"),
        ("integration", "0.1.0"),
        ("tool", "0.1.1"),
    ] {
        let out = tempfile::tempdir().unwrap();
        let wit = repo().join(format!("wit/llmos-plugin@{version}"));
        let status = Command::new(componentize_py())
            .args(["-d", wit.to_str().unwrap(), "-w", world, "bindings"])
            .arg(out.path())
            .status()
            .unwrap_or_else(|e| {
                panic!(
                    "componentize-py did not run ({e}): run ./scripts/test.sh, or \
                     `pip install componentize-py==0.25.1` and set LLMOS_COMPONENTIZE_PY"
                )
            });
        assert!(status.success());
        assert_same_files(out.path(), &template, world, "");
    }
    // The template's world file names the world; `plugin new` keeps it as is.
    let p = Project::new("python", "stubs", "policy");
    let world = std::fs::read_to_string(p.dir.join("wit_world/__init__.py")).unwrap();
    assert!(world.contains("def check_request"), "{world}");
}

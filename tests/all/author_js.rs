//! JavaScript and TypeScript plugins (jco 1.35 and typescript 7.0.2 from the templates'
//! package.json and package-lock.json; the QuickJS back end, the templates' default): the
//! tutorial of docs/plugins.md, step by step, and `llmos plugin dev` on a TypeScript project
//! (one capability granted, one denied).
//! scripts/test.sh fills npm's cache (`npm_config_cache`) so `npm install` is offline.

use crate::author_dev::{Dev, edit};
use crate::author_scripted::{
    Project, assert_same_files, fails, integration_installs, ok, policy_denies_its_example,
    preprocessor_round_trip,
};
use crate::support::{Server, call, repo};

#[test]
fn js_preprocessor_from_the_template_counts_in_kv_and_is_denied_inference_behind_serve() {
    let p = preprocessor_round_trip("js");
    // QuickJS creates several linear memories: the plugin's memory limit caps them all.
    ok(&mut p.llmos(&["plugin", "limits", &p.name, "--memory-mib", "1"]));
    let err = fails(&mut p.llmos(&["run", "--model", "minilm", "--text", "hello"]));
    assert!(
        err.contains(&format!(
            "plugin {} stopped: memory limit exceeded (1 MiB allowed",
            p.name
        )),
        "{err}"
    );
    // The types shipped in the templates are what jco generates from the WIT.
    let template = repo().join("plugins/templates/js");
    // The worlds of 0.1.0 stay on 0.1.0 (the project's wit/); the tool world is 0.1.1's.
    let wit_0_1_1 = repo().join("wit/llmos-plugin@0.1.1");
    for world in ["preprocessor", "policy", "integration", "tool"] {
        let out = tempfile::tempdir().unwrap();
        let jco = p.dir.join("node_modules/.bin/jco");
        let wit = if world == "tool" {
            wit_0_1_1.to_str().unwrap()
        } else {
            "wit"
        };
        ok(std::process::Command::new(jco)
            .args([
                "guest-types",
                wit,
                "--world-name",
                world,
                "--quiet",
                "--out-dir",
            ])
            .arg(out.path())
            .current_dir(&p.dir));
        assert_same_files(out.path(), &template, world, "types");
    }
}

/// The TypeScript tutorial's commands (`plugin new shout-ts --world preprocessor --lang ts`,
/// `plugin build`: npm install, tsc, jco; `plugin install … --grant kv --set 'suffix= #{n}'`),
/// then the pipeline behind `llmos serve`: the kv counter, the denied `embed:` call.
#[test]
fn ts_preprocessor_from_the_template_counts_in_kv_and_is_denied_inference_behind_serve() {
    let p = preprocessor_round_trip("ts");
    assert!(
        p.dir.join("app.ts").is_file() && p.dir.join("dist/js/app.js").is_file(),
        "tsc wrote no dist/js/app.js from app.ts"
    );
}

#[test]
fn js_policy_template_denies_its_example_and_the_integration_template_installs() {
    policy_denies_its_example("js");
    integration_installs("js");
}

#[test]
fn js_build_without_node_says_what_to_install_and_writes_nothing() {
    let p = Project::new("js", "no-node", "preprocessor");
    let empty = tempfile::tempdir().unwrap();
    let err = fails(p.llmos(&["plugin", "build"]).env("PATH", empty.path()));
    assert!(
        err.contains("not on PATH") && err.contains("install Node.js 18 or later with npm"),
        "{err}"
    );
    assert!(!p.dir.join("node_modules").exists());
    let left = std::fs::read_dir(p.dir.join("dist"))
        .map(Iterator::count)
        .unwrap_or(0);
    assert_eq!(left, 0);
}

/// The TS policy's answer to an input containing its word: 403 with the policy's reason.
fn ts_denial(s: &Server) -> String {
    let (code, body) = call(
        s,
        "POST",
        "/v1/embeddings",
        None,
        Some(serde_json::json!({"model": "minilm", "input": "this text is forbidden"})),
    );
    assert_eq!(code, 403, "{body}");
    assert_eq!(body["error"]["param"], "guard-ts", "{body}");
    body["error"]["message"].as_str().unwrap().to_string()
}

#[test]
fn ts_policy_from_the_template_is_type_checked_and_reloaded_by_plugin_dev_behind_serve() {
    let p = Project::new("ts", "guard-ts", "policy");
    for f in [
        "app.ts",
        "tsconfig.json",
        "types/policy.d.ts",
        "package-lock.json",
    ] {
        assert!(p.dir.join(f).is_file(), "plugin new --lang ts wrote no {f}");
    }
    assert!(!p.dir.join("app.js").exists());
    p.add_config("\n[pipelines.minilm]\nrequest_policies = [\"guard-ts\"]\n");
    let s = p.home.serve(&["--models", "minilm"]);

    // `plugin dev` in the project: npm install, tsc, jco; installed through the server.
    let started = std::time::Instant::now();
    let mut dev = Dev::start(&p.home, &p.dir, &["--interval-ms", "100"]);
    let first = dev.wait_for("installed guard-ts 0.1.0 (policy)");
    assert!(
        first.contains("installing through the running server"),
        "{first}"
    );
    dev.wait_for("watching");
    eprintln!(
        "author_js: ts plugin dev: first build and install in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        p.dir.join("dist/js/app.js").is_file(),
        "tsc wrote no dist/js/app.js"
    );
    let m = ts_denial(&s);
    assert!(
        m.contains("denied by plugin guard-ts (request policy): the input contains 'forbidden'"),
        "{m}"
    );
    let (code, body) = call(
        &s,
        "POST",
        "/v1/embeddings",
        None,
        Some(serde_json::json!({"model": "minilm", "input": "a fine text"})),
    );
    assert_eq!(code, 200, "{body}");

    // An edit that calls kv, which the manifest does not request: rebuilt, reloaded, and
    // the call is denied (a denied import), which the new reason shows.
    let app = p.dir.join("app.ts");
    edit(
        &app,
        "return { tag: 'deny', val: `the input contains '${word}'` };",
        "let kvState = 'kv ok';\n    try {\n      kvSet('seen', Uint8Array.of(1));\n    } catch (e) {\n      \
         const err = e && typeof e === 'object' && 'payload' in e ? e.payload : e;\n      \
         kvState = `${(err as WitError).tag}: ${(err as WitError).val}`;\n    }\n    \
         return { tag: 'deny', val: `dev v2 (${kvState}): the input contains '${word}'` };",
    );
    edit(
        &app,
        "import { log } from 'llmos:plugin/log@0.1.0';",
        "import { log } from 'llmos:plugin/log@0.1.0';\nimport { set as kvSet } from 'llmos:plugin/kv@0.1.0';\n\
         import type { Error as WitError } from 'llmos:plugin/types@0.1.0';",
    );
    let edited = std::time::Instant::now();
    dev.wait_for("reloaded guard-ts 0.1.0 sha256 ");
    eprintln!(
        "author_js: ts plugin dev: edit -> reloaded in {:.1} s",
        edited.elapsed().as_secs_f64()
    );
    let m = ts_denial(&s);
    assert!(
        m.contains(
            "guard-ts (request policy): dev v2 (denied: kv): the input contains 'forbidden'"
        ),
        "{m}"
    );

    // A type error: tsc's message names the file and line; the installed version serves on.
    edit(&app, "return { tag: 'allow' };", "return { tag: 'alow' };");
    dev.wait_for("keeps serving");
    let err = dev.stderr();
    assert!(
        err.contains("app.ts(") && err.contains("'\"alow\"'") && err.contains("the build failed"),
        "{err}"
    );
    assert!(ts_denial(&s).contains("dev v2 (denied: kv)"));

    // Fixed, and the manifest now requests kv: asked, granted ("y"), and the call succeeds.
    edit(&app, "return { tag: 'alow' };", "return { tag: 'allow' };");
    edit(
        &p.dir.join("manifest.toml"),
        "capabilities = []",
        "capabilities = [\"kv\"]",
    );
    dev.wait_for("grant kv to guard-ts? [y/N] ");
    dev.answer("y");
    dev.wait_for("reloaded guard-ts");
    let m = ts_denial(&s);
    assert!(
        m.contains("dev v2 (kv ok): the input contains 'forbidden'"),
        "{m}"
    );
    let out = dev.interrupt();
    assert!(out.trim_end().ends_with("stopped"), "{out}");

    // The denied kv call is audited (read through the server).
    let audit = ok(&mut p.llmos(&["plugin", "audit"]));
    assert!(
        audit
            .lines()
            .any(|l| l.contains("denied") && l.contains("guard-ts") && l.contains("kv")),
        "{audit}"
    );
    assert!(s.terminate(), "serve did not stop cleanly");
}

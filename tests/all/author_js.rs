//! JavaScript plugins (jco 1.35 from the template's package.json and package-lock.json; the
//! QuickJS back end, the template's default): the tutorial of docs/plugins.md, step by step.
//! scripts/test.sh fills npm's cache (`npm_config_cache`) so `npm install` is offline.

use crate::author_scripted::{
    Project, assert_same_files, fails, integration_installs, ok, policy_denies_its_example,
    preprocessor_round_trip,
};
use crate::support::repo;

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

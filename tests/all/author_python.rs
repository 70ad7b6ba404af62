//! Python plugins (componentize-py 0.25.1, installed by scripts/test.sh into the test venv
//! and named by `LLMOS_COMPONENTIZE_PY`): the tutorial of docs/plugins.md, step by step.

use std::path::PathBuf;
use std::process::Command;

use crate::author_scripted::{
    Project, assert_same_files, fails, integration_installs, policy_denies_its_example,
    preprocessor_round_trip,
};
use crate::support::repo;

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

#[test]
fn python_policy_template_denies_its_example_and_the_integration_template_installs() {
    policy_denies_its_example("python");
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

//! Install validates before storing; upgrade shows the capability difference and requires new
//! capabilities to be granted again; the registry operations and the CLI functions.

use std::path::{Path, PathBuf};

use llmos::cli::plugin::{InstallArgs, PluginCommand, run};
use llmos::data::Tree;
use llmos::plugins::engine::{CacheOutcome, sha256_hex};
use llmos::plugins::registry::{self, InstallRequest};
use llmos::plugins::{HostSettings, PluginError, PluginHost};

use crate::plugins_common::{host, install, manifest, request, settings, wasm};

fn req(component: PathBuf, manifest: PathBuf) -> InstallRequest {
    InstallRequest {
        component,
        manifest: Some(manifest),
        ..Default::default()
    }
}

fn err(host: &PluginHost, r: &InstallRequest) -> String {
    registry::install(host, r).unwrap_err().to_string()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn refuses_what_is_not_a_component() {
    let (d, host) = host();
    let m = manifest("testing/echo");
    let module = write(d.path(), "core.wasm", b"\0asm\x01\0\0\0");
    let e = err(&host, &req(module, m.clone()));
    assert!(
        e.contains("core WebAssembly module, not a component"),
        "{e}"
    );
    let junk = write(d.path(), "junk.wasm", b"hello world");
    assert!(err(&host, &req(junk, m.clone())).contains("is not WebAssembly"));
    let txt = write(
        d.path(),
        "echo.txt",
        &std::fs::read(wasm("testing/echo")).unwrap(),
    );
    assert!(err(&host, &req(txt, m)).contains("expected a .wasm file"));
}

#[test]
fn refuses_a_wrong_world() {
    let (d, host) = host();
    let text = std::fs::read_to_string(manifest("normalize"))
        .unwrap()
        .replace("world = \"preprocessor\"", "world = \"policy\"");
    let m = write(d.path(), "m.toml", text.as_bytes());
    let e = err(&host, &req(wasm("normalize"), m));
    assert!(e.contains("policy"), "{e}");
    assert!(registry::list(host.store()).unwrap().is_empty());
}

#[test]
fn refuses_a_digest_mismatch_and_accepts_the_right_one() {
    let (_d, host) = host();
    let mut r = req(wasm("testing/echo"), manifest("testing/echo"));
    r.sha256 = Some("00".repeat(32));
    assert!(matches!(
        registry::install(&host, &r),
        Err(PluginError::Digest { .. })
    ));
    r.sha256 = Some(sha256_hex(&std::fs::read(wasm("testing/echo")).unwrap()).to_uppercase());
    registry::install(&host, &r).unwrap();
}

#[test]
fn refuses_paths_outside_the_allowed_folder_and_oversized_components() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("allowed");
    std::fs::create_dir_all(&root).unwrap();
    let host = PluginHost::open(
        &dir.path().join("home"),
        HostSettings {
            install_root: Some(root.clone()),
            max_component_bytes: 100_000,
            ..settings()
        },
        None,
    )
    .unwrap();
    let e = err(&host, &req(wasm("testing/echo"), manifest("testing/echo")));
    assert!(e.contains("outside the allowed folder"), "{e}");
    // A link inside the folder that points outside is resolved and refused too.
    #[cfg(unix)]
    {
        let link = root.join("link.wasm");
        std::os::unix::fs::symlink(wasm("testing/echo"), &link).unwrap();
        assert!(
            err(&host, &req(link, manifest("testing/echo"))).contains("outside the allowed folder")
        );
    }
    let inside = root.join("echo.wasm");
    std::fs::copy(wasm("testing/echo"), &inside).unwrap();
    // The manifest is confined too: one outside the folder is refused, one inside installs.
    let e = err(&host, &req(inside.clone(), manifest("testing/echo")));
    assert!(
        e.contains("manifest") && e.contains("outside the allowed folder"),
        "{e}"
    );
    let inside_manifest = root.join("echo.toml");
    std::fs::copy(manifest("testing/echo"), &inside_manifest).unwrap();
    registry::install(&host, &req(inside, inside_manifest)).unwrap();
    let big = root.join("normalize.wasm");
    std::fs::copy(wasm("normalize"), &big).unwrap();
    let e = err(&host, &req(big, manifest("normalize")));
    assert!(e.contains("the limit is 100000"), "{e}");
}

#[test]
fn refuses_bad_manifests_and_duplicates() {
    let (d, host) = host();
    let text = std::fs::read_to_string(manifest("testing/echo")).unwrap();
    let m = write(
        d.path(),
        "m.toml",
        format!("{text}\npermissions = []\n").as_bytes(),
    );
    let e = err(&host, &req(wasm("testing/echo"), m));
    assert!(e.contains("permissions"), "{e}");
    install(&host, "testing/echo", &[], &[]);
    let e = err(&host, &req(wasm("testing/echo"), manifest("testing/echo")));
    assert!(
        e.contains("already installed") && e.contains("upgrade"),
        "{e}"
    );
    // A required config value must be given at install.
    let e = err(&host, &req(wasm("webhook"), manifest("webhook")));
    assert!(e.contains("needs config url"), "{e}");
}

#[test]
fn upgrade_shows_the_difference_and_new_capabilities_need_a_grant() {
    let (d, host) = host();
    let p = install(&host, "testing/probe", &["kv", "inference:minilm"], &[]);
    let v2 = std::fs::read_to_string(manifest("testing/probe"))
        .unwrap()
        .replace("version = \"0.1.0\"", "version = \"0.2.0\"")
        .replace(
            "\"inference:minilm\"",
            "\"inference:minilm\", \"inference:pii-ner\"",
        );
    let m2 = write(d.path(), "v2.toml", v2.as_bytes());
    let mut r = req(wasm("testing/probe"), m2);
    let rep = registry::upgrade(&host, &p, &r).unwrap();
    assert_eq!(rep.previous_version.as_deref(), Some("0.1.0"));
    assert_eq!(rep.added.to_string(), "inference:pii-ner");
    assert!(rep.removed.is_empty());
    assert_eq!(rep.record.granted.to_string(), "kv inference:minilm");
    let out = host
        .preprocess(&p, request(&["entities pii-ner Alice", "embed minilm x"]))
        .unwrap();
    assert_eq!(out, ["err:denied:inference:pii-ner", "ok:4"]);
    registry::grant(&host, &p, &["inference:pii-ner".into()]).unwrap();
    let out = host
        .preprocess(&p, request(&["entities pii-ner Alice"]))
        .unwrap();
    assert_eq!(out, ["ok:[\"PER\"]"]);

    // v3 drops inference:minilm: its grant goes with it.
    let v3 = v2
        .replace("version = \"0.2.0\"", "version = \"0.3.0\"")
        .replace("\"inference:minilm\", ", "");
    r.manifest = Some(write(d.path(), "v3.toml", v3.as_bytes()));
    let rep = registry::upgrade(&host, &p, &r).unwrap();
    assert_eq!(rep.removed.to_string(), "inference:minilm");
    assert_eq!(rep.record.granted.to_string(), "kv inference:pii-ner");
    let out = host.preprocess(&p, request(&["embed minilm x"])).unwrap();
    assert_eq!(out, ["err:denied:inference:minilm"]);
}

#[test]
fn disable_enable_configure_remove() {
    let (_d, host) = host();
    let p = install(&host, "testing/probe", &["kv"], &[]);
    host.preprocess(&p, request(&["kv.set a 1"])).unwrap();
    registry::set_enabled(&host, &p, false).unwrap();
    assert!(matches!(
        host.preprocess(&p, request(&["x"])),
        Err(PluginError::Disabled(_))
    ));
    registry::set_enabled(&host, &p, true).unwrap();
    assert_eq!(
        host.preprocess(&p, request(&["kv.get a"])).unwrap(),
        ["ok:Some(\"1\")"]
    );

    let n = install(&host, "normalize", &[], &[]);
    let mut change = std::collections::BTreeMap::new();
    change.insert("trim".to_string(), Some("maybe".to_string()));
    let e = registry::configure(&host, &n, &change)
        .unwrap_err()
        .to_string();
    assert!(e.contains("expected true or false"), "{e}");
    change.insert("trim".to_string(), Some("false".to_string()));
    registry::configure(&host, &n, &change).unwrap();
    assert_eq!(
        host.preprocess(&n, request(&["  a  b "])).unwrap(),
        [" a b "]
    );

    let rec = registry::remove(&host, &p).unwrap();
    assert!(!rec.component_path(host.home()).exists());
    assert!(
        host.store()
            .keys(Tree::PluginKv, b"test-probe\0", 10)
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        host.preprocess(&p, request(&["x"])),
        Err(PluginError::NotInstalled(_))
    ));
}

#[test]
fn precompiled_cache_is_used_and_a_tampered_artifact_is_ignored() {
    let (_d, host) = host();
    install(&host, "testing/echo", &[], &[]);
    let bytes = std::fs::read(wasm("testing/echo")).unwrap();
    let sha = sha256_hex(&bytes);
    let (_, outcome) = host.cache().load(host.engine(), &bytes, &sha).unwrap();
    assert_eq!(outcome, CacheOutcome::Hit);
    let cache_dir = host.home().join("plugin-cache");
    let artifact = std::fs::read_dir(&cache_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains(&sha))
        .unwrap();
    let mut a = std::fs::read(&artifact).unwrap();
    let n = a.len();
    a[n / 2] ^= 0xff;
    std::fs::write(&artifact, a).unwrap();
    let (_, outcome) = host.cache().load(host.engine(), &bytes, &sha).unwrap();
    assert_eq!(outcome, CacheOutcome::Compiled);
    let (_, outcome) = host.cache().load(host.engine(), &bytes, &sha).unwrap();
    assert_eq!(outcome, CacheOutcome::Hit);
}

#[test]
fn cli_functions_install_grant_info_list_disable_remove() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    run(
        PluginCommand::Install(InstallArgs {
            path: wasm("testing/probe"),
            manifest: Some(manifest("testing/probe")),
            grants: vec!["kv".into()],
            sha256: None,
            values: vec![],
            approve_limits: false,
            signature: None,
        }),
        home,
    )
    .unwrap();
    run(
        PluginCommand::Grant {
            name: "test-probe".into(),
            caps: vec!["secret:token".into()],
        },
        home,
    )
    .unwrap();
    let e = run(
        PluginCommand::Grant {
            name: "test-probe".into(),
            caps: vec!["fs:/".into()],
        },
        home,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("invalid capability"), "{e}");
    run(
        PluginCommand::Info {
            name: "test-probe".into(),
        },
        home,
    )
    .unwrap();
    run(PluginCommand::List, home).unwrap();
    run(
        PluginCommand::Disable {
            name: "test-probe".into(),
        },
        home,
    )
    .unwrap();
    run(PluginCommand::Audit, home).unwrap();
    {
        let host = PluginHost::open(home, settings(), None).unwrap();
        let rec = registry::info(host.store(), "test-probe").unwrap();
        assert!(!rec.enabled);
        assert_eq!(rec.granted.to_string(), "kv secret:token");
    }
    run(
        PluginCommand::Remove {
            name: "test-probe".into(),
        },
        home,
    )
    .unwrap();
    let e = run(
        PluginCommand::Info {
            name: "test-probe".into(),
        },
        home,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("not installed"), "{e}");
}

#[test]
fn cli_run_text_runs_the_models_pipeline() {
    let (_d, host) = host();
    install(&host, "normalize", &[], &[]);
    install(
        &host,
        "content-policy",
        &[],
        &[("denied_terms", "forbidden")],
    );
    let pipelines: llmos::plugins::pipeline::Pipelines = toml::from_str(
        "[minilm]\npreprocessors = [\"normalize\"]\nrequest_policies = [\"content-policy\"]\n",
    )
    .unwrap();
    let echo = |i: &[String]| Ok(serde_json::json!(i));
    let out = run_text(
        &host,
        &pipelines,
        "minilm",
        "embed",
        vec!["  hi  ".into()],
        echo,
    )
    .unwrap();
    assert_eq!(out, serde_json::json!(["hi"]));
    let e = run_text(
        &host,
        &pipelines,
        "minilm",
        "embed",
        vec!["forbidden".into()],
        echo,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("denied by plugin content-policy"), "{e}");
    // Another model has no pipeline: the text goes to the model unchanged.
    let out = run_text(
        &host,
        &pipelines,
        "bert",
        "embed",
        vec!["  hi  ".into()],
        echo,
    )
    .unwrap();
    assert_eq!(out, serde_json::json!(["  hi  "]));
}

/// Runs `model`'s pipeline for route `cli` around `infer`; a denial is an error.
fn run_text(
    host: &llmos::plugins::PluginHost,
    pipelines: &llmos::plugins::pipeline::Pipelines,
    model: &str,
    task: &str,
    texts: Vec<String>,
    infer: impl FnOnce(&[String]) -> Result<serde_json::Value, String>,
) -> anyhow::Result<serde_json::Value> {
    use llmos::plugins::pipeline::{self, Outcome};
    let chain = pipeline::resolve(pipelines, model, "cli");
    let context = llmos::plugins::RequestContext {
        request_id: "test".into(),
        key_id: None,
        model: model.into(),
        task: task.into(),
        route: "cli".into(),
    };
    match pipeline::run(host, &chain, context, texts, infer)? {
        Outcome::Completed { output, .. } => Ok(output),
        Outcome::Denied {
            plugin,
            reason,
            stage,
        } => {
            anyhow::bail!("the {stage} was denied by plugin {plugin}: {reason}")
        }
    }
}

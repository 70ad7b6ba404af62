//! The grant matrix: for each capability, requested-and-granted works; requested-not-granted
//! and granted-not-requested are both denied (with a typed `denied(<capability>)` the guest
//! can handle, recorded in the audit log).

use std::sync::atomic::Ordering;

use llmos::plugins::PluginHost;
use llmos::plugins::registry::{self, InstallRequest};

use crate::plugins_common::{host, install, manifest, request, serve, wasm};

const PROBE: &str = "testing/probe";

fn probe(host: &PluginHost, name: &str, cmds: &[&str]) -> Vec<String> {
    host.preprocess(name, request(cmds)).unwrap()
}

/// Installs the probe under a manifest whose capabilities are replaced by `caps`.
fn install_probe_requesting(
    host: &PluginHost,
    dir: &std::path::Path,
    caps: &str,
    grants: &[&str],
) -> Result<String, llmos::plugins::PluginError> {
    let text = std::fs::read_to_string(manifest(PROBE)).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("capabilities"))
        .unwrap();
    let text = text.replace(line, &format!("capabilities = [{caps}]"));
    let path = dir.join("probe-manifest.toml");
    std::fs::write(&path, text).unwrap();
    registry::install(
        host,
        &InstallRequest {
            component: wasm(PROBE),
            manifest: Some(path),
            grants: grants.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
    )
    .map(|r| r.record.manifest.name)
}

#[test]
fn kv_matrix() {
    let (_d, host) = host();
    let p = install(&host, PROBE, &["kv"], &[]);
    let out = probe(
        &host,
        &p,
        &[
            "kv.set greeting hello",
            "kv.get greeting",
            "kv.list gr",
            "kv.get missing",
        ],
    );
    assert_eq!(
        out,
        [
            "ok:()",
            "ok:Some(\"hello\")",
            "ok:[\"greeting\"]",
            "ok:None"
        ]
    );
    // Persisted across calls (fresh stores), sealed in the store.
    assert_eq!(
        probe(&host, &p, &["kv.get greeting"]),
        ["ok:Some(\"hello\")"]
    );

    // Requested, not granted.
    registry::revoke(&host, &p, &["kv".into()]).unwrap();
    assert_eq!(probe(&host, &p, &["kv.get greeting"]), ["err:denied:kv"]);
    let denial = host
        .audit()
        .records()
        .unwrap()
        .into_iter()
        .find(|r| r.what == "denied")
        .expect("the denial is audited");
    assert_eq!(denial.capability.as_deref(), Some("kv"));
    assert!(
        denial.detail.contains("`llmos plugin grant test-probe kv`"),
        "{}",
        denial.detail
    );
    assert!(host.audit().denial_count() >= 1);
}

#[test]
fn kv_imported_but_not_requested_installs_and_every_call_is_denied() {
    let (d, host) = host();
    // The probe imports kv (as whole-world toolchains import every interface). A manifest
    // that does not request kv still installs: the import is listed as denied, and every
    // kv call is refused and audited, whatever the operator grants.
    let name = install_probe_requesting(
        &host,
        d.path(),
        r#""inference:minilm", "secret:token", "http:*""#,
        &["kv"],
    )
    .unwrap();
    let rec = registry::info(host.store(), &name).unwrap();
    let denied: Vec<(&str, &str)> = rec
        .denied_imports
        .iter()
        .map(|d| (d.import.as_str(), d.capability.as_str()))
        .collect();
    assert_eq!(denied, [("llmos:plugin/kv@0.1.0", "kv")]);
    let before = host.audit().denial_count();
    assert_eq!(
        probe(&host, &name, &["kv.set a b", "kv.get a"]),
        ["err:denied:kv", "err:denied:kv"]
    );
    assert_eq!(host.audit().denial_count(), before + 2);
    let denial = host
        .audit()
        .records()
        .unwrap()
        .into_iter()
        .rev()
        .find(|r| r.what == "denied")
        .expect("the denial is audited");
    assert!(
        denial.detail.contains("its manifest does not request it"),
        "{}",
        denial.detail
    );
}

#[test]
fn inference_matrix() {
    let (_d, host) = host();
    let p = install(
        &host,
        PROBE,
        &["inference:minilm", "inference:pii-ner"],
        &[],
    );
    let out = probe(
        &host,
        &p,
        &[
            "embed minilm some text",
            "classify minilm good day",
            "entities pii-ner Alice",
            "generate minilm hi",
        ],
    );
    assert_eq!(out[0], "ok:4");
    assert_eq!(out[1], "ok:\"positive\"");
    // granted but not requested (the manifest requests inference:minilm only)
    assert_eq!(out[2], "err:denied:inference:pii-ner");
    assert!(
        out[3].starts_with("err:unavailable:text generation"),
        "{}",
        out[3]
    );

    registry::revoke(&host, &p, &["inference:minilm".into()]).unwrap();
    assert_eq!(
        probe(&host, &p, &["embed minilm x"]),
        ["err:denied:inference:minilm"]
    );
}

#[test]
fn unknown_model_is_not_found_when_granted() {
    let (d, host) = host();
    let p = install_probe_requesting(
        &host,
        d.path(),
        r#""kv", "inference:*", "secret:token", "http:*""#,
        &["inference:nope"],
    )
    .unwrap();
    assert_eq!(
        probe(&host, &p, &["embed nope x"]),
        ["err:not-found:model nope"]
    );
    // A wildcard request grants nothing by itself.
    assert_eq!(
        probe(&host, &p, &["embed minilm x"]),
        ["err:denied:inference:minilm"]
    );
}

#[test]
fn secrets_matrix() {
    let (_d, host) = host();
    let p = install(&host, PROBE, &["secret:token", "secret:other"], &[]);
    assert!(
        probe(&host, &p, &["secret token"])[0]
            .starts_with("err:not-found:secret token is granted but not set")
    );
    registry::set_secret(&host, &p, "token", "s3cret").unwrap();
    registry::set_secret(&host, &p, "other", "x").unwrap();
    let out = probe(&host, &p, &["secret token", "secret other"]);
    assert_eq!(out, ["ok:\"s3cret\"", "err:denied:secret:other"]);
    registry::revoke(&host, &p, &["secret:token".into()]).unwrap();
    assert_eq!(
        probe(&host, &p, &["secret token"]),
        ["err:denied:secret:token"]
    );
}

#[test]
fn http_matrix() {
    let (d, host) = host();
    let server = serve();
    let url = format!("http://{}/hook", server.addr);
    let grant = format!("http:127.0.0.1:{}", server.addr.port());

    // Requested (http:*), not granted: denied before any connection.
    let p = install(&host, PROBE, &[], &[]);
    let cmd = format!("http {url}");
    assert_eq!(
        probe(&host, &p, &[&cmd]),
        ["err:http:ErrorCode::HttpRequestDenied"]
    );
    assert_eq!(server.connections.load(Ordering::SeqCst), 0);

    // Granted: reaches the server.
    registry::grant(&host, &p, std::slice::from_ref(&grant)).unwrap();
    assert_eq!(probe(&host, &p, &[&cmd]), ["ok:200"]);
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    // Another port of the same host is still denied.
    let other = format!("http http://127.0.0.1:{}/", server.addr.port() + 1);
    assert_eq!(
        probe(&host, &p, &[&other]),
        ["err:http:ErrorCode::HttpRequestDenied"]
    );

    // Granted but not requested (this manifest requests only http:example.com).
    registry::remove(&host, &p).unwrap();
    let p = install_probe_requesting(
        &host,
        d.path(),
        r#""kv", "inference:minilm", "secret:token", "http:example.com""#,
        &[&grant],
    )
    .unwrap();
    assert_eq!(
        probe(&host, &p, &[&cmd]),
        ["err:http:ErrorCode::HttpRequestDenied"]
    );
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
}

//! Access control (API keys, scopes, admin routes, audit, loopback-only without keys) and
//! plugin pipelines over HTTP and `llmos run`, against the real binary and real plugins.

use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::plugins_common::{manifest, wasm};
use crate::support::{Home, call, create_key, text};

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn embed(model: &str) -> Value {
    json!({"model": model, "input": "hello"})
}

#[test]
fn keys_and_scopes_guard_every_route_and_refusals_are_audited() {
    let home = Home::new();
    let minilm = create_key(&home, &["models:minilm"]);
    let admin = create_key(&home, &["admin"]);
    let listed = home.json(&["keys", "list"]);
    assert_eq!(listed["keys"].as_array().unwrap().len(), 2);
    assert!(
        !listed
            .to_string()
            .contains(minilm.rsplit('_').next().unwrap()),
        "a secret leaked into the listing"
    );
    let err = home.fails(&["keys", "create", "--scope", "model:minilm"]);
    assert!(err.contains("invalid scope \"model:minilm\""), "{err}");

    let s = home.serve(&["--models", "minilm,pii-ner,add"]);
    // Health stays open; everything else needs a key now that keys exist.
    assert_eq!(call(&s, "GET", "/health", None, None).0, 200);
    assert_eq!(call(&s, "GET", "/v2/health/live", None, None).0, 200);
    let (code, body) = call(&s, "POST", "/v1/embeddings", None, Some(embed("minilm")));
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (401, Some("missing_api_key")),
        "{body}"
    );
    let (code, body) = call(
        &s,
        "POST",
        "/v1/embeddings",
        Some("llmos_nope_nope"),
        Some(embed("minilm")),
    );
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (401, Some("invalid_api_key")),
        "{body}"
    );
    assert_eq!(
        call(
            &s,
            "POST",
            "/v1/embeddings",
            Some(&minilm),
            Some(embed("minilm"))
        )
        .0,
        200
    );
    let (code, body) = call(
        &s,
        "POST",
        "/v1/entities",
        Some(&minilm),
        Some(embed("pii-ner")),
    );
    assert_eq!(code, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("lacks the scope models:pii-ner"),
        "{body}"
    );
    // KServe: the model is in the path; errors in KServe's shape.
    let (code, body) = call(&s, "GET", "/v2/models/add", Some(&minilm), None);
    assert_eq!(code, 403);
    assert!(
        body["error"].as_str().unwrap().contains("models:add"),
        "{body}"
    );
    // Admin needs the admin scope.
    assert_eq!(call(&s, "GET", "/admin/keys", Some(&minilm), None).0, 403);
    let (code, keys) = call(&s, "GET", "/admin/keys", Some(&admin), None);
    assert_eq!(code, 200, "{keys}");
    assert!(
        keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k.get("hash").is_none())
    );

    // Keys made and revoked over the admin API take effect at once.
    let (code, made) = call(
        &s,
        "POST",
        "/admin/keys",
        Some(&admin),
        Some(json!({"name": "tmp", "scopes": ["models:*"], "expires": "1h"})),
    );
    assert_eq!(code, 201, "{made}");
    let tmp = made["secret"].as_str().unwrap().to_string();
    assert_eq!(
        call(
            &s,
            "POST",
            "/v1/entities",
            Some(&tmp),
            Some(embed("pii-ner"))
        )
        .0,
        200
    );
    let id = made["key"]["id"].as_str().unwrap();
    assert_eq!(
        call(
            &s,
            "DELETE",
            &format!("/admin/keys/{id}"),
            Some(&admin),
            None
        )
        .0,
        200
    );
    let (code, body) = call(
        &s,
        "POST",
        "/v1/entities",
        Some(&tmp),
        Some(embed("pii-ner")),
    );
    assert_eq!(code, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("was revoked"),
        "{body}"
    );
    let (code, body) = call(
        &s,
        "POST",
        "/admin/keys",
        Some(&admin),
        Some(json!({"scopes": ["root"]})),
    );
    assert_eq!(code, 400, "{body}");

    let (_, audit) = call(&s, "GET", "/admin/audit", Some(&admin), None);
    let denied: Vec<&Value> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        // Unauthenticated refusals from one source are aggregated into a summary record.
        .filter(|r| {
            r["what"]
                .as_str()
                .is_some_and(|k| k.starts_with("auth-denied"))
        })
        .collect();
    assert!(denied.len() >= 5, "{audit}");
    assert!(
        denied.iter().any(|r| r["detail"]
            .as_str()
            .unwrap()
            .contains("no scope for model pii-ner")),
        "{audit}"
    );
}

#[test]
fn admin_routes_are_never_open_even_without_keys() {
    let home = Home::new();
    let s = home.serve(&["--models", "minilm"]);
    // Loopback without keys: inference is open (documented), admin is not.
    assert_eq!(
        call(&s, "POST", "/v1/embeddings", None, Some(embed("minilm"))).0,
        200
    );
    let (code, body) = call(&s, "GET", "/admin/plugins", None, None);
    assert_eq!(code, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("admin scope"),
        "{body}"
    );
}

#[test]
fn serve_refuses_a_non_loopback_address_without_keys() {
    let home = Home::new();
    let out = home
        .cmd(&["serve", "--listen", "0.0.0.0:0", "--models", "add"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to listen on 0.0.0.0:0 without API keys")
            && err.contains("llmos keys create"),
        "{err}"
    );
    let err = home.fails(&["serve", "--listen", "localhost:80"]);
    assert!(err.contains("expected IP:PORT"), "{err}");
}

/// A home with content-policy (denies "forbidden") before minilm, and a panicking
/// preprocessor before tiny-classifier.
fn plugin_home() -> Home {
    let home = Home::new();
    for (dir, extra) in [
        ("content-policy", vec!["--set", "denied_terms=forbidden"]),
        ("testing/panic", vec![]),
        ("normalize", vec![]),
    ] {
        let w = wasm(dir);
        let m = manifest(dir);
        let mut args = vec![
            "plugin",
            "install",
            w.to_str().unwrap(),
            "--manifest",
            m.to_str().unwrap(),
        ];
        args.extend(extra);
        let out = home.cmd(&args).output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
    let cfg = home.dir.path().join("llmos.toml");
    let mut t = std::fs::read_to_string(&cfg).unwrap();
    t.push_str(
        "\n[pipelines.minilm]\npreprocessors = [\"normalize\"]\nrequest_policies = [\"content-policy\"]\n\n\
         [pipelines.tiny-classifier]\npreprocessors = [\"test-panic\"]\n",
    );
    std::fs::write(&cfg, t).unwrap();
    home
}

#[test]
fn pipelines_deny_with_403_fail_with_502_and_the_server_keeps_serving() {
    let home = plugin_home();
    let s = home.serve(&["--models", "minilm,tiny-classifier"]);
    let (code, ok) = call(
        &s,
        "POST",
        "/v1/embeddings",
        None,
        Some(json!({"model": "minilm", "input": ["a  fine\u{200b} text"]})),
    );
    assert_eq!(code, 200, "{ok}");
    let (code, body) = call(
        &s,
        "POST",
        "/v1/embeddings",
        None,
        Some(json!({"model": "minilm", "input": "this is Forbidden"})),
    );
    assert_eq!(code, 403, "{body}");
    assert_eq!(body["error"]["code"], "policy_denied");
    assert_eq!(body["error"]["param"], "content-policy");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("denied by plugin content-policy"),
        "{body}"
    );
    let (code, body) = call(
        &s,
        "POST",
        "/v1/classify",
        None,
        Some(json!({"model": "tiny-classifier", "input": "good"})),
    );
    assert_eq!(code, 502, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("test-panic"),
        "{body}"
    );
    // The 502 names the trap, not the guest's wasm backtrace.
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("unreachable") && !message.contains("backtrace"),
        "{body}"
    );
    // Neither KServe nor token ids can bypass a text pipeline.
    let kserve = json!({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["this is forbidden"]}]});
    let (code, body) = call(&s, "POST", "/v2/models/minilm/infer", None, Some(kserve));
    assert_eq!(code, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("bypass"), "{body}");
    let (code, _) = call(
        &s,
        "POST",
        "/v1/embeddings",
        None,
        Some(json!({"model": "minilm", "input": [101, 102]})),
    );
    assert_eq!(code, 400);
    // Still serving.
    assert_eq!(
        call(&s, "POST", "/v1/embeddings", None, Some(embed("minilm"))).0,
        200
    );
    // Per-plugin metrics: content-policy ran for 3 requests and denied one; the panic trapped.
    let m = client()
        .get(s.at("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    for (line, want) in [
        ("llmos_plugin_traps_total{plugin=\"test-panic\"} ", "1"),
        (
            "llmos_plugin_policy_denials_total{plugin=\"content-policy\"} ",
            "1",
        ),
        ("llmos_plugin_calls_total{plugin=\"content-policy\"} ", "3"),
    ] {
        let got = m
            .lines()
            .find_map(|l| l.strip_prefix(line))
            .unwrap_or_else(|| panic!("{line} missing:\n{m}"));
        assert_eq!(got, want, "{line}");
    }
}

#[test]
fn llmos_run_applies_the_pipeline_without_http() {
    let home = plugin_home();
    let out = home.json(&["run", "--model", "minilm", "--text", "a fine text"]);
    assert_eq!(out["data"][0]["embedding"].as_array().unwrap().len(), 384);
    let err = home.fails(&["run", "--model", "minilm", "--text", "forbidden words"]);
    assert!(err.contains("denied by plugin \"content-policy\""), "{err}");
}

#[test]
fn admin_api_installs_lists_disables_and_removes_plugins() {
    let home = Home::new();
    let admin = create_key(&home, &["admin"]);
    let s = home.serve(&["--models", "minilm"]);
    let w = wasm("pii-redact");
    let m = manifest("pii-redact");
    let body =
        json!({"path": w, "manifest": m, "grants": ["inference:pii-ner"], "approve_limits": true});
    let (code, made) = call(
        &s,
        "POST",
        "/admin/plugins",
        Some(&admin),
        Some(body.clone()),
    );
    assert_eq!(code, 201, "{made}");
    assert_eq!(made["plugin"]["manifest"]["name"], "pii-redact");
    let (code, again) = call(&s, "POST", "/admin/plugins", Some(&admin), Some(body));
    assert_eq!(code, 409, "{again}");
    let (code, bad) = call(
        &s,
        "POST",
        "/admin/plugins",
        Some(&admin),
        Some(json!({"path": "/nonexistent.wasm", "colour": 1})),
    );
    assert_eq!(code, 400, "{bad}");
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap()
            .contains("accepted fields"),
        "{bad}"
    );
    let (_, list) = call(&s, "GET", "/admin/plugins", Some(&admin), None);
    assert_eq!(list["plugins"].as_array().unwrap().len(), 1, "{list}");
    let (code, off) = call(
        &s,
        "POST",
        "/admin/plugins/pii-redact/disable",
        Some(&admin),
        None,
    );
    assert_eq!(
        (code, off["enabled"].as_bool()),
        (200, Some(false)),
        "{off}"
    );
    let (code, on) = call(
        &s,
        "POST",
        "/admin/plugins/pii-redact/enable",
        Some(&admin),
        None,
    );
    assert_eq!((code, on["enabled"].as_bool()), (200, Some(true)), "{on}");
    let (code, rev) = call(
        &s,
        "POST",
        "/admin/plugins/pii-redact/revoke",
        Some(&admin),
        Some(json!({"capabilities": ["inference:pii-ner"]})),
    );
    assert_eq!(code, 200, "{rev}");
    let (code, gone) = call(
        &s,
        "DELETE",
        "/admin/plugins/pii-redact",
        Some(&admin),
        None,
    );
    assert_eq!(code, 200, "{gone}");
    assert_eq!(
        call(&s, "GET", "/admin/plugins/pii-redact", Some(&admin), None).0,
        404
    );
}

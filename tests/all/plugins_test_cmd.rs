//! `llmos plugin test` through the real binary: one traced call of an installed plugin
//! (result, logs, host calls, capabilities used or denied, time and memory), with the probe
//! test plugin and the shipped plugins.

use serde_json::Value;

use crate::plugins_common::{manifest, wasm};
use crate::support::{Home, text};

fn run(home: &Home, args: &[&str]) -> (bool, String, String) {
    let out = home.cmd(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        text(&out),
    )
}

fn ok(home: &Home, args: &[&str]) -> String {
    let (ok, stdout, all) = run(home, args);
    assert!(ok, "llmos {args:?} failed:\n{all}");
    stdout
}

fn install(home: &Home, dir: &str, extra: &[&str]) {
    let (c, m) = (wasm(dir), manifest(dir));
    let mut args = vec![
        "plugin",
        "install",
        c.to_str().unwrap(),
        "--manifest",
        m.to_str().unwrap(),
        // The repository's own guests (approval itself is tested in plugins_hardening).
        "--approve-limits",
    ];
    args.extend_from_slice(extra);
    ok(home, &args);
}

fn test_json(home: &Home, args: &[&str]) -> Value {
    let mut all = vec!["plugin", "test"];
    all.extend_from_slice(args);
    all.push("--json");
    serde_json::from_str(&ok(home, &all)).unwrap()
}

fn calls(r: &Value) -> Vec<(String, String)> {
    r["trace"]["host_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["function"].as_str().unwrap().to_string(),
                c["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn probe_shows_a_granted_kv_call_and_a_denied_secret() {
    let home = Home::new();
    install(&home, "testing/probe", &["--grant", "kv"]);
    let r = test_json(
        &home,
        &[
            "test-probe",
            "--input",
            "kv.set k hello",
            "--input",
            "kv.get k",
            "--input",
            "secret token",
        ],
    );
    assert_eq!(r["function"], "preprocess");
    assert_eq!(
        r["result"],
        serde_json::json!(["ok:()", "ok:Some(\"hello\")", "err:denied:secret:token"])
    );
    assert_eq!(
        calls(&r),
        [
            ("kv.set".into(), "ok: stored".into()),
            ("kv.get".into(), "ok: 5 bytes".into()),
            ("secrets.get".into(), "denied(secret:token)".into()),
        ]
    );
    assert_eq!(
        r["trace"]["host_calls"][0]["args"],
        "key=\"k\" value=5 bytes"
    );
    assert_eq!(r["trace"]["used"], serde_json::json!(["kv"]));
    assert_eq!(r["trace"]["denied"], serde_json::json!(["secret:token"]));
    let spent = &r["spent"];
    assert_eq!(spent["host_calls"], 3);
    assert_eq!(spent["max_host_calls"], 10000);
    let peak = spent["peak_memory_bytes"].as_u64().unwrap();
    assert!(
        peak > 0 && peak <= spent["memory_limit_bytes"].as_u64().unwrap(),
        "{spent}"
    );
    let wall = spent["wall_ms"].as_f64().unwrap();
    assert!(wall > 0.0 && wall < 100.0, "{spent}");
    assert!(spent["fuel"].is_null());

    // Revoked, the same call is denied: the trace follows the grants in force.
    ok(&home, &["plugin", "revoke", "test-probe", "kv"]);
    let r = test_json(&home, &["test-probe", "--input", "kv.get k"]);
    assert_eq!(calls(&r), [("kv.get".into(), "denied(kv)".into())]);
    assert_eq!(r["trace"]["used"], serde_json::json!([]));
    assert_eq!(r["trace"]["denied"], serde_json::json!(["kv"]));

    // The text form, for people.
    let out = ok(
        &home,
        &["plugin", "test", "test-probe", "--input", "kv.get k"],
    );
    for want in [
        "test-probe 0.1.0 (preprocessor): preprocess",
        "result  [\"err:denied:kv\"]",
        "kv.get(key=\"k\") -> denied(kv)",
        "denied  kv",
        "host calls   1 (limit 10000)",
        "peak memory",
    ] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
}

#[test]
fn pii_redact_shows_its_log_and_the_denied_model_then_uses_it_with_model() {
    let home = Home::new();
    install(&home, "pii-redact", &[]);
    let r = test_json(
        &home,
        &["pii-redact", "--input", "Alice wrote to bob@example.com"],
    );
    assert_eq!(
        r["result"],
        serde_json::json!(["Alice wrote to [EMAIL]"]),
        "{r:#}"
    );
    // Its config reads, then the model call, denied.
    let entities = |r: &Value| {
        calls(r)
            .into_iter()
            .find(|(f, _)| f == "inference.entities")
            .unwrap_or_else(|| panic!("no inference.entities call: {r:#}"))
            .1
    };
    assert!(calls(&r).iter().any(|(f, _)| f == "config.get"), "{r:#}");
    assert_eq!(entities(&r), "denied(inference:pii-ner)");
    assert_eq!(
        r["trace"]["denied"],
        serde_json::json!(["inference:pii-ner"])
    );
    let logs = r["trace"]["logs"].as_array().unwrap();
    assert!(
        logs.iter().any(|l| l["level"] == "debug"
            && l["message"]
                .as_str()
                .unwrap()
                .contains("NER model pii-ner not used")),
        "{r:#}"
    );

    // Granted and given the model, the plugin's entities call reaches it.
    ok(
        &home,
        &["plugin", "grant", "pii-redact", "inference:pii-ner"],
    );
    let r = test_json(
        &home,
        &[
            "pii-redact",
            "--model",
            "pii-ner",
            "--input",
            "Alice wrote to bob@example.com",
        ],
    );
    assert!(entities(&r).starts_with("ok: "), "{r:#}");
    assert_eq!(r["trace"]["used"], serde_json::json!(["inference:pii-ner"]));
    let out = r["result"][0].as_str().unwrap();
    assert!(!out.contains("Alice") && out.contains("[EMAIL]"), "{r:#}");
}

#[test]
fn policies_run_check_request_or_check_response_and_failures_fail_the_command() {
    let home = Home::new();
    install(&home, "content-policy", &["--set", "denied_terms=secret"]);
    let r = test_json(&home, &["content-policy", "--input", "a secret plan"]);
    assert_eq!(r["function"], "check-request");
    assert!(r["result"]["deny"].is_string(), "{r:#}");
    let r = test_json(
        &home,
        &[
            "content-policy",
            "--input",
            "hi",
            "--output-json",
            "{\"text\":\"fine\"}",
        ],
    );
    assert_eq!(r["function"], "check-response");
    assert_eq!(r["result"], serde_json::json!({"allow": null}));

    // A call stopped by a limit: the report is printed, the command fails naming the limit.
    install(&home, "testing/membomb", &[]);
    let (good, stdout, all) = run(&home, &["plugin", "test", "test-membomb", "--input", "x"]);
    assert!(!good, "{all}");
    assert!(
        stdout.contains("error   plugin test-membomb stopped: memory limit exceeded"),
        "{all}"
    );
    assert!(stdout.contains("peak memory"), "{all}");
    let (good, _, all) = run(&home, &["plugin", "test", "nope", "--input", "x"]);
    assert!(
        !good && all.contains("plugin nope is not installed"),
        "{all}"
    );
}

#[test]
fn probe_shows_wasi_http_requests_granted_and_denied() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { return };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    let home = Home::new();
    let grant = format!("http:127.0.0.1:{port}");
    install(&home, "testing/probe", &["--grant", &grant]);
    let url = format!("http://127.0.0.1:{port}/hook");
    let r = test_json(
        &home,
        &[
            "test-probe",
            "--input",
            &format!("http {url}"),
            "--input",
            "http https://example.com/",
        ],
    );
    assert_eq!(r["result"][0], "ok:204", "{r:#}");
    let calls = calls(&r);
    assert_eq!(
        calls,
        [
            ("wasi:http.handle".into(), "ok: status 204".into()),
            (
                "wasi:http.handle".into(),
                "denied(http:https://example.com:443)".into()
            ),
        ],
        "{r:#}"
    );
    assert_eq!(r["trace"]["host_calls"][0]["args"], format!("GET {url}"));
    assert_eq!(
        r["trace"]["used"],
        serde_json::json!([format!("http:http://127.0.0.1:{port}")])
    );
}

#[test]
fn an_integration_gets_a_synthetic_event_and_its_request_is_traced() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { return };
            let mut buf = vec![0u8; 16384];
            let n = s.read(&mut buf).unwrap_or(0);
            let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
            let _ = s.write_all(
                b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    let home = Home::new();
    let url = format!("url=http://127.0.0.1:{port}/hook");
    let grant = format!("http:127.0.0.1:{port}");
    install(&home, "webhook", &["--set", &url, "--grant", &grant]);
    let r = test_json(&home, &["webhook", "--input", "hello"]);
    assert_eq!(r["function"], "on-event");
    assert!(r["error"].is_null(), "{r:#}");
    let http: Vec<_> = calls(&r)
        .into_iter()
        .filter(|(f, _)| f == "wasi:http.handle")
        .collect();
    assert_eq!(
        http,
        [("wasi:http.handle".into(), "ok: status 204".into())],
        "{r:#}"
    );
    let got = rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
    assert!(got.starts_with("POST /hook"), "{got}");
}

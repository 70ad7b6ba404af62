//! content-policy's `classifier` rule through the real binary: the shipped plugin, granted
//! `inference:tiny-classifier` (the fixture sentiment model: negative / neutral / positive,
//! from its words), refuses requests whose `negative` score reaches the threshold; without
//! the grant it fails closed and the capability denial is in the audit log; bad rules are
//! configuration errors that say what is accepted.

use serde_json::{Value, json};

use crate::plugins_common::{manifest, wasm};
use crate::support::{Home, Server, call, text};

const RULE: &str = "tiny-classifier negative 0.6";

/// A home with content-policy (`classifier` = `rule`, `grants`) as minilm's request policy.
fn home(rule: &str, grants: &[&str]) -> Home {
    let home = Home::new();
    let (w, m) = (wasm("content-policy"), manifest("content-policy"));
    let set = format!("classifier={rule}");
    let mut args = vec![
        "plugin",
        "install",
        w.to_str().unwrap(),
        "--manifest",
        m.to_str().unwrap(),
    ];
    args.extend(["--set", &set]);
    for g in grants {
        args.extend(["--grant", g]);
    }
    let out = home.cmd(&args).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // The shipped 100 ms per call covers a warm model, not a test machine busy building: the
    // operator's knob for that is the limit, and these tests are about the rule, not speed.
    let limits = ["plugin", "limits", "content-policy", "--timeout-ms", "5000"];
    let out = home.cmd(&limits).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let cfg = home.dir.path().join("llmos.toml");
    let mut t = std::fs::read_to_string(&cfg).unwrap();
    t.push_str("\n[pipelines.minilm]\nrequest_policies = [\"content-policy\"]\n");
    std::fs::write(&cfg, t).unwrap();
    home
}

fn embed(s: &Server, input: Value) -> (u16, Value) {
    call(
        s,
        "POST",
        "/v1/embeddings",
        None,
        Some(json!({"model": "minilm", "input": input})),
    )
}

/// tiny-classifier's `negative` score of `text`, asked directly.
fn negative(s: &Server, text: &str) -> f64 {
    let (code, v) = call(
        s,
        "POST",
        "/v1/classify",
        None,
        Some(json!({"model": "tiny-classifier", "input": text})),
    );
    assert_eq!(code, 200, "{v}");
    v["data"][0]["scores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["label"] == "negative")
        .unwrap()["score"]
        .as_f64()
        .unwrap()
}

fn metric(s: &Server, line: &str) -> String {
    let m = reqwest::blocking::get(s.at("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    m.lines()
        .find_map(|l| l.strip_prefix(line))
        .unwrap_or_else(|| panic!("{line} missing:\n{m}"))
        .to_string()
}

#[test]
fn a_classifier_rule_refuses_requests_the_model_flags() {
    let home = home(RULE, &["inference:tiny-classifier"]);
    let s = home.serve(&["--models", "minilm,tiny-classifier"]);
    let (hostile, kind) = ("I hate this awful movie", "I love this great movie");
    // What the model says, asked directly (no pipeline on tiny-classifier).
    assert!(negative(&s, hostile) >= 0.6, "{}", negative(&s, hostile));
    assert!(negative(&s, kind) < 0.6, "{}", negative(&s, kind));
    let (code, body) = embed(&s, json!([kind, "the food was fine"]));
    assert_eq!(code, 200, "{body}");
    let (code, body) = embed(&s, json!([kind, hostile]));
    assert_eq!(code, 403, "{body}");
    assert_eq!(body["error"]["code"], "policy_denied");
    assert_eq!(body["error"]["param"], "content-policy");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("input 1 is classified \"negative\" by model tiny-classifier with score")
            && msg.contains("(threshold 0.6)"),
        "{msg}"
    );
    // Zero-shot classify on minilm goes through the same policy.
    let (code, body) = call(
        &s,
        "POST",
        "/v1/classify",
        None,
        Some(json!({"model": "minilm", "input": hostile, "labels": ["films", "food"]})),
    );
    assert_eq!(code, 403, "{body}");
    // Counted like every policy denial.
    assert_eq!(
        metric(
            &s,
            "llmos_plugin_policy_denials_total{plugin=\"content-policy\"} "
        ),
        "2"
    );
}

#[test]
fn without_the_grant_a_classifier_rule_fails_closed_and_the_denial_is_audited() {
    let home = home(RULE, &[]);
    let s = home.serve(&["--models", "minilm,tiny-classifier"]);
    let (code, body) = embed(&s, json!("I love this great movie"));
    assert_eq!(code, 502, "{body}");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("inference:tiny-classifier"), "{msg}");
    assert!(s.terminate());
    let out = home.cmd(&["audit", "tail", "-n", "20"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let denied = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .any(|r| r["what"] == "denied" && r["capability"] == "inference:tiny-classifier");
    assert!(denied, "no audited denial of inference:tiny-classifier");
}

#[test]
fn bad_classifier_rules_say_what_is_accepted() {
    for (rule, needle) in [
        (
            "tiny-classifier negative",
            "2 fields; expected MODEL LABEL THRESHOLD",
        ),
        (
            "tiny-classifier negative 1.5",
            "is not a number from 0 to 1",
        ),
        (
            "tiny-classifier angry 0.5",
            "; its labels are negative, neutral, positive",
        ),
    ] {
        let home = home(rule, &["inference:tiny-classifier"]);
        let s = home.serve(&["--models", "minilm,tiny-classifier"]);
        let (code, body) = embed(&s, json!("hello"));
        assert_eq!(code, 502, "{rule}: {body}");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{rule}: {msg}");
    }
}

/// The shipped `spam` model (trained by `llmos models pull`) behind the shipped plugin: an
/// obvious SMS spam is refused, ordinary messages pass.
#[test]
fn the_spam_model_refuses_spam_through_the_shipped_plugin() {
    let home = home("spam spam 0.9", &["inference:spam"]);
    let s = home.serve(&["--models", "minilm,spam"]);
    let spam = "WINNER!! You have been selected to receive a £900 prize reward! To claim call 09061701461. Claim code KL341. Valid 12 hours only.";
    let (code, v) = embed(&s, json!([spam]));
    assert_eq!(code, 403, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("\"spam\" by model spam"), "{msg}");
    for ham in [
        "Are we still meeting for lunch at noon tomorrow?",
        "The quarterly report is attached, comments welcome by Friday.",
    ] {
        let (code, v) = embed(&s, json!([ham]));
        assert_eq!(code, 200, "{ham}: {v}");
    }
}

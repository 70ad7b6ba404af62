//! The plugins shipped with llmos: normalize, pii-redact, content-policy, webhook, and a
//! pipeline that chains them.

use std::sync::atomic::Ordering;
use std::time::Duration;

use llmos::plugins::pipeline::{self, Chain, Outcome};
use llmos::plugins::registry;
use llmos::plugins::{Event, PluginError, Request, RequestVerdict, Response, ResponseVerdict};

use crate::plugins_common::{ctx, host, install, request, serve};

#[test]
fn normalize_nfkc_controls_and_whitespace() {
    let (_d, host) = host();
    let n = install(&host, "normalize", &[], &[]);
    let out = host
        .preprocess(
            &n,
            request(&[
                "  Ｈｅｌｌｏ\u{200B}\u{0007}   ｗｏｒｌｄ  ﬁne\t\n x² ",
                "bi\u{202E}di\u{FEFF} \r\n\r\n next",
            ]),
        )
        .unwrap();
    assert_eq!(out, ["Hello world fine x2", "bidi next"]);
    let mut keep = std::collections::BTreeMap::new();
    keep.insert("keep_newlines".to_string(), Some("true".to_string()));
    registry::configure(&host, &n, &keep).unwrap();
    let out = host
        .preprocess(&n, request(&["a  b\n\n\n\nc \n d"]))
        .unwrap();
    assert_eq!(out, ["a b\n\nc\nd"]);
}

#[test]
fn pii_redact_validated_patterns() {
    let (_d, host) = host();
    let p = install(&host, "pii-redact", &[], &[]);
    let text = "Mail jane.doe@example.com or call +49 30 1234567. Card 4111 1111 1111 1111, \
                not 4111 1111 1111 1112. IBAN DE89 3704 0044 0532 0130 00, not DE88 3704 0044 0532 0130 00. \
                Hosts 192.168.1.20 and 2001:db8::1, not 999.1.1.1. Order 2024-01-15.";
    let out = host.preprocess(&p, request(&[text])).unwrap();
    assert_eq!(
        out[0],
        "Mail [EMAIL] or call [PHONE]. Card [CREDIT_CARD], \
         not 4111 1111 1111 1112. IBAN [IBAN], not DE88 3704 0044 0532 0130 00. \
         Hosts [IP] and [IP], not 999.1.1.1. Order 2024-01-15."
    );
}

#[test]
fn pii_redact_uses_the_ner_model_only_when_granted_and_a_fixed_mask() {
    let (_d, host) = host();
    let p = install(&host, "pii-redact", &[], &[("replacement", "***")]);
    let text = "Alice met Bob in Berlin, alice@example.org";
    // Not granted: patterns only (the plugin handles `denied` and degrades).
    assert_eq!(
        host.preprocess(&p, request(&[text])).unwrap(),
        ["Alice met Bob in Berlin, ***"]
    );
    registry::grant(&host, &p, &["inference:pii-ner".into()]).unwrap();
    assert_eq!(
        host.preprocess(&p, request(&[text])).unwrap(),
        ["*** met *** in ***, ***"]
    );
    // require_ner with the model denied fails the request with the plugin's typed error.
    registry::revoke(&host, &p, &["inference:pii-ner".into()]).unwrap();
    let mut c = std::collections::BTreeMap::new();
    c.insert("require_ner".to_string(), Some("true".to_string()));
    registry::configure(&host, &p, &c).unwrap();
    match host.preprocess(&p, request(&[text])) {
        Err(e @ PluginError::Guest { .. }) => {
            let msg = e.to_string();
            let PluginError::Guest { plugin, error, .. } = e else {
                unreachable!()
            };
            assert_eq!(plugin, "pii-redact");
            assert_eq!(format!("{error:?}"), "Error::Denied(\"inference:pii-ner\")");
            assert!(
                msg.contains("`llmos plugin grant pii-redact inference:pii-ner`"),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
}

fn policy(host: &llmos::plugins::PluginHost, config: &[(&str, &str)]) -> String {
    install(host, "content-policy", &[], config)
}

#[test]
fn content_policy_request_rules() {
    let (_d, host) = host();
    let p = policy(
        &host,
        &[
            ("denied_terms", "forbidden;top secret"),
            ("denied_patterns", r"\bssn:\s*\d{3}-\d{2}-\d{4}"),
            ("max_input_chars", "40"),
            ("allowed_models", "key-a=minilm,bert;*=bert"),
        ],
    );
    let check = |inputs: &[&str], model: &str, key: Option<&str>| {
        let mut r = request(inputs);
        r.context.model = model.into();
        r.context.key_id = key.map(Into::into);
        host.check_request(&p, r).unwrap()
    };
    assert_eq!(
        check(&["hello"], "minilm", Some("key-a")),
        RequestVerdict::Allow
    );
    let deny = |v: RequestVerdict, needle: &str| match v {
        RequestVerdict::Deny(reason) => assert!(reason.contains(needle), "{reason}"),
        other => panic!("expected deny({needle}), got {other:?}"),
    };
    deny(
        check(&["this is Forbidden."], "minilm", Some("key-a")),
        "\"forbidden\"",
    );
    deny(check(&["a TOP  secret"], "minilm", Some("key-a")), "");
    assert_eq!(
        check(&["unforbiddenness"], "minilm", Some("key-a")),
        RequestVerdict::Allow
    );
    deny(
        check(&["my ssn: 123-45-6789"], "minilm", Some("key-a")),
        "pattern",
    );
    deny(
        check(&[&"x".repeat(41)], "minilm", Some("key-a")),
        "limit is 40",
    );
    deny(
        check(&["hi"], "minilm", Some("key-b")),
        "not allowed for key-b",
    );
    deny(check(&["hi"], "minilm", None), "unauthenticated");
    assert_eq!(check(&["hi"], "bert", None), RequestVerdict::Allow);
}

#[test]
fn content_policy_response_deny_and_redact() {
    let (_d, host) = host();
    let p = policy(&host, &[("response_denied_terms", "internal")]);
    let resp = |json: &str| Response {
        context: ctx("minilm"),
        inputs: vec!["q".into()],
        output_json: json.into(),
    };
    assert_eq!(
        host.check_response(&p, resp(r#"{"label":"ok"}"#)).unwrap(),
        ResponseVerdict::Allow
    );
    assert!(matches!(
        host.check_response(&p, resp(r#"{"label":"Internal"}"#))
            .unwrap(),
        ResponseVerdict::Deny(_)
    ));
    let mut c = std::collections::BTreeMap::new();
    c.insert("response_action".to_string(), Some("redact".to_string()));
    registry::configure(&host, &p, &c).unwrap();
    assert_eq!(
        host.check_response(&p, resp(r#"{"label":"internal"}"#))
            .unwrap(),
        ResponseVerdict::Modify(r#"{"label":"***"}"#.into())
    );
}

fn event() -> Event {
    Event {
        kind: "inference.finished".into(),
        context: ctx("minilm"),
        timestamp_ms: 1,
        payload_json: r#"{"input_count":1}"#.into(),
    }
}

#[test]
fn webhook_posts_only_to_a_granted_host() {
    let (_d, host) = host();
    let server = serve();
    let url = format!("http://127.0.0.1:{}/events", server.addr.port());
    let w = install(&host, "webhook", &[], &[("url", &url)]);

    // Not granted: the plugin's call fails, and the server sees no connection at all.
    let e = host.deliver(&w, event()).unwrap_err().to_string();
    assert!(
        e.contains("webhook") && e.contains("HttpRequestDenied"),
        "{e}"
    );
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(server.connections.load(Ordering::SeqCst), 0);

    // Granted, with the token secret.
    registry::grant(
        &host,
        &w,
        &[
            format!("http:127.0.0.1:{}", server.addr.port()),
            "secret:token".into(),
        ],
    )
    .unwrap();
    registry::set_secret(&host, &w, "token", "t0k").unwrap();
    host.deliver(&w, event()).unwrap();
    let (head, body) = server
        .requests
        .recv_timeout(Duration::from_secs(5))
        .unwrap();
    assert!(head.starts_with("POST /events HTTP/1.1"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("authorization: bearer t0k"),
        "{head}"
    );
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["kind"], "inference.finished");
    assert_eq!(json["model"], "minilm");
    assert_eq!(json["payload"]["input_count"], 1);

    // Events not configured are ignored.
    let mut other = event();
    other.kind = "document.ingested".into();
    host.deliver(&w, other).unwrap();
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn pipeline_chains_plugins_and_integrations_never_fail_the_response() {
    let (_d, host) = host();
    let server = serve();
    install(&host, "normalize", &[], &[]);
    install(&host, "pii-redact", &[], &[]);
    install(
        &host,
        "content-policy",
        &[],
        &[
            ("denied_terms", "forbidden"),
            ("response_denied_terms", "secret"),
        ],
    );
    // The webhook is not granted its host: the pipeline must still succeed.
    install(
        &host,
        "webhook",
        &[],
        &[("url", &format!("http://{}/", server.addr))],
    );
    let chain = Chain {
        preprocessors: vec!["normalize".into(), "pii-redact".into()],
        request_policies: vec!["content-policy".into()],
        response_policies: vec!["content-policy".into()],
        integrations: vec!["webhook".into()],
    };
    let mut seen = Vec::new();
    let out = pipeline::run(
        &host,
        &chain,
        ctx("minilm"),
        vec!["  write to ｂｏｂ@example.com ".into()],
        |inputs| {
            seen = inputs.to_vec();
            Ok(serde_json::json!({ "echo": inputs }))
        },
    )
    .unwrap();
    assert_eq!(seen, ["write to [EMAIL]"]);
    assert_eq!(
        out,
        Outcome::Completed {
            inputs: vec!["write to [EMAIL]".into()],
            output: serde_json::json!({ "echo": ["write to [EMAIL]"] }),
        }
    );
    let denied = pipeline::run(
        &host,
        &chain,
        ctx("minilm"),
        vec!["forbidden".into()],
        |_| panic!("a denied request must not reach inference"),
    )
    .unwrap();
    assert!(
        matches!(
            denied,
            Outcome::Denied {
                stage: "request",
                ..
            }
        ),
        "{denied:?}"
    );
    let denied = pipeline::run(&host, &chain, ctx("minilm"), vec!["ok".into()], |_| {
        Ok(serde_json::json!({"text": "a secret"}))
    })
    .unwrap();
    assert!(
        matches!(
            denied,
            Outcome::Denied {
                stage: "response",
                ..
            }
        ),
        "{denied:?}"
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(server.connections.load(Ordering::SeqCst), 0);

    // An unused-plugin check: the integration is a different world than a preprocessor.
    let e = host
        .preprocess(
            "webhook",
            Request {
                context: ctx("m"),
                inputs: vec![],
            },
        )
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("targets the integration world, not preprocessor"),
        "{e}"
    );
}

#[test]
fn a_hanging_integration_never_delays_the_pipeline() {
    let (_d, host) = host();
    // A server that accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s);
        }
    });
    install(&host, "testing/echo", &[], &[]);
    install(
        &host,
        "webhook",
        &[&format!("http:127.0.0.1:{port}")],
        &[("url", &format!("http://127.0.0.1:{port}/"))],
    );
    let chain = Chain {
        preprocessors: vec!["test-echo".into()],
        integrations: vec!["webhook".into()],
        ..Chain::default()
    };
    let start = std::time::Instant::now();
    for i in 0..6 {
        let text = format!("request {i}");
        let out = pipeline::run(&host, &chain, ctx("minilm"), vec![text.clone()], |inputs| {
            Ok(serde_json::json!(inputs))
        })
        .unwrap();
        assert_eq!(
            out,
            Outcome::Completed {
                inputs: vec![text.clone()],
                output: serde_json::json!([text])
            }
        );
    }
    // Each webhook waits up to its 5 s budget; the requests did not wait for them.
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn pipeline_runs_from_an_async_executor() {
    let (_d, host) = host();
    install(&host, "normalize", &[], &[]);
    let chain = Chain {
        preprocessors: vec!["normalize".into()],
        ..Chain::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let out = rt
        .block_on(pipeline::run_async(
            &host,
            &chain,
            ctx("minilm"),
            vec![" ａ  b ".into()],
            async |inputs: Vec<String>| {
                Ok(serde_json::json!({ "n": inputs.len(), "first": inputs[0] }))
            },
        ))
        .unwrap();
    assert_eq!(
        out,
        Outcome::Completed {
            inputs: vec!["a b".into()],
            output: serde_json::json!({ "n": 1, "first": "a b" }),
        }
    );
}

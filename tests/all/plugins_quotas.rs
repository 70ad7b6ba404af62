//! Host-call deadlines and quotas: hostile plugins (`testing/amplify`, `testing/kvhog`)
//! against the real binary, the real models and real plugin files. A plugin's host calls
//! end at its time limit (the model drops the late request), its inference calls count
//! against per-call quotas, and its kv data against per-plugin quotas.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use llmos::plugins::registry;
use llmos::plugins::{GuestError, PluginError};
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::plugins_common::{host, install, manifest, request, wasm};
use crate::support::{Home, Server, text};

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// `llmos ARGS` must succeed.
fn run(home: &Home, args: &[&str]) -> String {
    let out = home.cmd(args).output().unwrap();
    assert!(out.status.success(), "llmos {args:?}:\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Installs a plugin with the CLI, as an operator would.
fn install_cli(home: &Home, dir: &str, grants: &[&str]) {
    let (w, m) = (wasm(dir), manifest(dir));
    let mut args = vec![
        "plugin",
        "install",
        w.to_str().unwrap(),
        "--manifest",
        m.to_str().unwrap(),
    ];
    for g in grants {
        args.extend(["--grant", g]);
    }
    run(home, &args);
}

fn add_config(home: &Home, toml: &str) {
    let cfg = home.dir.path().join("llmos.toml");
    let mut t = std::fs::read_to_string(&cfg).unwrap();
    t.push_str(toml);
    std::fs::write(&cfg, t).unwrap();
}

/// POSTs JSON; returns status, body and how long it took.
fn post(s: &Server, path: &str, key: Option<&str>, body: Value) -> (u16, Value, Duration) {
    let start = Instant::now();
    let mut r = client().post(s.at(path)).json(&body);
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    let r = r.send().unwrap();
    let code = r.status().as_u16();
    (code, r.json().unwrap_or(Value::Null), start.elapsed())
}

fn message(body: &Value) -> String {
    body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A home where `test-amplify` (granted `inference:minilm`) preprocesses pii-ner's requests,
/// so that plain `/v1/embeddings` requests to minilm use no plugin at all.
fn amplify_home(limits: &[&str]) -> Home {
    let home = Home::new();
    install_cli(&home, "testing/amplify", &["inference:minilm"]);
    let mut args = vec!["plugin", "limits", "test-amplify"];
    args.extend(limits);
    run(&home, &args);
    add_config(
        &home,
        "\n[models.overrides.minilm]\nworkers = 2\nmax_batch_tokens = 2048\n\n\
         [pipelines.pii-ner]\npreprocessors = [\"test-amplify\"]\n",
    );
    home
}

#[test]
fn amplifying_plugin_stops_at_its_time_limit_and_plain_requests_are_not_delayed() {
    // Quotas raised out of the way: only the time limit bounds the plugin here.
    let home = amplify_home(&[
        "--timeout-ms",
        "300",
        "--max-inference-calls",
        "100000",
        "--max-inference-tokens",
        "10000000",
    ]);
    let s = home.serve(&["--models", "minilm,pii-ner"]);
    let plain = json!({"model": "minilm", "input": ["a plain request that uses no plugin"]});
    for _ in 0..2 {
        assert_eq!(post(&s, "/v1/embeddings", None, plain.clone()).0, 200);
    }
    // Two hostile requests at once, each asking for 1000 calls of 256 texts of 2 KB.
    let done = Arc::new(AtomicUsize::new(0));
    let hostile: Vec<_> = (0..2)
        .map(|_| {
            let (url, done) = (s.at("/v1/entities"), done.clone());
            std::thread::spawn(move || {
                let start = Instant::now();
                let r = client()
                    .post(url)
                    .json(&json!({"model": "pii-ner", "input": "1000 256 2048"}))
                    .send()
                    .unwrap();
                let code = r.status().as_u16();
                let body: Value = r.json().unwrap_or(Value::Null);
                done.fetch_add(1, Ordering::SeqCst);
                (code, body, start.elapsed())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let mut plain_times = Vec::new();
    while done.load(Ordering::SeqCst) < 2 || plain_times.len() < 3 {
        let (code, body, took) = post(&s, "/v1/embeddings", None, plain.clone());
        assert_eq!(code, 200, "{body}");
        plain_times.push(took);
    }
    for h in hostile {
        let (code, body, took) = h.join().unwrap();
        eprintln!("hostile request: {code} after {took:?}");
        assert_eq!(code, 502, "{body}");
        let msg = message(&body);
        // Stopped either inside a host call (waiting for the model) or by the epoch deadline
        // while running guest code (under load, which comes first is a race): both name the
        // plugin and its limit.
        assert!(
            msg.contains("test-amplify")
                && (msg.contains("time limit of 300 ms")
                    || msg.contains("time limit exceeded (300 ms allowed per call")),
            "{msg}"
        );
    }
    let worst = plain_times.iter().max().copied().unwrap_or_default();
    eprintln!(
        "plain /v1/embeddings during the hostile requests: {} requests, worst {worst:?}",
        plain_times.len()
    );
    assert!(
        worst < Duration::from_secs(2),
        "a plain request waited {worst:?} behind the hostile plugin's model time"
    );
    // The failed requests are counted under their model, not under an empty label.
    let text = client()
        .get(s.at("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let line = r#"llmos_http_requests_total{route="/v1/entities",model="pii-ner",status="502"}"#;
    assert_eq!(metric(&text, line), 2.0, "{text}");
}

#[test]
fn plugin_inference_counts_against_per_call_quotas() {
    // A generous time limit: the default quotas stop the plugin, not its time.
    let home = amplify_home(&["--timeout-ms", "5000"]);
    let info = run(&home, &["plugin", "info", "test-amplify"]);
    assert!(
        info.contains("64 inference calls and 16384 inference tokens per call"),
        "{info}"
    );
    let s = home.serve(&["--models", "minilm,pii-ner"]);
    let hostile = |input: &str| {
        post(
            &s,
            "/v1/entities",
            None,
            json!({"model": "pii-ner", "input": input}),
        )
    };
    // One call of 256 texts of 2 KB: more tokens than the quota, refused before it runs.
    let (code, body, took) = hostile("1 256 2048");
    eprintln!("token quota: {code} after {took:?}");
    assert_eq!(code, 502, "{body}");
    let msg = message(&body);
    assert!(
        msg.contains("test-amplify") && msg.contains("max_inference_tokens"),
        "{msg}"
    );
    // Many small calls: the 65th is refused.
    let (code, body, _) = hostile("1000 1 8");
    assert_eq!(code, 502, "{body}");
    let msg = message(&body);
    assert!(
        msg.contains("64 inference calls") && msg.contains("max_inference_calls"),
        "{msg}"
    );
    // Within the quotas the plugin works.
    let (code, body, _) = hostile("3 2 64");
    assert_eq!(code, 200, "{body}");
}

#[test]
fn kv_quota_refuses_writes_past_it_and_usage_is_shown() {
    let home = Home::new();
    install_cli(&home, "testing/kvhog", &["kv"]);
    run(
        &home,
        &["plugin", "limits", "test-kvhog", "--timeout-ms", "20000"],
    );
    let key = home.json(&["keys", "create", "--scope", "models:*", "--scope", "admin"])["secret"]
        .as_str()
        .unwrap()
        .to_string();
    add_config(
        &home,
        "\n[pipelines.minilm]\npreprocessors = [\"test-kvhog\"]\n",
    );
    let s = home.serve(&["--models", "minilm"]);
    let kv = |input: &str| {
        post(
            &s,
            "/v1/embeddings",
            Some(&key),
            json!({"model": "minilm", "input": [input]}),
        )
    };
    let (code, body, _) = kv("write a 15 1048576");
    assert_eq!(code, 200, "{body}");
    // 16 MiB by default: the 16th MiB-sized value does not fit.
    let (code, body, _) = kv("write b 2 1048576");
    assert_eq!(code, 502, "{body}");
    let msg = message(&body);
    assert!(
        msg.contains("test-kvhog") && msg.contains("kv quota of 16777216 bytes"),
        "{msg}"
    );
    let info: Value = client()
        .get(s.at("/admin/plugins/test-kvhog"))
        .bearer_auth(&key)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let used = info["kv_usage"]["bytes"].as_u64().unwrap();
    assert!((15 << 20..16 << 20).contains(&used), "{info}");
    assert_eq!(info["kv_usage"]["keys"], 15, "{info}");
    // Deleting frees the quota.
    assert_eq!(kv("delete a 15").0, 200);
    let (code, body, _) = kv("write b 2 1048576");
    assert_eq!(code, 200, "{body}");
    assert!(s.terminate());
    let info = run(&home, &["plugin", "info", "test-kvhog"]);
    assert!(info.contains("2 of 10000 keys"), "{info}");
}

fn limit_message(r: Result<Vec<String>, PluginError>) -> String {
    match r {
        Err(PluginError::Guest {
            error: GuestError::LimitExceeded(m),
            ..
        }) => m,
        other => panic!("expected limit-exceeded, got {other:?}"),
    }
}

#[test]
fn kv_key_and_value_quotas_are_operator_adjustable() {
    let (_d, host) = host();
    let p = install(&host, "testing/kvhog", &["kv"], &[]);
    let o = llmos::plugins::limits::LimitsRequest {
        timeout_ms: Some(10_000),
        kv_max_keys: Some(5),
        kv_max_value_bytes: Some(100),
        ..Default::default()
    };
    registry::set_limits(&host, &p, o).unwrap();
    let msg = limit_message(host.preprocess(&p, request(&["write k 6 10"])));
    assert!(
        msg.contains("5 keys") && msg.contains("kv_max_keys"),
        "{msg}"
    );
    let usage = llmos::plugins::state::kv_usage(host.store(), &p).unwrap();
    assert_eq!(usage.keys, 5);
    // Overwriting a key adds none.
    host.preprocess(&p, request(&["write k 5 20"])).unwrap();
    let after = llmos::plugins::state::kv_usage(host.store(), &p).unwrap();
    assert_eq!((after.keys, after.bytes), (5, usage.bytes + 50));
    let msg = limit_message(host.preprocess(&p, request(&["write v 1 101"])));
    assert!(msg.contains("100 bytes (kv_max_value_bytes)"), "{msg}");
    // Removing the plugin clears the data and the counter.
    registry::remove(&host, &p).unwrap();
    let gone = llmos::plugins::state::kv_usage(host.store(), &p).unwrap();
    assert_eq!((gone.keys, gone.bytes), (0, 0));
}

#[test]
fn a_request_past_its_deadline_names_the_plugin_and_runs_no_further_stage() {
    let home = Home::new();
    install_cli(&home, "testing/nap", &[]);
    install_cli(&home, "testing/kvhog", &["kv"]);
    for p in ["test-nap", "test-kvhog"] {
        run(&home, &["plugin", "limits", p, "--timeout-ms", "5000"]);
    }
    add_config(
        &home,
        "\n[server]\nrequest_timeout_ms = 1000\n\n\
         [pipelines.minilm]\npreprocessors = [\"test-nap\", \"test-kvhog\"]\n",
    );
    let s = home.serve(&["--models", "minilm"]);
    // test-nap takes 2.5 s; the request's limit is 1 s.
    let late = json!({"model": "minilm", "input": ["write late 1 1", "nap:2500"]});
    let (code, body, took) = post(&s, "/v1/embeddings", None, late);
    eprintln!("late request: {code} after {took:?}");
    assert_eq!(code, 504, "{body}");
    let msg = message(&body);
    assert!(
        msg.contains("limit of 1 s") && msg.contains("plugin test-nap was running"),
        "{msg}"
    );
    // Once test-nap is done, nothing runs test-kvhog for the request that timed out.
    std::thread::sleep(Duration::from_millis(2500));
    let ok = json!({"model": "minilm", "input": ["write ok 1 1"]});
    let (code, body, _) = post(&s, "/v1/embeddings", None, ok);
    assert_eq!(code, 200, "{body}");
    assert!(s.terminate());
    let info = run(&home, &["plugin", "info", "test-kvhog"]);
    assert!(
        info.contains("1 of 10000 keys"),
        "only the request in time wrote: {info}"
    );
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[test]
fn plugin_queues_are_bounded_full_calls_get_429_and_dropped_events_are_counted() {
    let home = Home::new();
    install_cli(&home, "testing/nap", &[]);
    install_cli(&home, "testing/slowhook", &[]);
    for p in ["test-nap", "test-slowhook"] {
        run(&home, &["plugin", "limits", p, "--timeout-ms", "5000"]);
    }
    add_config(
        &home,
        "\n[plugins]\nthreads = 1\ncalls_per_thread = 1\nqueue_capacity = 1\nevent_threads = 1\nevent_queue_capacity = 2\n\n\
         [pipelines.minilm]\npreprocessors = [\"test-nap\"]\nintegrations = [\"test-slowhook\"]\n",
    );
    let s = home.serve(&["--models", "minilm"]);
    // One worker running one call at a time, a queue of one: of four slow calls at once, one
    // runs, one waits, the rest are refused at once.
    let slow: Vec<_> = (0..4)
        .map(|_| {
            let url = s.at("/v1/embeddings");
            std::thread::spawn(move || {
                let r = client()
                    .post(url)
                    .json(&json!({"model": "minilm", "input": ["nap:1500"]}))
                    .send()
                    .unwrap();
                let retry = r.headers().get("retry-after").is_some();
                (
                    r.status().as_u16(),
                    retry,
                    r.json::<Value>().unwrap_or(Value::Null),
                )
            })
        })
        .collect();
    let results: Vec<_> = slow.into_iter().map(|h| h.join().unwrap()).collect();
    let busy: Vec<_> = results.iter().filter(|r| r.0 == 429).collect();
    eprintln!(
        "four slow calls at once: {:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    assert!(!busy.is_empty(), "{results:?}");
    assert!(
        results.iter().all(|r| r.0 == 200 || r.0 == 429),
        "{results:?}"
    );
    for (_, retry, body) in &busy {
        assert!(retry, "429 without Retry-After");
        let msg = message(body);
        assert!(msg.contains("queue of 1 plugin calls is full"), "{msg}");
    }
    // A burst of events for an integration that takes 500 ms each: the backlog stays at
    // the queue's bound, the rest are dropped and counted, and no request waits for them.
    let quick = json!({"model": "minilm", "input": ["quick"]});
    for _ in 0..12 {
        let (code, body, _) = post(&s, "/v1/embeddings", None, quick.clone());
        assert_eq!(code, 200, "{body}");
    }
    let m = client()
        .get(s.at("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let dropped = metric(&m, "llmos_plugin_events_dropped_total");
    let backlog = metric(&m, "llmos_plugin_queue_depth{queue=\"events\"}");
    eprintln!("events: {dropped} dropped, backlog {backlog}");
    assert!(dropped >= 1.0, "{m}");
    assert!(backlog <= 2.0, "{m}");
}

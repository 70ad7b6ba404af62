//! Fair scheduling of generation across tenants (docs/tools.md §6, docs/generation.md
//! "Scheduling"): tenant labels, limits and priorities on keys; the 429s at each limit;
//! per-tenant metrics; and a light tenant served while a heavy one floods, under `fair`
//! (and not under `fifo`), on the tiny llama fixture.

use std::time::Instant;

use serde_json::{Value, json};

use crate::support::{Home, Server, call};

const MODEL: &str = "tiny-llama";

fn key(home: &Home, args: &[&str]) -> (String, Value) {
    let mut all = vec!["keys", "create", "--scope", "models:*"];
    all.extend(args);
    let v = home.json(&all);
    (v["secret"].as_str().unwrap().to_string(), v["key"].clone())
}

fn metrics(s: &Server, key: &str) -> String {
    let client = reqwest::blocking::Client::new();
    client
        .get(s.at("/metrics"))
        .bearer_auth(key)
        .send()
        .unwrap()
        .text()
        .unwrap()
}

/// The value of `name{tenant="t"}` (0 when absent).
fn tenant_metric(text: &str, name: &str, tenant: &str) -> u64 {
    let prefix = format!("{name}{{tenant=\"{tenant}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

#[test]
fn keys_carry_tenants_limits_and_priorities_and_each_limit_answers_429() {
    let home = Home::new();
    let (one, k) = key(
        &home,
        &[
            "--tenant",
            "acme",
            "--max-streams",
            "1",
            "--priority",
            "high",
        ],
    );
    assert_eq!(
        (
            k["tenant"].as_str(),
            k["max_streams"].as_u64(),
            k["priority"].as_str()
        ),
        (Some("acme"), Some(1), Some("high")),
        "{k}"
    );
    let (small, _) = key(&home, &["--tenant", "acme", "--max-queued-tokens", "40"]);
    let (plain, p) = key(&home, &[]);
    assert_eq!(
        (p["tenant"].clone(), p["priority"].as_str()),
        (Value::Null, Some("normal"))
    );
    let admin = key(&home, &["--scope", "admin"]).0;
    let err = home.fails(&[
        "keys",
        "create",
        "--scope",
        "models:*",
        "--priority",
        "urgent",
    ]);
    assert!(err.contains("accepted are high, normal, low"), "{err}");
    let err = home.fails(&["keys", "create", "--scope", "models:*", "--tenant", "a b"]);
    assert!(err.contains("invalid tenant \"a b\""), "{err}");
    let err = home.fails(&[
        "keys",
        "create",
        "--scope",
        "models:*",
        "--max-streams",
        "0",
    ]);
    assert!(err.contains("invalid max_streams 0"), "{err}");
    let listed = home.json(&["keys", "list"]).to_string();
    assert!(listed.contains("\"tenant\":\"acme\""), "{listed}");

    let s = home.serve(&["--models", MODEL]);
    // The admin route creates keys with the same fields, and refuses bad ones by name.
    let (code, v) = call(
        &s,
        "POST",
        "/admin/keys",
        Some(&admin),
        Some(
            json!({"scopes": ["models:*"], "tenant": "beta", "max_streams": 3, "priority": "low"}),
        ),
    );
    assert_eq!(code, 201, "{v}");
    assert_eq!(
        (v["key"]["tenant"].as_str(), v["key"]["priority"].as_str()),
        (Some("beta"), Some("low"))
    );
    let (code, v) = call(
        &s,
        "POST",
        "/admin/keys",
        Some(&admin),
        Some(json!({"scopes": ["models:*"], "priority": "top"})),
    );
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("priority"),
        "{v}"
    );

    let body = |n: u64, max: u64| json!({"model": MODEL, "prompt": "hello there", "max_tokens": max, "n": n, "temperature": 0});
    // Two choices are two streams: over max_streams = 1.
    let (code, v) = call(&s, "POST", "/v1/completions", Some(&one), Some(body(2, 4)));
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (429, Some("max_streams")),
        "{v}"
    );
    let m = v["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("tenant acme")
            && m.contains("max_streams = 1")
            && m.contains("0 generation streams"),
        "{m}"
    );
    // prompt + max_tokens over max_queued_tokens = 40.
    let (code, v) = call(
        &s,
        "POST",
        "/v1/completions",
        Some(&small),
        Some(body(1, 60)),
    );
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (429, Some("max_queued_tokens")),
        "{v}"
    );
    let m = v["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("max_queued_tokens = 40") && m.contains("0 tokens"),
        "{m}"
    );
    // Within the limits both answer; chat too.
    let (code, v) = call(&s, "POST", "/v1/completions", Some(&one), Some(body(1, 5)));
    assert_eq!(code, 200, "{v}");
    let generated = v["usage"]["completion_tokens"].as_u64().unwrap();
    let chat = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "n": 2});
    let (code, v) = call(
        &s,
        "POST",
        "/v1/chat/completions",
        Some(&one),
        Some(chat.clone()),
    );
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (429, Some("max_streams")),
        "{v}"
    );
    assert_eq!(
        call(&s, "POST", "/v1/chat/completions", Some(&plain), Some(chat)).0,
        200
    );

    // Per-tenant metrics: a key without a label is its own tenant (its id).
    let text = metrics(&s, &admin);
    assert_eq!(
        tenant_metric(&text, "llmos_tenant_generated_tokens_total", "acme"),
        generated,
        "{text}"
    );
    assert_eq!(
        tenant_metric(&text, "llmos_tenant_running_streams", "acme"),
        0
    );
    assert_eq!(
        tenant_metric(&text, "llmos_tenant_queued_requests", "acme"),
        0
    );
    assert!(
        text.contains("llmos_tenant_time_to_first_token_seconds_count{tenant=\"acme\"} 1"),
        "{text}"
    );
    let id = p["id"].as_str().unwrap();
    assert!(
        tenant_metric(&text, "llmos_tenant_generated_tokens_total", id) >= 2,
        "{text}"
    );
    assert!(text.contains("# TYPE llmos_tenant_queued_requests gauge"));
}

/// Heavy sends 12 long requests (max_batch 2, so 10 wait); once they wait, light sends a
/// short one. Returns (heavy streams that had their first token when light's answer was
/// complete, heavy texts, the text of one heavy request alone).
fn flood(scheduler: &str) -> (usize, Vec<String>, String) {
    const HEAVY: usize = 12;
    let home = Home::new();
    let cfg = home.dir.path().join("llmos.toml");
    let mut toml = std::fs::read_to_string(&cfg).unwrap();
    toml.push_str(&format!(
        "\n[models.overrides.{MODEL}]\nmax_batch = 2\n\n[generation]\nscheduler = \"{scheduler}\"\n"
    ));
    std::fs::write(&cfg, toml).unwrap();
    let heavy = key(&home, &["--tenant", "heavy"]).0;
    let light = key(&home, &["--tenant", "light"]).0;
    let s = home.serve(&["--models", MODEL]);
    let heavy_body = json!({"model": MODEL, "prompt": "once upon a time", "max_tokens": 400, "temperature": 0, "stream": true});
    let alone = read_stream(&s, &heavy, &heavy_body).1;
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..HEAVY)
            .map(|_| {
                let (s, k, b) = (&s, &heavy, &heavy_body);
                scope.spawn(move || read_stream(s, k, b))
            })
            .collect();
        // Wait (no time bound) until heavy's requests wait in the engine.
        while tenant_metric(
            &metrics(&s, &heavy),
            "llmos_tenant_queued_requests",
            "heavy",
        ) < (HEAVY - 4) as u64
        {
            std::thread::yield_now();
        }
        let light_body = json!({"model": MODEL, "prompt": "hi", "max_tokens": 16, "temperature": 0, "stream": true});
        let (_, text) = read_stream(&s, &light, &light_body);
        let light_done = Instant::now();
        assert!(!text.is_empty());
        let heavy: Vec<(Instant, String)> =
            threads.into_iter().map(|t| t.join().unwrap()).collect();
        let started = heavy
            .iter()
            .filter(|(first, _)| *first <= light_done)
            .count();
        (started, heavy.into_iter().map(|h| h.1).collect(), alone)
    })
}

/// Reads a streamed completion: when its first event came, and its text.
fn read_stream(s: &Server, key: &str, body: &Value) -> (Instant, String) {
    use std::io::{BufRead, BufReader};
    let client = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .unwrap();
    let r = client
        .post(s.at("/v1/completions"))
        .bearer_auth(key)
        .json(body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut first = None;
    let mut text = String::new();
    for line in BufReader::new(r).lines() {
        let line = line.unwrap();
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        first.get_or_insert_with(Instant::now);
        if data == "[DONE]" {
            break;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        text.push_str(v["choices"][0]["text"].as_str().unwrap_or(""));
    }
    (first.unwrap(), text)
}

#[test]
fn a_light_tenant_is_served_while_a_heavy_one_floods_under_fair_not_fifo() {
    let (started, texts, alone) = flood("fair");
    // Light took a slot at once: heavy's waiting requests had not all started.
    assert!(
        started <= 6,
        "under fair, {started} of 12 heavy streams started before light finished"
    );
    // Heavy sequences paused and resumed (cache rows kept aside) give the text they give alone.
    for t in &texts {
        assert_eq!(
            t, &alone,
            "a heavy stream's text changed under the fair scheduler"
        );
    }
    let (started, texts, _) = flood("fifo");
    assert!(
        started >= 10,
        "under fifo light waits behind heavy's queue, but only {started} of 12 had started"
    );
    assert_eq!(texts.len(), 12);
}

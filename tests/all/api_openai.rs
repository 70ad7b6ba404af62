//! The OpenAI-compatible and task routes, through a real HTTP client against the real
//! binary; and the official OpenAI Python client, unchanged.

use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::support::{Home, Server, client_python, cosine, floats, repo};

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn post(s: &Server, path: &str, body: &Value) -> (u16, Value) {
    let r = client().post(s.at(path)).json(body).send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap())
}

fn post_raw(s: &Server, path: &str, body: Vec<u8>) -> (u16, Value) {
    let r = client()
        .post(s.at(path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap())
}

/// Asserts an OpenAI-shaped error with this status whose message contains `needle`.
fn assert_error(got: (u16, Value), status: u16, needle: &str) -> Value {
    let (code, body) = got;
    assert_eq!(code, status, "{body}");
    let e = &body["error"];
    for k in ["message", "type", "param", "code"] {
        assert!(e.get(k).is_some(), "error body lacks {k}: {body}");
    }
    assert!(
        e["message"].as_str().unwrap().contains(needle),
        "expected {needle:?} in {body}"
    );
    body
}

fn server(home: &Home) -> Server {
    home.serve(&["--models", "minilm,pii-ner,tiny-classifier"])
}

#[test]
fn models_are_listed_with_task_provider_and_licence() {
    let home = Home::new();
    let s = server(&home);
    let v: Value = client()
        .get(s.at("/v1/models"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["object"], "list");
    let m = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "pii-ner")
        .unwrap()
        .clone();
    assert_eq!(m["object"], "model");
    assert_eq!(m["task"], "token-classify");
    assert_eq!(m["provider"], "cpu");
    assert_eq!(m["license"], "CC-BY-4.0");
    assert!(
        m["attribution"]
            .as_str()
            .unwrap()
            .contains("National Design Studio")
    );
    let one: Value = client()
        .get(s.at("/v1/models/minilm"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(one["dimensions"], 384);
    let r = client().get(s.at("/v1/models/nope")).send().unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(
        r.json::<Value>().unwrap()["error"]["code"],
        "model_not_found"
    );
}

#[test]
fn embeddings_accept_every_input_form_and_both_encodings() {
    let home = Home::new();
    let s = server(&home);
    let (code, one) = post(
        &s,
        "/v1/embeddings",
        &json!({"model": "minilm", "input": "A cat is sitting on a mat."}),
    );
    assert_eq!(code, 200, "{one}");
    assert_eq!(one["object"], "list");
    assert_eq!(one["model"], "minilm");
    assert_eq!(one["data"][0]["object"], "embedding");
    assert_eq!(one["data"][0]["index"], 0);
    let v = floats(&one["data"][0]["embedding"]);
    assert_eq!(v.len(), 384);
    assert!(one["usage"]["prompt_tokens"].as_u64().unwrap() > 5);
    assert_eq!(one["usage"]["prompt_tokens"], one["usage"]["total_tokens"]);

    // base64: little-endian f32, the same numbers.
    let (_, b) = post(
        &s,
        "/v1/embeddings",
        &json!({"model": "minilm", "input": ["A cat is sitting on a mat."], "encoding_format": "base64"}),
    );
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let as_f32: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    assert_eq!(decoded, as_f32);

    // Token ids (from /v1/tokenize, special tokens included) give the same vector.
    let (_, t) = post(
        &s,
        "/v1/tokenize",
        &json!({"model": "minilm", "input": "A cat is sitting on a mat."}),
    );
    let ids = t["data"][0]["ids"].clone();
    let (_, by_ids) = post(
        &s,
        "/v1/embeddings",
        &json!({"model": "minilm", "input": ids}),
    );
    assert!(cosine(&floats(&by_ids["data"][0]["embedding"]), &v) > 0.99999);
    let (_, nested) = post(
        &s,
        "/v1/embeddings",
        &json!({"model": "minilm", "input": [ids.clone(), ids]}),
    );
    assert_eq!(nested["data"].as_array().unwrap().len(), 2);
    assert_eq!(nested["data"][1]["index"], 1);

    let (_, d) = post(
        &s,
        "/v1/detokenize",
        &json!({"model": "minilm", "ids": t["data"][0]["ids"], "skip_special_tokens": true}),
    );
    assert_eq!(d["data"][0]["text"], "a cat is sitting on a mat.");

    // `dimensions`: honest — only the native size.
    let (code, _) = post(
        &s,
        "/v1/embeddings",
        &json!({"model": "minilm", "input": "x", "dimensions": 384}),
    );
    assert_eq!(code, 200);
    assert_error(
        post(
            &s,
            "/v1/embeddings",
            &json!({"model": "minilm", "input": "x", "dimensions": 128}),
        ),
        400,
        "produces 384 dimensions",
    );
}

#[test]
fn classify_and_entities_routes() {
    let home = Home::new();
    let s = server(&home);
    let (code, c) = post(
        &s,
        "/v1/classify",
        &json!({"model": "tiny-classifier", "input": ["I love it", "awful food"]}),
    );
    assert_eq!(code, 200, "{c}");
    assert_eq!(c["data"][0]["label"], "positive");
    assert_eq!(c["data"][1]["label"], "negative");
    assert_eq!(c["data"][1]["scores"].as_array().unwrap().len(), 3);
    let (code, e) = post(
        &s,
        "/v1/entities",
        &json!({"model": "pii-ner", "input": "Call John Smith at (415) 555-0132."}),
    );
    assert_eq!(code, 200, "{e}");
    let ents = e["data"][0]["entities"].as_array().unwrap();
    assert!(
        ents.iter()
            .any(|x| x["label"] == "PHONE" && x["text"] == "(415) 555-0132" && x["start"] == 19),
        "{e}"
    );
    assert_error(
        post(
            &s,
            "/v1/entities",
            &json!({"model": "pii-ner", "input": [1, 2]}),
        ),
        400,
        "input[0] is 1",
    );
    assert_error(
        post(
            &s,
            "/v1/classify",
            &json!({"model": "minilm", "input": "x"}),
        ),
        400,
        "does embed, not classify",
    );
}

#[test]
fn every_error_path_answers_in_openai_shape() {
    let home = Home::new();
    let s = server(&home);
    assert_error(
        post_raw(&s, "/v1/embeddings", b"{\"model\": \"minilm\", ".to_vec()),
        400,
        "not valid JSON",
    );
    assert_error(
        post_raw(
            &s,
            "/v1/embeddings",
            b"{\"model\": \"minilm\", \"input\": \"\xff\xfe\"}".to_vec(),
        ),
        400,
        "not valid UTF-8 JSON",
    );
    assert_error(
        post_raw(&s, "/v1/embeddings", Vec::new()),
        400,
        "body is empty",
    );
    assert_error(
        post(&s, "/v1/embeddings", &json!([1, 2])),
        400,
        "must be a JSON object",
    );
    assert_error(
        post(&s, "/v1/embeddings", &json!({"input": "x"})),
        400,
        "missing required field `model`",
    );
    assert_error(
        post(&s, "/v1/embeddings", &json!({"model": 5, "input": "x"})),
        400,
        "`model` is 5",
    );
    assert_error(
        post(&s, "/v1/embeddings", &json!({"model": "minilm"})),
        400,
        "missing required field `input`",
    );
    assert_error(
        post(
            &s,
            "/v1/embeddings",
            &json!({"model": "minilm", "input": 5}),
        ),
        400,
        "`input` is 5",
    );
    assert_error(
        post(
            &s,
            "/v1/embeddings",
            &json!({"model": "minilm", "input": []}),
        ),
        400,
        "empty array",
    );
    assert_error(
        post(
            &s,
            "/v1/embeddings",
            &json!({"model": "minilm", "input": ""}),
        ),
        400,
        "input[0] is an empty string",
    );
    assert_error(
        post(
            &s,
            "/v1/embeddings",
            &json!({"model": "minilm", "input": ["a", 3]}),
        ),
        400,
        "input[1] is 3",
    );
    assert_error(
        post(
            &s,
            "/v1/embeddings",
            &json!({"model": "minilm", "input": [[1, -2]]}),
        ),
        400,
        "not a token id",
    );
    assert_error(
        post(
            &s,
            "/v1/embeddings",
            &json!({"model": "minilm", "input": [99999999]}),
        ),
        400,
        "outside the model's vocabulary",
    );
    assert_error(
        post(
            &s,
            "/v1/embeddings",
            &json!({"model": "minilm", "input": "x", "encoding_format": "int8"}),
        ),
        400,
        "\"float\" and \"base64\"",
    );
    assert_error(
        post(
            &s,
            "/v1/embeddings",
            &json!({"model": "minilm", "input": "x", "truncate": "yes"}),
        ),
        400,
        "true or false",
    );
    let body = assert_error(
        post(
            &s,
            "/v1/embeddings",
            &json!({"model": "nope", "input": "x"}),
        ),
        404,
        "unknown model \"nope\"",
    );
    assert_eq!(body["error"]["code"], "model_not_found");
    let long = "word ".repeat(400);
    assert_error(
        post(
            &s,
            "/v1/embeddings",
            &json!({"model": "minilm", "input": long}),
        ),
        400,
        "more than the model's maximum of 256",
    );
    let (code, _) = post(
        &s,
        "/v1/embeddings",
        &json!({"model": "minilm", "input": long, "truncate": true}),
    );
    assert_eq!(code, 200);
    // Over the 2 MiB body limit.
    let huge = json!({"model": "minilm", "input": "a".repeat(3 * 1024 * 1024)});
    assert_error(
        post_raw(&s, "/v1/embeddings", serde_json::to_vec(&huge).unwrap()),
        413,
        "larger than the limit of 2097152 bytes",
    );
    assert_error(
        post(
            &s,
            "/v1/chat/completions",
            &json!({"model": "minilm", "messages": [{"role": "user", "content": "Hi"}]}),
        ),
        400,
        "does embed, not generate",
    );
    assert_error(
        client()
            .get(s.at("/v1/nothing"))
            .send()
            .map(|r| (r.status().as_u16(), r.json().unwrap()))
            .unwrap(),
        404,
        "no route GET /v1/nothing",
    );
}

#[test]
fn full_queue_answers_429_with_retry_after() {
    let home = Home::new();
    let cfg = home.dir.path().join("llmos.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("[models.overrides.minilm]\nqueue_capacity = 1\nmax_batch = 1\n");
    std::fs::write(&cfg, text).unwrap();
    let s = home.serve(&["--models", "minilm"]);
    let long = "the quick brown fox jumps over the lazy dog ".repeat(25);
    let results: Vec<(u16, Option<String>, Value)> = std::thread::scope(|scope| {
        let hs: Vec<_> = (0..24)
            .map(|_| {
                scope.spawn(|| {
                    let r = client()
                        .post(s.at("/v1/embeddings"))
                        .json(&json!({"model": "minilm", "input": long, "truncate": true}))
                        .send()
                        .unwrap();
                    let retry = r
                        .headers()
                        .get("retry-after")
                        .map(|h| h.to_str().unwrap().to_string());
                    (r.status().as_u16(), retry, r.json::<Value>().unwrap())
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let busy: Vec<_> = results.iter().filter(|r| r.0 == 429).collect();
    assert!(
        !busy.is_empty(),
        "no 429 among {:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    assert!(results.iter().any(|r| r.0 == 200));
    assert!(results.iter().all(|r| r.0 == 200 || r.0 == 429));
    for (_, retry, body) in busy {
        assert_eq!(retry.as_deref(), Some("1"));
        assert_eq!(body["error"]["code"], "queue_full");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("queue of 1 requests is full")
        );
    }
}

#[test]
fn a_request_gives_the_same_answer_alone_or_batched() {
    let home = Home::new();
    let cfg = home.dir.path().join("llmos.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    // Wait for companions so that concurrent requests surely share model runs.
    text.push_str("[models.overrides.minilm]\nmax_wait_ms = 50\n");
    std::fs::write(&cfg, text).unwrap();
    let s = home.serve(&["--models", "minilm"]);
    let probe = "A cat is sitting on a mat.";
    let (_, alone) = post(
        &s,
        "/v1/embeddings",
        &json!({"model": "minilm", "input": probe}),
    );
    let sentences: Vec<String> = std::fs::read_to_string(repo().join("bench/sentences.txt"))
        .unwrap()
        .lines()
        .take(23)
        .map(str::to_string)
        .collect();
    let server = &s;
    let batched: Vec<Value> = std::thread::scope(|scope| {
        let mut hs = vec![scope.spawn(move || {
            post(
                server,
                "/v1/embeddings",
                &json!({"model": "minilm", "input": probe}),
            )
            .1
        })];
        for t in &sentences {
            hs.push(scope.spawn(move || {
                post(
                    server,
                    "/v1/embeddings",
                    &json!({"model": "minilm", "input": t}),
                )
                .1
            }));
        }
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        batched[0]["data"][0]["embedding"], alone["data"][0]["embedding"],
        "batched result differs from alone"
    );
    let metrics = client()
        .get(s.at("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let runs_of_one: u64 = metric(
        &metrics,
        "llmos_batch_size_bucket{model=\"minilm\",le=\"1\"}",
    );
    let runs: u64 = metric(&metrics, "llmos_batch_size_count{model=\"minilm\"}");
    assert!(
        runs > runs_of_one,
        "no model run had more than one row: {metrics}"
    );
    assert!(
        runs < 24,
        "24 requests were not coalesced at all ({runs} runs)"
    );
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().parse().unwrap()))
        .unwrap_or_else(|| panic!("{name} not in metrics:\n{text}"))
}

#[test]
fn metrics_and_health_and_graceful_shutdown() {
    let home = Home::new();
    let s = server(&home);
    post(
        &s,
        "/v1/embeddings",
        &json!({"model": "minilm", "input": "hello"}),
    );
    post(
        &s,
        "/v1/embeddings",
        &json!({"model": "nope", "input": "hello"}),
    );
    let h: Value = client()
        .get(s.at("/health"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(h["status"], "ok");
    let r = client().get(s.at("/metrics")).send().unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let m = r.text().unwrap();
    assert_eq!(
        metric(
            &m,
            "llmos_http_requests_total{route=\"/v1/embeddings\",model=\"minilm\",status=\"200\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &m,
            "llmos_http_requests_total{route=\"/v1/embeddings\",model=\"\",status=\"404\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &m,
            "llmos_http_request_duration_seconds_count{route=\"/v1/embeddings\",model=\"minilm\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &m,
            "llmos_model_info{model=\"minilm\",task=\"embed\",provider=\"cpu\"}"
        ),
        1
    );
    assert_eq!(metric(&m, "llmos_queue_depth{model=\"minilm\"}"), 0);
    assert!(metric(&m, "llmos_tokens_total{model=\"minilm\"}") >= 3);
    assert!(s.terminate(), "llmos serve did not exit cleanly on SIGTERM");
}

#[test]
fn official_openai_python_client_works_unchanged() {
    // Open loopback server (any key accepted), then a server with keys (a real key needed).
    for keyed in [false, true] {
        let home = Home::new();
        let key = keyed.then(|| {
            home.json(&["keys", "create", "--scope", "models:*"])["secret"]
                .as_str()
                .unwrap()
                .to_string()
        });
        let s = server(&home);
        let mut cmd = std::process::Command::new(client_python());
        cmd.arg(repo().join("tests/clients/openai_client.py"))
            .arg(format!("{}/v1", s.url));
        if let Some(k) = &key {
            cmd.arg(k);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "keyed={keyed}: {}",
            crate::support::text(&out)
        );
    }
}

#[test]
fn per_request_input_and_token_limits_are_named() {
    let home = Home::new();
    let cfg = home.dir.path().join("llmos.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("[models.overrides.minilm]\nmax_request_inputs = 3\nmax_request_tokens = 20\n");
    std::fs::write(&cfg, text).unwrap();
    let s = home.serve(&["--models", "minilm"]);
    assert_error(
        post(
            &s,
            "/v1/embeddings",
            &json!({"model": "minilm", "input": ["a", "b", "c", "d"]}),
        ),
        400,
        "the request has 4 inputs; the limit is 3 per request",
    );
    let body = assert_error(
        post(
            &s,
            "/v1/embeddings",
            &json!({"model": "minilm", "input": ["word ".repeat(12), "word ".repeat(12)]}),
        ),
        400,
        "the limit is 20 per request",
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_request_tokens"),
        "{body}"
    );
    let (code, _) = post(
        &s,
        "/v1/embeddings",
        &json!({"model": "minilm", "input": ["a", "b", "c"]}),
    );
    assert_eq!(code, 200);
}

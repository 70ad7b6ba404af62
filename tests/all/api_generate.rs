//! `/v1/completions` and `/v1/chat/completions` on the tiny random llama fixture
//! (tests/fixtures/tiny_llama.py): determinism, seeds, stop strings, max_tokens,
//! streaming = whole, continuous batching of 16 streams, cancellation, errors, and the
//! official OpenAI Python client.

use std::io::Read;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Home, Server, call, client_python, repo};

const MODEL: &str = "tiny-llama";

fn server() -> (Home, Server) {
    let home = Home::new();
    let s = home.serve(&["--models", MODEL]);
    (home, s)
}

fn post(s: &Server, path: &str, body: Value) -> Value {
    let (code, v) = call(s, "POST", path, None, Some(body));
    assert_eq!(code, 200, "{v}");
    v
}

/// A streamed answer: its `data:` events (JSON) and whether it ended with `[DONE]`.
fn stream(s: &Server, path: &str, body: Value) -> (Vec<Value>, bool) {
    let client = reqwest::blocking::Client::new();
    let r = client.post(s.at(path)).json(&body).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let text = r.text().unwrap();
    let mut events = Vec::new();
    let mut done = false;
    for block in text.split("\n\n").filter(|b| !b.is_empty()) {
        let data = block
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("not an SSE event: {block:?}"));
        if data == "[DONE]" {
            done = true;
        } else {
            assert!(!done, "an event after [DONE]");
            events.push(serde_json::from_str(data).unwrap());
        }
    }
    (events, done)
}

/// Text of choice `index` of a stream, and its finish_reason.
fn streamed_text(events: &[Value], index: u64) -> (String, String) {
    let mut text = String::new();
    let mut finish = String::new();
    for e in events {
        for c in e["choices"].as_array().unwrap() {
            if c["index"] != index {
                continue;
            }
            let piece = c["text"]
                .as_str()
                .or_else(|| c["delta"]["content"].as_str());
            text.push_str(piece.unwrap_or(""));
            if let Some(f) = c["finish_reason"].as_str() {
                finish = f.to_string();
            }
        }
    }
    (text, finish)
}

fn greedy(prompt: &str, max_tokens: u64) -> Value {
    json!({"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0})
}

fn text_of(v: &Value) -> String {
    v["choices"][0]["text"].as_str().unwrap().to_string()
}

fn metric(s: &Server, name: &str) -> u64 {
    let body = reqwest::blocking::get(s.at("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    let prefix = format!("{name}{{model=\"{MODEL}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
        .parse()
        .unwrap()
}

#[test]
fn greedy_is_deterministic_and_streaming_equals_whole() {
    let (_h, s) = server();
    let a = post(&s, "/v1/completions", greedy("once upon a time", 40));
    let b = post(&s, "/v1/completions", greedy("once upon a time", 40));
    assert_eq!(a["choices"], b["choices"]);
    assert_eq!(a["object"], "text_completion");
    let text = text_of(&a);
    let usage = &a["usage"];
    let finish = a["choices"][0]["finish_reason"].as_str().unwrap();
    assert!(finish == "length" || finish == "stop", "{a}");
    if finish == "length" {
        assert_eq!(usage["completion_tokens"], 40, "{a}");
    }
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );
    let mut body = greedy("once upon a time", 40);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let (events, done) = stream(&s, "/v1/completions", body);
    assert!(done, "the stream ends with data: [DONE]");
    assert_eq!(
        streamed_text(&events, 0),
        (text.clone(), finish.to_string())
    );
    let last = events.last().unwrap();
    assert_eq!(last["choices"], json!([]), "the usage chunk has no choices");
    assert_eq!(&last["usage"], usage);
    // max_tokens cuts the same text short, with finish_reason length.
    let short = post(&s, "/v1/completions", greedy("once upon a time", 5));
    assert_eq!(short["choices"][0]["finish_reason"], "length");
    assert_eq!(short["usage"]["completion_tokens"], 5);
    assert!(text.starts_with(&text_of(&short)), "{text:?} vs {short}");
    assert!(text_of(&short).len() < text.len());
}

#[test]
fn seeds_reproduce_and_stop_strings_end_the_text_unseen() {
    let (_h, s) = server();
    let sampled = |seed: u64| {
        let body = json!({"model": MODEL, "prompt": "hello world", "max_tokens": 30, "temperature": 1.0, "seed": seed});
        text_of(&post(&s, "/v1/completions", body))
    };
    assert_eq!(sampled(42), sampled(42));
    assert_ne!(sampled(42), sampled(43), "another seed, another text");
    // A stop string from the middle of the greedy text: the text ends right before its
    // first occurrence, streamed or not.
    let full = text_of(&post(&s, "/v1/completions", greedy("the sea", 60)));
    let chars: Vec<char> = full.chars().collect();
    assert!(chars.len() > 12, "{full:?}");
    let stop: String = chars[8..11].iter().collect();
    let expected = &full[..full.find(&stop).unwrap()];
    let mut body = greedy("the sea", 60);
    body["stop"] = json!(["never-there", stop]);
    let v = post(&s, "/v1/completions", body.clone());
    assert_eq!(text_of(&v), expected);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    body["stream"] = json!(true);
    let (events, _) = stream(&s, "/v1/completions", body);
    assert_eq!(
        streamed_text(&events, 0),
        (expected.to_string(), "stop".to_string())
    );
}

/// 16 concurrent streams, with prompts of different lengths, eight started at once and eight
/// one after another while the others run (they join the running batch mid-flight), each give
/// the text the prompt gives alone; and the engine really ran them together.
#[test]
fn sixteen_concurrent_streams_match_their_text_alone() {
    let (_h, s) = server();
    let prompts: Vec<String> = (0..16)
        .map(|i| "the quick brown fox ".repeat(1 + i % 5) + &i.to_string())
        .collect();
    let body = |p: &str| json!({"model": MODEL, "prompt": p, "max_tokens": 300, "temperature": 0, "stream": true});
    let alone: Vec<String> = prompts
        .iter()
        .map(|p| streamed_text(&stream(&s, "/v1/completions", body(p)).0, 0).0)
        .collect();
    let rows_before = metric_sum(&s);
    // The first half starts at once (they queue behind one another's prefill and must be
    // prefilled together); the second half arrives one by one while those run.
    let start = std::sync::Barrier::new(8);
    let together: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (s, b, start) = (&s, body(p), &start);
                scope.spawn(move || {
                    if i < 8 {
                        start.wait();
                    } else {
                        std::thread::sleep(Duration::from_millis(15 * (i - 7) as u64));
                    }
                    streamed_text(&stream(s, "/v1/completions", b).0, 0).0
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (a, t)) in alone.iter().zip(&together).enumerate() {
        assert_eq!(a, t, "stream {i} changed when batched");
    }
    let (steps, rows) = metric_sum(&s);
    let (steps, rows) = (steps - rows_before.0, rows - rows_before.1);
    assert!(
        rows > steps * 2,
        "decode steps ran {rows} rows in {steps} steps: not batched"
    );
    // The prompts that queued during a step were prefilled together (one left-padded run).
    let runs = metric(&s, "llmos_generate_prefill_runs_total");
    let sequences = metric(&s, "llmos_generate_sequences_total");
    assert_eq!(sequences, 32);
    assert!(
        runs < 16 + 16,
        "{sequences} sequences took {runs} prefill runs: none was batched"
    );
}

/// (runs, rows) of the model's batch-size histogram.
fn metric_sum(s: &Server) -> (u64, u64) {
    let body = reqwest::blocking::get(s.at("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    let get = |p: &str| -> u64 {
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{p}{{model=\"{MODEL}\"}} ")))
            .unwrap()
            .parse()
            .unwrap()
    };
    (get("llmos_batch_size_count"), get("llmos_batch_size_sum"))
}

#[test]
fn a_dropped_stream_stops_its_generation() {
    let (_h, s) = server();
    let client = reqwest::blocking::Client::new();
    let body = json!({"model": MODEL, "prompt": "once", "max_tokens": 4000, "temperature": 0, "stream": true});
    let mut r = client
        .post(s.at("/v1/completions"))
        .json(&body)
        .send()
        .unwrap();
    let mut buf = [0u8; 256];
    let _ = r.read(&mut buf).unwrap();
    drop(r); // the client goes away
    let start = Instant::now();
    let mut last = metric(&s, "llmos_generate_steps_total");
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = metric(&s, "llmos_generate_steps_total");
        if now == last {
            break;
        }
        last = now;
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the steps never stopped"
        );
    }
    assert!(
        last < 3900,
        "the generation ran on ({last} steps) after the client left"
    );
    assert_eq!(metric(&s, "llmos_generate_cancelled_total"), 1);
}

#[test]
fn chat_streams_like_it_answers() {
    let (_h, s) = server();
    let body = json!({"model": MODEL, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the capital of France?"}], "max_completion_tokens": 30, "temperature": 0});
    let v = post(&s, "/v1/chat/completions", body.clone());
    assert_eq!(v["object"], "chat.completion");
    let msg = &v["choices"][0]["message"];
    assert_eq!(msg["role"], "assistant");
    let mut sb = body.clone();
    sb["stream"] = json!(true);
    let (events, done) = stream(&s, "/v1/chat/completions", sb);
    assert!(done);
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(events[0]["object"], "chat.completion.chunk");
    let (text, finish) = streamed_text(&events, 0);
    assert_eq!(text, msg["content"].as_str().unwrap());
    assert_eq!(finish, v["choices"][0]["finish_reason"].as_str().unwrap());
    // n = 3 with a seed: three choices, reproducible.
    let mut nb = body.clone();
    nb["n"] = json!(3);
    nb["temperature"] = json!(1.0);
    nb["seed"] = json!(5);
    let a = post(&s, "/v1/chat/completions", nb.clone());
    let b = post(&s, "/v1/chat/completions", nb);
    assert_eq!(a["choices"].as_array().unwrap().len(), 3);
    assert_eq!(a["choices"], b["choices"]);
}

#[test]
fn logprobs_are_the_models() {
    let (_h, s) = server();
    let mut body = greedy("hello", 6);
    body["logprobs"] = json!(2);
    let v = post(&s, "/v1/completions", body);
    let lp = &v["choices"][0]["logprobs"];
    let n = v["usage"]["completion_tokens"].as_u64().unwrap() as usize;
    assert_eq!(lp["tokens"].as_array().unwrap().len(), n, "{v}");
    assert_eq!(lp["text_offset"].as_array().unwrap().len(), n, "{v}");
    for (i, l) in lp["token_logprobs"].as_array().unwrap().iter().enumerate() {
        assert!(l.as_f64().unwrap() <= 0.0);
        // A map by token text: two ids with the same text (half characters) share a key.
        let top = lp["top_logprobs"][i].as_object().unwrap();
        assert!((1..=2).contains(&top.len()), "{top:?}");
    }
    // Chat lists alternatives in order: greedy picks the first, with its log-probability.
    let chat = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 6, "temperature": 0, "logprobs": true, "top_logprobs": 3});
    let v = post(&s, "/v1/chat/completions", chat);
    let content = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert!(!content.is_empty());
    for t in content {
        let top = t["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        assert_eq!(top[0]["token"], t["token"]);
        let (a, b) = (
            top[0]["logprob"].as_f64().unwrap(),
            t["logprob"].as_f64().unwrap(),
        );
        assert!(
            a == b && b <= 0.0 && top[1]["logprob"].as_f64().unwrap() <= a,
            "{t}"
        );
    }
    // The probabilities of all tokens sum to 1: the best of 3 is at most log(1) and at least
    // log(1/vocab).
    assert!(content[0]["logprob"].as_f64().unwrap() > -(323f64.ln()) - 1e-4);
}

#[test]
fn bad_requests_name_what_is_wrong() {
    let (_h, s) = server();
    let cases = [
        (
            json!({"model": MODEL, "prompt": "hi", "max_tokens": 5000}),
            "/v1/completions",
            "context length is 4096",
        ),
        (
            json!({"model": MODEL, "prompt": "hi", "response_format": {"type": "json_object"}}),
            "/v1/completions",
            "`response_format` is taken by /v1/chat/completions only",
        ),
        (
            json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "tool_choice": "required"}),
            "/v1/chat/completions",
            "`tools` is empty or missing",
        ),
        (
            json!({"model": MODEL, "prompt": "hi", "temprature": 0}),
            "/v1/completions",
            "unknown field `temprature`",
        ),
        (
            json!({"model": MODEL, "prompt": "hi", "temperature": 3}),
            "/v1/completions",
            "from 0 to 2",
        ),
        (
            json!({"model": MODEL, "prompt": [[1, 99999]]}),
            "/v1/completions",
            "not in the vocabulary",
        ),
        (
            json!({"model": MODEL, "messages": [{"role": "robot", "content": "hi"}]}),
            "/v1/chat/completions",
            "accepted are system",
        ),
        (
            json!({"model": MODEL, "messages": [{"role": "user", "content": "hi", "name": 7}]}),
            "/v1/chat/completions",
            "messages[0].name is 7: give a string",
        ),
        (
            json!({"model": MODEL, "messages": [{"role": "user", "content": "hi", "tool_call_id": "x"}]}),
            "/v1/chat/completions",
            "accepted are role, content, name",
        ),
        (
            json!({"model": MODEL, "prompt": "hi", "stop": ["a", "b", "c", "d", "e"]}),
            "/v1/completions",
            "up to 4",
        ),
        (
            json!({"model": "minilm", "prompt": "hi"}),
            "/v1/completions",
            "not generate",
        ),
    ];
    for (body, path, needle) in cases {
        let (code, v) = call(&s, "POST", path, None, Some(body.clone()));
        assert_eq!(code, 400, "{body}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{body}: expected {needle:?} in {msg}");
    }
    let (_, v) = call(
        &s,
        "POST",
        "/v1/completions",
        None,
        Some(json!({"model": MODEL, "prompt": "hi", "max_tokens": 5000})),
    );
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("max_tokens is 5000") && msg.contains("prompt has"),
        "{msg}"
    );
}

#[test]
fn the_official_openai_client_streams_unchanged() {
    let (_h, s) = server();
    let out = std::process::Command::new(client_python())
        .arg(repo().join("tests/clients/openai_generate.py"))
        .arg(format!("{}/v1", s.url))
        .arg(MODEL)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", crate::support::text(&out));
}

/// The engine's KV-cache decoding gives the tokens that recomputing the whole sequence
/// without a cache gives (the raw graph through `/v2`, argmax of the last logits).
#[test]
fn cached_decoding_equals_recomputing_without_a_cache() {
    let (_h, s) = server();
    let prompt: Vec<u64> = vec![10, 200, 45, 7, 99, 150];
    let mut ids = prompt.clone();
    for _ in 0..10 {
        let n = ids.len();
        let mut inputs = vec![
            json!({"name": "input_ids", "shape": [1, n], "datatype": "INT64", "data": ids}),
            json!({"name": "attention_mask", "shape": [1, n], "datatype": "INT64", "data": vec![1; n]}),
            json!({"name": "position_ids", "shape": [1, n], "datatype": "INT64", "data": (0..n).collect::<Vec<_>>()}),
        ];
        // /v2 refuses empty tensors: one cache slot of zeros, masked out, stands for "no past".
        inputs[1] = json!({"name": "attention_mask", "shape": [1, n + 1], "datatype": "INT64", "data": std::iter::once(0).chain(std::iter::repeat_n(1, n)).collect::<Vec<_>>()});
        for l in 0..2 {
            for kind in ["key", "value"] {
                inputs.push(json!({"name": format!("past_key_values.{l}.{kind}"), "shape": [1, 2, 1, 16], "datatype": "FP32", "data": vec![0.0; 32]}));
            }
        }
        let body = json!({"inputs": inputs, "outputs": [{"name": "logits"}]});
        let (code, v) = call(&s, "POST", "/v2/models/tiny-llama/infer", None, Some(body));
        assert_eq!(code, 200, "{v}");
        let logits: Vec<f64> = v["outputs"][0]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let last = &logits[logits.len() - 323..];
        let best = (0..last.len())
            .max_by(|&a, &b| last[a].partial_cmp(&last[b]).unwrap())
            .unwrap();
        ids.push(best as u64);
    }
    let generated = &ids[prompt.len()..];
    assert!(
        !generated.iter().any(|&t| t == 0 || t == 2),
        "the reference hit an end token: {generated:?}"
    );
    let (code, d) = call(
        &s,
        "POST",
        "/v1/detokenize",
        None,
        Some(json!({"model": MODEL, "ids": generated})),
    );
    assert_eq!(code, 200, "{d}");
    let body = json!({"model": MODEL, "prompt": prompt, "max_tokens": 10, "temperature": 0});
    let v = post(&s, "/v1/completions", body);
    assert_eq!(
        text_of(&v),
        d["data"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("{d}"))
    );
}

/// Prompt-lookup speculative decoding (opt-in) changes how many steps a lone stream takes,
/// not what it says: the same greedy text, the same seeded samples and the same
/// log-probabilities as one token per step (`speculative = "off"`, the default), and drafts
/// were tried and kept (`/metrics`). (On this fixture's f32 weights the texts are equal; on
/// 4-bit weights an S-token step's logits differ in the last bits: docs/generation.md.)
#[test]
fn speculative_decoding_says_what_one_token_per_step_says() {
    let serve = |extra: &str| {
        let home = Home::new();
        let cfg = home.dir.path().join("llmos.toml");
        let mut toml = std::fs::read_to_string(&cfg).unwrap();
        toml.push_str(&format!("\n[generation]\n{extra}\n"));
        std::fs::write(&cfg, toml).unwrap();
        let s = home.serve(&["--models", MODEL]);
        (home, s)
    };
    let (_a, spec) =
        serve("speculative = \"prompt-lookup\"\ndraft_tokens = 4\ndraft_min_match = 1");
    let (_b, plain) = serve("speculative = \"off\"");
    // Repeating prompts (the random model repeats itself too), greedy and sampled.
    let bodies = [
        json!({"model": MODEL, "prompt": "a b c d a b c d a b c d a b", "max_tokens": 120, "temperature": 0, "logprobs": 1}),
        json!({"model": MODEL, "prompt": "the quick brown fox the quick brown fox", "max_tokens": 90, "temperature": 0}),
        json!({"model": MODEL, "prompt": "once upon a time", "max_tokens": 200, "temperature": 0.8, "seed": 7}),
        json!({"model": MODEL, "prompt": "one two one two one two", "max_tokens": 150, "temperature": 1.0, "seed": 11, "logprobs": 1}),
    ];
    for body in &bodies {
        let (a, b) = (
            post(&spec, "/v1/completions", body.clone()),
            post(&plain, "/v1/completions", body.clone()),
        );
        assert_eq!(text_of(&a), text_of(&b), "{body}");
        assert_eq!(a["usage"], b["usage"], "{body}");
        assert_eq!(
            a["choices"][0]["finish_reason"],
            b["choices"][0]["finish_reason"]
        );
        let lp = |v: &Value| -> Vec<f64> {
            v["choices"][0]["logprobs"]["token_logprobs"]
                .as_array()
                .map(|a| a.iter().map(|x| x.as_f64().unwrap()).collect())
                .unwrap_or_default()
        };
        for (x, y) in lp(&a).iter().zip(lp(&b)) {
            assert!((x - y).abs() < 1e-3, "log-probabilities {x} vs {y}: {body}");
        }
        // Streamed, both send the same text.
        let mut streamed = body.clone();
        streamed["stream"] = json!(true);
        for s in [&spec, &plain] {
            let (events, done) = stream(s, "/v1/completions", streamed.clone());
            assert!(done);
            assert_eq!(streamed_text(&events, 0).0, text_of(&a), "{body}");
        }
    }
    let drafted = metric(&spec, "llmos_generate_draft_tokens_total");
    let kept = metric(&spec, "llmos_generate_draft_accepted_total");
    assert!(
        kept > 0 && kept <= drafted,
        "drafted {drafted}, kept {kept}"
    );
    assert_eq!(metric(&plain, "llmos_generate_draft_tokens_total"), 0);
    // Fewer steps than tokens: the kept drafts saved steps.
    let (spec_steps, plain_steps) = (
        metric(&spec, "llmos_generate_steps_total"),
        metric(&plain, "llmos_generate_steps_total"),
    );
    assert!(
        spec_steps < plain_steps,
        "speculative: {spec_steps} steps, one token per step: {plain_steps}"
    );
}

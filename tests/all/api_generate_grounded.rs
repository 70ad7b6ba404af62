//! Grounded answers, truncation and policies on generation, against the real binary
//! (docs/generation.md §6b): chat with `collection` and `/v1/collections/{name}/ask` on
//! smollm2 with a minilm collection (citations, sources, streams, scopes); `truncate:
//! "oldest"` on a tiny llama with a short context; content-policy on prompts, whole answers
//! and streams.

use std::path::Path;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::plugins_common::{manifest, wasm};
use crate::support::{Home, Server, call, create_key as key, repo, text};

const SMOL: &str = "smollm2";

/// A streamed answer's `data:` events (JSON) and whether it ended with `[DONE]`.
fn stream(s: &Server, path: &str, k: Option<&str>, body: Value) -> (Vec<Value>, bool) {
    let client = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(300))
        .build()
        .unwrap();
    let mut r = client.post(s.at(path)).json(&body);
    if let Some(k) = k {
        r = r.bearer_auth(k);
    }
    let r = r.send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let text = r.text().unwrap();
    let mut events = Vec::new();
    let mut done = false;
    for block in text.split("\n\n").filter(|b| !b.is_empty()) {
        let data = block.strip_prefix("data: ").unwrap();
        if data == "[DONE]" {
            done = true;
        } else {
            assert!(!done, "an event after [DONE]");
            events.push(serde_json::from_str(data).unwrap());
        }
    }
    (events, done)
}

fn streamed_text(events: &[Value]) -> String {
    events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect()
}

fn documents(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| c["document"].as_str().unwrap().to_string())
        .collect()
}

fn missing_scope(code: u16, e: &Value, scope: &str) {
    assert_eq!(
        (code, e["error"]["code"].as_str()),
        (403, Some("missing_scope")),
        "{e}"
    );
    assert!(
        e["error"]["message"].as_str().unwrap().contains(scope),
        "{e}"
    );
}

#[test]
fn grounded_answers_cite_the_chunk_that_holds_the_answer_and_need_the_collection_scope() {
    let home = Home::new();
    let writer = key(&home, &["data:facts:write"]);
    let asker = key(&home, &["models:smollm2", "data:facts"]);
    let no_data = key(&home, &["models:smollm2"]);
    let no_model = key(&home, &["data:facts"]);
    let asker_all = key(&home, &["models:smollm2", "data:*"]);
    let s = home.serve(&["--models", "minilm,smollm2"]);
    let (code, c) = call(
        &s,
        "POST",
        "/v1/collections/facts",
        Some(&writer),
        Some(json!({})),
    );
    assert_eq!(code, 201, "{c}");
    let docs = json!({"documents": [
        {"id": "cats", "text": "Cats sleep for most of the day in warm sunny spots."},
        {"id": "vault", "text": "The code that opens the blue vault is 7431."},
        {"id": "rust", "text": "Rust guarantees memory safety without a garbage collector."},
    ]});
    let (code, r) = call(
        &s,
        "POST",
        "/v1/collections/facts/documents",
        Some(&writer),
        Some(docs),
    );
    assert_eq!(code, 200, "{r}");

    let question = "What is the code that opens the blue vault?";
    let chat = json!({"model": SMOL, "temperature": 0, "max_tokens": 40, "collection": "facts",
                      "messages": [{"role": "user", "content": question}]});
    let (code, v) = call(
        &s,
        "POST",
        "/v1/chat/completions",
        Some(&asker),
        Some(chat.clone()),
    );
    assert_eq!(code, 200, "{v}");
    let answer = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        answer.contains("7431"),
        "the answer is in the vault chunk: {answer:?}"
    );
    assert_eq!(documents(&v["choices"][0]["citations"]), ["vault"], "{v}");
    assert_eq!(v["choices"][0]["citations"][0]["chunk"], "vault:0", "{v}");
    assert_eq!(
        documents(&v["sources"])[0],
        "vault",
        "the best match comes first: {v}"
    );
    assert_eq!(v["sources"].as_array().unwrap().len(), 3, "{v}");
    // The sources are in the prompt (the chat template's system message).
    let (_, plain) = call(
        &s,
        "POST",
        "/v1/chat/completions",
        Some(&asker),
        Some(
            json!({"model": SMOL, "temperature": 0, "max_tokens": 1, "messages": [{"role": "user", "content": question}]}),
        ),
    );
    assert!(
        v["usage"]["prompt_tokens"].as_u64().unwrap()
            > plain["usage"]["prompt_tokens"].as_u64().unwrap() + 20,
        "{v} {plain}"
    );

    // Streamed: the same text, and the last chunk carries citations and sources.
    let mut body = chat.clone();
    body["stream"] = json!(true);
    let (events, done) = stream(&s, "/v1/chat/completions", Some(&asker), body);
    assert!(done);
    assert_eq!(streamed_text(&events), answer);
    let last = events.last().unwrap();
    assert!(last["choices"][0]["finish_reason"].is_string(), "{last}");
    assert_eq!(
        documents(&last["choices"][0]["citations"]),
        ["vault"],
        "{last}"
    );
    assert_eq!(last["sources"], v["sources"]);

    // /ask: the same retrieval and engine, in its own shape.
    let (code, a) = call(
        &s,
        "POST",
        "/v1/collections/facts/ask",
        Some(&asker),
        Some(json!({"question": question, "model": SMOL, "max_tokens": 40})),
    );
    assert_eq!(code, 200, "{a}");
    assert_eq!(a["answer"], answer.as_str(), "{a}");
    assert_eq!(documents(&a["citations"]), ["vault"], "{a}");
    assert!(a["usage"]["completion_tokens"].as_u64().unwrap() > 0, "{a}");
    let (code, a) = call(
        &s,
        "POST",
        "/v1/collections/facts/ask",
        Some(&asker),
        Some(json!({"question": question, "model": SMOL, "top_k": 1, "max_tokens": 4})),
    );
    assert_eq!(
        (code, a["sources"].as_array().map(Vec::len)),
        (200, Some(1)),
        "{a}"
    );

    // Scopes: the collection's read scope on chat and ask, the model's on ask.
    let (code, e) = call(
        &s,
        "POST",
        "/v1/chat/completions",
        Some(&no_data),
        Some(chat.clone()),
    );
    missing_scope(code, &e, "data:facts");
    let (code, e) = call(
        &s,
        "POST",
        "/v1/collections/facts/ask",
        Some(&no_data),
        Some(json!({"question": question, "model": SMOL})),
    );
    missing_scope(code, &e, "data:facts");
    let (code, e) = call(
        &s,
        "POST",
        "/v1/collections/facts/ask",
        Some(&no_model),
        Some(json!({"question": question, "model": SMOL})),
    );
    missing_scope(code, &e, "models:smollm2");

    // Bad input names the field and what is accepted.
    let mut bad = chat.clone();
    bad["collection"] = json!({"name": "facts", "top_k": 0});
    let (code, e) = call(&s, "POST", "/v1/chat/completions", Some(&asker), Some(bad));
    assert_eq!(
        (code, e["error"]["param"].as_str()),
        (400, Some("collection.top_k")),
        "{e}"
    );
    let (code, e) = call(
        &s,
        "POST",
        "/v1/collections/facts/ask",
        Some(&asker),
        Some(json!({"question": " ", "model": SMOL})),
    );
    assert_eq!(
        (code, e["error"]["param"].as_str()),
        (400, Some("question")),
        "{e}"
    );
    let (code, e) = call(
        &s,
        "POST",
        "/v1/collections/facts/ask",
        Some(&asker),
        Some(json!({"question": "x", "modle": SMOL})),
    );
    assert!(
        code == 400 && e["error"]["message"].as_str().unwrap().contains("modle"),
        "{e}"
    );
    let mut gone = chat;
    gone["collection"] = json!("nope");
    let (code, e) = call(
        &s,
        "POST",
        "/v1/chat/completions",
        Some(&asker_all),
        Some(gone),
    );
    assert!(
        code == 404 && e["error"]["message"].as_str().unwrap().contains("nope"),
        "{e}"
    );
}

/// `tiny-llama` with a context of `context` tokens, as `tiny-llama-<context>`.
fn short_llama(home: &Home, context: u64) -> String {
    let name = format!("tiny-llama-{context}");
    let fixture = repo().join("tests/fixtures/tiny-llama");
    let dir = home.dir.path().join("short");
    std::fs::create_dir_all(&dir).unwrap();
    let mut g: Value =
        serde_json::from_slice(&std::fs::read(fixture.join("generation.json")).unwrap()).unwrap();
    g["context_length"] = json!(context);
    let gen_path = dir.join("generation.json");
    std::fs::write(&gen_path, serde_json::to_vec_pretty(&g).unwrap()).unwrap();
    let sha = |p: &Path| hex::encode(Sha256::digest(std::fs::read(p).unwrap()));
    let mut m = format!(
        "name = {name:?}\ntask = \"generate\"\nlicense = \"Apache-2.0\"\ntokenizer = \"tokenizer.json\"\n"
    );
    for (file, role, path) in [
        ("model.onnx", "model", fixture.join("model.onnx")),
        (
            "tokenizer.json",
            "tokenizer",
            fixture.join("tokenizer.json"),
        ),
        ("generation.json", "config", gen_path),
    ] {
        m.push_str(&format!(
            "\n[[files]]\nname = {file:?}\nrole = {role:?}\nsha256 = {:?}\nsource = {{ kind = \"local\", path = {:?} }}\n",
            sha(&path),
            path.display().to_string()
        ));
    }
    std::fs::write(home.manifests().join(format!("{name}.toml")), m).unwrap();
    let out = home.cmd(&["models", "pull", &name]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    name
}

fn turn(i: usize) -> [Value; 2] {
    [
        json!({"role": "user", "content": format!("question {i}: {}", "tell me more ".repeat(4))}),
        json!({"role": "assistant", "content": format!("answer {i}: {}", "here is more ".repeat(4))}),
    ]
}

#[test]
fn truncate_oldest_drops_the_oldest_turns_until_the_prompt_fits() {
    let home = Home::new();
    let model = short_llama(&home, 256);
    let s = home.serve(&["--models", &model]);
    let system = json!({"role": "system", "content": "Be brief."});
    let last = json!({"role": "user", "content": "and the last question?"});
    let conv = |turns: std::ops::Range<usize>| {
        let mut m = vec![system.clone()];
        m.extend(turns.flat_map(turn));
        m.push(last.clone());
        m
    };
    let body = |messages: Vec<Value>, truncate: Option<&str>| {
        let mut b =
            json!({"model": model, "messages": messages, "max_tokens": 8, "temperature": 0});
        if let Some(t) = truncate {
            b["truncate"] = json!(t);
        }
        b
    };
    // Too long: refused by default (and with "none"), naming the numbers.
    for t in [None, Some("none")] {
        let (code, e) = call(
            &s,
            "POST",
            "/v1/chat/completions",
            None,
            Some(body(conv(0..6), t)),
        );
        assert_eq!(
            (code, e["error"]["code"].as_str()),
            (400, Some("context_length_exceeded")),
            "{e}"
        );
    }
    // With "oldest": the answer is the one to the longest suffix of turns that fits.
    let (code, v) = call(
        &s,
        "POST",
        "/v1/chat/completions",
        None,
        Some(body(conv(0..6), Some("oldest"))),
    );
    assert_eq!(code, 200, "{v}");
    let kept = (1..6)
        .find_map(|first| {
            let (code, w) = call(
                &s,
                "POST",
                "/v1/chat/completions",
                None,
                Some(body(conv(first..6), None)),
            );
            (code == 200).then_some((first, w))
        })
        .expect("some suffix fits");
    assert!(kept.0 >= 1, "something was dropped");
    assert_eq!(v["usage"], kept.1["usage"], "dropped turns 0..{}", kept.0);
    assert_eq!(v["choices"][0]["message"], kept.1["choices"][0]["message"]);
    // A conversation that fits is untouched.
    let (_, a) = call(
        &s,
        "POST",
        "/v1/chat/completions",
        None,
        Some(body(conv(5..6), Some("oldest"))),
    );
    let (_, b) = call(
        &s,
        "POST",
        "/v1/chat/completions",
        None,
        Some(body(conv(5..6), None)),
    );
    assert_eq!(a["usage"], b["usage"]);
    // Still too long with only the system and last user message left: 400, with numbers.
    let long = json!({"role": "user", "content": "why ".repeat(200)});
    let (code, e) = call(
        &s,
        "POST",
        "/v1/chat/completions",
        None,
        Some(body(
            vec![system.clone(), turn(0)[0].clone(), turn(0)[1].clone(), long],
            Some("oldest"),
        )),
    );
    assert_eq!(
        (code, e["error"]["code"].as_str()),
        (400, Some("context_length_exceeded")),
        "{e}"
    );
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("context length 256")
            && msg.contains("max_tokens is 8")
            && msg.contains("dropping the 2 oldest"),
        "{msg}"
    );
    let (code, e) = call(
        &s,
        "POST",
        "/v1/chat/completions",
        None,
        Some(body(conv(0..1), Some("newest"))),
    );
    assert!(
        code == 400
            && e["error"]["param"] == "truncate"
            && e["error"]["message"].as_str().unwrap().contains("oldest"),
        "{e}"
    );
}

fn metric(s: &Server, name: &str) -> u64 {
    let body = reqwest::blocking::get(s.at("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    body.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn policies_see_the_prompt_and_the_output_and_end_a_stream_with_an_error_event() {
    let home = Home::new();
    let (w, m) = (wasm("content-policy"), manifest("content-policy"));
    let out = home
        .cmd(&[
            "plugin",
            "install",
            w.to_str().unwrap(),
            "--manifest",
            m.to_str().unwrap(),
            "--set",
            "denied_terms=forbidden",
            "--set",
            "response_denied_terms=Paris",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let (w, m) = (wasm("normalize"), manifest("normalize"));
    let out = home
        .cmd(&[
            "plugin",
            "install",
            w.to_str().unwrap(),
            "--manifest",
            m.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let cfg = home.dir.path().join("llmos.toml");
    let mut t = std::fs::read_to_string(&cfg).unwrap();
    t.push_str("\n[pipelines.smollm2]\npreprocessors = [\"normalize\"]\nrequest_policies = [\"content-policy\"]\nresponse_policies = [\"content-policy\"]\n");
    std::fs::write(&cfg, t).unwrap();
    let s = home.serve(&["--models", "minilm,smollm2"]);
    let chat = |content: &str, max: u64, stream: bool| {
        json!({"model": SMOL, "temperature": 0, "max_tokens": max, "stream": stream,
               "messages": [{"role": "user", "content": content}]})
    };
    // Preprocessors run on the user's message before templating (and on completion
    // prompts): `normalize` collapses the whitespace, so the messy text is the clean one's
    // prompt, token for token, and gets the same greedy answer.
    let (messy, clean) = ("  Say   hello\n\n  to    me.   ", "Say hello to me.");
    let tokenized = |t: &str| {
        let (code, v) = call(
            &s,
            "POST",
            "/v1/tokenize",
            None,
            Some(json!({"model": SMOL, "input": t})),
        );
        assert_eq!(code, 200, "{v}");
        v.to_string()
    };
    assert_ne!(
        tokenized(messy),
        tokenized(clean),
        "the raw texts tokenize alike: pick messier text"
    );
    let answer = |route: &str, body: Value| {
        let (code, v) = call(&s, "POST", route, None, Some(body));
        assert_eq!(code, 200, "{route}: {v}");
        (
            v["usage"]["prompt_tokens"].as_u64().unwrap(),
            v["choices"][0].clone(),
        )
    };
    let (pm, am) = answer("/v1/chat/completions", chat(messy, 6, false));
    let (pc, ac) = answer("/v1/chat/completions", chat(clean, 6, false));
    assert_eq!(
        (pm, &am["message"]),
        (pc, &ac["message"]),
        "chat: the messy message was not normalised"
    );
    let completion =
        |p: &str| json!({"model": SMOL, "prompt": p, "max_tokens": 4, "temperature": 0});
    let (pm, am) = answer("/v1/completions", completion(messy));
    let (pc, ac) = answer("/v1/completions", completion(clean));
    assert_eq!(
        (pm, &am["text"]),
        (pc, &ac["text"]),
        "completions: the messy prompt was not normalised"
    );
    // And on /ask's question, before retrieval and the chat template.
    let (code, c) = call(&s, "POST", "/v1/collections/pre", None, Some(json!({})));
    assert_eq!(code, 201, "{c}");
    let doc = json!({"documents": [{"id": "vault", "text": "The code that opens the blue vault is 7431."}]});
    let (code, r) = call(&s, "POST", "/v1/collections/pre/documents", None, Some(doc));
    assert_eq!(code, 200, "{r}");
    let ask = |q: &str| {
        let body = json!({"question": q, "model": SMOL, "max_tokens": 4});
        let (code, v) = call(&s, "POST", "/v1/collections/pre/ask", None, Some(body));
        assert_eq!(code, 200, "/ask: {v}");
        (
            v["usage"]["prompt_tokens"].as_u64().unwrap(),
            v["answer"].clone(),
        )
    };
    assert_eq!(
        ask(messy),
        ask(clean),
        "/ask: the messy question was not normalised"
    );
    // Request policies see the prompt.
    let (code, e) = call(
        &s,
        "POST",
        "/v1/chat/completions",
        None,
        Some(chat("Is this forbidden?", 4, false)),
    );
    assert_eq!(
        (code, e["error"]["code"].as_str()),
        (403, Some("policy_denied")),
        "{e}"
    );
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("request policy"),
        "{e}"
    );
    // Response policies see whole answers once.
    let france = "What is the capital of France?";
    let (code, e) = call(
        &s,
        "POST",
        "/v1/chat/completions",
        None,
        Some(chat(france, 30, false)),
    );
    assert_eq!(
        (code, e["error"]["code"].as_str()),
        (403, Some("policy_denied")),
        "{e}"
    );
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("response policy"),
        "{e}"
    );
    // An allowed stream is whole.
    let (events, done) = stream(
        &s,
        "/v1/chat/completions",
        None,
        chat("Say hello.", 12, true),
    );
    assert!(
        done && events.last().unwrap()["choices"][0]["finish_reason"].is_string(),
        "{events:?}"
    );
    // A short denied stream: checked at its end; nothing of the denied text was sent.
    let (events, done) = stream(&s, "/v1/chat/completions", None, chat(france, 30, true));
    assert!(done, "the stream ends with [DONE]");
    let last = events.last().unwrap();
    assert_eq!(last["error"]["code"], "policy_denied", "{events:?}");
    assert!(!streamed_text(&events).contains("Paris"), "{events:?}");
    assert!(
        events
            .iter()
            .all(|e| e["choices"][0]["finish_reason"].is_null()),
        "{events:?}"
    );
    // A long denied stream: checked every 256 bytes, so it ends early and the engine's
    // sequence is cancelled.
    let before = metric(&s, "llmos_generate_cancelled_total");
    let (events, done) = stream(
        &s,
        "/v1/chat/completions",
        None,
        chat(
            "Write a long essay about Paris, the capital of France, its history and its monuments.",
            200,
            true,
        ),
    );
    assert!(done);
    assert_eq!(
        events.last().unwrap()["error"]["code"],
        "policy_denied",
        "{events:?}"
    );
    let sent = streamed_text(&events);
    eprintln!("long denied stream sent {} bytes: {sent:?}", sent.len());
    assert!(!sent.contains("Paris") && sent.len() < 1024, "{sent:?}");
    let start = std::time::Instant::now();
    while metric(&s, "llmos_generate_cancelled_total") == before {
        assert!(
            start.elapsed().as_secs() < 10,
            "the denied sequence was not cancelled"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

//! Structured output and tools on `/v1/chat/completions` with the real `smollm2` model
//! (docs/generation.md §6a): `response_format` json_schema / json_object answers always parse
//! and validate (50 seeds at temperature 1, checked with the Python `jsonschema_rs` of the
//! test venv), `html` answers are sanitised, schemas outside the subset are refused by name,
//! and tools work through the official OpenAI Python client (tests/clients/openai_structured.py).

use serde_json::{Value, json};

use crate::support::{Home, Server, call, client_python, repo};

const MODEL: &str = "smollm2";

fn server() -> (Home, Server) {
    let home = Home::new();
    let s = home.serve(&["--models", MODEL]);
    (home, s)
}

fn chat(messages: Value, extra: Value) -> Value {
    let mut body = json!({"model": MODEL, "messages": messages});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

fn person_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 24},
            "age": {"type": "integer"},
            "color": {"enum": ["red", "green", "blue"]},
            "pets": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3},
            "married": {"type": "boolean"},
        },
        "required": ["age", "color", "name"],
        "additionalProperties": false,
    })
}

/// Validates each (schema, text) pair with jsonschema_rs; panics naming the first failure.
fn validate_all(cases: &[(Value, String)]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cases.json");
    let list: Vec<Value> = cases
        .iter()
        .map(|(s, t)| json!({"schema": s, "text": t}))
        .collect();
    std::fs::write(&path, serde_json::to_vec(&list).unwrap()).unwrap();
    let script = "import json, sys, jsonschema_rs\n\
        for i, c in enumerate(json.load(open(sys.argv[1]))):\n\
        \x20   v = json.loads(c['text'])\n\
        \x20   jsonschema_rs.validate(c['schema'], v)\n\
        print('ok')\n";
    let out = std::process::Command::new(client_python())
        .arg("-c")
        .arg(script)
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", crate::support::text(&out));
}

/// Streams one chat request (streams are not cut by the server's request time limit) and
/// returns each choice's text and finish_reason.
fn streamed(s: &Server, body: &Value) -> Vec<(String, String)> {
    let mut body = body.clone();
    body["stream"] = json!(true);
    let client = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .unwrap();
    let r = client
        .post(s.at("/v1/chat/completions"))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let text = r.text().unwrap();
    let n = body["n"].as_u64().unwrap_or(1) as usize;
    let mut out = vec![(String::new(), String::new()); n];
    for block in text.split("\n\n").filter(|b| !b.is_empty()) {
        let data = block.strip_prefix("data: ").unwrap();
        if data == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        assert!(v.get("error").is_none(), "{v}");
        for c in v["choices"].as_array().unwrap() {
            let o = &mut out[c["index"].as_u64().unwrap() as usize];
            o.0.push_str(c["delta"]["content"].as_str().unwrap_or(""));
            if let Some(f) = c["finish_reason"].as_str() {
                o.1 = f.to_string();
            }
        }
    }
    out
}

/// 50 seeds at temperature 1 for a json_schema (5 requests of n = 10, seeds seed + i, all at
/// once so they share decode steps) and 8 for json_object: every answer that ends with
/// `finish_reason: "stop"` parses and validates against its schema. The person schema bounds
/// every value, so all 50 of those end by themselves. An open `json_object` does not (its
/// keys, strings and nesting are bounded only loosely, docs/generation.md), and which of its
/// samples runs long depends on the batch each decode step shares — the seeds fix the draws,
/// not the floating-point sums of a batch of a different shape — so up to 2 of its 8 may be
/// cut by `max_tokens` (`finish_reason: "length"`, as OpenAI), and each cut one must still be
/// the start of a JSON object.
#[test]
fn json_answers_always_validate_over_50_seeds() {
    let (_h, s) = server();
    let person = json!([{"role": "user", "content": "Describe a person as JSON: their name, age, favourite colour and pets."}]);
    let format = json!({"type": "json_schema", "json_schema": {"name": "person", "schema": person_schema(), "strict": true}});
    let city = json!([{"role": "user", "content": "Give a JSON object with the name and age of a person."}]);
    let mut jobs: Vec<(Value, Value)> = [1, 11, 21, 31, 41]
        .iter()
        .map(|seed| (person_schema(), chat(person.clone(), json!({"response_format": format, "temperature": 1, "seed": seed, "n": 10, "max_tokens": 240}))))
        .collect();
    jobs.push((json!({"type": "object"}), chat(city, json!({"response_format": {"type": "json_object"}, "temperature": 1, "seed": 3, "n": 8, "max_tokens": 1200}))));
    let answers: Vec<(Value, String, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|(schema, body)| (schema, scope.spawn(|| streamed(&s, body))))
            .collect();
        handles
            .into_iter()
            .flat_map(|(schema, h)| {
                h.join()
                    .unwrap()
                    .into_iter()
                    .map(move |(text, finish)| (schema.clone(), text, finish))
            })
            .collect()
    });
    assert_eq!(answers.len(), 58);
    let mut cut = 0;
    let mut cases: Vec<(Value, String)> = Vec::new();
    for (i, (schema, text, finish)) in answers.into_iter().enumerate() {
        let head: String = text.chars().take(300).collect();
        match finish.as_str() {
            "stop" => cases.push((schema, text)),
            "length" if i >= 50 && text.starts_with('{') => cut += 1,
            _ => panic!(
                "answer {i} ended with {finish:?} after {} bytes: {head}",
                text.len()
            ),
        }
    }
    assert!(
        cut <= 2,
        "{cut} of the 8 json_object answers were cut by max_tokens"
    );
    validate_all(&cases);
    let distinct: std::collections::HashSet<&String> = cases.iter().map(|c| &c.1).collect();
    assert!(
        distinct.len() > 30,
        "temperature 1 gives varied answers: {distinct:?}"
    );
}

/// An HTML answer is the Markdown rendered and sanitised: asked to write a script tag, the
/// answer never contains one; with `stream: true` the request is refused by name.
#[test]
fn html_answers_are_sanitised_and_whole_only() {
    let (_h, s) = server();
    let messages = json!([{"role": "user", "content": "Write an HTML page with a <script>alert(1)</script> tag that shows an alert. Show the code."}]);
    let mut scripts = 0;
    for seed in [1, 2, 3, 4] {
        let text = chat(
            messages.clone(),
            json!({"temperature": 1, "seed": seed, "max_tokens": 60}),
        );
        let (code, v) = call(&s, "POST", "/v1/chat/completions", None, Some(text.clone()));
        assert_eq!(code, 200, "{v}");
        let raw = v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_lowercase();
        let mut body = text;
        body["response_format"] = json!({"type": "html"});
        let (code, v) = call(&s, "POST", "/v1/chat/completions", None, Some(body));
        assert_eq!(code, 200, "{v}");
        // The same seed writes the same text; only its rendering differs.
        let html = v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_lowercase();
        assert!(!html.contains("<script"), "{html}");
        if raw.contains("<script") {
            scripts += 1;
        }
    }
    assert!(
        scripts > 0,
        "the model wrote no <script> to sanitise: pick other seeds"
    );
    let body = chat(
        messages,
        json!({"response_format": {"type": "html"}, "stream": true}),
    );
    let (code, v) = call(&s, "POST", "/v1/chat/completions", None, Some(body));
    assert_eq!(code, 400, "{v}");
    let m = v["error"]["message"].as_str().unwrap();
    assert!(m.contains("html") && m.contains("stream"), "{m}");
    assert_eq!(v["error"]["param"], "response_format");
}

/// Schemas and tools outside what llmos decodes are refused naming the keyword and what is
/// accepted; nothing is generated.
#[test]
fn unsupported_schemas_and_bad_tools_are_named() {
    let (_h, s) = server();
    let user = json!([{"role": "user", "content": "hi"}]);
    let cases = [
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string", "pattern": "^a"}}}}),
            "pattern",
            "response_format.json_schema.schema",
        ),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"$ref": "#/a"}}}}),
            "$ref",
            "response_format.json_schema.schema",
        ),
        (
            json!({"response_format": {"type": "yaml"}}),
            "html",
            "response_format",
        ),
        (
            json!({"response_format": {"type": "json_schema"}}),
            "schema",
            "response_format",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": {"format": "date"}}}}}]}),
            "format",
            "tools",
        ),
        (
            json!({"tools": [{"type": "retrieval"}]}),
            "function",
            "tools",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", "function": {"name": "g"}}}),
            "`g`",
            "tool_choice",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "any"}),
            "required",
            "tool_choice",
        ),
        (
            json!({"messages": [{"role": "tool", "content": "4"}]}),
            "tool_call_id",
            "messages",
        ),
    ];
    for (extra, needle, param) in cases {
        let mut body = chat(user.clone(), extra.clone());
        if let Some(m) = extra.get("messages") {
            body["messages"] = m.clone();
        }
        let (code, v) = call(&s, "POST", "/v1/chat/completions", None, Some(body));
        assert_eq!(code, 400, "{extra}: {v}");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains(needle), "{extra}: {m}");
        assert_eq!(v["error"]["param"], param, "{extra}: {v}");
    }
}

/// The official OpenAI client, unchanged: json_schema via `response_format`, a named and a
/// required tool call (whole and streamed; arguments validate), and a full round trip.
#[test]
fn openai_client_structured_output_and_tools() {
    let (_h, s) = server();
    let out = std::process::Command::new(client_python())
        .arg(repo().join("tests/clients/openai_structured.py"))
        .arg(format!("{}/v1", s.url))
        .arg(MODEL)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", crate::support::text(&out));
}

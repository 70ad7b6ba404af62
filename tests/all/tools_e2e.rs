//! The chat tool loop end to end (issue 14, docs/tools.md §3) with the real shipped tool
//! plugins on one real server and the default chat model `smollm2`: `collection-search`
//! (granted `data:docs`) over a small ingested collection, then `calculator`, then a text
//! answer, forced step by step with a `tool_choice` list. Every step's arguments and result
//! are checked against the tool itself (`POST /v1/tools/{id}/invoke` with the same
//! arguments). Also on the same server: a tool whose plugin lacks its grant (the model sees
//! the denial), the looping `spin` tool stopped by its time limit, `llmos_max_steps: 1`, a
//! key without `tools:<id>` (403 naming the scope), and the loop streamed to the official
//! OpenAI Python client.

use std::process::Command;

use serde_json::{Value, json};

use crate::plugins_common::{manifest, wasm};
use crate::support::{Home, Server, call, client_python, create_key, repo, text};

const MODEL: &str = "smollm2";

/// Installs the plugin in `plugins/<dir>` with `--approve-limits` and `extra` arguments.
fn install(home: &Home, dir: &str, extra: &[&str]) {
    let (w, m) = (wasm(dir), manifest(dir));
    let mut args = vec![
        "plugin",
        "install",
        w.to_str().unwrap(),
        "--manifest",
        m.to_str().unwrap(),
        "--approve-limits",
    ];
    args.extend(extra);
    let out = home.cmd(&args).output().unwrap();
    assert!(out.status.success(), "install {dir}:\n{}", text(&out));
}

/// A chat request of `question` with `tools` (llmos tool ids) and `tool_choice`.
fn chat(question: &str, tools: &[&str], tool_choice: Value) -> Value {
    let tools: Vec<Value> = tools
        .iter()
        .map(|t| json!({"type": "llmos_tool", "name": t}))
        .collect();
    json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": question}],
        "tools": tools,
        "tool_choice": tool_choice,
        "max_tokens": 96,
        "temperature": 0,
        "seed": 7,
    })
}

fn forced(id: &str) -> Value {
    json!({"type": "llmos_tool", "name": id})
}

/// The (tool name, arguments as JSON, tool message content) of each call in `steps`, after
/// checking each pair has OpenAI's shapes and the tool message answers the call.
fn calls(steps: &Value) -> Vec<(String, Value, String)> {
    let steps = steps
        .as_array()
        .unwrap_or_else(|| panic!("no steps: {steps}"));
    assert_eq!(steps.len() % 2, 0, "{steps:#?}");
    steps
        .chunks(2)
        .map(|pair| {
            let (a, t) = (&pair[0], &pair[1]);
            assert_eq!(a["role"], "assistant", "{a}");
            assert!(a["content"].is_null(), "{a}");
            let c = &a["tool_calls"][0];
            assert_eq!(c["type"], "function", "{a}");
            assert_eq!(t["role"], "tool", "{t}");
            assert_eq!(t["tool_call_id"], c["id"], "{pair:?}");
            assert_eq!(t["name"], c["function"]["name"], "{pair:?}");
            let args: Value = serde_json::from_str(c["function"]["arguments"].as_str().unwrap())
                .unwrap_or_else(|e| panic!("arguments are not JSON ({e}): {a}"));
            (
                c["function"]["name"].as_str().unwrap().to_string(),
                args,
                t["content"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The tool's own answer to `arguments` through `POST /v1/tools/{id}/invoke` (a 200 there
/// also means the arguments pass the tool's schema: a 400 otherwise), as the loop writes it
/// into a tool message: the result text, or `{"error": {"kind", "message"}}`.
fn invoked(s: &Server, key: &str, id: &str, arguments: &Value) -> String {
    let (code, body) = call(
        s,
        "POST",
        &format!("/v1/tools/{id}/invoke"),
        Some(key),
        Some(json!({ "arguments": arguments })),
    );
    assert_eq!(code, 200, "{id} {arguments}: {body}");
    match body["result"].as_str() {
        Some(r) => r.to_string(),
        None => json!({"error": body["error"]}).to_string(),
    }
}

/// The tool error a tool message holds (`{"error": {"kind", "message"}}`).
fn tool_error(content: &str) -> (String, String) {
    let v: Value = serde_json::from_str(content).unwrap_or_else(|e| panic!("{e}: {content}"));
    (
        v["error"]["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("not an error: {content}"))
            .to_string(),
        v["error"]["message"].as_str().unwrap().to_string(),
    )
}

#[test]
fn chat_searches_a_collection_computes_and_answers_with_the_shipped_tools() {
    let home = Home::new();
    // Three generations per request on a busy CI machine: more than the default 60 s.
    let config = home.dir.path().join("llmos.toml");
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str("[server]\nrequest_timeout_ms = 300000\n");
    std::fs::write(&config, toml).unwrap();
    install(&home, "calculator", &[]);
    install(&home, "collection-search", &["--grant", "data:docs"]);
    install(&home, "testing/tools", &[]);
    let key = create_key(&home, &["models:*", "data:*:write", "tools:*"]);
    let calc_only = create_key(&home, &["models:*", "tools:calculator"]);
    let s = home.serve(&["--models", &format!("{MODEL},minilm")]);
    let post = |k: &str, body: Value| call(&s, "POST", "/v1/chat/completions", Some(k), Some(body));

    for name in ["docs", "private"] {
        let (code, c) = call(
            &s,
            "POST",
            &format!("/v1/collections/{name}"),
            Some(&key),
            Some(json!({})),
        );
        assert_eq!(code, 201, "{c}");
        let docs = json!({"documents": [
            {"id": "widget", "text": "A widget costs 12.50 euros. Widgets are sold in boxes of 8."},
            {"id": "cats", "text": "Cats sleep for most of the day in warm sunny spots."},
        ]});
        let (code, r) = call(
            &s,
            "POST",
            &format!("/v1/collections/{name}/documents"),
            Some(&key),
            Some(docs),
        );
        assert_eq!(code, 200, "{r}");
    }

    // Search, then compute, then answer: each step forced by the `tool_choice` list.
    let question = "Search the collection \"docs\" for the price of a widget, then use the \
                    calculator to compute the price of a box of 8 widgets.";
    let plan = json!([forced("collection-search"), forced("calculator"), "none"]);
    let (code, v) = post(
        &key,
        chat(question, &["collection-search", "calculator"], plan.clone()),
    );
    assert_eq!(code, 200, "{v:#}");
    let choice = &v["choices"][0];
    let steps = calls(&choice["steps"]);
    assert_eq!(steps.len(), 2, "{v:#}");
    let (name, args, content) = &steps[0];
    assert_eq!(name, "collection-search", "{v:#}");
    for k in ["collection", "query"] {
        assert!(args[k].is_string(), "{k} missing: {args}");
    }
    assert_eq!(
        content,
        &invoked(&s, &key, "collection-search", args),
        "{v:#}"
    );
    let (name, args, content) = &steps[1];
    assert_eq!(name, "calculator", "{v:#}");
    assert!(args["expression"].is_string(), "{args}");
    assert_eq!(content, &invoked(&s, &key, "calculator", args), "{v:#}");
    // The final answer is text (tool_choice "none"), after both results.
    let answer = choice["message"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("{v:#}"));
    assert!(!answer.trim().is_empty(), "{v:#}");
    assert!(choice["message"].get("tool_calls").is_none(), "{v:#}");
    assert!(
        ["stop", "length"].contains(&choice["finish_reason"].as_str().unwrap()),
        "{v:#}"
    );
    let usage = &v["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 100, "{usage}");
    eprintln!("two-step loop: {:#}", v["choices"][0]);
    // The results flowed into the answer: the conversation sent again with the two calls and
    // their results as messages (OpenAI's shape for results a client appends) and
    // tool_choice "none" is the prompt the loop's last step ran, so greedy decoding gives the
    // same answer; with a result changed, the prompt is another one.
    let mut messages = vec![json!({"role": "user", "content": question})];
    messages.extend(choice["steps"].as_array().unwrap().iter().cloned());
    let mut replay = chat(
        question,
        &["collection-search", "calculator"],
        json!("none"),
    );
    replay["messages"] = json!(messages);
    let (code, r) = post(&key, replay.clone());
    assert_eq!(code, 200, "{r:#}");
    assert_eq!(
        r["choices"][0]["message"]["content"].as_str(),
        Some(answer),
        "the loop's answer is not the model's answer to its results: {r:#}"
    );
    // The loop's usage counts every step's prompt; the last step's alone is shorter.
    let last_prompt = r["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(
        last_prompt < usage["prompt_tokens"].as_u64().unwrap(),
        "{r:#}"
    );
    replay["messages"][4]["content"] = json!("{\"result\":\"99999999999999999999\"}");
    let (code, r) = post(&key, replay);
    assert_eq!(code, 200, "{r:#}");
    assert_ne!(r["usage"]["prompt_tokens"], last_prompt, "{r:#}");

    // Streamed through the official OpenAI Python client: the same steps arrive as chunks
    // (greedy decoding: the same calls and results), then the same answer.
    let out = Command::new(client_python())
        .arg(repo().join("tests/clients/openai_tool_loop.py"))
        .args([
            s.at("/v1").as_str(),
            key.as_str(),
            &chat(question, &["collection-search", "calculator"], plan).to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the OpenAI client failed:\n{}",
        text(&out)
    );
    let streamed: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{}", text(&out)));
    assert_eq!(calls(&streamed["steps"]), steps, "{streamed:#}");
    assert_eq!(streamed["content"].as_str(), Some(answer), "{streamed:#}");
    assert_eq!(
        streamed["finish_reason"], choice["finish_reason"],
        "{streamed:#}"
    );
    assert!(streamed["chunks"].as_u64().unwrap() >= 5, "{streamed:#}");

    // A search the plugin has no grant for: the model sees the denial, naming the grant.
    let (code, v) = post(
        &key,
        chat(
            "Search the collection \"private\" for the price of a widget.",
            &["collection-search"],
            json!([forced("collection-search"), "none"]),
        ),
    );
    assert_eq!(code, 200, "{v:#}");
    let steps = calls(&v["choices"][0]["steps"]);
    let (_, args, content) = &steps[0];
    if args["collection"] == "private" {
        let (kind, message) = tool_error(content);
        assert_eq!(kind, "denied", "{content}");
        assert!(message.contains("data:private"), "{content}");
    }
    assert_eq!(
        content,
        &invoked(&s, &key, "collection-search", args),
        "{v:#}"
    );
    // The same denial, deterministic: `lookup` of test-tools, installed without any grant.
    let (code, v) = post(
        &key,
        chat(
            "Look up widgets in the collection docs.",
            &["lookup"],
            json!([forced("lookup"), "none"]),
        ),
    );
    assert_eq!(code, 200, "{v:#}");
    let steps = calls(&v["choices"][0]["steps"]);
    let (kind, message) = tool_error(&steps[0].2);
    assert_eq!(kind, "denied", "{v:#}");
    let collection = steps[0].1["collection"].as_str().unwrap();
    assert!(message.contains(&format!("data:{collection}")), "{message}");
    assert!(v["choices"][0]["message"]["content"].is_string(), "{v:#}");

    // A looping tool: stopped by its plugin's time limit (2000 ms), and the model sees why.
    let start = std::time::Instant::now();
    let (code, v) = post(
        &key,
        chat("Spin.", &["spin"], json!([forced("spin"), "none"])),
    );
    assert_eq!(code, 200, "{v:#}");
    let steps = calls(&v["choices"][0]["steps"]);
    let (kind, message) = tool_error(&steps[0].2);
    assert_eq!(kind, "limit_exceeded", "{v:#}");
    assert!(
        message.contains("time limit exceeded") && message.contains("2000 ms"),
        "{message}"
    );
    assert!(start.elapsed().as_secs() < 60, "{:?}", start.elapsed());

    // The step limit: one call runs, the second is not run; the documented finish.
    let mut body = chat(
        question,
        &["collection-search", "calculator"],
        json!([forced("collection-search"), forced("calculator"), "none"]),
    );
    body["llmos_max_steps"] = json!(1);
    let (code, v) = post(&key, body);
    assert_eq!(code, 200, "{v:#}");
    let choice = &v["choices"][0];
    assert_eq!(calls(&choice["steps"]).len(), 1, "{v:#}");
    assert_eq!(choice["finish_reason"], "length", "{v:#}");
    let note = choice["message"]["content"].as_str().unwrap();
    assert!(
        note.contains("llmos stopped the tool loop")
            && note.contains("calculator")
            && note.contains("after 1 tool calls"),
        "{note}"
    );

    // A key without `tools:collection-search`: 403 naming the scope and the tool.
    let (code, v) = post(
        &calc_only,
        chat(
            question,
            &["calculator", "collection-search"],
            json!("auto"),
        ),
    );
    assert_eq!(code, 403, "{v:#}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("tools:collection-search"), "{msg}");
    assert_eq!(v["error"]["code"], "missing_scope", "{v:#}");
    // With its own tool it runs.
    let (code, v) = post(
        &calc_only,
        chat(
            "Compute 12.5 * 8 with the calculator.",
            &["calculator"],
            json!([forced("calculator"), "none"]),
        ),
    );
    assert_eq!(code, 200, "{v:#}");
    let steps = calls(&v["choices"][0]["steps"]);
    assert_eq!(
        steps[0].2,
        invoked(&s, &key, "calculator", &steps[0].1),
        "{v:#}"
    );
    assert!(s.terminate(), "serve did not stop cleanly");
}

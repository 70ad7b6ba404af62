//! The chat tool loop on `/v1/chat/completions` (docs/tools.md §3) on a real server with the
//! default model `smollm2`: `llmos_tool` entries are checked (unknown tool 400 listing the
//! tools there are, a malformed entry 400 naming the accepted shapes, `llmos_max_steps` and a
//! `tool_choice` list only with llmos tools).
//!
//! The loop against real tool plugins (search a collection, then compute; a tool without
//! its grant; a looping tool; the step limit; `tools:` scopes) needs the host's tool world
//! (branch c14-toolhost) and the shipped tools (c14-toolguests); those tests join this file
//! when both are merged (see the report of c14-loop).

use serde_json::{Value, json};

use crate::support::{Home, call, create_key};

const MODEL: &str = "smollm2";

fn chat(extra: Value) -> Value {
    let mut body = json!({"model": MODEL, "messages": [{"role": "user", "content": "What is 2+2?"}], "max_tokens": 8});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

#[test]
fn llmos_tool_entries_are_checked() {
    let home = Home::new();
    let s = home.serve(&["--models", MODEL]);
    let post = |body: Value| call(&s, "POST", "/v1/chat/completions", None, Some(body));

    // An unknown tool: 400 naming it and the tools there are (none on this server).
    let (status, v) = post(chat(
        json!({"tools": [{"type": "llmos_tool", "name": "calculator"}]}),
    ));
    assert_eq!(status, 400, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("tools[0]")
            && msg.contains("\"calculator\"")
            && msg.contains("no tools are installed"),
        "{msg}"
    );
    assert_eq!(v["error"]["param"], "tools");
    assert_eq!(v["error"]["code"], "tool_not_found");

    // Malformed entries: 400 naming the accepted shapes.
    for (entry, says) in [
        (json!({"type": "llmos_tool"}), "without `name`"),
        (
            json!({"type": "llmos_tool", "name": "calculator", "function": {}}),
            "has the field `function`",
        ),
        (
            json!({"type": "mcp", "name": "x"}),
            "accepted are \"function\" and \"llmos_tool\"",
        ),
    ] {
        let (status, v) = post(chat(json!({"tools": [entry]})));
        assert_eq!(status, 400, "{entry}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(says) && msg.contains("{\"type\": \"llmos_tool\", \"name\""),
            "{entry}: {msg}"
        );
    }

    // The loop's own fields need an llmos tool.
    let f = json!([{"type": "function", "function": {"name": "add", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}}]);
    let (status, v) = post(chat(json!({"tools": f, "llmos_max_steps": 2})));
    assert_eq!(
        (status, v["error"]["param"].as_str()),
        (400, Some("llmos_max_steps")),
        "{v}"
    );
    let (status, v) = post(chat(
        json!({"tools": f, "tool_choice": ["required", "none"]}),
    ));
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("as a list"),
        "{v}"
    );

    // Client functions alone still answer as before (no `steps`: no loop).
    let (status, v) = post(chat(
        json!({"tools": f, "tool_choice": "required", "max_tokens": 64}),
    ));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{v}");
    assert!(v["choices"][0].get("steps").is_none(), "{v}");
}

#[test]
fn llmos_tool_needs_a_key_that_may_use_models_and_an_unknown_tool_is_named() {
    let home = Home::new();
    let key = create_key(&home, &["models:*"]);
    let s = home.serve(&["--models", MODEL]);
    let (status, v) = call(
        &s,
        "POST",
        "/v1/chat/completions",
        Some(&key),
        Some(chat(
            json!({"tools": [{"type": "llmos_tool", "name": "mcp:wiki:search"}]}),
        )),
    );
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"mcp:wiki:search\""),
        "{v}"
    );
}

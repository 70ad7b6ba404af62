//! Tool plugins (docs/tools.md §2): a real `tool` component (plugins/testing/tools, WIT
//! `llmos:plugin@0.1.1`) installed with the CLI and called through `llmos tools call` (with
//! and without a server) and `POST /v1/tools/{id}/invoke`; `data.search` denied and granted;
//! a spinning tool stopped by its time limit; bad tool specs refused at install; `GET
//! /v1/tools` filtered by the key's `tools:` scopes.
//!
//! Components built against 0.1.0 keep linking on the 0.1.1 host: every other plugin test
//! (`plugins_grants::`, `plugins_sandbox::`, `plugins_install::`, …) installs and runs the
//! `plugins/testing/*` guests, all built against `wit/llmos-plugin@0.1.0`; this file also
//! installs and runs one (`testing/echo`) on the same host as the 0.1.1 tool plugin.

use serde_json::{Value, json};

use crate::plugins_common::{manifest, wasm};
use crate::support::{Home, call, create_key, text};

fn path(p: &std::path::Path) -> String {
    p.display().to_string()
}

/// Installs a testing plugin with the CLI; extra arguments after the manifest.
fn install(home: &Home, dir: &str, extra: &[&str]) -> std::process::Output {
    let (w, m) = (path(&wasm(dir)), path(&manifest(dir)));
    let mut args = vec!["plugin", "install", w.as_str(), "--manifest", m.as_str()];
    args.extend(extra);
    home.cmd(&args).output().unwrap()
}

fn ok(home: &Home, args: &[&str]) -> String {
    let out = home.cmd(args).output().unwrap();
    assert!(out.status.success(), "llmos {args:?}:\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn tool_plugins_install_list_and_call_from_the_cli_and_bad_specs_are_refused() {
    let home = Home::new();
    let out = install(&home, "testing/tools", &["--approve-limits"]);
    assert!(out.status.success(), "{}", text(&out));

    // A 0.1.0 component links and runs on the same (0.1.1) host.
    let out = install(&home, "testing/echo", &[]);
    assert!(
        out.status.success(),
        "a 0.1.0 plugin must install: {}",
        text(&out)
    );
    let run = ok(&home, &["plugin", "test", "test-echo", "--input", "hello"]);
    assert!(run.contains("hello"), "{run}");

    // Every rule of docs/tools.md §2, refused with the reason.
    for (mode, reason) in [
        ("bad-name", "tool name \"Bad Name\" is not accepted"),
        ("dunder", "tool name \"a__b\" is not accepted"),
        ("duplicate", "offers tool \"twice\" twice"),
        ("schema", "outside the structured-output subset"),
        ("not-object", "must be an object schema"),
        ("long", "description is 1025 bytes; at most 1024"),
        ("none", "returned no tool"),
        ("echo", "already offered by installed plugin test-tools"),
    ] {
        let set = format!("mode={mode}");
        let out = install(&home, "testing/badtools", &["--set", &set]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{mode}: must be refused:\n{}",
            text(&out)
        );
        assert!(
            err.contains(reason),
            "{mode}: the error must say {reason:?}:\n{err}"
        );
    }
    let list = ok(&home, &["plugin", "list"]);
    assert!(
        !list.contains("test-badtools"),
        "nothing half-installed:\n{list}"
    );
    // A fine spec installs (and its tool joins the list).
    let out = install(&home, "testing/badtools", &["--set", "mode=fine"]);
    assert!(out.status.success(), "{}", text(&out));

    let list = ok(&home, &["tools", "list"]);
    for (id, from) in [
        ("echo", "plugin test-tools 0.1.0"),
        ("spin", "plugin test-tools 0.1.0"),
        ("lookup", "plugin test-tools 0.1.0"),
        ("fine", "plugin test-badtools 0.1.0"),
    ] {
        assert!(
            list.lines()
                .any(|l| l.starts_with(&format!("{id}\t{from}\t"))),
            "{id} from {from}:\n{list}"
        );
    }
    let listed: Value = serde_json::from_str(&ok(&home, &["tools", "list", "--json"])).unwrap();
    let echo = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "echo")
        .unwrap();
    assert_eq!(
        echo["parameters"]["properties"]["text"]["type"], "string",
        "{echo}"
    );

    let out = ok(&home, &["tools", "call", "echo", r#"{"text": "hi"}"#]);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        v,
        json!({"arguments": {"text": "hi"}, "task": "tool", "route": "cli"})
    );

    // Stopped by the plugin's time limit, and the limit is named.
    let start = std::time::Instant::now();
    let err = home.fails(&["tools", "call", "spin"]);
    assert!(
        err.contains("limit_exceeded")
            && err.contains("time limit exceeded")
            && err.contains("2000 ms"),
        "{err}"
    );
    assert!(start.elapsed().as_secs() < 30, "{:?}", start.elapsed());

    // No data grant: denied, naming the capability and how to grant it.
    let err = home.fails(&[
        "tools",
        "call",
        "lookup",
        r#"{"collection": "docs", "query": "cats"}"#,
    ]);
    assert!(
        err.contains("denied")
            && err.contains("data:docs")
            && err.contains("llmos plugin grant test-tools data:docs"),
        "{err}"
    );
    let err = home.fails(&["tools", "call", "nope"]);
    assert!(
        err.contains("no tool named \"nope\"") && err.contains("echo"),
        "{err}"
    );
    let err = home.fails(&["tools", "call", "echo", "[1]"]);
    assert!(err.contains("give a JSON object"), "{err}");

    // Disabled: no longer listed; removed: gone.
    ok(&home, &["plugin", "disable", "test-badtools"]);
    assert!(!ok(&home, &["tools", "list"]).contains("fine\t"));
    ok(&home, &["plugin", "remove", "test-badtools"]);

    // Every call is audited.
    let audit = ok(&home, &["audit", "tail", "-n", "200"]);
    let calls: Vec<Value> = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e.to_string().contains("tool-call"))
        .collect();
    assert!(calls.len() >= 3, "echo, spin and lookup: {audit}");
    assert!(
        calls
            .iter()
            .any(|e| e.to_string().contains("limit_exceeded")),
        "{calls:?}"
    );
}

#[test]
fn tools_over_http_follow_the_keys_scopes_and_search_collections_with_a_grant() {
    let home = Home::new();
    let out = install(&home, "testing/tools", &["--approve-limits"]);
    assert!(out.status.success(), "{}", text(&out));
    let echo_only = create_key(&home, &["tools:echo"]);
    let all = create_key(&home, &["tools:*"]);
    let data = create_key(&home, &["data:*:write", "models:*"]);
    let admin = create_key(&home, &["admin"]);
    let s = home.serve(&["--models", "minilm"]);

    // The collection the lookup tool searches.
    let (code, r) = call(
        &s,
        "POST",
        "/v1/collections/docs",
        Some(&data),
        Some(json!({"model": "minilm"})),
    );
    assert!(code < 300, "{code} {r}");
    let docs = json!({"documents": [
        {"id": "cats", "text": "Cats sleep for most of the day in warm sunny spots."},
        {"id": "rust", "text": "Rust guarantees memory safety without a garbage collector."},
        {"id": "paris", "text": "The Eiffel Tower is in Paris, the capital of France."},
    ]});
    let (code, r) = call(
        &s,
        "POST",
        "/v1/collections/docs/documents",
        Some(&data),
        Some(docs),
    );
    assert_eq!(code, 200, "{r}");

    // GET /v1/tools: only what the key may use.
    let ids = |key: &str| -> Vec<String> {
        let (code, r) = call(&s, "GET", "/v1/tools", Some(key), None);
        assert_eq!(code, 200, "{r}");
        r["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&echo_only), ["echo"]);
    assert_eq!(ids(&all), ["echo", "lookup", "spin"]);
    assert!(ids(&data).is_empty());
    let (_, r) = call(&s, "GET", "/v1/tools", Some(&all), None);
    let lookup = r["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "lookup")
        .unwrap();
    assert_eq!(
        lookup["parameters"]["required"],
        json!(["collection", "query"]),
        "{lookup}"
    );
    assert_eq!(
        lookup["source"],
        json!({"kind": "plugin", "plugin": "test-tools", "version": "0.1.0"})
    );

    // Invoke: the scope, then the tool.
    let invoke = |key: &str, id: &str, body: Value| {
        call(
            &s,
            "POST",
            &format!("/v1/tools/{id}/invoke"),
            Some(key),
            Some(body),
        )
    };
    let (code, r) = invoke(&echo_only, "echo", json!({"arguments": {"text": "hey"}}));
    assert_eq!(code, 200, "{r}");
    let result: Value = serde_json::from_str(r["result"].as_str().unwrap()).unwrap();
    assert_eq!(result["arguments"], json!({"text": "hey"}));
    assert_eq!(result["route"], "/v1/tools/{id}/invoke");
    let (code, r) = invoke(&echo_only, "spin", json!({"arguments": {}}));
    assert_eq!(code, 403, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tools:spin"),
        "{r}"
    );
    let (code, r) = invoke(&all, "nope", json!({"arguments": {}}));
    assert_eq!(code, 404, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("echo, lookup, spin"),
        "{r}"
    );
    let (code, r) = invoke(&all, "echo", json!({"arguments": "x"}));
    assert_eq!(code, 400, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expected a JSON object"),
        "{r}"
    );
    let (code, r) = invoke(&all, "echo", json!({"args": {}}));
    assert_eq!(code, 400, "{r}");

    // The tool's own outcome is a 200 naming the kind: a limit…
    let (code, r) = invoke(&all, "spin", json!({"arguments": {}}));
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["error"]["kind"], "limit_exceeded", "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("time limit exceeded"),
        "{r}"
    );
    // The audit log records the trap: the plugin, the limit, where; nothing of the request.
    let (code, r) = call(
        &s,
        "GET",
        "/admin/audit?what=trap&target=test-tools",
        Some(&admin),
        None,
    );
    assert_eq!(code, 200, "{r}");
    let traps = r["records"].as_array().unwrap();
    assert_eq!(traps.len(), 1, "{r}");
    let t = &traps[0];
    assert_eq!(
        (&t["who"], &t["outcome"]),
        (&json!("plugin:test-tools"), &json!("failed")),
        "{t}"
    );
    assert_eq!(
        t["detail"],
        "time limit exceeded (2000 ms allowed per call) in invoke, route /v1/tools/{id}/invoke",
        "{t}"
    );
    // …and a capability the plugin was not granted.
    let lookup_args =
        json!({"arguments": {"collection": "docs", "query": "where do cats sleep", "top_k": 2}});
    let (code, r) = invoke(&all, "lookup", lookup_args.clone());
    assert_eq!((code, &r["error"]["kind"]), (200, &json!("denied")), "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("data:docs"),
        "{r}"
    );

    // Granted through the CLI (over the admin socket): the search runs on the collection.
    ok(&home, &["plugin", "grant", "test-tools", "data:docs"]);
    let (code, r) = invoke(&all, "lookup", lookup_args);
    assert_eq!(code, 200, "{r}");
    let hits: Value = serde_json::from_str(r["result"].as_str().expect("a result")).unwrap();
    let hits = hits["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert_eq!(hits[0]["document"], "cats", "{hits:?}");
    // An unknown collection is the tool's not-found; a bad top_k is invalid input.
    let (_, r) = invoke(
        &all,
        "lookup",
        json!({"arguments": {"collection": "nope", "query": "x"}}),
    );
    assert_eq!(
        r["error"]["kind"], "denied",
        "data:docs does not cover nope: {r}"
    );
    ok(&home, &["plugin", "grant", "test-tools", "data:*"]);
    let (_, r) = invoke(
        &all,
        "lookup",
        json!({"arguments": {"collection": "nope", "query": "x"}}),
    );
    assert_eq!(r["error"]["kind"], "failed", "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no collection"),
        "{r}"
    );
    let (_, r) = invoke(
        &all,
        "lookup",
        json!({"arguments": {"collection": "docs", "query": "x", "top_k": 0}}),
    );
    assert_eq!(r["error"]["kind"], "invalid_arguments", "{r}");

    // The CLI goes through the server while it holds the store.
    let out = ok(
        &home,
        &[
            "tools",
            "call",
            "lookup",
            r#"{"collection": "docs", "query": "memory safety", "top_k": 1}"#,
        ],
    );
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["hits"][0]["document"], "rust", "{v}");
    let list = ok(&home, &["tools", "list"]);
    assert!(
        list.contains("lookup\tplugin test-tools 0.1.0\tSearches a collection."),
        "{list}"
    );
    let err = home.fails(&["tools", "call", "spin"]);
    assert!(err.contains("limit_exceeded"), "{err}");

    // Disabled while serving: gone from the list at once.
    ok(&home, &["plugin", "disable", "test-tools"]);
    assert!(ids(&all).is_empty());
    let (code, _) = invoke(&all, "echo", json!({"arguments": {}}));
    assert_eq!(code, 404);
    assert!(s.terminate());
}

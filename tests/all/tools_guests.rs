//! The guest side of the tools (issue 14, docs/tools.md §2): the shipped tools `calculator`,
//! `collection-search` and `unit-convert` (Python), and `llmos plugin new --world tool` for Rust, Python and
//! JavaScript — built, installed into a real home with the real binary, and called through
//! `llmos tools call` and `POST /v1/tools/{id}/invoke`.

use serde_json::{Value, json};

use crate::author_scripted::{Project, ok};
use crate::plugins_common::{manifest, wasm};
use crate::support::{Home, call, repo, text};

/// `llmos plugin build` of the shipped Python tool `plugins/unit-convert` (a copy, so the
/// checkout stays clean), then `llmos plugin install`: the install report.
fn build_and_install_unit_convert(home: &Home) -> String {
    let src = repo().join("plugins/unit-convert");
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("unit-convert");
    std::fs::create_dir_all(dir.join("wit")).unwrap();
    for f in ["app.py", "manifest.toml", "example.txt"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    // `plugins/unit-convert/wit` is a link to the WIT package; the copy holds its files.
    for e in std::fs::read_dir(src.join("wit")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join("wit").join(e.file_name())).unwrap();
    }
    let out = ok(home.cmd(&["plugin", "build"]).current_dir(&dir));
    assert!(out.contains("dist/unit-convert.wasm"), "{out}");
    ok(home
        .cmd(&[
            "plugin",
            "install",
            "dist/unit-convert.wasm",
            "--manifest",
            "manifest.toml",
        ])
        .current_dir(&dir))
}

/// `llmos plugin install` of the shipped plugin in `plugins/<dir>` with `extra` arguments
/// (their manifests raise the time limit — a 10 000-digit power, an embedded query — so the
/// operator approves it).
fn install_shipped(home: &Home, dir: &str, extra: &[&str]) -> String {
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
    ok(&mut home.cmd(&args))
}

/// `llmos tools call NAME ARGS`: (success, stdout and stderr).
fn tools_call(home: &Home, name: &str, args: &str) -> (bool, String) {
    let out = home.cmd(&["tools", "call", name, args]).output().unwrap();
    (out.status.success(), text(&out))
}

/// `POST /v1/tools/{id}/invoke`: the tool's result parsed as JSON, or the error object.
fn invoke(s: &crate::support::Server, id: &str, arguments: Value) -> Result<Value, Value> {
    let (code, body) = call(
        s,
        "POST",
        &format!("/v1/tools/{id}/invoke"),
        None,
        Some(json!({ "arguments": arguments })),
    );
    assert_eq!(code, 200, "{body}");
    match body.get("result").and_then(Value::as_str) {
        Some(r) => Ok(serde_json::from_str(r).unwrap_or_else(|e| panic!("{r}: {e}"))),
        None => Err(body["error"].clone()),
    }
}

#[test]
fn calculator_and_collection_search_answer_through_the_cli_and_http() {
    let home = Home::new();
    let report = install_shipped(&home, "calculator", &[]);
    assert!(report.contains("calculator"), "{report}");
    install_shipped(&home, "collection-search", &["--grant", "data:docs"]);
    let report = build_and_install_unit_convert(&home);
    assert!(report.contains("unit-convert"), "{report}");

    // The CLI: exact decimals, big numbers, errors that name the position.
    let (good, out) = tools_call(&home, "calculator", r#"{"expression": "0.1 + 0.2"}"#);
    assert!(good && out.contains(r#"{"result":"0.3"}"#), "{out}");
    let (good, out) = tools_call(&home, "calculator", r#"{"expression": "2^128 + 0.5"}"#);
    assert!(
        good && out.contains("340282366920938463463374607431768211456.5"),
        "{out}"
    );
    let (good, out) = tools_call(&home, "calculator", r#"{"expression": "2 +"}"#);
    assert!(
        !good && out.contains("expected a number or '(' at position 4"),
        "{out}"
    );
    let (good, out) = tools_call(&home, "calculator", r#"{"expression": "9^99999999"}"#);
    assert!(!good && out.contains("more than 10000 digits"), "{out}");

    let s = home.serve(&["--models", "minilm"]);
    let listed = call(&s, "GET", "/v1/tools", None, None).1;
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert!(
        ids.contains(&"calculator")
            && ids.contains(&"collection-search")
            && ids.contains(&"unit-convert"),
        "{listed}"
    );

    // unit-convert (Python): exact decimal factors, rounded only where the expansion has no
    // end (and saying so); errors name what is accepted.
    let example = std::fs::read_to_string(repo().join("plugins/unit-convert/example.txt")).unwrap();
    let example: Value = serde_json::from_str(example.trim()).unwrap();
    let r = invoke(&s, "unit-convert", example).unwrap();
    assert_eq!(r, json!({"value": "31.75", "unit": "cm", "exact": true}));
    let r = invoke(
        &s,
        "unit-convert",
        json!({"value": "-40", "from": "F", "to": "C"}),
    )
    .unwrap();
    assert_eq!(r, json!({"value": "-40", "unit": "C", "exact": true}));
    let r = invoke(
        &s,
        "unit-convert",
        json!({"value": 1, "from": "lb", "to": "g"}),
    )
    .unwrap();
    assert_eq!(r, json!({"value": "453.59237", "unit": "g", "exact": true}));
    let r = invoke(
        &s,
        "unit-convert",
        json!({"value": "1", "from": "m", "to": "in"}),
    )
    .unwrap();
    assert_eq!(
        r,
        json!({"value": "39.3700787401574803149606299213", "unit": "in", "exact": false,
               "rounded": "to 30 significant digits"})
    );
    let e = invoke(
        &s,
        "unit-convert",
        json!({"value": "1", "from": "furlong", "to": "m"}),
    )
    .unwrap_err();
    let m = e["message"].as_str().unwrap();
    assert!(
        e["kind"] == "invalid_arguments"
            && m.contains("unknown unit 'furlong'")
            && m.contains("length: m, km"),
        "{e}"
    );
    let e = invoke(
        &s,
        "unit-convert",
        json!({"value": "1", "from": "kg", "to": "m"}),
    )
    .unwrap_err();
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("cannot convert mass (kg) to length (m)"),
        "{e}"
    );
    let e = invoke(
        &s,
        "unit-convert",
        json!({"value": "-500", "from": "C", "to": "K"}),
    )
    .unwrap_err();
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("below absolute zero"),
        "{e}"
    );
    // A field the schema does not define never reaches the guest: the route answers 400.
    let (code, body) = call(
        &s,
        "POST",
        "/v1/tools/unit-convert/invoke",
        None,
        Some(json!({"arguments": {"value": "1", "from": "m", "to": "cm", "places": 2}})),
    );
    assert!(
        code == 400 && body.to_string().contains("places"),
        "{code} {body}"
    );

    let r = invoke(&s, "calculator", json!({"expression": "1 / 3"})).unwrap();
    assert_eq!(
        r,
        json!({"result": format!("0.{}", "3".repeat(32)), "rounded": "to 32 decimal places"})
    );
    let r = invoke(
        &s,
        "calculator",
        json!({"expression": "(1.5 + 2) * 3^2 / 7"}),
    )
    .unwrap();
    assert_eq!(r, json!({"result": "4.5"}));
    let e = invoke(&s, "calculator", json!({"expression": "1/0"})).unwrap_err();
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("division by zero at position 2"),
        "{e}"
    );

    for name in ["docs", "private"] {
        let (code, c) = call(
            &s,
            "POST",
            &format!("/v1/collections/{name}"),
            None,
            Some(json!({})),
        );
        assert_eq!(code, 201, "{c}");
        let docs = json!({"documents": [
            {"id": "cats", "text": "Cats sleep for most of the day in warm sunny spots."},
            {"id": "rust", "text": "Rust guarantees memory safety without a garbage collector."},
            {"id": "paris", "text": format!("The Eiffel Tower is in Paris. {}", "More text. ".repeat(60))},
        ]});
        let (code, r) = call(
            &s,
            "POST",
            &format!("/v1/collections/{name}/documents"),
            None,
            Some(docs),
        );
        assert_eq!(code, 200, "{r}");
    }
    let r = invoke(
        &s,
        "collection-search",
        json!({"collection": "docs", "query": "where do cats sleep?", "top_k": 2}),
    )
    .unwrap();
    let hits = r["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 2, "{r}");
    assert_eq!(hits[0]["document"], "cats", "{r}");
    assert!(
        hits[0]["text"].as_str().unwrap().starts_with("Cats sleep"),
        "{r}"
    );
    let score = hits[0]["score"].as_f64().unwrap();
    assert_eq!((score * 1000.0).round() / 1000.0, score, "{r}");
    // A long passage is cut, and the answer says so.
    let r = invoke(
        &s,
        "collection-search",
        json!({"collection": "docs", "query": "Eiffel Tower in Paris", "top_k": 1}),
    )
    .unwrap();
    assert_eq!(r["hits"][0]["document"], "paris", "{r}");
    assert!(r["hits"][0]["text"].as_str().unwrap().ends_with('…'), "{r}");
    assert!(r["truncated"].as_str().unwrap().contains("400"), "{r}");
    // Without `data:private` the host denies the search, and the tool says which grant.
    let e = invoke(
        &s,
        "collection-search",
        json!({"collection": "private", "query": "cats"}),
    )
    .unwrap_err();
    assert!(
        e["kind"] == "denied" && e["message"].as_str().unwrap().contains("data:private"),
        "{e}"
    );
    assert!(s.terminate(), "serve did not stop cleanly");
}

/// `plugin new NAME --world tool --lang LANG`, build, install, call its example.
fn template_tool_round_trip(lang: &str) {
    let name = format!("words-{lang}");
    let p = Project::new(lang, &name, "tool");
    let readme = std::fs::read_to_string(p.dir.join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("llmos tools call {name}")),
        "{readme}"
    );
    let wit = std::fs::read_to_string(p.dir.join("wit/worlds.wit")).unwrap();
    assert!(wit.contains("world tool"), "{wit}");
    p.build();
    let report = p.install(&[]);
    assert!(report.contains(&name), "{report}");
    let example = std::fs::read_to_string(p.dir.join("example.txt")).unwrap();
    let (good, out) = tools_call(&p.home, &name, example.trim());
    assert!(good, "{out}");
    let result = out
        .lines()
        .find_map(|l| {
            serde_json::from_str::<Value>(l.trim())
                .ok()
                .filter(Value::is_object)
        })
        .unwrap_or_else(|| panic!("no JSON result in {out}"));
    assert_eq!(
        result,
        json!({"words": 3, "upper": format!("HELLO FROM {}", name.to_uppercase())}),
        "{out}"
    );
    // Arguments outside the schema never reach the guest; an empty text is the guest's own
    // invalid-input error.
    let (good, out) = tools_call(&p.home, &name, r#"{"text": " "}"#);
    assert!(!good && out.contains("text"), "{out}");
}

#[test]
fn rust_tool_template_builds_installs_and_answers() {
    template_tool_round_trip("rust");
}

#[test]
fn python_tool_template_builds_installs_and_answers() {
    template_tool_round_trip("python");
}

#[test]
fn js_tool_template_builds_installs_and_answers() {
    template_tool_round_trip("js");
}

//! MCP (docs/tools.md §4–5): llmos's `/mcp` server driven by the official MCP Python SDK
//! (`mcp` on PyPI, unchanged), and llmos as the client of a loopback MCP server written with
//! the same SDK (`llmos mcp add`), its tools called through llmos's `/mcp` under
//! `tools:mcp:<server>:<tool>` scopes.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use crate::support::{Home, Server, call, client_python, create_key, repo, text};

/// Runs tests/clients/mcp_client.py against `url` with `key` and `calls`; its JSON report.
fn python_client(url: &str, key: &str, calls: &Value) -> Value {
    let out = Command::new(client_python())
        .arg(repo().join("tests/clients/mcp_client.py"))
        .args([url, key, &calls.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the MCP Python client failed:\n{}",
        text(&out)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", text(&out)))
}

/// The result of the call to `tool` number `i` in a report.
fn result<'a>(report: &'a Value, i: usize, tool: &str) -> &'a Value {
    let r = &report["calls"][i];
    assert_eq!(r["tool"], tool, "{report:#}");
    r
}

fn tool_names(report: &Value) -> Vec<String> {
    report["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn official_python_client_runs_llmos_tasks_under_the_keys_scopes() {
    let home = Home::new();
    let key = create_key(
        &home,
        &[
            "models:minilm",
            "models:pii-ner",
            "pii:anonymize",
            "data:docs",
        ],
    );
    let writer = create_key(&home, &["models:minilm", "data:docs:write"]);
    let s = home.serve(&["--models", "minilm,pii-ner"]);
    let (code, c) = call(
        &s,
        "POST",
        "/v1/collections/docs",
        Some(&writer),
        Some(json!({})),
    );
    assert_eq!(code, 201, "{c}");
    let docs = json!({"documents": [
        {"id": "cats", "text": "Cats sleep for most of the day in warm sunny spots."},
        {"id": "rust", "text": "Rust guarantees memory safety without a garbage collector."},
    ]});
    let (code, r) = call(
        &s,
        "POST",
        "/v1/collections/docs/documents",
        Some(&writer),
        Some(docs),
    );
    assert_eq!(code, 200, "{r}");

    let calls = json!([
        ["embed", {"model": "minilm", "input": "hello world"}],
        ["entities", {"model": "pii-ner", "input": ["Alice Johnson moved to Berlin."]}],
        ["anonymize", {"text": "Write to alice.j@example.org today."}],
        ["collection_search", {"collection": "docs", "query": "memory safe programming", "top_k": 1}],
        ["embed", {"model": "tiny-classifier", "input": "x"}],
        ["collection_search", {"collection": "private", "query": "x"}],
        ["embed", {"model": "minilm"}],
        ["no_such_tool", {}],
    ]);
    let report = python_client(&s.at("/mcp"), &key, &calls);
    let names = tool_names(&report);
    for t in [
        "embed",
        "entities",
        "classify",
        "anonymize",
        "collection_search",
    ] {
        assert!(names.contains(&t.to_string()), "{t} not listed: {names:?}");
    }
    let schema = &report["tools"][0]["input_schema"];
    assert_eq!(schema["type"], "object", "{report:#}");

    let embed = result(&report, 0, "embed");
    assert_eq!(embed["is_error"], false, "{embed:#}");
    assert_eq!(
        embed["structured"]["data"][0]["embedding"]
            .as_array()
            .unwrap()
            .len(),
        384
    );
    let entities = result(&report, 1, "entities");
    assert_eq!(entities["is_error"], false, "{entities:#}");
    assert!(
        entities["text"].as_str().unwrap().contains("\"Johnson\""),
        "{entities:#}"
    );
    let anon = result(&report, 2, "anonymize");
    assert_eq!(anon["is_error"], false, "{anon:#}");
    let anon_text = anon["text"].as_str().unwrap();
    assert!(
        !anon_text.contains("alice.j@example.org") && anon_text.contains("EMAIL"),
        "{anon:#}"
    );
    let search = result(&report, 3, "collection_search");
    assert_eq!(search["is_error"], false, "{search:#}");
    assert!(
        search["text"].as_str().unwrap().contains("\"rust\""),
        "{search:#}"
    );

    // Outside the key's scopes: tool results with isError, naming the scope.
    let denied = result(&report, 4, "embed");
    assert_eq!(denied["is_error"], true, "{denied:#}");
    assert!(
        denied["text"]
            .as_str()
            .unwrap()
            .contains("models:tiny-classifier"),
        "{denied:#}"
    );
    let denied = result(&report, 5, "collection_search");
    assert_eq!(denied["is_error"], true, "{denied:#}");
    assert!(
        denied["text"].as_str().unwrap().contains("data:private"),
        "{denied:#}"
    );
    // Bad arguments: the route's own 400 message.
    let bad = result(&report, 6, "embed");
    assert_eq!(bad["is_error"], true, "{bad:#}");
    assert!(bad["text"].as_str().unwrap().contains("400"), "{bad:#}");
    // An unknown tool is a protocol error listing the tools.
    let unknown = result(&report, 7, "no_such_tool");
    assert!(
        unknown["protocol_error"]
            .as_str()
            .unwrap()
            .contains("the tools are embed"),
        "{unknown:#}"
    );

    // Without a key: 401 as on every route.
    let (code, v) = call(
        &s,
        "POST",
        "/mcp",
        None,
        Some(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})),
    );
    assert_eq!(code, 401, "{v}");
    // Not an MCP request (no JSON-RPC, no Accept): a 4xx with an error message, not a 500.
    let (code, v) = call(&s, "POST", "/mcp", Some(&key), Some(json!({"hello": 1})));
    assert!(
        (400..500).contains(&code) && v["error"]["message"].is_string(),
        "{code} {v}"
    );
}

/// A loopback MCP server (tests/clients/mcp_server.py) requiring `token`; killed on drop.
struct Remote {
    child: Child,
    url: String,
    log: std::path::PathBuf,
}

impl Remote {
    fn start(dir: &std::path::Path, token: &str) -> Self {
        Self::start_mode(dir, token, "stateless")
    }

    /// With sessions (`stateful`): the server can send notifications.
    fn start_mode(dir: &std::path::Path, token: &str, mode: &str) -> Self {
        let log = dir.join("mcp-server.log");
        let mut child = Command::new(client_python())
            .arg(repo().join("tests/clients/mcp_server.py"))
            .args([token, log.to_str().unwrap(), mode])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!("the MCP test server did not start: {line:?}")
            });
        Self {
            url: url.to_string(),
            child,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn registered_mcp_server_tools_are_offered_under_tools_scopes() {
    let home = Home::new();
    let remote = Remote::start(home.dir.path(), "tok-123");
    let port = remote
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/mcp");

    // Registering is a grant: refused without the operator's approval, naming the capability.
    let err = home.fails(&["mcp", "add", "echo", &remote.url]);
    assert!(
        err.contains("not approved") && err.contains(&format!("http:http://127.0.0.1:{port}")),
        "{err}"
    );
    assert_eq!(home.json(&["mcp", "list"])["servers"], json!([]));
    let err = home.fails(&["mcp", "add", "echo", "ftp://127.0.0.1/mcp", "--yes"]);
    assert!(
        err.contains("accepted: an http:// or https:// URL"),
        "{err}"
    );
    let err = home.fails(&[
        "mcp",
        "add",
        "echo",
        &remote.url,
        "--token-secret",
        "echo-token",
        "--yes",
    ]);
    assert!(err.contains("llmos mcp secret echo-token"), "{err}");

    // With the token secret: connected, its tools listed; the token was sent.
    let out = home
        .cmd(&["mcp", "secret", "echo-token", "--value", "tok-123"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let added = home.json(&[
        "mcp",
        "add",
        "echo",
        &remote.url,
        "--token-secret",
        "echo-token",
        "--yes",
    ]);
    assert_eq!(added["state"], "connected", "{added:#}");
    assert_eq!(added["capability"], format!("http:http://127.0.0.1:{port}"));
    let mut tools: Vec<&str> = added["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tools.sort_unstable();
    assert_eq!(
        tools,
        [
            "mcp:echo:add",
            "mcp:echo:grow",
            "mcp:echo:nap",
            "mcp:echo:shout"
        ],
        "{added:#}"
    );
    assert!(remote.log().contains("Bearer tok-123"), "{}", remote.log());
    assert!(
        !remote.log().contains("POST /mcp \n"),
        "a request went without the token: {}",
        remote.log()
    );

    // A server that does not answer is registered and reported unreachable with the reason.
    let down = home.json(&["mcp", "add", "down", "http://127.0.0.1:9/mcp", "--yes"]);
    assert_eq!(down["state"], "unreachable", "{down:#}");
    assert!(
        down["reason"].as_str().unwrap().contains("127.0.0.1:9"),
        "{down:#}"
    );

    let shout_only = create_key(&home, &["tools:mcp:echo:shout"]);
    let whole_server = create_key(&home, &["tools:mcp:echo:*"]);
    let none = create_key(&home, &["models:minilm"]);
    let s = home.serve(&["--models", "minilm"]);

    // While serving, `llmos mcp` goes through the admin socket.
    let list = home.json(&["mcp", "list"]);
    let servers = list["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 2, "{list:#}");
    assert_eq!(
        (servers[0]["name"].as_str(), servers[0]["state"].as_str()),
        (Some("down"), Some("unreachable")),
        "{list:#}"
    );
    assert!(
        servers[0]["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{list:#}"
    );
    assert_eq!(
        (servers[1]["name"].as_str(), servers[1]["state"].as_str()),
        (Some("echo"), Some("connected")),
        "{list:#}"
    );

    let calls = json!([
        ["mcp__echo__shout", {"text": "hi there"}],
        ["mcp__echo__add", {"a": 2, "b": 3}],
    ]);
    let r = python_client(&s.at("/mcp"), &shout_only, &calls);
    let names = tool_names(&r);
    assert!(names.contains(&"mcp__echo__shout".to_string()), "{names:?}");
    assert!(
        !names.contains(&"mcp__echo__add".to_string()),
        "listed without its scope: {names:?}"
    );
    let shout = result(&r, 0, "mcp__echo__shout");
    assert_eq!(
        (shout["is_error"].as_bool(), shout["text"].as_str()),
        (Some(false), Some("HI THERE!")),
        "{r:#}"
    );
    let add = result(&r, 1, "mcp__echo__add");
    assert_eq!(add["is_error"], true, "{r:#}");
    assert!(
        add["text"].as_str().unwrap().contains("tools:mcp:echo:add"),
        "{r:#}"
    );

    let r = python_client(&s.at("/mcp"), &whole_server, &calls);
    assert_eq!(result(&r, 1, "mcp__echo__add")["text"], "5", "{r:#}");

    let r = python_client(&s.at("/mcp"), &none, &calls);
    assert!(
        !tool_names(&r).iter().any(|n| n.starts_with("mcp__")),
        "{r:#}"
    );
    let denied = result(&r, 0, "mcp__echo__shout");
    assert_eq!(denied["is_error"], true, "{r:#}");
    assert!(
        denied["text"]
            .as_str()
            .unwrap()
            .contains("tools:mcp:echo:shout"),
        "{r:#}"
    );

    // The admin API: an admin key lists and removes; other keys are refused.
    let (code, v) = call(&s, "GET", "/admin/mcp", Some(&none), None);
    assert_eq!(code, 403, "{v}");
    let removed = home.json(&["mcp", "remove", "down"]);
    assert_eq!(removed["removed"], "down");
    let list = home.json(&["mcp", "list"]);
    assert_eq!(list["servers"].as_array().unwrap().len(), 1, "{list:#}");
    let err = home.fails(&["mcp", "remove", "down"]);
    assert!(err.contains("no MCP server named \"down\""), "{err}");
}

/// `llmos serve --models minilm` with the MCP module's debug log in `log`.
fn serve_logged(home: &Home, log: &std::path::Path) -> Server {
    let mut child = home
        .cmd(&["serve", "--listen", "127.0.0.1:0", "--models", "minilm"])
        .env(
            "LLMOS_LOG",
            "warn,llmos::api::mcp=debug,llmos::plugins::mcp=info",
        )
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("llmos listening on ")
        .unwrap_or_else(|| panic!("llmos serve did not start: {line:?}"))
        .to_string();
    Server::from_child(child, url)
}

/// The tool ids `GET /v1/tools` lists.
fn listed(s: &Server, key: &str) -> Vec<String> {
    let (code, v) = call(s, "GET", "/v1/tools", Some(key), None);
    assert_eq!(code, 200, "{v}");
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect()
}

/// `POST /v1/tools/{id}/invoke`: the body (`{"result"}` or `{"error"}`).
fn invoke(s: &Server, key: &str, id: &str, arguments: Value) -> Value {
    let (code, v) = call(
        s,
        "POST",
        &format!("/v1/tools/{id}/invoke"),
        Some(key),
        Some(json!({ "arguments": arguments })),
    );
    assert_eq!(code, 200, "{v}");
    v
}

#[test]
fn mcp_client_follows_list_changed_and_its_timeouts_are_settings_and_the_server_builds_once() {
    let home = Home::new();
    let config = home.dir.path().join("llmos.toml");
    let mut text_of = std::fs::read_to_string(&config).unwrap();
    text_of.push_str("[mcp]\nconnect_timeout_ms = 2500\ncall_timeout_ms = 1500\n");
    std::fs::write(&config, text_of).unwrap();
    let remote = Remote::start_mode(home.dir.path(), "tok-9", "stateful");
    let out = home
        .cmd(&["mcp", "secret", "t", "--value", "tok-9"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let added = home.json(&[
        "mcp",
        "add",
        "echo",
        &remote.url,
        "--token-secret",
        "t",
        "--yes",
    ]);
    assert_eq!(added["state"], "connected", "{added:#}");
    let key = create_key(&home, &["models:*", "tools:*"]);
    let log = home.dir.path().join("serve.log");
    let s = serve_logged(&home, &log);
    let server_log = || std::fs::read_to_string(&log).unwrap_or_default();

    // The server connects in the background; wait for the remote tools.
    let start = std::time::Instant::now();
    while !listed(&s, &key).contains(&"mcp:echo:shout".to_string()) {
        assert!(start.elapsed().as_secs() < 20, "{}", server_log());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // `[mcp] call_timeout_ms`: a call slower than 1.5 s is given up, saying which setting.
    let t = std::time::Instant::now();
    let v = invoke(&s, &key, "mcp:echo:nap", json!({"seconds": 4}));
    let took = t.elapsed();
    assert_eq!(v["error"]["kind"], "unavailable", "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("did not answer in 1500 ms") && msg.contains("[mcp] call_timeout_ms"),
        "{msg}"
    );
    assert!(took.as_millis() >= 1400 && took.as_secs() < 4, "{took:?}");
    let v = invoke(&s, &key, "mcp:echo:nap", json!({"seconds": 0.1}));
    assert_eq!(v["result"], "slept 0.1 s", "{v}");

    // `[mcp] connect_timeout_ms`: a server that accepts and never answers is unreachable
    // after 2.5 s, the reason naming the setting (added through the admin socket).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/mcp", silent.local_addr().unwrap());
    let t = std::time::Instant::now();
    let down = home.json(&["mcp", "add", "silent", &url, "--yes"]);
    assert_eq!(down["state"], "unreachable", "{down:#}");
    let reason = down["reason"].as_str().unwrap();
    assert!(
        reason.contains("in 2500 ms") && reason.contains("[mcp] connect_timeout_ms"),
        "{reason}"
    );
    assert!(t.elapsed().as_secs() < 10, "{:?}", t.elapsed());

    // llmos's /mcp for the Python client: the tool list is built once and reused.
    let r = python_client(
        &s.at("/mcp"),
        &key,
        &json!([["mcp__echo__shout", {"text": "a"}]]),
    );
    assert_eq!(result(&r, 0, "mcp__echo__shout")["text"], "A!", "{r:#}");
    let names = tool_names(&r);
    assert!(
        !names.contains(&"mcp__echo__triple".to_string()),
        "{names:?}"
    );
    python_client(&s.at("/mcp"), &key, &json!([]));
    let builds = |log: &str| log.matches("MCP tool list built").count();
    assert_eq!(builds(&server_log()), 1, "{}", server_log());
    assert_eq!(
        server_log().matches("MCP service built").count(),
        1,
        "{}",
        server_log()
    );

    // `grow` adds `triple` on the remote server, which notifies its session: llmos lists
    // the new tool without any call naming it first.
    assert!(!listed(&s, &key).contains(&"mcp:echo:triple".to_string()));
    let v = invoke(&s, &key, "mcp:echo:grow", json!({}));
    assert_eq!(v["result"], "added triple", "{v}");
    let start = std::time::Instant::now();
    while !listed(&s, &key).contains(&"mcp:echo:triple".to_string()) {
        assert!(
            start.elapsed().as_secs() < 10,
            "tools/list_changed did not refresh the list: {}",
            server_log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        server_log().contains("MCP server changed its tools: list refreshed"),
        "{}",
        server_log()
    );
    let v = invoke(&s, &key, "mcp:echo:triple", json!({"n": 4}));
    assert_eq!(v["result"], "12", "{v}");

    // The catalogue changed: /mcp rebuilt its list once, and offers the new tool.
    let r = python_client(
        &s.at("/mcp"),
        &key,
        &json!([["mcp__echo__triple", {"n": 5}]]),
    );
    assert!(
        tool_names(&r).contains(&"mcp__echo__triple".to_string()),
        "{r:#}"
    );
    assert_eq!(result(&r, 0, "mcp__echo__triple")["text"], "15", "{r:#}");
    python_client(&s.at("/mcp"), &key, &json!([]));
    assert_eq!(builds(&server_log()), 2, "{}", server_log());
    assert_eq!(
        server_log().matches("MCP service built").count(),
        1,
        "{}",
        server_log()
    );
    drop(silent);
}

#[test]
fn mcp_settings_out_of_range_are_refused_naming_the_key() {
    let home = Home::new();
    let config = home.dir.path().join("llmos.toml");
    let mut text_of = std::fs::read_to_string(&config).unwrap();
    text_of.push_str("[mcp]\nconnect_timeout_ms = 5\n");
    std::fs::write(&config, text_of).unwrap();
    let err = home.fails(&["mcp", "list"]);
    assert!(
        err.contains("[mcp] connect_timeout_ms is 5") && err.contains("between 100 and 600000"),
        "{err}"
    );
    let err = home.fails(&["serve", "--listen", "127.0.0.1:0", "--models", "minilm"]);
    assert!(err.contains("[mcp] connect_timeout_ms is 5"), "{err}");
}

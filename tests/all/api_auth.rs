//! Access-control holes, each closed and tested over HTTP against the real binary:
//! duplicate JSON keys and model scopes, openness decided by the bind and peer addresses,
//! open mode's browser guards, the admin install path, admin actions audited with their key.

use std::io::BufRead;
use std::process::Stdio;
use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder};
use serde_json::{Value, json};

use crate::plugins_common::{manifest, wasm};
use crate::support::{Home, Server};

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn send(r: RequestBuilder) -> (u16, Value) {
    let r = r.send().unwrap();
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

fn raw(s: &Server, path: &str, key: Option<&str>, body: &str) -> (u16, Value) {
    let mut r = client()
        .post(s.at(path))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    send(r)
}

fn create_key(home: &Home, scopes: &[&str]) -> (String, String) {
    let mut args = vec!["keys", "create"];
    for s in scopes {
        args.extend(["--scope", s]);
    }
    let v = home.json(&args);
    (
        v["key"]["id"].as_str().unwrap().to_string(),
        v["secret"].as_str().unwrap().to_string(),
    )
}

/// `llmos serve --listen ADDR ARGS`; the URL it answers on uses 127.0.0.1 with its port.
fn serve_on(home: &Home, listen: &str, args: &[&str]) -> Server {
    let mut all = vec!["serve", "--listen", listen];
    all.extend(args);
    let mut child = home.cmd(&all).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok());
    let Some(port) = port else {
        let _ = child.kill();
        panic!("llmos serve did not start: first line {line:?}");
    };
    Server::from_child(child, format!("http://127.0.0.1:{port}"))
}

fn loaded(s: &Server) -> Vec<String> {
    let (_, h) = send(client().get(s.at("/health")));
    h["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn duplicate_model_keys_never_pass_a_scope() {
    let home = Home::new();
    let (_, minilm) = create_key(&home, &["models:minilm"]);
    let s = home.serve(&["--models", "minilm"]);
    let routes = [
        "/v1/embeddings",
        "/v1/classify",
        "/v1/entities",
        "/v1/tokenize",
        "/v1/detokenize",
        "/v1/completions",
        "/v1/chat/completions",
    ];
    for route in routes {
        for body in [
            r#"{"model":"minilm","model":"pii-ner","input":"Ada Lovelace lives in London","ids":[101,102]}"#,
            r#"{"model":"pii-ner","model":"minilm","input":"Ada Lovelace lives in London","ids":[101,102]}"#,
        ] {
            let (code, v) = raw(&s, route, Some(&minilm), body);
            assert_eq!(code, 400, "{route} {body}: {v}");
            let msg = v["error"]["message"].as_str().unwrap();
            assert!(msg.contains("duplicate key \"model\""), "{route}: {v}");
        }
        // With keys, a body whose model cannot be read is refused before any handler.
        for body in [
            r#"{"input":"hello"}"#,
            r#"{"model":["pii-ner"],"input":"hello"}"#,
            r#"{"model":"minilm","input":"x""#,
        ] {
            let (code, v) = raw(&s, route, Some(&minilm), body);
            assert_eq!(code, 400, "{route} {body}: {v}");
        }
        // Duplicates deeper in the body are refused as well.
        let (code, v) = raw(
            &s,
            route,
            Some(&minilm),
            r#"{"model":"minilm","input":"x","user":{"a":1,"a":2}}"#,
        );
        assert_eq!(code, 400, "{route}: {v}");
    }
    assert!(
        !loaded(&s).contains(&"pii-ner".to_string()),
        "pii-ner ran for a key scoped to minilm: {:?}",
        loaded(&s)
    );
    // The scoped key still works, with one `model`.
    let (code, v) = raw(
        &s,
        "/v1/embeddings",
        Some(&minilm),
        r#"{"model":"minilm","input":"hello"}"#,
    );
    assert_eq!(code, 200, "{v}");
}

#[test]
fn a_server_bound_beyond_loopback_stays_closed_after_its_last_key_is_revoked() {
    let home = Home::new();
    let (admin_id, admin) = create_key(&home, &["admin", "models:*"]);
    let s = serve_on(&home, "0.0.0.0:0", &["--models", "minilm"]);
    let embed = || {
        client()
            .post(s.at("/v1/embeddings"))
            .json(&json!({"model": "minilm", "input": "hello"}))
    };
    assert_eq!(send(embed()).0, 401);
    assert_eq!(send(embed().bearer_auth(&admin)).0, 200);
    // The last key revokes itself: no usable key is left.
    let (code, v) = send(
        client()
            .delete(s.at(&format!("/admin/keys/{admin_id}")))
            .bearer_auth(&admin),
    );
    assert_eq!(code, 200, "{v}");
    let (code, v) = send(embed());
    assert_eq!(code, 401, "a 0.0.0.0 server became open: {v}");
    assert_eq!(v["error"]["code"], "missing_api_key", "{v}");
    assert_eq!(send(client().get(s.at("/v1/models"))).0, 401);
    assert_eq!(send(client().get(s.at("/health"))).0, 200);
    drop(s);

    // On loopback, the same steps leave an open server (for loopback peers), as documented.
    let home = Home::new();
    let (admin_id, admin) = create_key(&home, &["admin"]);
    let s = home.serve(&["--models", "minilm"]);
    assert_eq!(send(embed_on(&s)).0, 401);
    send(
        client()
            .delete(s.at(&format!("/admin/keys/{admin_id}")))
            .bearer_auth(&admin),
    );
    assert_eq!(send(embed_on(&s)).0, 200);
}

fn embed_on(s: &Server) -> RequestBuilder {
    client()
        .post(s.at("/v1/embeddings"))
        .json(&json!({"model": "minilm", "input": "hello"}))
}

#[test]
fn open_loopback_mode_refuses_foreign_hosts_origins_and_non_json_bodies() {
    let home = Home::new();
    let s = home.serve(&["--models", "minilm"]);
    let body = r#"{"model":"minilm","input":"hello"}"#;
    let post = |ct: Option<&str>| {
        let r = client().post(s.at("/v1/embeddings")).body(body);
        match ct {
            Some(ct) => r.header("content-type", ct),
            None => r,
        }
    };
    let json = || post(Some("application/json"));
    assert_eq!(send(json()).0, 200);
    assert_eq!(send(post(Some("application/json; charset=utf-8"))).0, 200);

    // DNS rebinding: a page's name pointed at 127.0.0.1 sends its own Host.
    let (code, v) = send(json().header("host", "evil.example:8080"));
    assert_eq!(code, 403, "{v}");
    assert_eq!(v["error"]["code"], "host_not_loopback", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("evil.example")
    );
    let (code, v) = send(
        client()
            .get(s.at("/v1/models"))
            .header("host", "rebind.example"),
    );
    assert_eq!(code, 403, "{v}");
    for host in ["localhost:9", "127.0.0.2", "[::1]:80"] {
        let (code, v) = send(json().header("host", host));
        assert_eq!(code, 200, "{host}: {v}");
    }

    // A cross-site page.
    let (code, v) = send(json().header("origin", "https://evil.example"));
    assert_eq!(code, 403, "{v}");
    assert_eq!(v["error"]["code"], "origin_not_loopback", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("https://evil.example")
    );
    assert_eq!(send(json().header("origin", "null")).0, 403);
    assert_eq!(
        send(json().header("origin", "http://localhost:5173")).0,
        200
    );

    // What a page can send without a preflight.
    for ct in [
        Some("text/plain;charset=UTF-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let (code, v) = send(post(ct));
        assert_eq!(code, 415, "{ct:?}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("application/json"), "{msg}");
        if let Some(ct) = ct {
            let essence = ct.split(';').next().unwrap();
            assert!(msg.contains(essence), "{msg}");
        }
    }
    // KServe errors keep KServe's shape.
    let (code, v) = send(
        client()
            .post(s.at("/v2/models/minilm/infer"))
            .header("content-type", "text/plain")
            .body("{}"),
    );
    assert_eq!(code, 415, "{v}");
    assert!(v["error"].as_str().unwrap().contains("text/plain"), "{v}");
}

#[test]
fn admin_install_is_confined_never_echoes_foreign_files_and_is_audited_with_the_key() {
    let home = Home::new();
    let root = home.dir.path().join("allowed");
    std::fs::create_dir_all(&root).unwrap();
    let cfg = home.dir.path().join("llmos.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "[plugins]\ninstall_root = {:?}\n",
        root.display().to_string()
    ));
    std::fs::write(&cfg, text).unwrap();
    let component = root.join("echo.wasm");
    std::fs::copy(wasm("testing/echo"), &component).unwrap();
    // A foreign file inside the folder: a TOML-looking line with a "secret" on it.
    let foreign = root.join("foreign.toml");
    std::fs::write(
        &foreign,
        "root:x:0:0:root:/root:/bin/bash\nsecret = \"s3cr3t\"\n",
    )
    .unwrap();
    let (admin_id, admin) = create_key(&home, &["admin"]);
    let s = home.serve(&[]);
    let install = |manifest: &str| {
        send(
            client()
                .post(s.at("/admin/plugins"))
                .bearer_auth(&admin)
                .json(&json!({"path": component, "manifest": manifest})),
        )
    };
    let (code, v) = install("/etc/passwd");
    assert_eq!(code, 400, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("outside the allowed folder"), "{msg}");
    assert!(!msg.contains("root:"), "{msg}");

    let (code, v) = install(foreign.to_str().unwrap());
    assert_eq!(code, 400, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("not valid TOML at line 1"), "{msg}");
    assert!(!msg.contains("root:x") && !msg.contains("bash"), "{msg}");

    // A real manifest inside the folder installs; enable/disable are audited with the key.
    let good = root.join("echo.toml");
    std::fs::copy(manifest("testing/echo"), &good).unwrap();
    let (code, v) = install(good.to_str().unwrap());
    assert_eq!(code, 201, "{v}");
    let name = v["plugin"]["manifest"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    for action in ["disable", "enable"] {
        let (code, v) = send(
            client()
                .post(s.at(&format!("/admin/plugins/{name}/{action}")))
                .bearer_auth(&admin),
        );
        assert_eq!(code, 200, "{action}: {v}");
    }
    let (_, audit) = send(client().get(s.at("/admin/audit")).bearer_auth(&admin));
    let actions: Vec<String> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["what"] == "admin-action" && r["who"] == admin_id.as_str())
        .map(|r| r["detail"].as_str().unwrap().to_string())
        .collect();
    for want in [
        "POST /admin/plugins -> 400".to_string(),
        "POST /admin/plugins -> 201".to_string(),
        format!("POST /admin/plugins/{name}/disable -> 200"),
        format!("POST /admin/plugins/{name}/enable -> 200"),
    ] {
        assert!(actions.contains(&want), "no {want:?} in {actions:?}");
    }
    // What the registry records while serving the request is by the same key.
    let installed = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["what"] == "installed" && r["target"] == name.as_str())
        .expect("the install is audited");
    assert_eq!(installed["who"], admin_id.as_str(), "{installed}");
}

#[test]
fn the_input_count_is_refused_before_any_text_is_tokenised() {
    let home = Home::new();
    let cfg = home.dir.path().join("llmos.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("[models.overrides.minilm]\nmax_request_inputs = 3\n");
    std::fs::write(&cfg, text).unwrap();
    let s = home.serve(&["--models", "minilm"]);
    // The over-long text would fail tokenising (no truncation); the count fails first.
    let long = "word ".repeat(3000);
    let (code, v) =
        send(embed_on(&s).json(&json!({"model": "minilm", "input": ["a", "b", long, "d"]})));
    assert_eq!(code, 400, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("the request has 4 inputs; the limit is 3"),
        "{msg}"
    );
}

#[test]
fn openapi_json_is_public_and_describes_every_route_of_the_router() {
    let home = Home::new();
    create_key(&home, &["admin"]);
    let s = home.serve(&[]);
    let (code, doc) = send(client().get(s.at("/openapi.json")));
    assert_eq!(code, 200, "{doc}");
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    for (method, path, _) in llmos::api::routes::route_list() {
        let m = method.as_str().to_ascii_lowercase();
        assert!(
            doc["paths"][path][&m].is_object(),
            "{method} {path} is not described"
        );
    }
    let schemas = &doc["components"]["schemas"];
    for name in [
        "EmbeddingsRequest",
        "OpenAiError",
        "KServeError",
        "KServeInferRequest",
    ] {
        assert!(schemas[name].is_object(), "no schema {name}");
    }
    let body = &doc["paths"]["/v1/embeddings"]["post"]["requestBody"];
    assert_eq!(
        body["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/EmbeddingsRequest",
        "{body}"
    );
}

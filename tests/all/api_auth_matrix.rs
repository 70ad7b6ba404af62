//! The auth matrix: every route of the router (read from the same table the router is built
//! from, so a new route is in the matrix without anyone adding it) × every kind of
//! credential × every mode, against the real binary. One server per mode.

use std::io::BufRead;
use std::process::Stdio;
use std::time::Duration;

use llmos::api::routes::{Access, route_list};
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::support::{Home, Server};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Loopback bind, no usable key (only an expired and a revoked one).
    LoopbackOpen,
    /// Loopback bind with keys.
    Keys,
    /// `0.0.0.0` bind with keys (reached through 127.0.0.1).
    NonLoopback,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cred {
    None,
    Malformed,
    Wrong,
    Expired,
    Revoked,
    WrongScope,
    RightScope,
}

#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Pass,
    Unauthorized,
    Forbidden,
}

fn expect(mode: Mode, cred: Cred, access: Access) -> Expect {
    match (access, cred) {
        (Access::Public, _) => Expect::Pass,
        (Access::Admin, Cred::RightScope) => Expect::Pass,
        (Access::Admin, Cred::WrongScope) => Expect::Forbidden,
        (Access::Admin, _) => Expect::Unauthorized,
        (_, _) if mode == Mode::LoopbackOpen => Expect::Pass,
        (_, Cred::RightScope) | (Access::Key, Cred::WrongScope) => Expect::Pass,
        (_, Cred::WrongScope) => Expect::Forbidden,
        _ => Expect::Unauthorized,
    }
}

struct Creds {
    expired: String,
    revoked: String,
    /// `models:tiny-classifier` only.
    other_model: String,
    models: String,
    admin: String,
    /// `pii:anonymize` and `pii:deanonymize`.
    pii: String,
    /// `data:*:write`.
    data: String,
    /// `tools:*`.
    tools: String,
}

fn key(home: &Home, scope: &str, expires: Option<&str>) -> (String, String) {
    let mut args = vec!["keys", "create", "--scope", scope];
    if let Some(e) = expires {
        args.extend(["--expires", e]);
    }
    let v = home.json(&args);
    (
        v["key"]["id"].as_str().unwrap().to_string(),
        v["secret"].as_str().unwrap().to_string(),
    )
}

/// Keys of every kind in `home`; with `usable`, also valid ones.
fn creds(home: &Home, usable: bool) -> Creds {
    let (_, expired) = key(home, "admin", Some("1s"));
    let (rev_id, revoked) = key(home, "admin", None);
    let out = home.cmd(&["keys", "revoke", &rev_id]).output().unwrap();
    assert!(out.status.success(), "{}", crate::support::text(&out));
    let (mut other_model, mut models, mut admin, mut pii, mut data, mut tools) = Default::default();
    if usable {
        other_model = key(home, "models:tiny-classifier", None).1;
        models = key(home, "models:*", None).1;
        admin = key(home, "admin", None).1;
        let v = home.json(&[
            "keys",
            "create",
            "--scope",
            "pii:anonymize",
            "--scope",
            "pii:deanonymize",
        ]);
        pii = v["secret"].as_str().unwrap().to_string();
        data = key(home, "data:*:write", None).1;
        tools = key(home, "tools:*", None).1;
    }
    std::thread::sleep(Duration::from_millis(1100)); // the expired key expires
    Creds {
        expired,
        revoked,
        other_model,
        models,
        admin,
        pii,
        data,
        tools,
    }
}

fn serve_on(home: &Home, listen: &str) -> Server {
    let mut child = home
        .cmd(&["serve", "--listen", listen, "--models", "minilm"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().rsplit(':').next().unwrap().parse().unwrap();
    Server::from_child(child, format!("http://127.0.0.1:{port}"))
}

/// A request that reaches the handler without changing anything: placeholders filled with
/// a served model (or a name that does not exist, on admin routes).
fn concrete(path: &str) -> String {
    let admin = path.starts_with("/admin");
    path.replace("{name}", if admin { "no-such-plugin" } else { "minilm" })
        .replace("{id}", if admin { "no-such-key" } else { "minilm" })
        .replace("{version}", "1")
}

fn token(c: &Creds, cred: Cred, access: Access) -> Option<String> {
    let right = match access {
        Access::Admin => &c.admin,
        Access::Scope(_) => &c.pii,
        Access::Data { .. } => &c.data,
        Access::Tool => &c.tools,
        _ => &c.models,
    };
    match cred {
        Cred::None => None,
        Cred::Malformed => Some("Basic bm90OmFrZXk=".into()),
        Cred::Wrong => Some(format!("Bearer {}x", &c.models[..c.models.len() - 1])),
        Cred::Expired => Some(format!("Bearer {}", c.expired)),
        Cred::Revoked => Some(format!("Bearer {}", c.revoked)),
        Cred::WrongScope => Some(format!("Bearer {}", c.other_model)),
        Cred::RightScope => Some(format!("Bearer {right}")),
    }
}

fn run_mode(mode: Mode, s: &Server, c: &Creds, creds: &[Cred]) -> Vec<String> {
    let client = Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut failures = Vec::new();
    for (method, path, access) in route_list() {
        for &cred in creds {
            let url = s.at(&concrete(path));
            let mut r = client.request(method.clone(), &url);
            if method == reqwest::Method::POST {
                r = r.json(&json!({"model": "minilm", "input": "hello"}));
            }
            if let Some(t) = token(c, cred, access) {
                r = r.header("authorization", t);
            }
            let resp = r.send().unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().unwrap_or(Value::Null);
            let want = expect(mode, cred, access);
            let got = match status {
                401 => Expect::Unauthorized,
                403 => Expect::Forbidden,
                _ => Expect::Pass,
            };
            let shaped = match got {
                Expect::Pass => status < 500,
                _ if path.starts_with("/v2") => body["error"].is_string(),
                _ => ["message", "type", "param", "code"]
                    .iter()
                    .all(|k| body["error"].get(k).is_some()),
            };
            if got != want || !shaped {
                failures.push(format!(
                    "{mode:?} {cred:?} {method} {path} ({access:?}): want {want:?}, got {status} {body}"
                ));
            }
        }
    }
    failures
}

#[test]
fn every_route_answers_every_credential_as_its_access_says() {
    use Cred::*;
    let routes = route_list();
    assert!(
        routes.len() >= 30,
        "the route table looks empty: {}",
        routes.len()
    );
    assert!(
        routes
            .iter()
            .any(|(m, p, _)| m == reqwest::Method::POST && *p == "/v1/embeddings")
    );
    let mut failures = Vec::new();

    let open = Home::new();
    let c = creds(&open, false);
    let s = serve_on(&open, "127.0.0.1:0");
    // No usable key exists in this mode: the scoped rows cannot be asked.
    failures.extend(run_mode(
        Mode::LoopbackOpen,
        &s,
        &Creds {
            other_model: c.expired.clone(),
            models: c.expired.clone(),
            admin: c.expired.clone(),
            pii: c.expired.clone(),
            data: c.expired.clone(),
            ..c
        },
        &[None, Malformed, Wrong, Expired, Revoked],
    ));
    drop(s);

    let keyed = Home::new();
    let c = creds(&keyed, true);
    let all = [
        None, Malformed, Wrong, Expired, Revoked, WrongScope, RightScope,
    ];
    for (mode, listen) in [
        (Mode::Keys, "127.0.0.1:0"),
        (Mode::NonLoopback, "0.0.0.0:0"),
    ] {
        let s = serve_on(&keyed, listen);
        failures.extend(run_mode(mode, &s, &c, &all));
        assert!(s.terminate(), "{mode:?}: serve did not stop cleanly");
    }
    assert!(
        failures.is_empty(),
        "{} of the matrix's cells disagree:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

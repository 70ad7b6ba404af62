//! The CLI while `llmos serve` runs: `llmos plugin …` and `llmos keys …` reach the server over
//! its admin socket (`$LLMOS_HOME/admin.sock`) and print what they print with no server; the
//! socket is the owner's (0600, audited as `local:uid=N`), a stale one is replaced, a live one
//! refused, and with `[server] admin_socket = false` the CLI says who holds the store.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::plugins_common::{manifest, wasm};
use crate::support::{Home, call, text};

/// What a command did: success, stdout, stderr.
type Run = (bool, String, String);

fn run(home: &Home, args: &[&str]) -> Run {
    let out: Output = home.cmd(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(home: &Home, args: &[&str]) -> String {
    let r = run(home, args);
    assert!(
        r.0,
        "llmos {args:?} failed:\nstdout:\n{}\nstderr:\n{}",
        r.1, r.2
    );
    r.1
}

fn socket(home: &Home) -> PathBuf {
    home.dir.path().join("admin.sock")
}

fn uid(home: &Home) -> u32 {
    // The temporary home was made by this process.
    std::fs::metadata(home.dir.path()).unwrap().uid()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn audit(home: &Home) -> Vec<Value> {
    ok(home, &["audit", "tail", "-n", "1000"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Key ids, secrets and times differ between two homes: put placeholders in their place.
fn normalise(out: &str) -> String {
    if let Ok(mut v) = serde_json::from_str::<Value>(out) {
        let fix = |k: &mut Value| {
            k["id"] = json!("ID");
            k["created_ms"] = json!(0);
        };
        if let Some(k) = v.get_mut("key") {
            fix(k);
            v["secret"] = json!("SECRET");
        }
        if let Some(ks) = v.get_mut("keys").and_then(Value::as_array_mut) {
            ks.iter_mut().for_each(fix);
        }
        return format!("{v:#}");
    }
    // `revoked ID`; audit lines start with the time.
    out.lines()
        .map(|l| match l.split_once(' ') {
            Some(("revoked", _)) => "revoked ID".to_string(),
            Some((t, rest)) if t.len() == 13 && t.bytes().all(|b| b.is_ascii_digit()) => {
                // The audit's key records name the key id.
                let rest = rest.split_whitespace().collect::<Vec<_>>();
                if rest.first().is_some_and(|w| w.starts_with("key-")) {
                    format!("TIME {} ID", rest[0])
                } else {
                    format!("TIME {}", rest.join(" "))
                }
            }
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every plugin and keys command, in an order where each matters; `{KEY}` is the id of the
/// key the sequence created.
fn sequence() -> Vec<Vec<String>> {
    let pii = wasm("pii-redact");
    let pii_m = manifest("pii-redact");
    let norm = wasm("normalize");
    let norm_m = manifest("normalize");
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        // Refused: raised limits not approved.
        s(&["plugin", "install", path(&pii), "--manifest", path(&pii_m)]),
        s(&[
            "plugin",
            "install",
            path(&pii),
            "--manifest",
            path(&pii_m),
            "--approve-limits",
            "--set",
            "replacement=***",
        ]),
        s(&["plugin", "list"]),
        s(&["plugin", "info", "pii-redact"]),
        s(&["plugin", "grant", "pii-redact", "inference:pii-ner", "kv"]),
        s(&["plugin", "revoke", "pii-redact", "kv"]),
        s(&["plugin", "revoke", "pii-redact", "kv"]), // refused: not granted
        s(&["plugin", "configure", "pii-redact", "replacement=[{kind}]"]),
        s(&[
            "plugin",
            "configure",
            "pii-redact",
            "--unset",
            "replacement",
        ]),
        s(&["plugin", "configure", "pii-redact", "require_ner=maybe"]), // refused
        s(&[
            "plugin",
            "limits",
            "pii-redact",
            "--timeout-ms",
            "150",
            "--kv-max-keys",
            "5",
        ]),
        s(&["plugin", "disable", "pii-redact"]),
        s(&["plugin", "list"]),
        s(&["plugin", "enable", "pii-redact"]),
        s(&[
            "plugin",
            "secret",
            "pii-redact",
            "token",
            "--value",
            "s3cret-value",
        ]),
        s(&[
            "plugin",
            "upgrade",
            "pii-redact",
            path(&pii),
            "--manifest",
            path(&pii_m),
            "--approve-limits",
        ]),
        s(&[
            "plugin",
            "install",
            path(&norm),
            "--manifest",
            path(&norm_m),
        ]),
        s(&[
            "plugin",
            "install",
            path(&norm),
            "--manifest",
            path(&norm_m),
        ]), // refused: exists
        s(&["plugin", "list"]),
        s(&["plugin", "remove", "normalize"]),
        s(&["plugin", "info", "normalize"]), // refused: not installed
        s(&["plugin", "info", "pii-redact"]),
        s(&["plugin", "audit"]),
        s(&["keys", "create", "--scope", "admin", "--name", "ops"]),
        s(&["keys", "create", "--scope", "nonsense"]), // refused
        s(&["keys", "list"]),
        s(&["keys", "revoke", "{KEY}"]),
        s(&["keys", "revoke", "no-such-key"]), // refused
        s(&["keys", "list"]),
    ]
}

/// Runs the sequence in `home`; each command's normalised output.
fn run_sequence(home: &Home) -> Vec<(Vec<String>, Run)> {
    let mut key = String::new();
    let mut outs = Vec::new();
    for args in sequence() {
        let args: Vec<String> = args.iter().map(|a| a.replace("{KEY}", &key)).collect();
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (okay, out, err) = run(home, &refs);
        if refs[..2] == ["keys", "create"] && okay {
            let v: Value = serde_json::from_str(&out).unwrap();
            key = v["key"]["id"].as_str().unwrap().to_string();
        }
        let out = if refs[1] == "audit" {
            // The server also audits each admin request, by its path: those lines are its own.
            out.lines()
                .filter(|l| !l.contains(" admin-action "))
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            out
        };
        outs.push((args, (okay, normalise(&out), normalise(&err))));
    }
    outs
}

#[test]
fn plugin_and_keys_commands_print_the_same_with_and_without_a_server() {
    let alone = Home::new();
    let served = Home::new();
    let without = run_sequence(&alone);
    assert!(!socket(&alone).exists());

    let s = served.serve(&["--models", "add"]);
    let mode = std::fs::metadata(socket(&served))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "admin.sock mode {mode:o}");
    let with = run_sequence(&served);
    // Through the server, which held the store all along: a local open fails now.
    let held = llmos::data::Store::open_home(served.dir.path()).map(drop);
    assert!(
        matches!(
            held,
            Err(llmos::data::StoreError::Backend(
                llmos::data::backend::BackendError::Locked { .. }
            ))
        ),
        "the store was not held by the server: {held:?}"
    );
    // `llmos audit tail|verify` go to the server too (the store is held: no other way);
    // `archive` removes entries, so it says it needs the server stopped.
    let through = ok(&served, &["audit", "tail", "-n", "1000"]);
    let verified: Value = serde_json::from_str(&ok(&served, &["audit", "verify"])).unwrap();
    assert_eq!(verified["ok"], true, "{verified:#}");
    let out = served.dir.path().join("archive.jsonl");
    let (archived, _, err) = run(
        &served,
        &["audit", "archive", "--before", "1", "--out", path(&out)],
    );
    assert!(
        !archived && err.contains("stop `llmos serve`, archive"),
        "{err}"
    );
    assert!(s.terminate(), "serve did not stop cleanly");
    assert!(
        !socket(&served).exists(),
        "the socket was not removed at shutdown"
    );

    let mut differ = Vec::new();
    for ((args, a), (_, b)) in without.iter().zip(&with) {
        if a != b {
            differ.push(format!(
                "llmos {}\n--- without a server: {a:?}\n--- through the server: {b:?}",
                args.join(" ")
            ));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n\n"));
    // The sequence is not vacuous: successes and refusals both happened.
    let oks = without.iter().filter(|(_, r)| r.0).count();
    assert!(
        oks > 15 && oks < without.len(),
        "{oks} of {}",
        without.len()
    );

    // Audited as the owner over the socket, as `cli` without a server; the secret nowhere.
    let me = format!("local:uid={}", uid(&served));
    let log = audit(&served);
    for what in [
        "installed",
        "granted",
        "secret-set",
        "removed",
        "key-created",
    ] {
        let r = log.iter().find(|r| r["what"] == what).unwrap();
        assert_eq!(r["who"], me, "{r}");
    }
    let actions: Vec<&Value> = log.iter().filter(|r| r["what"] == "admin-action").collect();
    assert!(actions.len() >= 20, "{actions:?}");
    assert!(actions.iter().all(|r| r["who"] == me), "{actions:?}");
    assert!(
        audit(&alone)
            .iter()
            .filter(|r| r["what"] == "installed")
            .all(|r| r["who"] == "cli")
    );
    let raw = ok(&served, &["audit", "tail", "-n", "1000"]);
    assert!(!raw.contains("s3cret-value"));
    // The same lines either way (the server may add its own records at shutdown).
    assert!(
        through.lines().count() > 20 && raw.starts_with(&through),
        "through the server:\n{through}\nwithout:\n{raw}"
    );
    let alone: Value = serde_json::from_str(&ok(&served, &["audit", "verify"])).unwrap();
    assert_eq!(alone["ok"], true, "{alone:#}");
    assert_eq!(
        alone.as_object().unwrap().keys().collect::<Vec<_>>(),
        verified.as_object().unwrap().keys().collect::<Vec<_>>()
    );
}

#[test]
fn a_key_revoked_through_the_cli_while_serving_is_refused_at_once() {
    let home = Home::new();
    let s = home.serve(&["--models", "add"]);
    // Another key stays: without any usable key a loopback server is open and ignores keys.
    ok(&home, &["keys", "create", "--scope", "admin"]);
    let v: Value =
        serde_json::from_str(&ok(&home, &["keys", "create", "--scope", "models:*"])).unwrap();
    let (id, secret) = (
        v["key"]["id"].as_str().unwrap(),
        v["secret"].as_str().unwrap(),
    );
    let (status, body) = call(&s, "GET", "/v1/models", Some(secret), None);
    assert_eq!(status, 200, "{body}");
    ok(&home, &["keys", "revoke", id]);
    let (status, body) = call(&s, "GET", "/v1/models", Some(secret), None);
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{body}"
    );

    // Over the socket no key is asked and open mode's browser guards do not apply: the OS
    // authenticated the peer.
    let (head, body) = raw(
        &socket(&home),
        "GET /admin/keys HTTP/1.1\r\nHost: evil.example\r\nOrigin: https://evil.example\r\nConnection: close\r\n\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let keys: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2, "{keys}");
    // Over TCP the same request needs an admin key.
    let (status, _) = call(&s, "GET", "/admin/keys", None, None);
    assert_eq!(status, 401);
}

/// One HTTP/1.1 exchange written by hand over a Unix socket: (head, body).
fn raw(sock: &Path, request: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut c = std::os::unix::net::UnixStream::connect(sock).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.write_all(request.as_bytes()).unwrap();
    let mut all = String::new();
    c.read_to_string(&mut all).unwrap();
    let (head, body) = all.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

#[test]
fn a_stale_socket_is_replaced_and_a_live_one_refused() {
    let home = Home::new();
    let s = home.serve(&["--models", "add"]);
    drop(s); // SIGKILL: a crash leaves the socket file behind
    assert!(socket(&home).exists());
    // Nothing answers on it: the CLI opens the store itself.
    assert!(ok(&home, &["plugin", "list"]).contains("no plugins installed"));
    let s = home.serve(&["--models", "add"]);
    let out = ok(
        &home,
        &[
            "plugin",
            "install",
            path(&wasm("normalize")),
            "--manifest",
            path(&manifest("normalize")),
        ],
    );
    assert!(out.starts_with("installed normalize 0.1.0"), "{out}");
    assert!(s.terminate());
    let log = audit(&home);
    let installed = log.iter().find(|r| r["what"] == "installed").unwrap();
    assert_eq!(installed["who"], format!("local:uid={}", uid(&home)));

    // Something answers on the socket: a second server is refused before it says it listens.
    let other = Home::new();
    let _live = std::os::unix::net::UnixListener::bind(socket(&other)).unwrap();
    let out = other
        .cmd(&["serve", "--listen", "127.0.0.1:0", "--models", "add"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("answers: another llmos server"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"));
}

#[test]
fn without_the_admin_socket_the_cli_says_the_store_is_held_and_how_to_proceed() {
    let home = Home::new();
    let cfg = home.dir.path().join("llmos.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("\n[server]\nadmin_socket = false\n");
    std::fs::write(&cfg, text).unwrap();
    let _s = home.serve(&["--models", "add"]);
    assert!(!socket(&home).exists());
    for args in [&["plugin", "list"][..], &["keys", "list"]] {
        let t = Instant::now();
        let err = home.fails(args);
        for needle in [
            "is held by another llmos process",
            "admin_socket = false",
            "HTTP admin API",
            "in use by another llmos process",
        ] {
            assert!(
                err.contains(needle),
                "{args:?}: {needle:?} missing from:\n{err}"
            );
        }
        assert!(t.elapsed() < Duration::from_secs(30));
    }
}

#[test]
fn cli_installs_over_the_socket_honour_install_root_and_http_uploads_need_it_unset() {
    let home = Home::new();
    let root = home.dir.path().join("vetted");
    std::fs::create_dir(&root).unwrap();
    std::fs::copy(wasm("normalize"), root.join("normalize.wasm")).unwrap();
    std::fs::copy(manifest("normalize"), root.join("manifest.toml")).unwrap();
    let cfg = home.dir.path().join("llmos.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!("\n[plugins]\ninstall_root = {:?}\n", path(&root)));
    std::fs::write(&cfg, text).unwrap();
    let s = home.serve(&["--models", "add"]);

    // Outside the folder: refused by the CLI, as without a server.
    let err = home.fails(&[
        "plugin",
        "install",
        path(&wasm("normalize")),
        "--manifest",
        path(&manifest("normalize")),
    ]);
    assert!(err.contains("outside the allowed folder"), "{err}");
    // Inside: uploaded and installed.
    let out = ok(
        &home,
        &["plugin", "install", path(&root.join("normalize.wasm"))],
    );
    assert!(out.starts_with("installed normalize 0.1.0"), "{out}");

    // Over HTTP with an admin key, an upload is refused while install_root confines installs.
    let v: Value =
        serde_json::from_str(&ok(&home, &["keys", "create", "--scope", "admin"])).unwrap();
    let admin = v["secret"].as_str().unwrap();
    let body = json!({"component_base64": "AGFzbQ==", "manifest_toml": "name = \"x\""});
    let (status, body) = call(&s, "POST", "/admin/plugins", Some(admin), Some(body));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "component_base64", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("install_root"),
        "{body}"
    );
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time_list(home: &Home, n: usize) -> Duration {
    median(
        (0..n)
            .map(|_| {
                let t = Instant::now();
                ok(home, &["plugin", "list"]);
                t.elapsed()
            })
            .collect(),
    )
}

#[test]
fn forwarded_plugin_list_is_fast_and_http_uploads_install() {
    let home = Home::new();
    let alone = Home::new();
    for h in [&home, &alone] {
        ok(
            h,
            &[
                "plugin",
                "install",
                path(&wasm("normalize")),
                "--manifest",
                path(&manifest("normalize")),
            ],
        );
    }
    let local = time_list(&alone, 10);
    let s = home.serve(&["--models", "add"]);
    let forwarded = time_list(&home, 20);
    eprintln!(
        "plugin list: forwarded over admin.sock median {:.1} ms (20 runs); without a server {:.1} ms (10 runs)",
        forwarded.as_secs_f64() * 1e3,
        local.as_secs_f64() * 1e3
    );
    // Opening a held store waits a second for its lock: forwarding must not.
    assert!(
        forwarded < Duration::from_millis(900),
        "forwarded plugin list took {forwarded:?}"
    );

    // The same upload route over HTTP with an admin key (no install_root here).
    use base64::Engine as _;
    let v: Value =
        serde_json::from_str(&ok(&home, &["keys", "create", "--scope", "admin"])).unwrap();
    let admin = v["secret"].as_str().unwrap();
    let bytes = std::fs::read(wasm("testing/echo")).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let toml = std::fs::read_to_string(manifest("testing/echo")).unwrap();
    let body = json!({"component_base64": b64, "manifest_toml": toml});
    let (status, v) = call(&s, "POST", "/admin/plugins", Some(admin), Some(body));
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["plugin"]["manifest"]["name"], "test-echo", "{v}");
    assert_eq!(v["previous_version"], Value::Null, "{v}");
    let leftovers = std::fs::read_dir(home.dir.path().join("plugin-uploads"))
        .unwrap()
        .count();
    assert_eq!(leftovers, 0, "upload folders left behind");
    for (body, param) in [
        (
            json!({"component_base64": "not base64!", "manifest_toml": toml}),
            "component_base64",
        ),
        (json!({"component_base64": b64}), "manifest_toml"),
        (
            json!({"path": "/x.wasm", "component_base64": b64}),
            "component_base64",
        ),
        (json!({}), "path"),
    ] {
        let (status, v) = call(&s, "POST", "/admin/plugins", Some(admin), Some(body));
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["param"], param, "{v}");
    }
    // A broken upload names the upload, not the server's private folder.
    let body = json!({"component_base64": "AGFzbQEAAAA=", "manifest_toml": toml});
    let (status, v) = call(&s, "POST", "/admin/plugins", Some(admin), Some(body));
    assert_eq!(status, 400, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("(uploaded component)"), "{msg}");
    assert!(!msg.contains("plugin-uploads"), "{msg}");
    // Typed bodies of the new routes: a wrong field is named with what is accepted.
    for (route, body, accepted) in [
        ("configure", json!({"sett": {}}), "accepted fields: set"),
        (
            "limits",
            json!({"timeout": 5}),
            "accepted fields: timeout_ms",
        ),
        (
            "secret",
            json!({"name": "t"}),
            "accepted fields: name, value",
        ),
    ] {
        let uri = format!("/admin/plugins/test-echo/{route}");
        let (status, v) = call(&s, "POST", &uri, Some(admin), Some(body));
        assert_eq!(status, 400, "{route}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(accepted), "{route}: {msg}");
    }
}

//! Three `llmos serve` replicas on loopback sharing one PostgreSQL store (a throwaway server:
//! tests/all/support_pg.rs) and one master key (docs/scale-out.md, "Shared state"): keys,
//! plugins and grants, collections and the audit chain are the same on every replica, and
//! changes reach the others within a second.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::plugins_common::{manifest, wasm};
use crate::support::{Home, Server, call};
use crate::support_pg;

/// A home whose store is `url`, opened with a shared master key file.
fn replica_home(url: &str, key: &[u8; 32]) -> Home {
    use std::os::unix::fs::PermissionsExt;
    let home = Home::new();
    let config = home.dir.path().join("llmos.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("\n[store]\nurl = {url:?}\n"));
    std::fs::write(&config, text).unwrap();
    let file = home.dir.path().join("master.key");
    std::fs::write(&file, key).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    home
}

/// Polls `f` until it is true; returns how long that took (panics after `limit`).
fn within(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    loop {
        if f() {
            return t.elapsed();
        }
        assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn probe_says(s: &Server, admin: &str, inputs: &[&str]) -> String {
    let (code, out) = call(
        s,
        "POST",
        "/admin/plugins/test-probe/test",
        Some(admin),
        Some(json!({"inputs": inputs})),
    );
    format!("{code} {out}")
}

#[test]
fn replicas_share_keys_plugins_collections_and_the_audit_chain() {
    let Some(url) = support_pg::database("replicas") else {
        return;
    };
    let key = [42u8; 32];
    let homes: Vec<Home> = (0..3).map(|_| replica_home(&url, &key)).collect();
    // The three start at once on the empty database (one of them creates the store's keys,
    // the others open them); the admin key is made afterwards through the CLI, beside them.
    let servers: Vec<Server> = std::thread::scope(|sc| {
        let started: Vec<_> = homes
            .iter()
            .map(|h| sc.spawn(move || h.serve(&["--models", "minilm"])))
            .collect();
        started.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let admin = homes[0].json(&[
        "keys",
        "create",
        "--scope",
        "admin",
        "--scope",
        "data:*:write",
        "--scope",
        "data:*",
    ])["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let s = |i: usize| -> &Server { &servers[i] };

    // A key created on replica 1 works on 2 and 3.
    let (code, made) = call(
        s(0),
        "POST",
        "/admin/keys",
        Some(&admin),
        Some(json!({"name": "ops", "scopes": ["admin"]})),
    );
    assert_eq!(code, 201, "{made}");
    let (ops, ops_id) = (
        made["secret"].as_str().unwrap().to_string(),
        made["key"]["id"].as_str().unwrap().to_string(),
    );
    for i in [1, 2] {
        let (code, body) = call(s(i), "GET", "/admin/keys", Some(&ops), None);
        assert_eq!(code, 200, "replica {}: {body}", i + 1);
    }
    // Revoked on 3: refused by 1 and 2 within a second.
    let (code, body) = call(
        s(2),
        "DELETE",
        &format!("/admin/keys/{ops_id}"),
        Some(&admin),
        None,
    );
    assert_eq!(code, 200, "{body}");
    for i in [0, 1] {
        let took = within(Duration::from_secs(1), "revoked key refused", || {
            call(s(i), "GET", "/admin/keys", Some(&ops), None).0 == 401
        });
        eprintln!("replica {} refused the revoked key after {took:?}", i + 1);
    }

    // A plugin installed and granted through replica 2 runs on replica 1 (whose home never
    // saw the file: the component comes from the shared store); a grant revoked on 2 is
    // denied on 1.
    let body = json!({"path": wasm("testing/probe"), "manifest": manifest("testing/probe"), "grants": ["kv"], "approve_limits": true});
    let (code, made) = call(s(1), "POST", "/admin/plugins", Some(&admin), Some(body));
    assert_eq!(code, 201, "{made}");
    let out = probe_says(s(0), &admin, &["kv.set colour blue", "kv.get colour"]);
    assert!(
        out.starts_with("200") && out.contains(r#"ok:Some(\"blue\")"#),
        "{out}"
    );
    let (code, rev) = call(
        s(1),
        "POST",
        "/admin/plugins/test-probe/revoke",
        Some(&admin),
        Some(json!({"capabilities": ["kv"]})),
    );
    assert_eq!(code, 200, "{rev}");
    let took = within(Duration::from_secs(1), "revoked grant denied", || {
        probe_says(s(0), &admin, &["kv.get colour"]).contains("denied:kv")
    });
    eprintln!("replica 1 denied the revoked grant after {took:?}");

    // Ingested on 1, found on 3; a second ingest on 1 reaches 3's vectors in memory.
    let (code, c) = call(
        s(0),
        "POST",
        "/v1/collections/notes",
        Some(&admin),
        Some(json!({})),
    );
    assert!(code == 200 || code == 201, "{code} {c}");
    let doc = |id: &str, text: &str| json!({"documents": [{"id": id, "text": text}]});
    let (code, r) = call(
        s(0),
        "POST",
        "/v1/collections/notes/documents",
        Some(&admin),
        Some(doc(
            "heron",
            "The heron waits in the reeds before striking at fish.",
        )),
    );
    assert!(code == 200 || code == 201, "{code} {r}");
    let search = |i: usize, q: &str| -> Value {
        let (code, r) = call(
            s(i),
            "POST",
            "/v1/collections/notes/search",
            Some(&admin),
            Some(json!({"query": q, "top_k": 1})),
        );
        assert_eq!(code, 200, "{r}");
        r
    };
    let hit = search(2, "how do birds catch fish");
    assert!(hit.to_string().contains("heron"), "{hit}");
    let (code, r) = call(
        s(0),
        "POST",
        "/v1/collections/notes/documents",
        Some(&admin),
        Some(doc(
            "oven",
            "Bake the bread in a hot oven for forty minutes.",
        )),
    );
    assert!(code == 200 || code == 201, "{code} {r}");
    within(
        Duration::from_secs(1),
        "a new document searchable on replica 3",
        || {
            search(2, "baking bread at home")
                .to_string()
                .contains("oven")
        },
    );

    // Deleted through 1: replica 3 says the collection does not exist (its vectors and its
    // cached data key are dropped on the change notification); re-created under the same
    // name through 1, it works on both, with its new data key.
    let (code, r) = call(s(0), "DELETE", "/v1/collections/notes", Some(&admin), None);
    assert_eq!(code, 200, "{r}");
    let search_on = |i: usize, q: &str| {
        call(
            s(i),
            "POST",
            "/v1/collections/notes/search",
            Some(&admin),
            Some(json!({"query": q, "top_k": 1})),
        )
    };
    within(
        Duration::from_secs(1),
        "the deleted collection gone on replica 3",
        || {
            let (code, r) = search_on(2, "fish");
            code == 404 && r["error"]["code"] == "collection_not_found"
        },
    );
    let (code, c) = call(
        s(0),
        "POST",
        "/v1/collections/notes",
        Some(&admin),
        Some(json!({})),
    );
    assert!(code == 200 || code == 201, "{code} {c}");
    let (code, r) = call(
        s(0),
        "POST",
        "/v1/collections/notes/documents",
        Some(&admin),
        Some(doc(
            "wren",
            "A small brown wren sings loudly from the hedge.",
        )),
    );
    assert!(code == 200 || code == 201, "{code} {r}");
    within(
        Duration::from_secs(1),
        "the re-created collection searchable on replica 3",
        || {
            let (code, r) = search_on(2, "a little singing bird");
            code == 200 && r.to_string().contains("wren")
        },
    );
    let (code, r) = call(
        s(2),
        "POST",
        "/v1/collections/notes/documents",
        Some(&admin),
        Some(doc("kettle", "Boil water in the kettle for tea.")),
    );
    assert!(code == 200 || code == 201, "{code} {r}");
    within(
        Duration::from_secs(1),
        "a document ingested on 3 into the re-created collection found on 1",
        || {
            let (code, r) = search_on(0, "making a cup of tea");
            code == 200 && r.to_string().contains("kettle")
        },
    );

    // Following one collection: with "birds" held in memory on 3, an ingest into "notes" on
    // 1 reaches 3's vectors chunk by chunk: neither collection is loaded again on 3 (each
    // replica reports its own loads in GET /v1/collections/{name} `memory`), and a document
    // deleted on 1 drops out of 3's results.
    let (code, c) = call(
        s(0),
        "POST",
        "/v1/collections/birds",
        Some(&admin),
        Some(json!({})),
    );
    assert!(code == 200 || code == 201, "{code} {c}");
    let (code, r) = call(
        s(0),
        "POST",
        "/v1/collections/birds/documents",
        Some(&admin),
        Some(doc("owl", "The owl hunts mice at night in silence.")),
    );
    assert!(code == 200 || code == 201, "{code} {r}");
    let memory = |i: usize, name: &str| -> Value {
        let (code, r) = call(
            s(i),
            "GET",
            &format!("/v1/collections/{name}"),
            Some(&admin),
            None,
        );
        assert_eq!(code, 200, "{r}");
        r["memory"].clone()
    };
    within(
        Duration::from_secs(1),
        "a new collection held on replica 3",
        || memory(2, "birds")["loaded"] == true,
    );
    let (birds, notes) = (memory(2, "birds"), memory(2, "notes"));
    assert_eq!(notes["loaded"], true, "{notes}");
    let (code, r) = call(
        s(0),
        "POST",
        "/v1/collections/notes/documents",
        Some(&admin),
        Some(doc(
            "lighthouse",
            "The lighthouse keeper trims the lamp before the storm.",
        )),
    );
    assert!(code == 200 || code == 201, "{code} {r}");
    let took = within(
        Duration::from_secs(1),
        "a chunk ingested on 1 searchable on 3",
        || {
            let (code, r) = search_on(2, "who looks after the lamp by the sea");
            code == 200 && r.to_string().contains("lighthouse")
        },
    );
    eprintln!("replica 3 found a chunk ingested on 1 after {took:?}");
    let (birds2, notes2) = (memory(2, "birds"), memory(2, "notes"));
    assert_eq!(
        birds2["loads"], birds["loads"],
        "birds not loaded again on 3: {birds} -> {birds2}"
    );
    assert_eq!(
        notes2["loads"], notes["loads"],
        "notes not loaded again on 3: {notes} -> {notes2}"
    );
    assert!(
        notes2["changes_followed"].as_u64().unwrap() > notes["changes_followed"].as_u64().unwrap(),
        "the new chunk applied on 3: {notes} -> {notes2}"
    );
    assert_eq!(
        notes2["chunks"].as_u64(),
        Some(notes["chunks"].as_u64().unwrap() + 1),
        "{notes2}"
    );
    let (code, r) = call(
        s(0),
        "DELETE",
        "/v1/collections/notes/documents/lighthouse",
        Some(&admin),
        None,
    );
    assert_eq!(code, 200, "{r}");
    let took = within(
        Duration::from_secs(1),
        "a document deleted on 1 gone on 3",
        || {
            let (code, r) = search_on(2, "who looks after the lamp by the sea");
            code == 200 && !r.to_string().contains("lighthouse")
        },
    );
    eprintln!("replica 3 dropped a document deleted on 1 after {took:?}");
    let notes3 = memory(2, "notes");
    assert_eq!(notes3["loads"], notes["loads"], "{notes3}");
    assert_eq!(notes3["chunks"], notes["chunks"], "{notes3}");
    assert_eq!(memory(2, "birds")["loads"], birds["loads"]);
    let text = reqwest::blocking::Client::new()
        .get(s(2).at("/metrics"))
        .bearer_auth(&admin)
        .send()
        .unwrap()
        .text()
        .unwrap();
    let followed = text
        .lines()
        .find_map(|l| l.strip_prefix("llmos_collection_changes_followed_total "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(followed.is_some_and(|n| n >= 2), "{text}");

    // Under write load on replica 2 (keys created by two clients), kill -9 it: every write it
    // acknowledged is on replica 1.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let target = s(1).url.clone();
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (acked, stop, target, admin) =
                (acked.clone(), stop.clone(), target.clone(), admin.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap();
                for n in 0..2000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let r = client
                        .post(format!("{target}/admin/keys"))
                        .bearer_auth(&admin)
                        .json(&json!({"name": format!("load-{w}-{n}"), "scopes": ["data:*"]}))
                        .send();
                    match r {
                        Ok(r) if r.status().as_u16() == 201 => {
                            let v: Value = r.json().unwrap();
                            acked
                                .lock()
                                .unwrap()
                                .push(v["key"]["id"].as_str().unwrap().to_string());
                        }
                        _ => break,
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    let pid = s(1).pid();
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 5,
        "the load wrote only {} keys before the kill",
        acked.len()
    );
    let (code, list) = call(s(0), "GET", "/admin/keys", Some(&admin), None);
    assert_eq!(code, 200, "{list}");
    let listed = list.to_string();
    let lost: Vec<&String> = acked
        .iter()
        .filter(|id| !listed.contains(id.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged writes lost after kill -9: {lost:?} of {}",
        acked.len()
    );
    eprintln!(
        "{} acknowledged writes before kill -9, none lost",
        acked.len()
    );

    // Replica 2 started again: it loads the collection's vectors at start, in the
    // background (ready once they are in memory), before any search.
    let again = homes[1].serve(&["--models", "minilm"]);
    let took = within(
        Duration::from_secs(10),
        "replica 2 loads the collections at start",
        || {
            let (_, h) = call(&again, "GET", "/health", None, None);
            h["collections"]["ready"] == true && h["collections"]["loaded"] == 2
        },
    );
    let (code, r) = call(&again, "GET", "/v2/health/ready", None, None);
    assert_eq!(code, 200, "{r}");
    eprintln!("restarted replica: collections loaded {took:?} after it answered /health");
    drop(again);

    // One audit chain across the replicas, verified from replica 3, holding what 1 and 3 did.
    let (code, v) = call(s(2), "GET", "/admin/audit/verify", Some(&admin), None);
    assert_eq!((code, v["ok"].as_bool()), (200, Some(true)), "{v}");
    let (code, log) = call(s(0), "GET", "/admin/audit?limit=1000", Some(&admin), None);
    assert_eq!(code, 200, "{log}");
    let log = log.to_string();
    assert!(
        log.contains(&ops_id),
        "the audit log names the key created on 1 and revoked on 3: {log}"
    );

    // Measured (BENCHMARKS.md): an authenticated request that reads the store (key lookup,
    // collection list) on a replica against the same on an embedded (sled) server.
    let solo = Home::new();
    let solo_admin =
        solo.json(&["keys", "create", "--scope", "admin", "--scope", "data:*"])["secret"]
            .as_str()
            .unwrap()
            .to_string();
    let solo_server = solo.serve(&["--models", "minilm"]);
    let client = reqwest::blocking::Client::new();
    let mean = |server: &Server, key: &str| -> Duration {
        let get = || {
            let r = client
                .get(server.at("/v1/collections"))
                .bearer_auth(key)
                .send()
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
        };
        for _ in 0..20 {
            get();
        }
        let t = Instant::now();
        for _ in 0..200 {
            get();
        }
        t.elapsed() / 200
    };
    let (sled, pg) = (mean(&solo_server, &solo_admin), mean(s(0), &admin));
    eprintln!(
        "GET /v1/collections (authenticated), mean of 200: sled {sled:?}, PostgreSQL replica {pg:?}"
    );
}

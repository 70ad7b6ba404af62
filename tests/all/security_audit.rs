//! The tamper-evident audit log through the real binary: CLI actions recorded as `cli`,
//! `llmos audit tail|verify|archive`, admin actions recorded with their key, the chain across
//! restarts and segment removals, `GET /admin/audit/verify`, and tampering with the store
//! named by `llmos audit verify` (the store opened in-process with the home's master key).

use llmos::data::{Store, Tree};
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::support::{Home, Server, text};

fn lines(home: &Home, args: &[&str]) -> Vec<Value> {
    let out = home.cmd(args).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// `llmos audit verify` failing: (the report on stdout, stderr).
fn verify_fails(home: &Home) -> (Value, String) {
    let out = home.cmd(&["audit", "verify"]).output().unwrap();
    assert!(!out.status.success(), "verify passed:\n{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false, "{report}");
    (report, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn store(home: &Home) -> Store {
    Store::open_home(home.dir.path()).unwrap()
}

fn key(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

fn keys_create(home: &Home, scope: &str) -> (String, String) {
    let v = home.json(&["keys", "create", "--scope", scope]);
    (
        v["key"]["id"].as_str().unwrap().to_string(),
        v["secret"].as_str().unwrap().to_string(),
    )
}

#[test]
fn cli_actions_are_chained_as_cli_and_verify_names_what_was_tampered_with() {
    let home = Home::new();
    keys_create(&home, "admin");
    let (id, _) = keys_create(&home, "models:*");
    let out = home.cmd(&["keys", "revoke", &id]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let tail = lines(&home, &["audit", "tail", "-n", "2"]);
    assert_eq!(tail.len(), 2, "{tail:?}");
    assert_eq!(
        (tail[0]["seq"].as_u64(), tail[1]["seq"].as_u64()),
        (Some(2), Some(3))
    );
    for (r, what) in tail.iter().zip(["key-created", "key-revoked"]) {
        assert_eq!(
            (r["who"].as_str(), r["what"].as_str()),
            (Some("cli"), Some(what))
        );
        assert_eq!(r["target"], id.as_str());
        assert_eq!(r["outcome"], "ok");
        assert_eq!(r["prev"].as_str().unwrap().len(), 64, "{r}");
    }
    let report = home.json(&["audit", "verify"]);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(
        (report["checked"].as_u64(), report["head"].as_u64()),
        (Some(3), Some(3))
    );
    // --follow with no server running: refused, saying what works.
    let err = home.fails(&["audit", "tail", "--follow"]);
    assert!(
        err.contains("--follow needs a running server") && err.contains("llmos serve"),
        "{err}"
    );

    // An entry removed in the middle.
    for _ in 0..3 {
        keys_create(&home, "models:*");
    }
    {
        let s = store(&home);
        assert!(s.remove(Tree::Audit, &key(4)).unwrap());
    }
    let (report, err) = verify_fails(&home);
    assert_eq!(
        report["problem"],
        json!({"kind": "removed", "after": 3, "next": 5})
    );
    assert!(
        err.contains("entries removed: 4 to 4 are missing between 3 and 5"),
        "{err}"
    );

    // The newest entries removed (on another home).
    let home = Home::new();
    for _ in 0..4 {
        keys_create(&home, "models:*");
    }
    {
        let s = store(&home);
        s.remove(Tree::Audit, &key(4)).unwrap();
        s.remove(Tree::Audit, &key(3)).unwrap();
    }
    let (report, err) = verify_fails(&home);
    assert_eq!(
        report["problem"],
        json!({"kind": "truncated", "last": 2, "head": 4})
    );
    assert!(err.contains("the head record names entry 4"), "{err}");
    // Later actions do not hide it.
    keys_create(&home, "models:*");
    let (report, _) = verify_fails(&home);
    assert_eq!(
        report["problem"],
        json!({"kind": "removed", "after": 2, "next": 5})
    );
}

fn post_key(c: &Client, s: &Server, admin: &str) {
    let r = c
        .post(s.at("/admin/keys"))
        .bearer_auth(admin)
        .json(&json!({"scopes": ["models:add"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
}

fn get(c: &Client, s: &Server, admin: &str, path: &str) -> (u16, Value) {
    let r = c.get(s.at(path)).bearer_auth(admin).send().unwrap();
    (r.status().as_u16(), r.json().unwrap())
}

#[test]
fn the_server_chains_admin_actions_by_key_across_restarts_and_segment_removals() {
    let home = Home::new();
    let cfg = home.dir.path().join("llmos.toml");
    let mut toml = std::fs::read_to_string(&cfg).unwrap();
    toml.push_str("[audit]\nmax_records = 100\nsegment_records = 10\n");
    std::fs::write(&cfg, toml).unwrap();
    let (admin_id, admin) = keys_create(&home, "admin");
    let c = Client::new();

    let s = home.serve(&["--models", "add"]);
    // Each key: `key-created` by the admin key, then its `admin-action`: 120 entries.
    for _ in 0..60 {
        post_key(&c, &s, &admin);
    }
    let (code, page) = get(
        &c,
        &s,
        &admin,
        &format!("/admin/audit?who={admin_id}&what=key-created&limit=1000"),
    );
    assert_eq!(code, 200, "{page}");
    let created = page["records"].as_array().unwrap();
    assert!(created.len() >= 30, "{}", created.len());
    assert!(created.iter().all(|r| r["who"] == admin_id.as_str()));
    let (_, actions) = get(&c, &s, &admin, "/admin/audit?what=admin-action&limit=1");
    let a = &actions["records"][0];
    assert_eq!(
        (
            a["who"].as_str(),
            a["target"].as_str(),
            a["outcome"].as_str()
        ),
        (
            Some(admin_id.as_str()),
            Some("POST /admin/keys"),
            Some("201")
        )
    );
    // Old segments went, whole, behind a checkpoint; the rest verifies.
    let (code, report) = get(&c, &s, &admin, "/admin/audit/verify");
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["ok"], true, "{report}");
    let cp = report["checkpoint"].as_u64().expect("a checkpoint");
    assert_eq!(cp % 10, 0, "{report}");
    assert_eq!(report["first"].as_u64(), Some(cp + 1), "{report}");
    let (_, all) = get(&c, &s, &admin, "/admin/audit?limit=1000");
    let all = all["records"].as_array().unwrap();
    assert!(all.len() <= 100, "{}", all.len());
    assert!(all.iter().any(|r| r["what"] == "audit-truncated"));
    // The CLI asks the running server (which holds the store).
    let tail = lines(
        &home,
        &["audit", "tail", "-n", "3", "--url", &s.url, "--key", &admin],
    );
    assert_eq!(tail.len(), 3);
    let out = home
        .cmd(&[
            "audit",
            "verify",
            "--url",
            &s.url,
            "--key",
            "llmos_nope_wrong",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{}",
        text(&out)
    );
    // Bad parameters are named.
    for (q, param) in [
        ("tail=0", "tail"),
        ("tail=5&who=x", "who"),
        ("what=a&kind=b", "kind"),
    ] {
        let (code, v) = get(&c, &s, &admin, &format!("/admin/audit?{q}"));
        assert_eq!(code, 400, "{q}: {v}");
        assert_eq!(v["error"]["param"], param, "{q}: {v}");
    }
    let head = tail[2]["seq"].as_u64().unwrap();
    assert!(s.terminate());

    // Restarted: the chain goes on from the head.
    let s = home.serve(&["--models", "add"]);
    post_key(&c, &s, &admin);
    let (_, t) = get(&c, &s, &admin, "/admin/audit?tail=3");
    let seqs: Vec<u64> = t["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    // Consecutive across the restart (after the refused `--key llmos_nope_wrong` call's entry).
    assert!(seqs.windows(2).all(|w| w[0] + 1 == w[1]), "{t}");
    assert_eq!(seqs[2], head + 3, "{t}");
    assert_eq!(t["records"][1]["what"], "key-created", "{t}");
    assert_eq!(t["records"][0]["what"], "auth-denied", "{t}");
    let (_, report) = get(&c, &s, &admin, "/admin/audit/verify");
    assert_eq!(report["ok"], true, "{report}");
    assert!(s.terminate());

    // Archive: whole old segments to a file, then gone behind a checkpoint.
    let out_file = home.dir.path().join("audit-archive.jsonl");
    let out_s = out_file.to_str().unwrap();
    let first = report["first"].as_u64().unwrap();
    let v = home.json(&[
        "audit",
        "archive",
        "--before",
        &(first + 25).to_string(),
        "--out",
        out_s,
    ]);
    let archived = v["entries"].as_u64().unwrap();
    assert_eq!(archived, 20, "{v}");
    let exported: Vec<Value> = std::fs::read_to_string(&out_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(exported[0]["seq"].as_u64(), Some(first));
    let report = home.json(&["audit", "verify"]);
    assert_eq!(report["checkpoint"].as_u64(), Some(first + 19), "{report}");
    // The file is not overwritten.
    let err = home.fails(&["audit", "archive", "--before", "1000000", "--out", out_s]);
    assert!(err.contains("must not exist"), "{err}");

    // An entry edited and re-sealed with the store's own key: named by the chain.
    let edited = first + 30;
    {
        let s = store(&home);
        let mut r: Value =
            serde_json::from_slice(&s.get(Tree::Audit, &key(edited)).unwrap().unwrap()).unwrap();
        r["who"] = "someone-else".into();
        s.put(Tree::Audit, &key(edited), &serde_json::to_vec(&r).unwrap())
            .unwrap();
    }
    let (report, err) = verify_fails(&home);
    assert_eq!(report["problem"]["kind"], "edited", "{report}");
    assert_eq!(report["problem"]["seq"].as_u64(), Some(edited), "{report}");
    assert!(err.contains(&format!("entry {edited} was edited")), "{err}");
}

#[test]
fn plugin_changes_made_with_the_cli_are_recorded_as_cli() {
    use crate::plugins_common::{manifest, wasm};
    let home = Home::new();
    let (w, m) = (wasm("testing/probe"), manifest("testing/probe"));
    for args in [
        &[
            "plugin",
            "install",
            w.to_str().unwrap(),
            "--manifest",
            m.to_str().unwrap(),
        ][..],
        &["plugin", "grant", "test-probe", "kv"],
        &["plugin", "revoke", "test-probe", "kv"],
        &["plugin", "remove", "test-probe"],
    ] {
        let out = home.cmd(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    }
    let tail = lines(&home, &["audit", "tail", "-n", "4"]);
    let seen: Vec<(&str, &str, &str)> = tail
        .iter()
        .map(|r| {
            (
                r["who"].as_str().unwrap(),
                r["what"].as_str().unwrap(),
                r["target"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("cli", "installed", "test-probe"),
            ("cli", "granted", "test-probe"),
            ("cli", "revoked", "test-probe"),
            ("cli", "removed", "test-probe"),
        ]
    );
    assert_eq!(tail[1]["capability"], "kv");
    assert_eq!(home.json(&["audit", "verify"])["ok"], true);
}

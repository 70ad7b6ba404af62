//! The store and its keys, the way a user meets them: what lands in the data folder, a wrong
//! or badly kept master key, a tampered value, `llmos store rotate-master | rekey | check`,
//! and a store of the previous format.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use llmos::data::backend::{Backend, SledBackend};
use llmos::data::{Store, Tree};
use llmos::plugins::registry;
use llmos::security::Sealer;
use llmos::security::master::{MasterSource, create_key_file};
use serde_json::Value;

use crate::plugins_common::{host, install, request};
use crate::support::{BIN, text};

const MASTER_VARS: [&str; 4] = [
    "LLMOS_MASTER_KEY",
    "LLMOS_MASTER_KEY_FILE",
    "LLMOS_MASTER_PASSPHRASE",
    "LLMOS_NEW_MASTER_KEY",
];

/// `llmos ARGS` on the data location `home`, with only the master-key variables in `env`.
fn llmos(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args)
        .env("LLMOS_HOME", home)
        .env_remove("LLMOS_CONFIG")
        .env("LLMOS_LOG", "warn");
    for v in MASTER_VARS {
        c.env_remove(v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn ok(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Value {
    let out = llmos(home, args, env);
    assert!(out.status.success(), "llmos {args:?}:\n{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn fails(home: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = llmos(home, args, env);
    assert!(
        !out.status.success(),
        "llmos {args:?} should fail:\n{}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every raw entry of the store in `home` (opened without any key).
fn raw_entries(home: &Path) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let b = SledBackend::open(&home.join("store")).unwrap();
    let mut out = Vec::new();
    for t in Tree::ALL.iter().map(|t| t.name()).chain(["store-meta"]) {
        for e in b.scan_prefix(t, b"").unwrap() {
            let (k, v) = e.unwrap();
            out.push((t.to_string(), k, v));
        }
    }
    out
}

/// Every file under `dir`, with its bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out
}

/// The files under `dir` that hold `needle`.
fn holding(dir: &Path, needle: &str) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
        .map(|(p, _)| p)
        .collect()
}

fn key_ids(home: &Path, env: &[(&str, &str)]) -> Vec<String> {
    let list = ok(home, &["keys", "list"], env);
    let mut ids: Vec<String> = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn create_key(home: &Path, env: &[(&str, &str)]) {
    let out = llmos(home, &["keys", "create", "--scope", "models:*"], env);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn no_user_key_or_value_is_in_any_file_of_the_data_folder() {
    let (dir, host) = host();
    let p = install(&host, "testing/probe", &["kv"], &[]);
    let out = host
        .preprocess(
            &p,
            request(&["kv.set kv-key-marker-7731 kv-value-marker-1187"]),
        )
        .unwrap();
    assert_eq!(out, ["ok:()"]);
    registry::set_secret(
        &host,
        &p,
        "secret-name-marker-4410",
        "secret-value-marker-9921",
    )
    .unwrap();
    let s = host.store();
    let (coll, doc) = ("collection-marker-5531", "document-id-marker-6620");
    let writes: Vec<(Tree, Vec<u8>, &[u8])> = vec![
        (Tree::Collections, coll.into(), b"{\"model\":\"minilm\"}"),
        (
            Tree::Documents,
            format!("{coll}\0{doc}").into(),
            b"document-text-marker-2209",
        ),
        (
            Tree::Chunks,
            format!("{coll}\0{doc}:0").into(),
            b"chunk-text-marker-3307",
        ),
        (
            Tree::Vault,
            b"vault-scope-marker\0<PERSON_1>".to_vec(),
            b"vault-original-marker-8812",
        ),
    ];
    let refs: Vec<(Tree, &[u8], &[u8])> = writes
        .iter()
        .map(|(t, k, v)| (*t, k.as_slice(), *v))
        .collect();
    s.put_many(&refs).unwrap();
    // Everything reads back through the store and the plugin.
    for (t, k, v) in &refs {
        assert_eq!(s.get(*t, k).unwrap().unwrap(), *v);
    }
    let listed = host.preprocess(
        &p,
        request(&["kv.list kv-key", "kv.get kv-key-marker-7731"]),
    );
    assert_eq!(
        listed.unwrap(),
        [
            "ok:[\"kv-key-marker-7731\"]",
            "ok:Some(\"kv-value-marker-1187\")"
        ]
    );
    s.flush().unwrap();
    drop(host);
    let markers = [
        "kv-key-marker-7731",
        "kv-value-marker-1187",
        "secret-name-marker-4410",
        "secret-value-marker-9921",
        coll,
        doc,
        "document-text-marker-2209",
        "chunk-text-marker-3307",
        "vault-scope-marker",
        "vault-original-marker-8812",
    ];
    for m in markers {
        assert_eq!(
            holding(dir.path(), m),
            Vec::<PathBuf>::new(),
            "{m} is in the data folder"
        );
    }
    // The scan does see what is stored in clear (the plugin's name keys the plugins tree).
    assert!(!holding(&dir.path().join("store"), &p).is_empty());
}

#[test]
fn a_flipped_byte_in_a_stored_value_is_named_and_never_returned() {
    let home = tempfile::tempdir().unwrap();
    create_key(home.path(), &[]);
    let id = key_ids(home.path(), &[]).remove(0);
    let report = ok(home.path(), &["store", "check"], &[]);
    assert_eq!(report["entries"]["api-keys"], 1, "{report}");
    assert_eq!(report["errors"], Value::Array(vec![]));
    {
        let b = SledBackend::open(&home.path().join("store")).unwrap();
        let (k, mut v) = b
            .scan_prefix("api-keys", b"")
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let i = v.len() / 2;
        v[i] ^= 1;
        b.insert("api-keys", &k, &v).unwrap();
        b.flush().unwrap();
    }
    let out = llmos(home.path(), &["store", "check"], &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{report}");
    assert_eq!(errors[0]["tree"], "api-keys");
    assert_eq!(errors[0]["key"], id.as_str());
    let e = fails(home.path(), &["keys", "list"], &[]);
    assert!(e.contains(&format!("api-keys/{id}")), "{e}");
}

#[test]
fn a_wrong_master_key_is_refused_at_open_and_nothing_changes() {
    let home = tempfile::tempdir().unwrap();
    create_key(home.path(), &[]);
    let entries = raw_entries(home.path());
    let bytes = files(home.path());
    let wrong = "11".repeat(32);
    let e = fails(
        home.path(),
        &["keys", "create", "--scope", "admin"],
        &[("LLMOS_MASTER_KEY", &wrong)],
    );
    assert!(
        e.contains("does not open the data store") && e.contains("Nothing was changed"),
        "{e}"
    );
    assert_eq!(raw_entries(home.path()), entries);
    assert_eq!(
        files(home.path()),
        bytes,
        "no file of the data folder changed"
    );
    assert_eq!(key_ids(home.path(), &[]).len(), 1);
    let e = fails(
        home.path(),
        &["keys", "list"],
        &[("LLMOS_MASTER_KEY", "abc")],
    );
    assert!(e.contains("LLMOS_MASTER_KEY must be 64 hex digits"), "{e}");
}

#[cfg(unix)]
#[test]
fn a_key_file_others_can_read_is_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let file = outside.path().join("llmos.key");
    let env = [("LLMOS_MASTER_KEY_FILE", file.to_str().unwrap())];
    create_key(home.path(), &env);
    assert!(
        !home.path().join("master.key").exists(),
        "the key lives where it was told"
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    for bad in [0o640, 0o604] {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(bad)).unwrap();
        let e = fails(home.path(), &["keys", "list"], &env);
        assert!(e.contains(&format!("chmod 600 {}", file.display())), "{e}");
    }
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(key_ids(home.path(), &env).len(), 1);
    // A store that holds data does not get a new key file in place of a missing one.
    let e = fails(home.path(), &["keys", "list"], &[]);
    assert!(e.contains("already holds data"), "{e}");
    assert!(!home.path().join("master.key").exists());
}

#[test]
fn a_passphrase_opens_the_store_and_its_salt_is_kept_in_clear() {
    let home = tempfile::tempdir().unwrap();
    let pass = [("LLMOS_MASTER_PASSPHRASE", "a passphrase long enough")];
    create_key(home.path(), &pass);
    assert!(!home.path().join("master.key").exists());
    assert_eq!(key_ids(home.path(), &pass).len(), 1);
    let kdf = raw_entries(home.path())
        .into_iter()
        .find(|(t, k, _)| t == "store-meta" && k == b"kdf")
        .unwrap();
    let kdf: Value = serde_json::from_slice(&kdf.2).unwrap();
    assert_eq!(kdf["algorithm"], "argon2id", "{kdf}");
    assert_eq!(kdf["memory_kib"], 65536, "{kdf}");
    let e = fails(
        home.path(),
        &["keys", "list"],
        &[("LLMOS_MASTER_PASSPHRASE", "a passphrase long enougH")],
    );
    assert!(e.contains("does not open the data store"), "{e}");
    let e = fails(
        home.path(),
        &["keys", "list"],
        &[("LLMOS_MASTER_PASSPHRASE", "short")],
    );
    assert!(e.contains("at least 12"), "{e}");
    let both = [pass[0], ("LLMOS_MASTER_KEY", &"22".repeat(32))];
    let e = fails(home.path(), &["keys", "list"], &both);
    assert!(e.contains("set only one master key source"), "{e}");
}

#[test]
fn rotate_master_keeps_everything_readable_and_the_old_key_fails() {
    let home = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    create_key(home.path(), &[]);
    create_key(home.path(), &[]);
    let ids = key_ids(home.path(), &[]);
    let e = fails(home.path(), &["store", "rotate-master"], &[]);
    assert!(e.contains("--new-key-file"), "{e}");
    // To a new key file (created, 0600).
    let file = outside.path().join("new.key");
    let f = file.to_str().unwrap();
    ok(
        home.path(),
        &["store", "rotate-master", "--new-key-file", f],
        &[],
    );
    let e = fails(home.path(), &["keys", "list"], &[]);
    assert!(e.contains("does not open the data store"), "{e}");
    let by_file = [("LLMOS_MASTER_KEY_FILE", f)];
    assert_eq!(key_ids(home.path(), &by_file), ids);
    // To a passphrase.
    let env = [by_file[0], ("NEW_PASS", "the new passphrase here")];
    ok(
        home.path(),
        &["store", "rotate-master", "--new-passphrase-env", "NEW_PASS"],
        &env,
    );
    assert!(fails(home.path(), &["keys", "list"], &by_file).contains("does not open"));
    let by_pass = [("LLMOS_MASTER_PASSPHRASE", "the new passphrase here")];
    assert_eq!(key_ids(home.path(), &by_pass), ids);
    // To a hex key.
    let hex = "5a".repeat(32);
    ok(
        home.path(),
        &["store", "rotate-master"],
        &[by_pass[0], ("LLMOS_NEW_MASTER_KEY", &hex)],
    );
    let e = fails(home.path(), &["keys", "list"], &by_pass);
    assert!(e.contains("master key is not a passphrase"), "{e}");
    let by_hex = [("LLMOS_MASTER_KEY", hex.as_str())];
    assert_eq!(key_ids(home.path(), &by_hex), ids);
    let report = ok(home.path(), &["store", "check"], &by_hex);
    assert_eq!(report["errors"], Value::Array(vec![]), "{report}");
    // The rotations are in the audit log.
    let audit = raw_entries(home.path())
        .iter()
        .filter(|e| e.0 == "audit")
        .count();
    assert!(audit >= 5, "{audit} audit records");
}

fn open_store(home: &Path) -> Store {
    let file = home.join("master.key");
    if !file.exists() {
        create_key_file(&file).unwrap();
    }
    Store::open_source(&home.join("store"), MasterSource::File(file)).unwrap()
}

#[test]
fn rekey_reseals_a_collection_and_an_interrupted_rekey_finishes_on_rerun() {
    let home = tempfile::tempdir().unwrap();
    let keys: Vec<Vec<u8>> = (0..1200)
        .map(|i| format!("books\0doc:{i}").into_bytes())
        .collect();
    {
        let s = open_store(home.path());
        s.put(Tree::Collections, b"books", b"{}").unwrap();
        let writes: Vec<(Tree, &[u8], &[u8])> = keys
            .iter()
            .map(|k| (Tree::Chunks, k.as_slice(), k.as_slice()))
            .collect();
        s.put_many(&writes).unwrap();
    }
    let first = ok(
        home.path(),
        &["store", "rekey", "books", "--max-batches", "1"],
        &[],
    );
    assert_eq!(
        (first["done"].as_bool(), first["generation"].as_u64()),
        (Some(false), Some(2)),
        "{first}"
    );
    // Half done: everything opens (values under both generations).
    let report = ok(home.path(), &["store", "check"], &[]);
    assert_eq!(report["errors"], Value::Array(vec![]), "{report}");
    assert_eq!(report["entries"]["chunks"], 1200);
    let second = ok(home.path(), &["store", "rekey", "books"], &[]);
    assert_eq!(second["done"], true, "{second}");
    assert_eq!(second["resumed"], true, "{second}");
    let total = first["resealed"].as_u64().unwrap() + second["resealed"].as_u64().unwrap();
    assert_eq!(total, 1201, "each value re-sealed once");
    let s = open_store(home.path());
    let values = s.values(Tree::Chunks, b"books\0").unwrap();
    assert_eq!(values.len(), 1200);
    assert!(values.iter().all(|(k, v)| k == v));
    drop(s);
    let e = fails(home.path(), &["store", "rekey", "nope"], &[]);
    assert!(e.contains("no collection named \"nope\""), "{e}");
}

#[test]
fn store_commands_refuse_to_run_beside_another_process() {
    let home = tempfile::tempdir().unwrap();
    let held = open_store(home.path());
    let e = fails(home.path(), &["store", "check"], &[]);
    assert!(e.contains("in use by another llmos process"), "{e}");
    drop(held);
    ok(home.path(), &["store", "check"], &[]);
}

#[test]
fn a_store_of_the_previous_format_is_migrated_on_open() {
    let home = tempfile::tempdir().unwrap();
    let key = create_key_file(&home.path().join("master.key")).unwrap();
    // What the store wrote before format 2: clear keys, values sealed with the master key
    // and bound to `tree \0 key`, no metadata.
    let old: [(&str, &[u8], &[u8]); 3] = [
        (
            "plugin-kv",
            b"plug\0old-kv-key-marker",
            b"old kv value marker",
        ),
        (
            "plugin-secrets",
            b"plug\0old-secret-marker",
            b"old secret value",
        ),
        ("component-cache", b"plug.cwasm", b"0123abcd"),
    ];
    {
        let b = SledBackend::open(&home.path().join("store")).unwrap();
        let sealer = Sealer::from_key(key);
        for (t, k, v) in old {
            let aad = [t.as_bytes(), b"\0", k].concat();
            b.insert(t, k, &sealer.seal(v, &aad)).unwrap();
        }
        b.flush().unwrap();
    }
    let e = fails(
        home.path(),
        &["store", "check"],
        &[("LLMOS_MASTER_KEY", &"33".repeat(32))],
    );
    assert!(e.contains("first value of tree"), "{e}");
    let report = ok(home.path(), &["store", "check"], &[]);
    assert_eq!(report["entries"]["plugin-kv"], 1, "{report}");
    assert_eq!(report["errors"], Value::Array(vec![]), "{report}");
    let s = open_store(home.path());
    let trees = [Tree::PluginKv, Tree::PluginSecrets, Tree::ComponentCache];
    for ((_, k, v), t) in old.iter().zip(trees) {
        assert_eq!(s.get(t, k).unwrap().unwrap(), *v);
    }
    assert_eq!(
        s.keys(Tree::PluginKv, b"plug\0", 10).unwrap(),
        [b"plug\0old-kv-key-marker".to_vec()]
    );
    drop(s);
    for (t, k, _) in raw_entries(home.path()) {
        if t == "plugin-kv" || t == "plugin-secrets" {
            assert_eq!(k.len(), 32, "{t}: keys are keyed hashes now");
        }
    }
    for m in ["old-kv-key-marker", "old-secret-marker"] {
        assert_eq!(
            holding(home.path(), m),
            Vec::<PathBuf>::new(),
            "{m} is still in the data folder"
        );
    }
}

//! The storage interface (`host/src/data/backend.rs`) holds the same promises on both of its
//! implementations: one test body, run on the embedded sled backend and on PostgreSQL (a
//! throwaway server: tests/all/support_pg.rs). And the shared store never sees plaintext.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use llmos::data::backend::{Backend, Op, Scan, SledBackend, TxError};
use llmos::data::postgres::PgBackend;
use llmos::data::{Store, Tree};

use crate::support_pg;

fn keys(s: Scan<'_>) -> Vec<Vec<u8>> {
    s.map(|e| e.unwrap().0).collect()
}

fn op(tree: &'static str, key: &[u8], value: Option<&[u8]>) -> Op {
    Op {
        tree,
        key: key.to_vec(),
        value: value.map(<[u8]>::to_vec),
    }
}

/// Everything the store relies on, checked on `b` (a fresh, empty backend).
fn conformance(b: Arc<dyn Backend>) {
    // Ordering: bytewise, across prefixes, with 0x00 and 0xff bytes.
    for k in [&b"b"[..], b"a\0y", b"a\0x", b"c", b"a\xff", b"a"] {
        assert_eq!(b.insert("t", k, b"v").unwrap(), None);
    }
    assert_eq!(
        b.insert("t", b"c", b"w").unwrap().unwrap(),
        b"v",
        "insert returns the old value"
    );
    assert_eq!(
        keys(b.scan_prefix("t", b"a\0").unwrap()),
        [b"a\0x".to_vec(), b"a\0y".to_vec()]
    );
    assert_eq!(
        keys(b.scan_prefix("t", b"a").unwrap()),
        [
            b"a".to_vec(),
            b"a\0x".to_vec(),
            b"a\0y".to_vec(),
            b"a\xff".to_vec()
        ]
    );
    assert_eq!(
        keys(b.range("t", Some(b"a\0y")).unwrap()),
        [b"a\xff".to_vec(), b"b".to_vec(), b"c".to_vec()]
    );
    assert_eq!(keys(b.range("t", None).unwrap()).len(), 6);
    assert!(
        keys(b.scan_prefix("other", b"").unwrap()).is_empty(),
        "trees are separate"
    );
    assert_eq!(b.len("t").unwrap(), 6);
    // A scan longer than one page (PostgreSQL pages by 512) sees every entry once, in order.
    let many: Vec<Op> = (0u32..1300)
        .map(|i| op("big", &i.to_be_bytes(), Some(b"x")))
        .collect();
    b.batch(&many).unwrap();
    let got = keys(b.range("big", None).unwrap());
    assert_eq!(got.len(), 1300);
    assert!(got.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(
        keys(b.range("big", Some(&1000u32.to_be_bytes())).unwrap()).len(),
        299
    );
    assert_eq!(b.len("big").unwrap(), 1300);
    // pop_min: smallest first, then gone.
    assert_eq!(
        b.pop_min("t").unwrap().unwrap(),
        (b"a".to_vec(), b"v".to_vec())
    );
    assert_eq!(b.pop_min("t").unwrap().unwrap().0, b"a\0x");
    assert_eq!(b.pop_min("empty").unwrap(), None);
    assert_eq!(b.remove("t", b"b").unwrap().unwrap(), b"v");
    assert_eq!(b.remove("t", b"b").unwrap(), None);
    assert_eq!(b.get("t", b"b").unwrap(), None);
    // Batches span trees, apply in order (remove then re-insert), all or nothing.
    b.insert("u", b"gone", b"1").unwrap();
    b.batch(&[
        op("t", b"k", Some(b"v")),
        op("u", b"gone", None),
        op("u", b"again", None),
        op("u", b"again", Some(b"2")),
    ])
    .unwrap();
    assert_eq!(b.get("t", b"k").unwrap().unwrap(), b"v");
    assert_eq!(b.get("u", b"gone").unwrap(), None);
    assert_eq!(b.get("u", b"again").unwrap().unwrap(), b"2");
    // The last op on a key wins: a put then a delete, two puts (PostgreSQL sends a batch as
    // multi-row statements, which must not hold a key twice).
    b.batch(&[
        op("w", b"p", Some(b"1")),
        op("w", b"p", None),
        op("w", b"q", Some(b"1")),
        op("w", b"q", Some(b"2")),
    ])
    .unwrap();
    assert_eq!(b.get("w", b"p").unwrap(), None);
    assert_eq!(b.get("w", b"q").unwrap().unwrap(), b"2");
    // Transactions: an abort writes nothing; reads see the body's own writes.
    let committed = b
        .transaction(&["t", "u"], &|tx| {
            tx.insert("u", b"x", b"1")?;
            assert_eq!(tx.get("u", b"x")?.unwrap(), b"1");
            assert_eq!(tx.remove("t", b"k")?.unwrap(), b"v");
            Err(TxError::Abort)
        })
        .unwrap();
    assert!(!committed);
    assert_eq!(b.get("u", b"x").unwrap(), None);
    assert_eq!(b.get("t", b"k").unwrap().unwrap(), b"v");
    assert!(
        b.transaction(&["t"], &|tx| tx.insert("t", b"y", b"2"))
            .unwrap()
    );
    assert_eq!(b.get("t", b"y").unwrap().unwrap(), b"2");
    // Conflicts are retried: 4 threads x 25 read-modify-write increments of one counter lose
    // none (the body runs again when another writer got in the way).
    b.insert("n", b"c", &0u64.to_be_bytes()).unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    std::thread::scope(|s| {
        for _ in 0..4 {
            let (b, runs) = (b.clone(), runs.clone());
            s.spawn(move || {
                for _ in 0..25 {
                    assert!(
                        b.transaction(&["n"], &|tx| {
                            runs.fetch_add(1, Ordering::Relaxed);
                            let v = tx.get("n", b"c")?.unwrap();
                            let n = u64::from_be_bytes(v.try_into().unwrap());
                            tx.insert("n", b"c", &(n + 1).to_be_bytes())
                        })
                        .unwrap()
                    );
                }
            });
        }
    });
    let n = u64::from_be_bytes(b.get("n", b"c").unwrap().unwrap().try_into().unwrap());
    assert_eq!(
        n,
        100,
        "every increment counted ({} runs of the body)",
        runs.load(Ordering::Relaxed)
    );
    // Ids: strictly increasing, also across threads.
    let mut ids: Vec<u64> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                s.spawn(move || {
                    (0..50)
                        .map(|_| b.generate_id().unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let before = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), before, "ids are unique");
    let last = *ids.last().unwrap();
    assert!(b.generate_id().unwrap() > last);
    b.flush().unwrap();
}

/// Mean time of a durable `put` and of a `get` of a 200-byte value (500 each).
fn timings(s: &Store) -> String {
    let value = [7u8; 200];
    let t = std::time::Instant::now();
    for i in 0..500u32 {
        s.put(Tree::Jobs, format!("bench-{i}").as_bytes(), &value)
            .unwrap();
    }
    let put = t.elapsed() / 500;
    let t = std::time::Instant::now();
    for i in 0..500u32 {
        assert!(
            s.get(Tree::Jobs, format!("bench-{i}").as_bytes())
                .unwrap()
                .is_some()
        );
    }
    format!("put {put:?}, get {:?} (mean of 500)", t.elapsed() / 500)
}

#[test]
fn data_backends_sled_keeps_the_interface_promises() {
    let dir = tempfile::tempdir().unwrap();
    conformance(Arc::new(SledBackend::open(&dir.path().join("db")).unwrap()));
    let s = Store::open(
        &dir.path().join("store"),
        llmos::security::seal::Sealer::from_key([5; 32]),
    )
    .unwrap();
    eprintln!("sled: {}", timings(&s));
}

#[test]
fn data_backends_postgres_keeps_the_interface_promises() {
    let Some(url) = support_pg::database("conformance") else {
        return;
    };
    let b = PgBackend::open(&url).unwrap();
    conformance(Arc::new(b));
    // A second open (a replica starting later) applies no migration twice and sees the data;
    // ids stay above those handed out before.
    let again = PgBackend::open(&url).unwrap();
    assert_eq!(again.get("t", b"y").unwrap().unwrap(), b"2");
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let versions: i64 = c
        .query_one("SELECT count(*) FROM llmos_schema", &[])
        .unwrap()
        .get(0);
    assert_eq!(versions, 2, "migrations 1 and 2, each once");
    // A bad URL is an error naming the server, never the password.
    let e = PgBackend::open("postgres://llmos:hunter2@127.0.0.1:1/nowhere")
        .unwrap_err()
        .to_string();
    assert!(e.contains("127.0.0.1:1") && !e.contains("hunter2"), "{e}");
}

#[test]
fn data_backends_postgres_sees_only_sealed_values() {
    let Some(url) = support_pg::database("sealed") else {
        return;
    };
    let master = llmos::security::seal::Sealer::from_key([5; 32]);
    let s = Store::open_url_with_key(&url, master).unwrap();
    // Notifications are seen by every client of the database: they name trees and keyed
    // hashes, never a clear key.
    let mut listener = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    listener.batch_execute("LISTEN llmos_changes").unwrap();
    let secret = "correct-horse-battery-staple-4711";
    s.put(
        Tree::PluginSecrets,
        format!("webhook\0{secret}-name").as_bytes(),
        secret.as_bytes(),
    )
    .unwrap();
    s.put(Tree::PluginKv, b"notes\0k", secret.as_bytes())
        .unwrap();
    s.put(
        Tree::ApiKeys,
        b"abc123",
        format!("{{\"name\":\"{secret}\"}}").as_bytes(),
    )
    .unwrap();
    s.put(
        Tree::Chunks,
        format!("{secret}-coll\0c1").as_bytes(),
        secret.as_bytes(),
    )
    .unwrap();
    s.append(Tree::Audit, secret.as_bytes()).unwrap();
    assert_eq!(
        s.get(Tree::PluginKv, b"notes\0k").unwrap().unwrap(),
        secret.as_bytes()
    );
    let notes: Vec<String> = {
        use postgres::fallible_iterator::FallibleIterator;
        let mut n = listener.notifications();
        n.timeout_iter(std::time::Duration::from_millis(200))
            .map(|m| Ok(m.payload().to_string()))
            .collect()
            .unwrap()
    };
    assert!(
        notes.iter().all(|n| !n.contains("horse-battery")),
        "{notes:?}"
    );
    let chunk = notes
        .iter()
        .find_map(|n| n.strip_prefix("chunks P "))
        .unwrap();
    assert!(
        chunk.len() == 64 && chunk.bytes().all(|b| b.is_ascii_hexdigit()),
        "{notes:?}"
    );
    // Every byte of the table, keys and values, as PostgreSQL holds them.
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let rows = c
        .query("SELECT tree, key, value FROM llmos_kv", &[])
        .unwrap();
    assert!(rows.len() >= 5);
    let needle = b"horse-battery";
    for r in &rows {
        let (tree, key, value): (String, Vec<u8>, Vec<u8>) = (r.get(0), r.get(1), r.get(2));
        for part in [&key, &value] {
            assert!(
                !part.windows(needle.len()).any(|w| w == needle),
                "plaintext in {tree}"
            );
        }
    }
    // Measured (BENCHMARKS.md): a durable sealed put and a get, PostgreSQL here.
    eprintln!("PostgreSQL: {}", timings(&s));
    // A second handle with the same master key (another replica) reads it; a wrong key is
    // refused with nothing written.
    let other =
        Store::open_url_with_key(&url, llmos::security::seal::Sealer::from_key([5; 32])).unwrap();
    assert_eq!(
        other.get(Tree::PluginKv, b"notes\0k").unwrap().unwrap(),
        secret.as_bytes()
    );
    let wrong = Store::open_url_with_key(&url, llmos::security::seal::Sealer::from_key([6; 32]))
        .unwrap_err();
    assert!(wrong.to_string().contains("does not open"), "{wrong}");
}

#[test]
fn data_backends_a_bad_store_url_is_refused_naming_what_is_accepted() {
    let home = crate::support::Home::new();
    let out = home
        .cmd(&["keys", "list"])
        .env("LLMOS_STORE_URL", "mysql://me:hunter2@db/llmos")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("postgres://user:password@host:port/database"),
        "{err}"
    );
    assert!(
        !err.contains("hunter2"),
        "the password is never printed: {err}"
    );
    // A PostgreSQL that is not there: the error names the server (not the password).
    let out = home
        .cmd(&["keys", "list"])
        .env("LLMOS_STORE_URL", "postgres://me:hunter2@127.0.0.1:1/llmos")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("postgres://me:***@127.0.0.1:1/llmos") && !err.contains("hunter2"),
        "{err}"
    );
}

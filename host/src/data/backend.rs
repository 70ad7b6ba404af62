//! The storage interface under [`crate::data::Store`]: named trees of raw bytes.
//!
//! [`Backend`] is what the store needs from a database and nothing more: get, insert, remove,
//! ordered prefix and range scans, an atomic batch across trees, a read-modify-write
//! transaction across trees, flush, a monotonic id, a tree's length and popping its first
//! entry. It knows nothing about sealing, keys or collections: everything it holds is opaque
//! bytes, already sealed by the store.
//!
//! The trait is **object safe** (the store holds an `Arc<dyn Backend>`): scans return boxed
//! iterators, and a transaction's body is a `&dyn Fn(&dyn Tx)`, so a second backend is one more
//! `impl Backend` and nothing above changes. What an implementation must guarantee:
//! - keys of a tree are ordered bytewise (scans and ranges return them in that order);
//! - [`Backend::batch`] applies all of its operations or none, across trees;
//! - [`Backend::transaction`] runs its body against a consistent view of the named trees and
//!   commits its writes atomically; the body may run more than once (on conflict), so it must
//!   not have side effects outside the [`Tx`];
//! - after [`Backend::flush`] returns, every write made before it survives a crash.
//!
//! [`SledBackend`] is the embedded implementation (sled 0.34: one database folder, trees are
//! sled trees, batches and transactions are sled multi-tree transactions). A PostgreSQL
//! implementation (the scale-out issue) maps a tree to a table `(key bytea primary key, value
//! bytea)`, batches and transactions to SQL transactions (`SELECT … FOR UPDATE`), scans to
//! `ORDER BY key` pages, `generate_id` to a sequence and `flush` to a no-op (a commit is
//! durable).

use std::path::{Path, PathBuf};

/// A key and its value, raw.
pub type RawEntry = (Vec<u8>, Vec<u8>);

/// A callback told which tree changed (`"*"`: any may have): see [`Backend::on_change`].
pub type ChangeFn = Box<dyn Fn(&str) + Send + Sync>;

/// A change another replica committed to one key of a collection tree (on PostgreSQL:
/// migration 2's notifications). `key` is the stored key for `chunks` (namespace hash and
/// key hash, 32 bytes) and the collection's namespace hash for `collections` (16 bytes).
#[derive(Debug, Clone, Copy)]
pub struct KeyChange<'a> {
    /// The tree.
    pub tree: &'a str,
    /// The stored key, or the namespace hash (see above).
    pub key: &'a [u8],
    /// Whether the row was removed (otherwise written).
    pub removed: bool,
}

/// A callback told which key another replica changed: see [`Backend::on_key_change`].
pub type KeyChangeFn = Box<dyn Fn(&KeyChange<'_>) + Send + Sync>;

/// An ordered scan of raw entries.
pub type Scan<'a> = Box<dyn Iterator<Item = Result<RawEntry, BackendError>> + 'a>;

/// Errors of a backend.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The database is held by another process (sled locks its folder).
    #[error(
        "the data store at {path} is in use by another llmos process (a running `llmos serve`?); \
         stop it first, or make the change through the HTTP admin API while it runs"
    )]
    Locked {
        /// The database folder.
        path: PathBuf,
    },
    /// The database failed (I/O, corruption).
    #[error("data store at {path}: {message}")]
    Io {
        /// The database folder.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// One write of a [`Backend::batch`]: `Some(value)` inserts, `None` removes.
#[derive(Debug, Clone)]
pub struct Op {
    /// The tree.
    pub tree: &'static str,
    /// The key.
    pub key: Vec<u8>,
    /// The new value, or `None` to remove the key.
    pub value: Option<Vec<u8>>,
}

/// Why a transaction body stopped.
#[derive(Debug)]
pub enum TxError {
    /// The body decided not to commit (nothing is written).
    Abort,
    /// Another writer got in the way: the backend runs the body again (never seen by callers
    /// of [`Backend::transaction`]).
    Conflict,
    /// The backend failed.
    Backend(BackendError),
}

/// The view of a transaction: reads see its own writes; nothing is visible to others until it
/// commits.
pub trait Tx {
    /// Reads `key` of `tree` (one of the trees the transaction was opened on).
    fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, TxError>;
    /// Writes `key` of `tree`.
    fn insert(&self, tree: &str, key: &[u8], value: &[u8]) -> Result<(), TxError>;
    /// Removes `key` of `tree`; returns the value it had.
    fn remove(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, TxError>;
}

/// Named trees of raw bytes (see the module documentation for the guarantees).
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Where the data lives, for messages.
    fn location(&self) -> &Path;
    /// Reads a value.
    fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError>;
    /// Writes a value; returns the previous one.
    fn insert(&self, tree: &str, key: &[u8], value: &[u8])
    -> Result<Option<Vec<u8>>, BackendError>;
    /// Removes a value; returns it.
    fn remove(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError>;
    /// Entries whose key starts with `prefix`, in key order.
    fn scan_prefix<'a>(&'a self, tree: &str, prefix: &[u8]) -> Result<Scan<'a>, BackendError>;
    /// Entries whose key sorts after `after` (from the first when `None`), in key order.
    fn range<'a>(&'a self, tree: &str, after: Option<&[u8]>) -> Result<Scan<'a>, BackendError>;
    /// Applies every operation or none.
    fn batch(&self, ops: &[Op]) -> Result<(), BackendError>;
    /// Runs `body` as one transaction over `trees`; returns `false` when the body aborted
    /// (nothing written). The body may run more than once.
    fn transaction(
        &self,
        trees: &[&str],
        body: &dyn Fn(&dyn Tx) -> Result<(), TxError>,
    ) -> Result<bool, BackendError>;
    /// Makes every write made so far durable.
    fn flush(&self) -> Result<(), BackendError>;
    /// A new id, larger than every id returned before (also across restarts).
    fn generate_id(&self) -> Result<u64, BackendError>;
    /// How many entries a tree holds.
    fn len(&self, tree: &str) -> Result<usize, BackendError>;
    /// Removes and returns the entry with the smallest key.
    fn pop_min(&self, tree: &str) -> Result<Option<RawEntry>, BackendError>;
    /// Registers `f`, called with a tree's name when another process (another replica)
    /// may have changed it, so that caches above the store reload. The embedded backend
    /// has one process and never calls it.
    fn on_change(&self, f: ChangeFn) {
        drop(f);
    }
    /// Registers `f`, called for each key of the collection trees another process (another
    /// replica) changed, when the backend can say which (PostgreSQL); [`Backend::on_change`]
    /// callbacks are called for the same changes with the tree's name. The embedded backend
    /// never calls it.
    fn on_key_change(&self, f: KeyChangeFn) {
        drop(f);
    }
    /// Reads several values of one tree (in the order of `keys`; `None` for a key not
    /// stored). Backends with round trips answer in one.
    fn get_many(&self, tree: &str, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        keys.iter().map(|k| self.get(tree, k)).collect()
    }
    /// Whether other processes write the same data at the same time (replicas).
    fn shared(&self) -> bool {
        false
    }
}

/// The embedded backend: one sled database.
#[derive(Debug)]
pub struct SledBackend {
    db: sled::Db,
    path: PathBuf,
    /// Added to sled's ids: ids stay above those of the database this one was rewritten
    /// from ([`SledBackend::compact`]).
    id_offset: u64,
}

/// sled tree holding the id offset.
const IDS: &str = "__llmos_ids";
const ID_OFFSET: &[u8] = b"offset";

/// `<path>.<suffix>`, next to `path`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    path.with_file_name(name)
}

/// Opens the sled database in `path`. A store closed a moment ago (a dropped handle whose
/// flusher thread has not yet let go, an `llmos` command that just exited) holds its lock
/// briefly: this waits up to a second for it.
pub(crate) fn open_waiting(path: &Path) -> sled::Result<sled::Db> {
    let mut tries = 0u32;
    loop {
        match sled::Config::new().path(path).open() {
            Err(sled::Error::Io(e)) if tries < 40 && e.to_string().contains("could not acquire lock") => {
                tries = tries.saturating_add(1);
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            other => return other,
        }
    }
}

impl SledBackend {
    /// Opens (or creates) the database in `path`; another process holding it is
    /// [`BackendError::Locked`].
    pub fn open(path: &Path) -> Result<Self, BackendError> {
        match open_waiting(path) {
            Ok(db) => {
                let mut b = Self {
                    db,
                    path: path.into(),
                    id_offset: 0,
                };
                b.id_offset = b
                    .get(IDS, ID_OFFSET)?
                    .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
                    .map_or(0, u64::from_be_bytes);
                Ok(b)
            }
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                Err(BackendError::Locked { path: path.into() })
            }
            Err(e) => Err(BackendError::Io {
                path: path.into(),
                message: e.to_string(),
            }),
        }
    }

    /// Rewrites the database in `path` into a fresh one and puts it in its place, so that
    /// nothing removed or overwritten lingers in sled's log segments (after a migration that
    /// replaced clear keys); `drop` names entries left out of the copy. Ids stay monotonic.
    /// The swap is two renames; [`SledBackend::recover`] finishes or undoes an interrupted one.
    pub fn compact(path: &Path, drop: &[(&str, &[u8])]) -> Result<(), BackendError> {
        let (tmp, old) = (sibling(path, "compact"), sibling(path, "old"));
        let io = |e: std::io::Error| BackendError::Io {
            path: path.into(),
            message: format!("rewriting the database: {e}"),
        };
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io)?;
        }
        {
            let src = Self::open(path)?;
            let dst = Self::open(&tmp)?;
            for name in src.db.tree_names() {
                let name = String::from_utf8_lossy(&name).into_owned();
                let mut ops = Vec::new();
                for e in src.scan_prefix(&name, b"")? {
                    let (key, value) = e?;
                    if drop.iter().any(|(t, k)| *t == name && *k == key.as_slice()) {
                        continue;
                    }
                    ops.push((key, value));
                    if ops.len() >= 1024 {
                        dst.copy(&name, std::mem::take(&mut ops))?;
                    }
                }
                dst.copy(&name, ops)?;
            }
            let next = src.generate_id()?;
            dst.insert(IDS, ID_OFFSET, &next.to_be_bytes())?;
            dst.flush()?;
        }
        std::fs::rename(path, &old).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        if let Some(dir) = path.parent()
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        std::fs::remove_dir_all(&old).map_err(io)
    }

    /// Finishes or undoes a [`SledBackend::compact`] that a crash interrupted: the database
    /// is `path` when it exists, else the old one it was being copied from.
    pub fn recover(path: &Path) -> Result<(), BackendError> {
        let (tmp, old) = (sibling(path, "compact"), sibling(path, "old"));
        let io = |e: std::io::Error| BackendError::Io {
            path: path.into(),
            message: format!("recovering an interrupted rewrite: {e}"),
        };
        if !path.exists() && old.exists() {
            std::fs::rename(&old, path).map_err(io)?;
        }
        for leftover in [old, tmp] {
            if leftover.exists() {
                std::fs::remove_dir_all(&leftover).map_err(io)?;
            }
        }
        Ok(())
    }

    fn copy(&self, tree: &str, entries: Vec<RawEntry>) -> Result<(), BackendError> {
        let t = self.tree(tree)?;
        let mut batch = sled::Batch::default();
        for (k, v) in entries {
            batch.insert(k, v);
        }
        t.apply_batch(batch).map_err(|e| self.err(e))
    }

    fn err(&self, e: impl std::fmt::Display) -> BackendError {
        BackendError::Io {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    fn tree(&self, name: &str) -> Result<sled::Tree, BackendError> {
        self.db.open_tree(name).map_err(|e| self.err(e))
    }

    fn scan(&self, it: sled::Iter) -> Scan<'_> {
        Box::new(it.map(move |kv| {
            kv.map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(|e| self.err(e))
        }))
    }

    /// Runs `body` in a sled transaction over `names`.
    fn run(
        &self,
        names: &[&str],
        body: &dyn Fn(&SledTx<'_>) -> Result<(), TxError>,
    ) -> Result<bool, BackendError> {
        use sled::Transactional;
        use sled::transaction::{ConflictableTransactionError as Cte, TransactionError};
        let trees = names
            .iter()
            .map(|n| self.tree(n))
            .collect::<Result<Vec<_>, _>>()?;
        let r = trees.as_slice().transaction(|txs| {
            let view = SledTx { names, txs };
            body(&view).map_err(|e| match e {
                TxError::Conflict => Cte::Conflict,
                other => Cte::Abort(other),
            })
        });
        match r {
            Ok(()) => Ok(true),
            Err(TransactionError::Abort(TxError::Abort)) => Ok(false),
            Err(TransactionError::Abort(TxError::Backend(e))) => Err(e),
            Err(TransactionError::Abort(TxError::Conflict)) => {
                Err(self.err("transaction conflict"))
            }
            Err(TransactionError::Storage(e)) => Err(self.err(e)),
        }
    }
}

/// A sled transaction seen through [`Tx`].
struct SledTx<'a> {
    names: &'a [&'a str],
    txs: &'a [sled::transaction::TransactionalTree],
}

impl SledTx<'_> {
    fn tx(&self, tree: &str) -> Result<&sled::transaction::TransactionalTree, TxError> {
        self.names
            .iter()
            .position(|n| *n == tree)
            .and_then(|i| self.txs.get(i))
            .ok_or_else(|| {
                TxError::Backend(BackendError::Io {
                    path: PathBuf::new(),
                    message: format!("tree {tree} is not part of this transaction"),
                })
            })
    }
}

fn unabortable(e: sled::transaction::UnabortableTransactionError) -> TxError {
    match e {
        sled::transaction::UnabortableTransactionError::Conflict => TxError::Conflict,
        sled::transaction::UnabortableTransactionError::Storage(e) => {
            TxError::Backend(BackendError::Io {
                path: PathBuf::new(),
                message: e.to_string(),
            })
        }
    }
}

impl Tx for SledTx<'_> {
    fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, TxError> {
        let v = self.tx(tree)?.get(key).map_err(unabortable)?;
        Ok(v.map(|v| v.to_vec()))
    }

    fn insert(&self, tree: &str, key: &[u8], value: &[u8]) -> Result<(), TxError> {
        self.tx(tree)?.insert(key, value).map_err(unabortable)?;
        Ok(())
    }

    fn remove(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, TxError> {
        let v = self.tx(tree)?.remove(key).map_err(unabortable)?;
        Ok(v.map(|v| v.to_vec()))
    }
}

impl Backend for SledBackend {
    fn location(&self) -> &Path {
        &self.path
    }

    fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        let v = self.tree(tree)?.get(key).map_err(|e| self.err(e))?;
        Ok(v.map(|v| v.to_vec()))
    }

    fn insert(
        &self,
        tree: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<Option<Vec<u8>>, BackendError> {
        let v = self.tree(tree)?.insert(key, value).map_err(|e| self.err(e))?;
        Ok(v.map(|v| v.to_vec()))
    }

    fn remove(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        let v = self.tree(tree)?.remove(key).map_err(|e| self.err(e))?;
        Ok(v.map(|v| v.to_vec()))
    }

    fn scan_prefix<'a>(&'a self, tree: &str, prefix: &[u8]) -> Result<Scan<'a>, BackendError> {
        Ok(self.scan(self.tree(tree)?.scan_prefix(prefix)))
    }

    fn range<'a>(&'a self, tree: &str, after: Option<&[u8]>) -> Result<Scan<'a>, BackendError> {
        use std::ops::Bound;
        let start = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.to_vec()));
        let it = self
            .tree(tree)?
            .range::<Vec<u8>, _>((start, Bound::Unbounded));
        Ok(self.scan(it))
    }

    fn batch(&self, ops: &[Op]) -> Result<(), BackendError> {
        let mut names: Vec<&str> = ops.iter().map(|o| o.tree).collect();
        names.sort_unstable();
        names.dedup();
        self.run(&names, &|tx| {
            for op in ops {
                match &op.value {
                    Some(v) => tx.insert(op.tree, &op.key, v)?,
                    None => {
                        tx.remove(op.tree, &op.key)?;
                    }
                }
            }
            Ok(())
        })
        .map(|_| ())
    }

    fn transaction(
        &self,
        trees: &[&str],
        body: &dyn Fn(&dyn Tx) -> Result<(), TxError>,
    ) -> Result<bool, BackendError> {
        self.run(trees, &|tx| body(tx))
    }

    fn flush(&self) -> Result<(), BackendError> {
        self.db.flush().map(|_| ()).map_err(|e| self.err(e))
    }

    fn generate_id(&self) -> Result<u64, BackendError> {
        let id = self.db.generate_id().map_err(|e| self.err(e))?;
        id.checked_add(self.id_offset)
            .ok_or_else(|| self.err("ids are exhausted"))
    }

    fn len(&self, tree: &str) -> Result<usize, BackendError> {
        Ok(self.tree(tree)?.len())
    }

    fn pop_min(&self, tree: &str) -> Result<Option<RawEntry>, BackendError> {
        let v = self.tree(tree)?.pop_min().map_err(|e| self.err(e))?;
        Ok(v.map(|(k, v)| (k.to_vec(), v.to_vec())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, SledBackend) {
        let dir = tempfile::tempdir().unwrap();
        let b = SledBackend::open(&dir.path().join("db")).unwrap();
        (dir, b)
    }

    #[test]
    fn ordered_scans_and_ranges() {
        let (_d, b) = open();
        for k in ["b", "a\0y", "a\0x", "c"] {
            b.insert("t", k.as_bytes(), b"v").unwrap();
        }
        let keys = |s: Scan<'_>| -> Vec<Vec<u8>> { s.map(|e| e.unwrap().0).collect() };
        assert_eq!(
            keys(b.scan_prefix("t", b"a\0").unwrap()),
            [b"a\0x".to_vec(), b"a\0y".to_vec()]
        );
        assert_eq!(
            keys(b.range("t", Some(b"a\0y")).unwrap()),
            [b"b".to_vec(), b"c".to_vec()]
        );
        assert_eq!(b.len("t").unwrap(), 4);
        assert_eq!(b.pop_min("t").unwrap().unwrap().0, b"a\0x");
        assert!(b.generate_id().unwrap() < b.generate_id().unwrap());
    }

    #[test]
    fn batches_span_trees_and_aborted_transactions_write_nothing() {
        let (_d, b) = open();
        b.insert("u", b"gone", b"1").unwrap();
        let op = |tree, key: &[u8], value: Option<&[u8]>| Op {
            tree,
            key: key.to_vec(),
            value: value.map(<[u8]>::to_vec),
        };
        b.batch(&[op("t", b"k", Some(b"v")), op("u", b"gone", None)])
            .unwrap();
        assert_eq!(b.get("t", b"k").unwrap().unwrap(), b"v");
        assert_eq!(b.get("u", b"gone").unwrap(), None);
        let committed = b
            .transaction(&["t", "u"], &|tx| {
                tx.insert("u", b"x", b"1")?;
                assert_eq!(tx.get("u", b"x")?.unwrap(), b"1");
                Err(TxError::Abort)
            })
            .unwrap();
        assert!(!committed);
        assert_eq!(b.get("u", b"x").unwrap(), None);
        assert!(
            b.transaction(&["t"], &|tx| tx.insert("t", b"y", b"2"))
                .unwrap()
        );
        assert_eq!(b.get("t", b"y").unwrap().unwrap(), b"2");
    }

    #[test]
    fn compaction_keeps_entries_and_ids_and_an_interrupted_swap_is_recovered() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("db");
        let last = {
            let b = SledBackend::open(&path).unwrap();
            b.insert("t", b"keep", b"1").unwrap();
            b.insert("t", b"gone-marker", b"2").unwrap();
            b.remove("t", b"gone-marker").unwrap();
            b.insert("t", b"drop", b"3").unwrap();
            b.flush().unwrap();
            b.generate_id().unwrap()
        };
        SledBackend::compact(&path, &[("t", b"drop")]).unwrap();
        let b = SledBackend::open(&path).unwrap();
        assert_eq!(b.get("t", b"keep").unwrap().unwrap(), b"1");
        assert_eq!(b.get("t", b"drop").unwrap(), None);
        assert!(b.generate_id().unwrap() > last);
        drop(b);
        fn holds(dir: &Path, needle: &[u8]) -> bool {
            std::fs::read_dir(dir).unwrap().any(|f| {
                let p = f.unwrap().path();
                if p.is_dir() {
                    holds(&p, needle)
                } else {
                    std::fs::read(&p).unwrap().windows(needle.len()).any(|w| w == needle)
                }
            })
        }
        assert!(!holds(&path, b"gone-marker"));
        assert!(holds(&path, b"keep"), "the scan sees clear keys");
        // Interrupted between the two renames: the old database comes back.
        std::fs::rename(&path, sibling(&path, "old")).unwrap();
        std::fs::create_dir(sibling(&path, "compact")).unwrap();
        SledBackend::recover(&path).unwrap();
        assert!(!sibling(&path, "old").exists() && !sibling(&path, "compact").exists());
        let b = SledBackend::open(&path).unwrap();
        assert_eq!(b.get("t", b"keep").unwrap().unwrap(), b"1");
    }

    #[test]
    fn a_second_opener_is_told_the_store_is_in_use() {
        let (d, _b) = open();
        let second = SledBackend::open(&d.path().join("db")).unwrap_err();
        assert!(matches!(second, BackendError::Locked { .. }), "{second}");
        assert!(second.to_string().contains("in use by another llmos process"));
    }
}

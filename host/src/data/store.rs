//! The sled store: one database under the data location, namespaced trees, sealed values.
//!
//! Every value is sealed with ChaCha20-Poly1305 ([`crate::security::seal`]) and bound to its
//! tree and key (associated data), so a value copied to another key or tree fails to open.
//! Keys are stored in clear (they are needed for ordered prefix scans); callers must not put
//! secrets in keys.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::security::seal::{SealError, Sealer};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed (I/O, corruption, or the database is locked by another process).
    #[error("data store at {path}: {source}")]
    Db {
        /// The database folder.
        path: PathBuf,
        /// sled's error.
        source: sled::Error,
    },
    /// A value could not be sealed or opened (wrong master key, or tampering).
    #[error("data store value {tree}/{key}: {source}")]
    Seal {
        /// The tree.
        tree: &'static str,
        /// The key, lossily decoded.
        key: String,
        /// What failed.
        source: SealError,
    },
    /// A value was not the expected JSON document.
    #[error("data store value {tree}/{key} is not valid: {message}")]
    Decode {
        /// The tree.
        tree: &'static str,
        /// The key, lossily decoded.
        key: String,
        /// The decoder's message.
        message: String,
    },
}

/// The namespaces of the store. Each is its own sled tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tree {
    /// Installed plugins: name → record.
    Plugins,
    /// Plugin key-value data: `plugin \0 key` → value.
    PluginKv,
    /// Plugin secrets: `plugin \0 name` → value.
    PluginSecrets,
    /// Digests of precompiled artifacts llmos wrote: file name → sha256.
    ComponentCache,
    /// Audit records: big-endian sequence number → record.
    Audit,
    /// The audit log's own records: its head (newest seq and hash, MAC'd) and the checkpoints
    /// left by removed segments (`checkpoint \0 seq`). Clear keys.
    AuditMeta,
    /// API keys: id → record (hash of the secret, scopes, expiry).
    ApiKeys,
    /// Usage counters of metered trees: namespace (e.g. a plugin's name) → [`Usage`].
    Usage,
    /// Collections: name → collection record (settings, counts).
    Collections,
    /// Documents of a collection: `collection \0 document-id` → document record.
    Documents,
    /// Chunks of a collection: `collection \0 chunk-id` → chunk (text, metadata, embedding).
    Chunks,
    /// The pseudonymisation vault: `scope \0 …` → mapping between a token and the original.
    Vault,
    /// Background jobs (large ingests): job id → status and progress.
    Jobs,
}

impl Tree {
    /// The sled tree name (also the sealing context).
    pub fn name(self) -> &'static str {
        match self {
            Tree::Plugins => "plugins",
            Tree::PluginKv => "plugin-kv",
            Tree::PluginSecrets => "plugin-secrets",
            Tree::ComponentCache => "component-cache",
            Tree::Audit => "audit",
            Tree::AuditMeta => "audit-meta",
            Tree::ApiKeys => "api-keys",
            Tree::Usage => "usage",
            Tree::Collections => "collections",
            Tree::Documents => "documents",
            Tree::Chunks => "chunks",
            Tree::Vault => "vault",
            Tree::Jobs => "jobs",
        }
    }
}

/// A key and its opened value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// What a namespace of a metered tree holds: bytes stored (keys plus sealed values) and
/// entries. Kept in [`Tree::Usage`] and updated in the same transaction as the data, so
/// checking a quota never needs a scan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// Bytes stored: keys and sealed values.
    pub bytes: u64,
    /// Entries.
    pub keys: u64,
}

/// Bytes an entry takes in a metered tree.
fn entry_size(key: &[u8], stored: &[u8]) -> u64 {
    (key.len() as u64).saturating_add(stored.len() as u64)
}

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    sealer: Arc<Sealer>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (or creates) the database in `path` with values sealed by `sealer`.
    pub fn open(path: &Path, sealer: Sealer) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .open()
            .map_err(|source| StoreError::Db {
                path: path.into(),
                source,
            })?;
        Ok(Self {
            db,
            sealer: Arc::new(sealer),
            path: path.into(),
        })
    }

    /// Opens the store of a data location: `<home>/store`, sealed with the master key
    /// (see [`Sealer::for_home`]).
    pub fn open_home(home: &Path) -> Result<Self, StoreError> {
        let sealer = Sealer::for_home(home).map_err(|source| StoreError::Seal {
            tree: "master-key",
            key: String::new(),
            source,
        })?;
        Self::open(&home.join("store"), sealer)
    }

    /// Writes everything buffered to disk (called on shutdown).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(|e| self.db_err(e))
    }

    fn tree(&self, tree: Tree) -> Result<sled::Tree, StoreError> {
        self.db.open_tree(tree.name()).map_err(|e| self.db_err(e))
    }

    fn db_err(&self, source: sled::Error) -> StoreError {
        StoreError::Db {
            path: self.path.clone(),
            source,
        }
    }

    fn aad(tree: Tree, key: &[u8]) -> Vec<u8> {
        let mut aad =
            Vec::with_capacity(tree.name().len().saturating_add(1).saturating_add(key.len()));
        aad.extend_from_slice(tree.name().as_bytes());
        aad.push(0);
        aad.extend_from_slice(key);
        aad
    }

    /// Reads and opens a value.
    pub fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(sealed) = self.tree(tree)?.get(key).map_err(|e| self.db_err(e))? else {
            return Ok(None);
        };
        self.sealer
            .open(&sealed, &Self::aad(tree, key))
            .map(Some)
            .map_err(|source| StoreError::Seal {
                tree: tree.name(),
                key: String::from_utf8_lossy(key).into_owned(),
                source,
            })
    }

    /// Seals and writes a value, durably (flushed before returning).
    pub fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let sealed = self.sealer.seal(value, &Self::aad(tree, key));
        let t = self.tree(tree)?;
        t.insert(key, sealed).map_err(|e| self.db_err(e))?;
        t.flush().map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// Seals and writes many values in one atomic step (all or none), durably flushed once
    /// before returning. For bulk writes (ingest) that must not cost an fsync each.
    pub fn put_many(&self, writes: &[(Tree, &[u8], &[u8])]) -> Result<(), StoreError> {
        use sled::Transactional;
        use sled::transaction::TransactionError;
        let mut names: Vec<Tree> = writes.iter().map(|w| w.0).collect();
        names.sort_by_key(|t| t.name());
        names.dedup();
        let trees = names
            .iter()
            .map(|t| self.tree(*t))
            .collect::<Result<Vec<_>, _>>()?;
        let sealed: Vec<(usize, &[u8], Vec<u8>)> = writes
            .iter()
            .map(|(t, k, v)| {
                let i = names.iter().position(|n| n == t).unwrap_or_default();
                (i, *k, self.sealer.seal(v, &Self::aad(*t, k)))
            })
            .collect();
        let r = trees.as_slice().transaction(|txs| {
            for (i, k, v) in &sealed {
                if let Some(tx) = txs.get(*i) {
                    tx.insert(*k, v.as_slice())?;
                }
            }
            Ok(())
        });
        match r {
            Ok(()) => {}
            Err(TransactionError::Abort(())) => {}
            Err(TransactionError::Storage(e)) => return Err(self.db_err(e)),
        }
        self.db.flush().map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// A keyed fingerprint of `data` in `context` (HMAC-SHA-256 with a key derived from the
    /// master key): equal inputs give equal fingerprints, and nobody without the master key can
    /// test a guess. For content-hash de-duplication and lookups by value without storing it.
    pub fn fingerprint(&self, context: &str, data: &[u8]) -> [u8; 32] {
        self.sealer.fingerprint(context, data)
    }

    /// Removes a value; returns whether it existed.
    pub fn remove(&self, tree: Tree, key: &[u8]) -> Result<bool, StoreError> {
        let t = self.tree(tree)?;
        let existed = t.remove(key).map_err(|e| self.db_err(e))?.is_some();
        t.flush().map_err(|e| self.db_err(e))?;
        Ok(existed)
    }

    /// Keys with `prefix`, in order, at most `limit`.
    pub fn keys(
        &self,
        tree: Tree,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        self.tree(tree)?
            .scan_prefix(prefix)
            .keys()
            .take(limit)
            .map(|k| k.map(|k| k.to_vec()).map_err(|e| self.db_err(e)))
            .collect()
    }

    /// Removes every key with `prefix`; returns how many.
    pub fn remove_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<usize, StoreError> {
        let keys = self.keys(tree, prefix, usize::MAX)?;
        let t = self.tree(tree)?;
        for k in &keys {
            t.remove(k).map_err(|e| self.db_err(e))?;
        }
        t.flush().map_err(|e| self.db_err(e))?;
        Ok(keys.len())
    }

    /// The usage counter of `namespace` (see [`Usage`]); a namespace that has data from
    /// before counters existed is measured once (a scan) and its counter written.
    pub fn usage(&self, tree: Tree, namespace: &[u8]) -> Result<Usage, StoreError> {
        let key = Self::usage_key(tree, namespace);
        if let Some(u) = self.get_json::<Usage>(Tree::Usage, &key)? {
            return Ok(u);
        }
        let mut u = Usage::default();
        for item in self.tree(tree)?.scan_prefix(namespace) {
            let (k, v) = item.map_err(|e| self.db_err(e))?;
            u.bytes = u.bytes.saturating_add(entry_size(&k, &v));
            u.keys = u.keys.saturating_add(1);
        }
        if u.keys > 0 {
            self.put_json(Tree::Usage, &key, &u)?;
        }
        Ok(u)
    }

    fn usage_key(tree: Tree, namespace: &[u8]) -> Vec<u8> {
        let mut k = tree.name().as_bytes().to_vec();
        k.push(0);
        k.extend_from_slice(namespace);
        k
    }

    /// Writes `key` (which must start with `namespace`) and updates the namespace's usage
    /// in one transaction. `admit` sees the usage the write would leave and may refuse it
    /// (the write is then not made); durably flushed before returning.
    pub fn put_metered<E>(
        &self,
        tree: Tree,
        namespace: &[u8],
        key: &[u8],
        value: &[u8],
        admit: impl Fn(&Usage) -> Result<(), E>,
    ) -> Result<Result<Usage, E>, StoreError> {
        use sled::Transactional;
        use sled::transaction::{ConflictableTransactionError as Abort, TransactionError};
        debug_assert!(key.starts_with(namespace));
        self.usage(tree, namespace)?; // make sure the counter exists
        let sealed = self.sealer.seal(value, &Self::aad(tree, key));
        let ukey = Self::usage_key(tree, namespace);
        let uaad = Self::aad(Tree::Usage, &ukey);
        let (data, usage) = (self.tree(tree)?, self.tree(Tree::Usage)?);
        let r = (&data, &usage).transaction(|(d, u)| {
            let mut now = self.open_usage(u.get(&ukey)?, &uaad);
            if let Some(old) = d.get(key)? {
                now.bytes = now.bytes.saturating_sub(entry_size(key, &old));
                now.keys = now.keys.saturating_sub(1);
            }
            now.bytes = now.bytes.saturating_add(entry_size(key, &sealed));
            now.keys = now.keys.saturating_add(1);
            if let Err(e) = admit(&now) {
                return Err(Abort::Abort(e));
            }
            d.insert(key, sealed.as_slice())?;
            let bytes = serde_json::to_vec(&now).unwrap_or_default();
            u.insert(ukey.as_slice(), self.sealer.seal(&bytes, &uaad))?;
            Ok(now)
        });
        let now = match r {
            Ok(now) => now,
            Err(TransactionError::Abort(e)) => return Ok(Err(e)),
            Err(TransactionError::Storage(e)) => return Err(self.db_err(e)),
        };
        self.db.flush().map_err(|e| self.db_err(e))?;
        Ok(Ok(now))
    }

    /// A namespace's usage counter as stored inside a transaction (absent: zero).
    fn open_usage(&self, sealed: Option<sled::IVec>, aad: &[u8]) -> Usage {
        sealed
            .and_then(|s| self.sealer.open(&s, aad).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Removes `key` (which must start with `namespace`) and updates the namespace's usage
    /// in one transaction; returns whether it existed.
    pub fn remove_metered(
        &self,
        tree: Tree,
        namespace: &[u8],
        key: &[u8],
    ) -> Result<bool, StoreError> {
        use sled::Transactional;
        use sled::transaction::TransactionError;
        self.usage(tree, namespace)?;
        let ukey = Self::usage_key(tree, namespace);
        let uaad = Self::aad(Tree::Usage, &ukey);
        let (data, usage) = (self.tree(tree)?, self.tree(Tree::Usage)?);
        let r = (&data, &usage).transaction(|(d, u)| {
            let Some(old) = d.remove(key)? else {
                return Ok(false);
            };
            let mut now = self.open_usage(u.get(&ukey)?, &uaad);
            now.bytes = now.bytes.saturating_sub(entry_size(key, &old));
            now.keys = now.keys.saturating_sub(1);
            let bytes = serde_json::to_vec(&now).unwrap_or_default();
            u.insert(ukey.as_slice(), self.sealer.seal(&bytes, &uaad))?;
            Ok(true)
        });
        let existed = match r {
            Ok(e) => e,
            Err(TransactionError::Abort(())) => false,
            Err(TransactionError::Storage(e)) => return Err(self.db_err(e)),
        };
        self.db.flush().map_err(|e| self.db_err(e))?;
        Ok(existed)
    }

    /// Removes every entry of a namespace of a metered tree, and its usage counter.
    pub fn clear_metered(&self, tree: Tree, namespace: &[u8]) -> Result<usize, StoreError> {
        let n = self.remove_prefix(tree, namespace)?;
        self.remove(Tree::Usage, &Self::usage_key(tree, namespace))?;
        Ok(n)
    }

    /// Appends a value under the next sequence number (big-endian, so keys sort in order).
    pub fn append(&self, tree: Tree, value: &[u8]) -> Result<u64, StoreError> {
        let id = self.db.generate_id().map_err(|e| self.db_err(e))?;
        self.put(tree, &id.to_be_bytes(), value)?;
        Ok(id)
    }

    /// Appends like [`Store::append`] without flushing: on disk within sled's flush interval
    /// (500 ms) or at [`Store::flush`]. For frequent records that must not cost an fsync each.
    pub fn append_buffered(&self, tree: Tree, value: &[u8]) -> Result<u64, StoreError> {
        let id = self.db.generate_id().map_err(|e| self.db_err(e))?;
        let key = id.to_be_bytes();
        let sealed = self.sealer.seal(value, &Self::aad(tree, &key));
        self.tree(tree)?
            .insert(key, sealed)
            .map_err(|e| self.db_err(e))?;
        Ok(id)
    }

    /// At most `limit` entries whose key sorts after `after` (from the first without it),
    /// in key order; only those are opened.
    pub fn page(
        &self,
        tree: Tree,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        use std::ops::Bound;
        let t = self.tree(tree)?;
        let start = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.to_vec()));
        let mut out = Vec::new();
        for kv in t.range::<Vec<u8>, _>((start, Bound::Unbounded)).take(limit) {
            let (k, sealed) = kv.map_err(|e| self.db_err(e))?;
            let v = self
                .sealer
                .open(&sealed, &Self::aad(tree, &k))
                .map_err(|source| StoreError::Seal {
                    tree: tree.name(),
                    key: hex::encode(&k),
                    source,
                })?;
            out.push((k.to_vec(), v));
        }
        Ok(out)
    }

    /// How many entries a tree holds (a scan of its keys: call it rarely).
    pub fn count(&self, tree: Tree) -> Result<usize, StoreError> {
        Ok(self.tree(tree)?.len())
    }

    /// Removes the first `n` entries in key order (the oldest, for appended trees), with one
    /// flush; returns how many.
    pub fn remove_first(&self, tree: Tree, n: usize) -> Result<usize, StoreError> {
        let t = self.tree(tree)?;
        let mut removed = 0;
        while removed < n {
            match t.pop_min().map_err(|e| self.db_err(e))? {
                Some(_) => removed = removed.saturating_add(1),
                None => break,
            }
        }
        t.flush().map_err(|e| self.db_err(e))?;
        Ok(removed)
    }

    /// Every value of a tree whose key starts with `prefix`, in key order.
    pub fn values(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::new();
        for k in self.keys(tree, prefix, usize::MAX)? {
            if let Some(v) = self.get(tree, &k)? {
                out.push((k, v));
            }
        }
        Ok(out)
    }

    /// Reads a JSON document.
    pub fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        tree: Tree,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        match self.get(tree, key)? {
            None => Ok(None),
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StoreError::Decode {
                        tree: tree.name(),
                        key: String::from_utf8_lossy(key).into_owned(),
                        message: e.to_string(),
                    })
            }
        }
    }

    /// Writes a JSON document.
    pub fn put_json<T: serde::Serialize>(
        &self,
        tree: Tree,
        key: &[u8],
        value: &T,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|e| StoreError::Decode {
            tree: tree.name(),
            key: String::from_utf8_lossy(key).into_owned(),
            message: format!("cannot be encoded as JSON: {e}"),
        })?;
        self.put(tree, key, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db"), Sealer::from_key([7; 32])).unwrap();
        (dir, s)
    }

    #[test]
    fn values_are_sealed_and_bound_to_their_key() {
        let (_d, s) = store();
        s.put(Tree::PluginKv, b"p\0k", b"secret value").unwrap();
        assert_eq!(
            s.get(Tree::PluginKv, b"p\0k").unwrap().unwrap(),
            b"secret value"
        );
        // What sled holds is not the plain value.
        let raw = s
            .tree(Tree::PluginKv)
            .unwrap()
            .get(b"p\0k")
            .unwrap()
            .unwrap();
        assert!(!raw.windows(12).any(|w| w == b"secret value"));
        // Moving the sealed bytes to another key makes them unreadable.
        s.tree(Tree::PluginKv)
            .unwrap()
            .insert(b"p\0other", raw)
            .unwrap();
        assert!(matches!(
            s.get(Tree::PluginKv, b"p\0other"),
            Err(StoreError::Seal { .. })
        ));
    }

    #[test]
    fn metered_writes_keep_the_usage_counter_and_refusals_change_nothing() {
        let (_d, s) = store();
        let (ns, t) = (b"p\0".as_slice(), Tree::PluginKv);
        // Data from before counters existed is measured once.
        s.put(t, b"p\0old", b"12345").unwrap();
        s.put(t, b"q\0other", b"not p's").unwrap();
        let start = s.usage(t, ns).unwrap();
        assert_eq!(start.keys, 1);
        let ok = |_: &Usage| Ok::<(), ()>(());
        let a = s.put_metered(t, ns, b"p\0a", b"xx", ok).unwrap().unwrap();
        assert_eq!(a.keys, 2);
        // Overwriting replaces the old size; the key count stays.
        let b = s.put_metered(t, ns, b"p\0a", b"xxxx", ok).unwrap().unwrap();
        assert_eq!((b.keys, b.bytes), (2, a.bytes + 2));
        // A refused write is not made and the counter does not move.
        let refused = s.put_metered(t, ns, b"p\0b", b"y", |u| {
            if u.keys > 2 { Err("full") } else { Ok(()) }
        });
        assert_eq!(refused.unwrap(), Err("full"));
        assert_eq!(s.get(t, b"p\0b").unwrap(), None);
        assert_eq!(s.usage(t, ns).unwrap(), b);
        assert!(s.remove_metered(t, ns, b"p\0a").unwrap());
        assert!(!s.remove_metered(t, ns, b"p\0a").unwrap());
        assert_eq!(s.usage(t, ns).unwrap(), start);
        assert_eq!(s.clear_metered(t, ns).unwrap(), 1);
        assert_eq!(s.usage(t, ns).unwrap(), Usage::default());
        assert_eq!(s.get(t, b"q\0other").unwrap().unwrap(), b"not p's");
    }

    #[test]
    fn put_many_writes_every_value_sealed_and_fingerprints_are_keyed() {
        let (_d, s) = store();
        let writes: Vec<(Tree, &[u8], &[u8])> = vec![
            (Tree::Documents, b"c\0d1", b"doc one"),
            (Tree::Chunks, b"c\0k1", b"chunk one"),
            (Tree::Chunks, b"c\0k2", b"chunk two"),
        ];
        s.put_many(&writes).unwrap();
        for (t, k, v) in &writes {
            assert_eq!(s.get(*t, k).unwrap().unwrap(), *v);
        }
        let other = Store::open(&_d.path().join("db2"), Sealer::from_key([8; 32])).unwrap();
        assert_eq!(s.fingerprint("a", b"x"), s.fingerprint("a", b"x"));
        assert_ne!(s.fingerprint("a", b"x"), s.fingerprint("b", b"x"));
        assert_ne!(s.fingerprint("a", b"x"), other.fingerprint("a", b"x"));
    }

    #[test]
    fn prefix_scans_and_append_order() {
        let (_d, s) = store();
        for k in ["a\0x", "a\0y", "b\0z"] {
            s.put(Tree::PluginKv, k.as_bytes(), b"1").unwrap();
        }
        assert_eq!(s.keys(Tree::PluginKv, b"a\0", 10).unwrap().len(), 2);
        assert_eq!(s.remove_prefix(Tree::PluginKv, b"a\0").unwrap(), 2);
        let first = s.append(Tree::Audit, b"one").unwrap();
        let second = s.append(Tree::Audit, b"two").unwrap();
        assert!(second > first);
        let all = s.values(Tree::Audit, b"").unwrap();
        assert_eq!(all[0].1, b"one");
        assert_eq!(all[1].1, b"two");
    }
}

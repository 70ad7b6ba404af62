//! The store: namespaced trees of sealed values over a [`Backend`] (sled today).
//!
//! Every value is sealed with ChaCha20-Poly1305 under a *data key* and bound to its tree and
//! stored key (associated data), so a value copied to another key or tree fails to open, and
//! a value that fails to open is [`StoreError::Seal`] naming the tree and key: never data.
//! Data keys (one per collection, one for everything else) are wrapped by the master key
//! ([`crate::data::keyring`]); a wrong master key is refused at open before anything is
//! written.
//!
//! **Keys.** In the trees that can carry user data ([`Tree::hashed`]: plugin kv, plugin
//! secrets, collections, documents, chunks, vault, embedding cache) the stored key is
//! `HMAC(namespace)[..16] ‖ HMAC(tree, whole key)[..16]` and the real key travels inside the
//! sealed value; the namespace of a key is its bytes up to the first `\0` (the whole key when
//! there is none). Callers pass and get back real keys. Other trees keep clear keys (plugin
//! names, random ids, sequence numbers).
//!
//! **Order.** On clear-key trees every scan is in key order. On hashed trees:
//! [`Store::keys`] and [`Store::values`] return real-key order (they open the namespace and
//! sort); a prefix that holds a `\0` scans only its namespace, one without scans the tree.
//! [`Store::page`] pages in stored (hashed) order: pass the last real key of a page as `after`
//! to get the next, and every entry is seen once, but not in real-key order.
//!
//! **Durability.** `put`, `put_many`, `remove`, `remove_prefix`, the metered writes and
//! `append` flush before returning; [`Store::append_buffered`] is the exception.
//!
//! **Format.** A store written before format 2 (clear keys, values sealed with the master key,
//! no metadata) is migrated on open, in batches that each replace old entries by new ones
//! atomically; an interrupted migration resumes on the next open (entries already in format
//! 2 are recognised and kept).

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::backend::{Backend, BackendError, KeyChange, Op, SledBackend, TxError};
use super::keyring::{DataKeys, Keyring, MasterInput, Scope, old_aad};
use crate::security::master::MasterSource;
use crate::security::seal::{SealError, Sealer};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed, or another process holds the store.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The master key could not be read or made.
    #[error("master key for the data store at {path}: {error}")]
    MasterKey {
        /// The database folder.
        path: PathBuf,
        /// What failed.
        error: SealError,
    },
    /// The master key is not the store's. Nothing was written.
    #[error(
        "the master key ({from}) does not open the data store at {path}: {detail}. \
         Nothing was changed. Give the key the store was created or last rotated with \
         (LLMOS_MASTER_KEY, LLMOS_MASTER_PASSPHRASE, LLMOS_MASTER_KEY_FILE or <home>/master.key)"
    )]
    WrongMasterKey {
        /// The database folder.
        path: PathBuf,
        /// Where the key came from (never the key).
        from: String,
        /// What did not open.
        detail: String,
    },
    /// A value could not be opened: it was altered, moved, or its data key is gone.
    #[error("data store value {tree}/{key}: {source}")]
    Seal {
        /// The tree.
        tree: &'static str,
        /// The key: the real key (lossily decoded) where known, else the stored key in hex.
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
    /// Something asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A collection's data key cannot be removed while it still seals entries.
    #[error(
        "collection {collection:?} still has entries in tree {tree}: its data key is removed \
         only after its documents and chunks (delete the collection again)"
    )]
    NotEmpty {
        /// The collection.
        collection: String,
        /// The tree that still holds some.
        tree: &'static str,
    },
    /// The store was written by a newer llmos.
    #[error("the data store at {path} has format {found}; this llmos reads format {known} and older")]
    Newer {
        /// The database folder.
        path: PathBuf,
        /// Its format.
        found: u32,
        /// The newest this code knows.
        known: u32,
    },
}

/// The namespaces of the store. Each is its own backend tree.
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
    /// Embeddings cached for training: `base-sha256 \0 fingerprint(base-sha256 \0 text)` →
    /// the vector (f32 little-endian). The text itself is never stored.
    EmbedCache,
    /// Trusted plugin publishers: name → public key record (nothing secret; revoked ones stay).
    Publishers,
    /// Registered MCP servers (`llmos mcp add`): name → registration (URL, token secret name).
    McpServers,
    /// Plugin components on a store shared by replicas: sha256 (hex) → the component's bytes.
    Components,
}

impl Tree {
    /// Every tree.
    pub const ALL: [Tree; 16] = [
        Tree::Plugins,
        Tree::PluginKv,
        Tree::PluginSecrets,
        Tree::ComponentCache,
        Tree::Audit,
        Tree::ApiKeys,
        Tree::Usage,
        Tree::Collections,
        Tree::Documents,
        Tree::Chunks,
        Tree::Vault,
        Tree::Jobs,
        Tree::EmbedCache,
        Tree::Publishers,
        Tree::McpServers,
        Tree::Components,
    ];

    /// The backend tree name (also the sealing context).
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
            Tree::EmbedCache => "embed-cache",
            Tree::Publishers => "publishers",
            Tree::McpServers => "mcp-servers",
            Tree::Components => "components",
        }
    }

    /// Whether stored keys are keyed hashes (the tree's keys can carry user data).
    pub fn hashed(self) -> bool {
        matches!(
            self,
            Tree::PluginKv
                | Tree::PluginSecrets
                | Tree::Collections
                | Tree::Documents
                | Tree::Chunks
                | Tree::Vault
                | Tree::EmbedCache
        )
    }

    /// Whether values are sealed with their collection's data key (the namespace is the
    /// collection's name).
    pub fn per_collection(self) -> bool {
        matches!(self, Tree::Collections | Tree::Documents | Tree::Chunks)
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

/// The namespace of a key: its bytes up to the first `\0`, or all of it.
fn namespace(key: &[u8]) -> &[u8] {
    key.split(|b| *b == 0).next().unwrap_or(key)
}

/// An entry of a hashed-tree scan: stored key, real key, value.
type Opened = (Vec<u8>, Vec<u8>, Vec<u8>);

/// Entries per batch of migration and rekey.
pub(super) const BATCH: usize = 512;

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    keys: Arc<Keyring>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// The store URL of this process's configuration (`[store] url`, `LLMOS_STORE_URL`), set once
/// the configuration is read ([`use_url`]).
static STORE_URL: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// Makes [`Store::open_home`] open `url` (PostgreSQL) instead of `<home>/store`; the first
/// call wins (one configuration per process).
pub fn use_url(url: Option<String>) {
    let _ = STORE_URL.set(url);
}

/// The configured store URL: [`use_url`]'s, else `LLMOS_STORE_URL`.
fn store_url() -> Option<String> {
    match STORE_URL.get() {
        Some(u) => u.clone(),
        None => std::env::var("LLMOS_STORE_URL")
            .ok()
            .filter(|u| !u.is_empty()),
    }
}

fn tree_names() -> Vec<&'static str> {
    Tree::ALL.iter().map(|t| t.name()).collect()
}

impl Store {
    /// Opens (or creates) the database in `path` with `master` as its master key.
    pub fn open(path: &Path, master: Sealer) -> Result<Self, StoreError> {
        Self::open_with(path, MasterInput::Ready(master))
    }

    /// Opens the store of a data location, `<home>/store`, with the master key the
    /// environment names ([`MasterSource::from_env`]).
    /// With a store URL configured ([`use_url`], `LLMOS_STORE_URL`) it opens that
    /// PostgreSQL database instead ([`Store::open_url`]).
    pub fn open_home(home: &Path) -> Result<Self, StoreError> {
        let url = store_url();
        let source = MasterSource::from_env(home).map_err(|error| StoreError::MasterKey {
            path: url
                .as_deref()
                .map_or_else(|| home.join("store"), |u| super::postgres::redact(u).into()),
            error,
        })?;
        match url {
            Some(u) => Self::open_url(&u, source),
            None => Self::open_source(&home.join("store"), source),
        }
    }

    /// Opens (or creates) the store in the PostgreSQL database at `url`
    /// ([`super::postgres`]): several processes may open the same one.
    pub fn open_url(url: &str, source: MasterSource) -> Result<Self, StoreError> {
        Self::open_url_input(url, MasterInput::Source(source))
    }

    fn open_url_input(url: &str, input: MasterInput) -> Result<Self, StoreError> {
        let backend = super::postgres::PgBackend::open(url)?;
        let keys = Keyring::open(&backend, input, &tree_names())?;
        let s = Self {
            path: backend.location().into(),
            backend: Arc::new(backend),
            keys: Arc::new(keys),
        };
        // A new database has nothing to migrate; one copied from an old embedded store is
        // migrated in place (there is no log file to compact).
        s.migrate()?;
        Ok(s)
    }

    /// Opens the PostgreSQL store at `url` with `master` as its master key.
    pub fn open_url_with_key(url: &str, master: Sealer) -> Result<Self, StoreError> {
        Self::open_url_input(url, MasterInput::Ready(master))
    }

    /// Registers `f`, called with a tree's name (or `"*"`) when another replica may have
    /// changed it (never for the embedded store): see [`Backend::on_change`].
    pub fn on_change(&self, f: impl Fn(&str) + Send + Sync + 'static) {
        self.backend.on_change(Box::new(f));
    }

    /// Registers `f`, called for each key of the collection trees another replica changed
    /// (never for the embedded store): see [`Backend::on_key_change`].
    pub fn on_key_change(&self, f: impl Fn(&KeyChange<'_>) + Send + Sync + 'static) {
        self.backend.on_key_change(Box::new(f));
    }

    /// The keyed hash of a namespace (the first 16 bytes of its stored keys in a hashed
    /// tree).
    pub(super) fn ns_hash(&self, ns: &[u8]) -> [u8; 16] {
        self.keys.ns_hash(ns)
    }

    /// Reads and opens the entries stored under `stored` keys of a hashed tree, in one
    /// backend call: `(real key, value)`, or `None` for a key not stored.
    pub(super) fn get_stored_many(
        &self,
        tree: Tree,
        stored: &[Vec<u8>],
    ) -> Result<Vec<Option<Entry>>, StoreError> {
        let values = self.backend.get_many(tree.name(), stored)?;
        stored
            .iter()
            .zip(values)
            .map(|(k, v)| {
                v.map(|sealed| self.open_entry(tree, k, &sealed, || hex::encode(k)))
                    .transpose()
            })
            .collect()
    }

    /// Calls `f` with every entry of a hashed tree whose real key starts with `prefix`
    /// (`prefix` must hold a `\0`: one namespace), opened, in stored order, without
    /// collecting them first (the backend's scan is paged): a large collection is read with
    /// one page of sealed values in memory at a time.
    pub(super) fn for_each_hashed<E: From<StoreError>>(
        &self,
        tree: Tree,
        prefix: &[u8],
        mut f: impl FnMut(Vec<u8>, Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        let from = self.keys.ns_hash(namespace(prefix));
        let scan = self
            .backend
            .scan_prefix(tree.name(), &from)
            .map_err(StoreError::from)?;
        for item in scan {
            let (stored, sealed) = item.map_err(StoreError::from)?;
            let (key, value) = self.open_entry(tree, &stored, &sealed, || hex::encode(&stored))?;
            if key.starts_with(prefix) {
                f(key, value)?;
            }
        }
        Ok(())
    }

    /// Follows data-key changes made by other replicas (a collection deleted, re-created or
    /// re-keyed elsewhere): the cached keys are dropped when the key tree changes, so a
    /// deleted collection's key does not outlive it here. Nothing happens on the embedded
    /// store (no other process changes it).
    pub fn follow_key_changes(&self) {
        if !self.shared() {
            return;
        }
        let keys = Arc::downgrade(&self.keys);
        self.on_change(move |tree| {
            if (tree == super::keyring::META || tree == "*")
                && let Some(k) = keys.upgrade()
            {
                k.drop_cached();
            }
        });
    }

    /// Whether other replicas share this store (PostgreSQL).
    pub fn shared(&self) -> bool {
        self.backend.shared()
    }

    /// Opens (or creates) the database in `path` with the master key from `source`.
    pub fn open_source(path: &Path, source: MasterSource) -> Result<Self, StoreError> {
        Self::open_with(path, MasterInput::Source(source))
    }

    fn open_with(path: &Path, input: MasterInput) -> Result<Self, StoreError> {
        SledBackend::recover(path)?;
        let backend = SledBackend::open(path)?;
        let keys = Keyring::open(&backend, input, &tree_names())?;
        let s = Self {
            backend: Arc::new(backend),
            keys: Arc::new(keys),
            path: path.into(),
        };
        if !s.migrate()? {
            return Ok(s);
        }
        // A migration replaced clear keys: rewrite the database so none lingers on disk.
        let Self { backend, keys, path } = s;
        drop(backend);
        SledBackend::compact(&path, &[(super::keyring::META, super::keyring::COMPACT)])?;
        Ok(Self {
            backend: Arc::new(SledBackend::open(&path)?),
            keys,
            path,
        })
    }

    pub(super) fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    pub(super) fn keyring(&self) -> &Keyring {
        &self.keys
    }

    /// Writes everything buffered to disk (called on shutdown).
    pub fn flush(&self) -> Result<(), StoreError> {
        Ok(self.backend.flush()?)
    }

    /// The key `key` of `tree` is stored under.
    pub(super) fn stored_key(&self, tree: Tree, key: &[u8]) -> Vec<u8> {
        if !tree.hashed() {
            return key.to_vec();
        }
        let mut k = self.keys.ns_hash(namespace(key)).to_vec();
        k.extend_from_slice(&self.keys.key_hash(tree.name(), key));
        k
    }

    fn scope(tree: Tree, stored: &[u8]) -> Scope {
        match stored.get(..16).and_then(|h| <[u8; 16]>::try_from(h).ok()) {
            Some(h) if tree.per_collection() => Scope::Collection(h),
            _ => Scope::Rest,
        }
    }

    /// Seals an entry (the real key goes inside on hashed trees).
    pub(super) fn seal(&self, tree: Tree, stored: &[u8], key: &[u8], value: &[u8]) -> Result<Vec<u8>, StoreError> {
        let keys = self
            .keys
            .write_keys(self.backend.as_ref(), Self::scope(tree, stored))?;
        Ok(Self::seal_with(&keys, tree, stored, key, value))
    }

    pub(super) fn seal_with(keys: &DataKeys, tree: Tree, stored: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
        let aad = old_aad(tree.name(), stored);
        if !tree.hashed() {
            return Keyring::seal_with(keys, &aad, value);
        }
        let len = u32::try_from(key.len()).unwrap_or(u32::MAX);
        let mut plain = Vec::with_capacity(value.len().saturating_add(key.len()).saturating_add(4));
        plain.extend_from_slice(&len.to_be_bytes());
        plain.extend_from_slice(key);
        plain.extend_from_slice(value);
        Keyring::seal_with(keys, &aad, &plain)
    }

    /// Opens a stored entry: `(real key, value)`, or `None` when it does not open.
    pub(super) fn try_open(&self, tree: Tree, stored: &[u8], sealed: &[u8]) -> Result<Option<Entry>, StoreError> {
        let Some(keys) = self
            .keys
            .keys(self.backend.as_ref(), Self::scope(tree, stored))?
        else {
            return Ok(None);
        };
        let Some(plain) = Keyring::open_with(&keys, &old_aad(tree.name(), stored), sealed) else {
            return Ok(None);
        };
        if !tree.hashed() {
            return Ok(Some((stored.to_vec(), plain)));
        }
        let split = plain
            .get(..4)
            .and_then(|l| <[u8; 4]>::try_from(l).ok())
            .and_then(|l| usize::try_from(u32::from_be_bytes(l)).ok())
            .and_then(|n| n.checked_add(4))
            .filter(|end| *end <= plain.len());
        Ok(split.and_then(|end| {
            let key = plain.get(4..end)?.to_vec();
            let value = plain.get(end..)?.to_vec();
            Some((key, value))
        }))
    }

    /// Opens a stored entry; one that does not open is [`StoreError::Seal`] naming `name`.
    pub(super) fn open_entry(&self, tree: Tree, stored: &[u8], sealed: &[u8], name: impl FnOnce() -> String) -> Result<Entry, StoreError> {
        self.try_open(tree, stored, sealed)?.ok_or_else(|| StoreError::Seal {
            tree: tree.name(),
            key: name(),
            source: SealError::Open,
        })
    }

    /// Reads and opens a value.
    pub fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let stored = self.stored_key(tree, key);
        let Some(sealed) = self.backend.get(tree.name(), &stored)? else {
            return Ok(None);
        };
        let lossy = || String::from_utf8_lossy(key).into_owned();
        let (real, value) = self.open_entry(tree, &stored, &sealed, lossy)?;
        if real != key {
            return Err(StoreError::Seal {
                tree: tree.name(),
                key: lossy(),
                source: SealError::Open,
            });
        }
        Ok(Some(value))
    }

    /// Seals and writes a value, durably (flushed before returning).
    pub fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let stored = self.stored_key(tree, key);
        let sealed = self.seal(tree, &stored, key, value)?;
        self.backend.insert(tree.name(), &stored, &sealed)?;
        self.flush()
    }

    /// Seals and writes many values in one atomic step (all or none), durably flushed once
    /// before returning. For bulk writes (ingest) that must not cost an fsync each.
    pub fn put_many(&self, writes: &[(Tree, &[u8], &[u8])]) -> Result<(), StoreError> {
        self.write_many(writes, &[])
    }

    /// Removes `removes`, then seals and writes `puts`, in one atomic step (all or none),
    /// durably flushed once before returning (a key in both ends up written).
    pub fn write_many(
        &self,
        puts: &[(Tree, &[u8], &[u8])],
        removes: &[(Tree, &[u8])],
    ) -> Result<(), StoreError> {
        let mut ops = Vec::with_capacity(puts.len().saturating_add(removes.len()));
        for (tree, key) in removes {
            ops.push(Op {
                tree: tree.name(),
                key: self.stored_key(*tree, key),
                value: None,
            });
        }
        for (tree, key, value) in puts {
            let stored = self.stored_key(*tree, key);
            let sealed = self.seal(*tree, &stored, key, value)?;
            ops.push(Op {
                tree: tree.name(),
                key: stored,
                value: Some(sealed),
            });
        }
        self.backend.batch(&ops)?;
        self.flush()
    }

    /// The stored (sealed) bytes of `key` in a clear-key `tree`, as the backend holds them:
    /// the token to give [`Store::put_many_if`].
    pub fn get_sealed(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.backend.get(tree.name(), &self.stored_key(tree, key))?)
    }

    /// Seals and writes `puts` in one atomic, flushed step, but only while `guard`'s stored
    /// bytes are still `seen` ([`Store::get_sealed`]; `None`: absent): a compare-and-swap for
    /// writers in several processes (replicas). Returns whether it wrote.
    pub fn put_many_if(
        &self,
        guard: (Tree, &[u8]),
        seen: Option<&[u8]>,
        puts: &[(Tree, &[u8], &[u8])],
    ) -> Result<bool, StoreError> {
        let mut ops = Vec::with_capacity(puts.len());
        let mut trees = vec![guard.0.name()];
        for (tree, key, value) in puts {
            let stored = self.stored_key(*tree, key);
            let sealed = self.seal(*tree, &stored, key, value)?;
            if !trees.contains(&tree.name()) {
                trees.push(tree.name());
            }
            ops.push((tree.name(), stored, sealed));
        }
        let guard_key = self.stored_key(guard.0, guard.1);
        let wrote = self.backend.transaction(&trees, &|tx| {
            if tx.get(guard.0.name(), &guard_key)?.as_deref() != seen {
                return Err(TxError::Abort);
            }
            for (tree, key, value) in &ops {
                tx.insert(tree, key, value)?;
            }
            Ok(())
        })?;
        self.flush()?;
        Ok(wrote)
    }

    /// A keyed fingerprint of `data` in `context` (HMAC-SHA-256 under a key of the store,
    /// wrapped by the master key): equal inputs give equal fingerprints for the life of the
    /// store (`rotate-master` keeps them), and nobody without the master key can test a
    /// guess. For content-hash de-duplication and lookups by value without storing it.
    pub fn fingerprint(&self, context: &str, data: &[u8]) -> [u8; 32] {
        self.keys.fingerprint(context, data)
    }

    /// Forgets a collection (crypto-shredding): removes its record (`Tree::Collections`, key
    /// `name`) and every generation of its data key in one atomic, flushed step, so nothing
    /// sealed with that key (a copy of an old value, a leftover in sled's log) opens any more.
    /// Its documents and chunks must be gone first: while any is stored nothing is removed and
    /// the error says so (a crash between the two steps leaves a collection to delete again).
    /// The next write to a collection of that name gets a fresh key. Returns whether a key
    /// was removed.
    pub fn remove_collection(&self, name: &str) -> Result<bool, StoreError> {
        let h = self.keys.ns_hash(name.as_bytes());
        for tree in [Tree::Documents, Tree::Chunks] {
            if self.backend.scan_prefix(tree.name(), &h)?.next().is_some() {
                return Err(StoreError::NotEmpty {
                    collection: name.to_string(),
                    tree: tree.name(),
                });
            }
        }
        let record = Op {
            tree: Tree::Collections.name(),
            key: self.stored_key(Tree::Collections, name.as_bytes()),
            value: None,
        };
        self.keys
            .forget(self.backend.as_ref(), Scope::Collection(h), record)
    }

    /// Removes a value; returns whether it existed.
    pub fn remove(&self, tree: Tree, key: &[u8]) -> Result<bool, StoreError> {
        let stored = self.stored_key(tree, key);
        let existed = self.backend.remove(tree.name(), &stored)?.is_some();
        self.flush()?;
        Ok(existed)
    }

    /// Every entry of a hashed tree whose real key starts with `prefix`, opened, sorted by
    /// real key.
    fn scan_hashed(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<Opened>, StoreError> {
        let from = if prefix.contains(&0) {
            self.keys.ns_hash(namespace(prefix)).to_vec()
        } else {
            Vec::new()
        };
        let mut out = Vec::new();
        for item in self.backend.scan_prefix(tree.name(), &from)? {
            let (stored, sealed) = item?;
            let (key, value) =
                self.open_entry(tree, &stored, &sealed, || hex::encode(&stored))?;
            if key.starts_with(prefix) {
                out.push((stored, key, value));
            }
        }
        out.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(out)
    }

    /// Stored keys of the entries whose real key starts with `prefix`. A prefix that is a
    /// whole namespace and its `\0` needs no opening: it is the namespace's hash prefix, less
    /// the one key equal to the namespace itself.
    fn stored_keys(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        if !tree.hashed() {
            return self
                .backend
                .scan_prefix(tree.name(), prefix)?
                .map(|e| e.map(|(k, _)| k).map_err(StoreError::from))
                .collect();
        }
        let ns = namespace(prefix);
        if ns.len().checked_add(1) == Some(prefix.len()) {
            let bare = self.stored_key(tree, ns);
            let mut out = Vec::new();
            for item in self.backend.scan_prefix(tree.name(), &self.keys.ns_hash(ns))? {
                let (k, _) = item?;
                if k != bare {
                    out.push(k);
                }
            }
            return Ok(out);
        }
        Ok(self
            .scan_hashed(tree, prefix)?
            .into_iter()
            .map(|(s, _, _)| s)
            .collect())
    }

    /// Keys with `prefix`, in (real-key) order, at most `limit`.
    pub fn keys(
        &self,
        tree: Tree,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        if !tree.hashed() {
            let mut keys = self.stored_keys(tree, prefix)?;
            keys.truncate(limit);
            return Ok(keys);
        }
        let mut all = self.scan_hashed(tree, prefix)?;
        all.truncate(limit);
        Ok(all.into_iter().map(|(_, k, _)| k).collect())
    }

    /// Removes every key with `prefix`; returns how many.
    pub fn remove_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<usize, StoreError> {
        let keys = self.stored_keys(tree, prefix)?;
        for chunk in keys.chunks(BATCH) {
            let ops: Vec<Op> = chunk
                .iter()
                .map(|k| Op {
                    tree: tree.name(),
                    key: k.clone(),
                    value: None,
                })
                .collect();
            self.backend.batch(&ops)?;
        }
        self.flush()?;
        Ok(keys.len())
    }

    /// The usage counter of `namespace` (see [`Usage`]); a namespace that has data from
    /// before counters existed is measured once (a scan) and its counter written.
    pub fn usage(&self, tree: Tree, namespace: &[u8]) -> Result<Usage, StoreError> {
        let key = self.usage_key(tree, namespace);
        if let Some(u) = self.get_json::<Usage>(Tree::Usage, &key)? {
            return Ok(u);
        }
        let mut u = Usage::default();
        for k in self.stored_keys(tree, namespace)? {
            if let Some(v) = self.backend.get(tree.name(), &k)? {
                u.bytes = u.bytes.saturating_add(entry_size(&k, &v));
                u.keys = u.keys.saturating_add(1);
            }
        }
        if u.keys > 0 {
            self.put_json(Tree::Usage, &key, &u)?;
        }
        Ok(u)
    }

    /// The key of a usage counter: `tree \0 namespace` (a keyed hash of the namespace on
    /// hashed trees).
    fn usage_key(&self, tree: Tree, namespace: &[u8]) -> Vec<u8> {
        let mut k = tree.name().as_bytes().to_vec();
        k.push(0);
        if tree.hashed() {
            k.extend_from_slice(&self.keys.usage_hash(tree.name(), namespace));
        } else {
            k.extend_from_slice(namespace);
        }
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
        debug_assert!(key.starts_with(namespace));
        self.usage(tree, namespace)?; // make sure the counter exists
        let stored = self.stored_key(tree, key);
        let sealed = self.seal(tree, &stored, key, value)?;
        let rest = self.keys.write_keys(self.backend.as_ref(), Scope::Rest)?;
        let ukey = self.usage_key(tree, namespace);
        let refused: RefCell<Option<E>> = RefCell::new(None);
        let now = Cell::new(Usage::default());
        let committed = self.backend.transaction(&[tree.name(), Tree::Usage.name()], &|tx| {
            refused.replace(None);
            let mut u = Self::open_usage(&rest, &ukey, tx.get(Tree::Usage.name(), &ukey)?);
            if let Some(old) = tx.get(tree.name(), &stored)? {
                u.bytes = u.bytes.saturating_sub(entry_size(&stored, &old));
                u.keys = u.keys.saturating_sub(1);
            }
            u.bytes = u.bytes.saturating_add(entry_size(&stored, &sealed));
            u.keys = u.keys.saturating_add(1);
            if let Err(e) = admit(&u) {
                refused.replace(Some(e));
                return Err(TxError::Abort);
            }
            tx.insert(tree.name(), &stored, &sealed)?;
            tx.insert(Tree::Usage.name(), &ukey, &Self::seal_usage(&rest, &ukey, &u))?;
            now.set(u);
            Ok(())
        })?;
        if !committed {
            return match refused.into_inner() {
                Some(e) => Ok(Err(e)),
                None => Ok(Ok(self.usage(tree, namespace)?)),
            };
        }
        self.flush()?;
        Ok(Ok(now.get()))
    }

    /// A namespace's usage counter as stored inside a transaction (absent: zero).
    fn open_usage(rest: &DataKeys, ukey: &[u8], sealed: Option<Vec<u8>>) -> Usage {
        sealed
            .and_then(|s| Keyring::open_with(rest, &old_aad(Tree::Usage.name(), ukey), &s))
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn seal_usage(rest: &DataKeys, ukey: &[u8], u: &Usage) -> Vec<u8> {
        let bytes = serde_json::to_vec(u).unwrap_or_default();
        Self::seal_with(rest, Tree::Usage, ukey, ukey, &bytes)
    }

    /// Removes `key` (which must start with `namespace`) and updates the namespace's usage
    /// in one transaction; returns whether it existed.
    pub fn remove_metered(
        &self,
        tree: Tree,
        namespace: &[u8],
        key: &[u8],
    ) -> Result<bool, StoreError> {
        self.usage(tree, namespace)?;
        let stored = self.stored_key(tree, key);
        let rest = self.keys.write_keys(self.backend.as_ref(), Scope::Rest)?;
        let ukey = self.usage_key(tree, namespace);
        let existed = self.backend.transaction(&[tree.name(), Tree::Usage.name()], &|tx| {
            let Some(old) = tx.remove(tree.name(), &stored)? else {
                return Err(TxError::Abort);
            };
            let mut u = Self::open_usage(&rest, &ukey, tx.get(Tree::Usage.name(), &ukey)?);
            u.bytes = u.bytes.saturating_sub(entry_size(&stored, &old));
            u.keys = u.keys.saturating_sub(1);
            tx.insert(Tree::Usage.name(), &ukey, &Self::seal_usage(&rest, &ukey, &u))?;
            Ok(())
        })?;
        self.flush()?;
        Ok(existed)
    }

    /// Removes every entry of a namespace of a metered tree, and its usage counter.
    pub fn clear_metered(&self, tree: Tree, namespace: &[u8]) -> Result<usize, StoreError> {
        let n = self.remove_prefix(tree, namespace)?;
        self.remove(Tree::Usage, &self.usage_key(tree, namespace))?;
        Ok(n)
    }

    /// Appends a value under the next sequence number (big-endian, so keys sort in order).
    pub fn append(&self, tree: Tree, value: &[u8]) -> Result<u64, StoreError> {
        let id = self.backend.generate_id()?;
        self.put(tree, &id.to_be_bytes(), value)?;
        Ok(id)
    }

    /// Appends like [`Store::append`] without flushing: on disk within sled's flush interval
    /// (500 ms) or at [`Store::flush`]. For frequent records that must not cost an fsync each.
    pub fn append_buffered(&self, tree: Tree, value: &[u8]) -> Result<u64, StoreError> {
        let id = self.backend.generate_id()?;
        let key = id.to_be_bytes();
        let stored = self.stored_key(tree, &key);
        let sealed = self.seal(tree, &stored, &key, value)?;
        self.backend.insert(tree.name(), &stored, &sealed)?;
        Ok(id)
    }

    /// At most `limit` entries after `after` (from the first without it); only those are
    /// opened. Clear-key trees page in key order; hashed trees in stored order (see the
    /// module documentation): `after` is the last real key of the previous page.
    pub fn page(
        &self,
        tree: Tree,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let after = after.map(|a| self.stored_key(tree, a));
        let mut out = Vec::new();
        for kv in self.backend.range(tree.name(), after.as_deref())?.take(limit) {
            let (stored, sealed) = kv?;
            out.push(self.open_entry(tree, &stored, &sealed, || hex::encode(&stored))?);
        }
        Ok(out)
    }

    /// How many entries a tree holds (a scan of its keys: call it rarely).
    pub fn count(&self, tree: Tree) -> Result<usize, StoreError> {
        Ok(self.backend.len(tree.name())?)
    }

    /// Removes the first `n` entries in key order (the oldest, for appended trees), with one
    /// flush; returns how many.
    pub fn remove_first(&self, tree: Tree, n: usize) -> Result<usize, StoreError> {
        let mut removed = 0;
        while removed < n {
            match self.backend.pop_min(tree.name())? {
                Some(_) => removed = removed.saturating_add(1),
                None => break,
            }
        }
        self.flush()?;
        Ok(removed)
    }

    /// Every value of a tree whose key starts with `prefix`, in (real-key) order.
    pub fn values(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<Entry>, StoreError> {
        if tree.hashed() {
            return Ok(self
                .scan_hashed(tree, prefix)?
                .into_iter()
                .map(|(_, k, v)| (k, v))
                .collect());
        }
        let mut out = Vec::new();
        for item in self.backend.scan_prefix(tree.name(), prefix)? {
            let (stored, sealed) = item?;
            out.push(self.open_entry(tree, &stored, &sealed, || {
                String::from_utf8_lossy(&stored).into_owned()
            })?);
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

    /// Every raw entry of every backend tree, metadata included.
    pub(super) fn raw(s: &Store) -> Vec<(String, Vec<u8>, Vec<u8>)> {
        let mut names = tree_names();
        names.push(crate::data::keyring::META);
        let mut out = Vec::new();
        for t in names {
            for e in s.backend().scan_prefix(t, b"").unwrap() {
                let (k, v) = e.unwrap();
                out.push((t.to_string(), k, v));
            }
        }
        out
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn values_and_user_keys_are_sealed_and_bound_to_their_key() {
        let (_d, s) = store();
        s.put(Tree::PluginKv, b"plug\0the-kv-key", b"secret value").unwrap();
        assert_eq!(
            s.get(Tree::PluginKv, b"plug\0the-kv-key").unwrap().unwrap(),
            b"secret value"
        );
        // Neither the value nor the key is in what the backend holds.
        let raw = raw(&s);
        for (_, k, v) in &raw {
            for needle in [&b"secret value"[..], b"the-kv-key", b"plug"] {
                assert!(!contains(k, needle) && !contains(v, needle));
            }
        }
        let (_, stored, sealed) = raw.iter().find(|(t, ..)| t == "plugin-kv").unwrap();
        assert_eq!(stored.len(), 32);
        // Moving the sealed bytes to another key makes them unreadable, and the error names
        // the tree and the key asked for.
        let other = s.stored_key(Tree::PluginKv, b"plug\0other");
        s.backend().insert("plugin-kv", &other, sealed).unwrap();
        let e = s.get(Tree::PluginKv, b"plug\0other").unwrap_err();
        assert!(matches!(e, StoreError::Seal { tree: "plugin-kv", .. }), "{e}");
        assert!(e.to_string().contains("plugin-kv/plug"), "{e}");
    }

    #[test]
    fn every_tree_round_trips_and_hashed_trees_list_real_keys_in_order() {
        let (_d, s) = store();
        for tree in Tree::ALL {
            let keys: [&[u8]; 4] = [b"ns\0b", b"ns\0a", b"ns\0c\0deep", b"other\0a"];
            for k in keys {
                s.put(tree, k, &[k, b"=v"].concat()).unwrap();
            }
            s.put(tree, b"ns", b"the namespace itself").unwrap();
            for k in keys {
                assert_eq!(s.get(tree, k).unwrap().unwrap(), [k, b"=v"].concat());
            }
            let listed = s.keys(tree, b"ns\0", 10).unwrap();
            assert_eq!(listed, [&b"ns\0a"[..], b"ns\0b", b"ns\0c\0deep"], "{tree:?}");
            assert_eq!(s.keys(tree, b"ns\0", 2).unwrap().len(), 2);
            assert_eq!(s.keys(tree, b"ns\0c", 10).unwrap(), [b"ns\0c\0deep"]);
            assert_eq!(s.keys(tree, b"", 10).unwrap().len(), 5, "{tree:?}");
            let values = s.values(tree, b"ns").unwrap();
            assert_eq!(values.len(), 4);
            assert_eq!(values[0], (b"ns".to_vec(), b"the namespace itself".to_vec()));
            // Paging sees every entry once, whatever the order.
            let mut seen = Vec::new();
            let mut after: Option<Vec<u8>> = None;
            loop {
                let page = s.page(tree, after.as_deref(), 2).unwrap();
                let Some(last) = page.last() else { break };
                after = Some(last.0.clone());
                seen.extend(page.into_iter().map(|(k, _)| k));
            }
            seen.sort();
            assert_eq!(seen.len(), 5, "{tree:?}");
            assert_eq!(s.count(tree).unwrap(), 5);
            assert_eq!(s.remove_prefix(tree, b"ns\0").unwrap(), 3, "{tree:?}");
            assert_eq!(s.get(tree, b"ns").unwrap().unwrap(), b"the namespace itself");
            assert!(s.remove(tree, b"ns").unwrap());
            assert_eq!(s.get(tree, b"ns").unwrap(), None);
            assert_eq!(s.keys(tree, b"", 10).unwrap(), [b"other\0a"]);
        }
    }

    #[test]
    fn a_flipped_byte_is_an_error_naming_tree_and_key_and_check_finds_it() {
        let (_d, s) = store();
        s.put(Tree::Documents, b"coll\0doc-7", b"document body").unwrap();
        s.put(Tree::Audit, b"seq-1", b"audit record").unwrap();
        assert!(s.check().unwrap().errors.is_empty());
        for name in ["documents", "audit"] {
            let (_, k, mut v) = raw(&s).into_iter().find(|(t, ..)| t == name).unwrap();
            let i = v.len() - 3;
            v[i] ^= 0x40;
            s.backend().insert(name, &k, &v).unwrap();
            let report = s.check().unwrap();
            assert!(report.errors.iter().any(|e| e.tree == name), "{report:?}");
        }
        let e = s.get(Tree::Documents, b"coll\0doc-7").unwrap_err();
        assert!(e.to_string().contains("documents/coll\0doc-7"), "{e}");
        let e = s.values(Tree::Documents, b"coll\0").unwrap_err();
        assert!(matches!(e, StoreError::Seal { tree: "documents", ref key, .. } if key.len() == 64), "{e}");
        let e = s.get(Tree::Audit, b"seq-1").unwrap_err();
        assert!(e.to_string().contains("audit/seq-1"), "{e}");
        let report = s.check().unwrap();
        assert_eq!(report.errors.len(), 2, "{report:?}");
        let audit = report.errors.iter().find(|e| e.tree == "audit").unwrap();
        assert_eq!(audit.key, "seq-1");
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

#[cfg(test)]
mod timing {
    use super::*;

    /// Cost of one durable `put` and of `put_many` of 1,000 values (debug build; for
    /// BENCHMARKS.md): `cargo test -p llmos --lib data::store::timing -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn put_and_put_many_cost() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db"), Sealer::from_key([7; 32])).unwrap();
        let value = vec![0x5a_u8; 1024];
        let n = 200;
        let t = std::time::Instant::now();
        for i in 0..n {
            s.put(Tree::PluginKv, format!("p\0k{i}").as_bytes(), &value)
                .unwrap();
        }
        let one = t.elapsed() / n;
        let keys: Vec<Vec<u8>> = (0..1000).map(|i| format!("c\0chunk-{i}").into_bytes()).collect();
        let writes: Vec<(Tree, &[u8], &[u8])> = keys
            .iter()
            .map(|k| (Tree::Chunks, k.as_slice(), value.as_slice()))
            .collect();
        let mut many = Vec::new();
        for _ in 0..5 {
            let t = std::time::Instant::now();
            s.put_many(&writes).unwrap();
            many.push(t.elapsed());
        }
        many.sort();
        let t = std::time::Instant::now();
        for (tree, k, v) in &writes {
            let stored = s.stored_key(*tree, k);
            std::hint::black_box(s.seal(*tree, &stored, k, v).unwrap());
        }
        let sealing = t.elapsed();
        let t = std::time::Instant::now();
        let got = s.values(Tree::Chunks, b"c\0").unwrap();
        let scan = t.elapsed();
        assert_eq!(got.len(), 1000);
        println!(
            "put (1 KiB, flushed): {one:?} each over {n}; put_many 1000 x 1 KiB: median {:?}; \
             values() of 1000: {scan:?}; of which sealing 1000: {sealing:?}",
            many[2]
        );
    }
}

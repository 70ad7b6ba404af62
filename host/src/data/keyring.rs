//! The store's keys: the master key, the data keys it wraps, and the index key of keyed hashes.
//!
//! Kept in the backend tree [`META`] (clear keys):
//! - `format`: the store format (big-endian u32, clear; [`FORMAT_VERSION`] once migrated);
//! - `kdf`: the Argon2id parameters and salt of a passphrase master key (JSON, clear);
//! - `key-check`: a known text sealed with the master key, so a wrong key is refused at open
//!   before anything is written;
//! - `index-key`: 32 random bytes sealed with the master key, the root of the keyed hashes of
//!   stored keys and of [`crate::data::Store::fingerprint`] (so they survive `rotate-master`);
//! - `data-key \0 rest` and `data-key \0 c ‖ HMAC(collection)[..16]`: a [`Scope`]'s data keys by
//!   generation, and which one is current (JSON sealed with the master key); a deleted
//!   collection's keys are removed with its record ([`Keyring::forget`]).
//!
//! A sealed value is `2 ‖ generation (u32 BE) ‖ nonce ‖ ciphertext+tag`, sealed with that
//! generation of its scope's data key and bound to `tree \0 stored-key ‖ generation`.
//! `rotate-master` re-seals only the records above, in one batch.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::backend::{Backend, Op, TxError};
use super::store::StoreError;
use crate::security::master::{Kdf, MasterSource, create_key_file, read_key_file};
use crate::security::seal::{KeyedHash, SealError, Sealer};

/// The metadata tree.
pub(crate) const META: &str = "store-meta";
/// The format written by this code.
pub(crate) const FORMAT_VERSION: u32 = 2;
const FORMAT: &[u8] = b"format";
/// Present while a migrated database still has to be rewritten (clear keys may linger in
/// sled's log until then).
pub(crate) const COMPACT: &[u8] = b"compact";
const KDF: &[u8] = b"kdf";
const CHECK: &[u8] = b"key-check";
const INDEX: &[u8] = b"index-key";
const DATA_KEY: &[u8] = b"data-key\0";
const CHECK_TEXT: &[u8] = b"llmos store master key check v2";
/// First byte of a sealed value of format 2.
const VALUE_TAG: u8 = 2;
/// Tag and generation.
const HEADER: usize = 5;

/// Whose data key seals a value: a collection's own, or the one for everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Scope {
    /// Everything that is not a collection's.
    Rest,
    /// A collection, by the keyed hash of its name (the first 16 bytes of its stored keys).
    Collection([u8; 16]),
}

impl Scope {
    fn meta_key(self) -> Vec<u8> {
        let mut k = DATA_KEY.to_vec();
        match self {
            Scope::Rest => k.extend_from_slice(b"rest"),
            Scope::Collection(h) => {
                k.push(b'c');
                k.extend_from_slice(&h);
            }
        }
        k
    }
}

/// A scope's data keys as stored: generation → key (hex), and the current generation.
#[derive(serde::Serialize, serde::Deserialize)]
struct DataKeyRecord {
    current: u32,
    keys: BTreeMap<u32, String>,
}

/// A scope's data keys, opened.
pub(crate) struct DataKeys {
    /// The generation new values are sealed with.
    pub(crate) current: u32,
    keys: BTreeMap<u32, Sealer>,
}

impl DataKeys {
    /// How many generations are kept (more than one while a rekey is unfinished).
    pub(crate) fn generations(&self) -> usize {
        self.keys.len()
    }
}

/// Where the master key comes from at open.
pub(crate) enum MasterInput {
    /// A key in hand.
    Ready(Sealer),
    /// A source still to be resolved against the store (key file creation, passphrase salt).
    Source(MasterSource),
}

/// The keys of one open store.
pub(crate) struct Keyring {
    master: RwLock<Arc<Sealer>>,
    index: KeyedHash,
    fingerprints: KeyedHash,
    scopes: RwLock<HashMap<Scope, Arc<DataKeys>>>,
    create: Mutex<()>,
}

fn meta_aad(key: &[u8]) -> Vec<u8> {
    let mut a = META.as_bytes().to_vec();
    a.push(0);
    a.extend_from_slice(key);
    a
}

fn put(key: &[u8], value: Vec<u8>) -> Op {
    Op {
        tree: META,
        key: key.to_vec(),
        value: Some(value),
    }
}

/// What an open found before deciding anything.
struct Found {
    check: Option<Vec<u8>>,
    /// Data from before format 2 (no key check yet, some tree not empty).
    old_data: bool,
}

impl Keyring {
    /// Opens the keys of the store in `backend` (whose data trees are `trees`): checks the
    /// master key (a wrong one is [`StoreError::WrongMasterKey`] and nothing is written), and
    /// creates the metadata of a store that has none.
    pub(crate) fn open(
        backend: &dyn Backend,
        input: MasterInput,
        trees: &[&'static str],
    ) -> Result<Self, StoreError> {
        let check = backend.get(META, CHECK)?;
        let mut old_data = false;
        if check.is_none() {
            for t in trees {
                old_data |= backend.len(t)? > 0;
            }
        }
        let found = Found { check, old_data };
        let mut writes = Vec::new();
        let (master, source) = match input {
            MasterInput::Ready(s) => (s, "the given key".to_string()),
            MasterInput::Source(src) => (
                resolve(backend, &src, &found, &mut writes)?,
                src.describe(),
            ),
        };
        let wrong = |detail: String| StoreError::WrongMasterKey {
            path: backend.location().into(),
            from: source.clone(),
            detail,
        };
        match &found.check {
            Some(c) => {
                if master.open(c, &meta_aad(CHECK)).ok().as_deref() != Some(CHECK_TEXT) {
                    return Err(wrong("its key check does not open".into()));
                }
            }
            None => {
                if found.old_data {
                    verify_old(backend, &master, trees).map_err(wrong)?;
                } else {
                    writes.push(put(FORMAT, FORMAT_VERSION.to_be_bytes().to_vec()));
                }
                create_meta(&master, &mut writes);
                // Written only if no other process (a replica starting at the same moment on
                // an empty shared store) created the store's keys meanwhile; if one did, its
                // keys are the store's and the master key must open them.
                let created = backend.transaction(&[META], &|tx| {
                    if tx.get(META, CHECK)?.is_some() {
                        return Err(TxError::Abort);
                    }
                    for op in &writes {
                        if let Some(v) = &op.value {
                            tx.insert(op.tree, &op.key, v)?;
                        }
                    }
                    Ok(())
                })?;
                if !created {
                    let c = backend.get(META, CHECK)?.unwrap_or_default();
                    if master.open(&c, &meta_aad(CHECK)).ok().as_deref() != Some(CHECK_TEXT) {
                        return Err(wrong("its key check does not open".into()));
                    }
                }
                backend.flush()?;
            }
        }
        let root: [u8; 32] = backend
            .get(META, INDEX)?
            .and_then(|s| master.open(&s, &meta_aad(INDEX)).ok())
            .and_then(|k| k.try_into().ok())
            .ok_or(StoreError::Seal {
                tree: META,
                key: "index-key".into(),
                source: SealError::Open,
            })?;
        Ok(Self {
            master: RwLock::new(Arc::new(master)),
            index: KeyedHash::derive(&root, "llmos stored key v2"),
            fingerprints: KeyedHash::derive(&root, "llmos fingerprint v2"),
            scopes: RwLock::new(HashMap::new()),
            create: Mutex::new(()),
        })
    }

    /// The format the store is in (0: before formats were recorded).
    pub(crate) fn format(backend: &dyn Backend) -> Result<u32, StoreError> {
        Ok(backend
            .get(META, FORMAT)?
            .and_then(|b| <[u8; 4]>::try_from(b.as_slice()).ok())
            .map_or(0, u32::from_be_bytes))
    }

    /// Records that the store is in the current format, and whether the database must be
    /// rewritten (see [`COMPACT`]).
    pub(crate) fn set_format(backend: &dyn Backend, compact: bool) -> Result<(), StoreError> {
        let mut ops = vec![put(FORMAT, FORMAT_VERSION.to_be_bytes().to_vec())];
        if compact {
            ops.push(put(COMPACT, Vec::new()));
        }
        backend.batch(&ops)?;
        Ok(backend.flush()?)
    }

    /// Whether the database still has to be rewritten after a migration.
    pub(crate) fn compact_pending(backend: &dyn Backend) -> Result<bool, StoreError> {
        Ok(backend.get(META, COMPACT)?.is_some())
    }

    /// The first 16 bytes of the keyed hash of a namespace.
    pub(crate) fn ns_hash(&self, ns: &[u8]) -> [u8; 16] {
        half(self.index.hash(&[b"ns", ns]))
    }

    /// The first 16 bytes of the keyed hash of a whole key of `tree`.
    pub(crate) fn key_hash(&self, tree: &str, key: &[u8]) -> [u8; 16] {
        half(self.index.hash(&[b"key", tree.as_bytes(), key]))
    }

    /// Keyed hash naming a usage counter of a namespace of `tree`.
    pub(crate) fn usage_hash(&self, tree: &str, ns: &[u8]) -> [u8; 16] {
        half(self.index.hash(&[b"usage", tree.as_bytes(), ns]))
    }

    /// See [`crate::data::Store::fingerprint`].
    pub(crate) fn fingerprint(&self, context: &str, data: &[u8]) -> [u8; 32] {
        self.fingerprints.hash(&[context.as_bytes(), data])
    }

    fn master(&self) -> Arc<Sealer> {
        self.master
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Opens a value of the format before 2 (sealed with the master key, bound to `aad`).
    pub(crate) fn open_old(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
        self.master().open(sealed, aad)
    }

    /// A scope's data keys; `None` when it has none yet.
    pub(crate) fn keys(
        &self,
        backend: &dyn Backend,
        scope: Scope,
    ) -> Result<Option<Arc<DataKeys>>, StoreError> {
        if let Some(k) = self.cached(scope) {
            return Ok(Some(k));
        }
        let _one = self.create.lock().unwrap_or_else(PoisonError::into_inner);
        self.keys_locked(backend, scope)
    }

    /// [`Keyring::keys`] with `create` held, so a key [`Keyring::forget`] removes is never
    /// cached again by a read that loaded it just before.
    fn keys_locked(
        &self,
        backend: &dyn Backend,
        scope: Scope,
    ) -> Result<Option<Arc<DataKeys>>, StoreError> {
        if let Some(k) = self.cached(scope) {
            return Ok(Some(k));
        }
        let Some(rec) = self.load(backend, scope)? else {
            return Ok(None);
        };
        Ok(Some(self.cache(scope, rec)?))
    }

    /// A scope's data keys, created (and made durable) when it has none.
    pub(crate) fn write_keys(
        &self,
        backend: &dyn Backend,
        scope: Scope,
    ) -> Result<Arc<DataKeys>, StoreError> {
        if let Some(k) = self.cached(scope) {
            return Ok(k);
        }
        let _one = self.create.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(k) = self.keys_locked(backend, scope)? {
            return Ok(k);
        }
        let rec = DataKeyRecord {
            current: 1,
            keys: BTreeMap::from([(1, hex::encode(Sealer::random_key()))]),
        };
        // Insert only if absent: another process sharing the store (a replica) may create
        // the same scope's key at the same moment, and the first one written must win.
        let key = scope.meta_key();
        let plain = serde_json::to_vec(&rec).unwrap_or_default();
        let sealed = self.master().seal(&plain, &meta_aad(&key));
        let created = backend.transaction(&[META], &|tx| {
            if tx.get(META, &key)?.is_some() {
                return Err(TxError::Abort);
            }
            tx.insert(META, &key, &sealed)
        })?;
        backend.flush()?;
        if !created && let Some(k) = self.keys_locked(backend, scope)? {
            return Ok(k);
        }
        self.cache(scope, rec)
    }

    /// Makes a new current generation of a scope's data key (values keep opening with the
    /// older ones until [`Keyring::retire_old`]); returns it.
    pub(crate) fn new_generation(
        &self,
        backend: &dyn Backend,
        scope: Scope,
    ) -> Result<u32, StoreError> {
        let _one = self.create.lock().unwrap_or_else(PoisonError::into_inner);
        let mut rec = self.load(backend, scope)?.unwrap_or(DataKeyRecord {
            current: 0,
            keys: BTreeMap::new(),
        });
        let next = rec.current.checked_add(1).ok_or(StoreError::Seal {
            tree: META,
            key: "data-key".into(),
            source: SealError::Open,
        })?;
        rec.keys.insert(next, hex::encode(Sealer::random_key()));
        rec.current = next;
        self.save(backend, scope, &rec)?;
        self.cache(scope, rec)?;
        Ok(next)
    }

    /// Forgets every generation of a scope's data key but the current one.
    pub(crate) fn retire_old(&self, backend: &dyn Backend, scope: Scope) -> Result<(), StoreError> {
        let _one = self.create.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(mut rec) = self.load(backend, scope)? else {
            return Ok(());
        };
        let current = rec.current;
        rec.keys.retain(|g, _| *g == current);
        self.save(backend, scope, &rec)?;
        self.cache(scope, rec)?;
        Ok(())
    }

    /// Removes every generation of a scope's data key, with `with` in the same atomic batch,
    /// flushed, and drops it from the cache; returns whether the scope had a key.
    pub(crate) fn forget(
        &self,
        backend: &dyn Backend,
        scope: Scope,
        with: Op,
    ) -> Result<bool, StoreError> {
        let _one = self.create.lock().unwrap_or_else(PoisonError::into_inner);
        let key = scope.meta_key();
        let existed = backend.get(META, &key)?.is_some();
        let drop_key = Op {
            tree: META,
            key,
            value: None,
        };
        backend.batch(&[with, drop_key])?;
        backend.flush()?;
        self.scopes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&scope);
        Ok(existed)
    }

    /// Drops every cached data key: another replica may have removed, created or rotated
    /// one (a deleted collection's key must not outlive it here); the next use reads them
    /// from the store again.
    pub(crate) fn drop_cached(&self) {
        let _one = self.create.lock().unwrap_or_else(PoisonError::into_inner);
        self.scopes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn cached(&self, scope: Scope) -> Option<Arc<DataKeys>> {
        self.scopes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&scope)
            .cloned()
    }

    fn cache(&self, scope: Scope, rec: DataKeyRecord) -> Result<Arc<DataKeys>, StoreError> {
        let bad = || StoreError::Seal {
            tree: META,
            key: String::from_utf8_lossy(&scope.meta_key()).into_owned(),
            source: SealError::Open,
        };
        let mut keys = BTreeMap::new();
        for (g, k) in rec.keys {
            let raw: [u8; 32] = hex::decode(k)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(bad)?;
            keys.insert(g, Sealer::from_key(raw));
        }
        let keys = Arc::new(DataKeys {
            current: rec.current,
            keys,
        });
        self.scopes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(scope, keys.clone());
        Ok(keys)
    }

    fn load(
        &self,
        backend: &dyn Backend,
        scope: Scope,
    ) -> Result<Option<DataKeyRecord>, StoreError> {
        let key = scope.meta_key();
        let Some(sealed) = backend.get(META, &key)? else {
            return Ok(None);
        };
        let bad = |source| StoreError::Seal {
            tree: META,
            key: String::from_utf8_lossy(&key).into_owned(),
            source,
        };
        let plain = self.master().open(&sealed, &meta_aad(&key)).map_err(bad)?;
        serde_json::from_slice(&plain)
            .map(Some)
            .map_err(|_| bad(SealError::Open))
    }

    fn save(
        &self,
        backend: &dyn Backend,
        scope: Scope,
        rec: &DataKeyRecord,
    ) -> Result<(), StoreError> {
        let key = scope.meta_key();
        let plain = serde_json::to_vec(rec).unwrap_or_default();
        let sealed = self.master().seal(&plain, &meta_aad(&key));
        backend.batch(&[put(&key, sealed)])?;
        Ok(backend.flush()?)
    }

    /// Seals `plain` with the current generation of `keys`, bound to `aad`.
    pub(crate) fn seal_with(keys: &DataKeys, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let g = keys.current;
        let mut out = Vec::with_capacity(plain.len().saturating_add(HEADER + 28));
        out.push(VALUE_TAG);
        out.extend_from_slice(&g.to_be_bytes());
        if let Some(s) = keys.keys.get(&g) {
            out.extend_from_slice(&s.seal(plain, &value_aad(aad, g)));
        }
        out
    }

    /// The generation a sealed value names (`None`: not a value of format 2).
    pub(crate) fn generation(sealed: &[u8]) -> Option<u32> {
        match sealed.split_first() {
            Some((&VALUE_TAG, rest)) => rest
                .get(..4)
                .and_then(|g| <[u8; 4]>::try_from(g).ok())
                .map(u32::from_be_bytes),
            _ => None,
        }
    }

    /// Opens a value sealed by [`Keyring::seal_with`] with one of `keys`' generations.
    pub(crate) fn open_with(keys: &DataKeys, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let g = Self::generation(sealed)?;
        let s = keys.keys.get(&g)?;
        s.open(sealed.get(HEADER..)?, &value_aad(aad, g)).ok()
    }

    /// Re-seals the master-sealed metadata under `new` in one batch (data keys are re-wrapped,
    /// not changed; no value is touched); a passphrase key brings its `kdf` record, any other
    /// removes it. The old master key stops opening the store.
    pub(crate) fn rotate_master(
        &self,
        backend: &dyn Backend,
        new: Sealer,
        kdf: Option<&Kdf>,
    ) -> Result<usize, StoreError> {
        let _one = self.create.lock().unwrap_or_else(PoisonError::into_inner);
        let old = self.master();
        let mut ops = Vec::new();
        for entry in backend.scan_prefix(META, b"")? {
            let (k, v) = entry?;
            if k.as_slice() != CHECK && k.as_slice() != INDEX && !k.starts_with(DATA_KEY) {
                continue;
            }
            let aad = meta_aad(&k);
            let plain = old.open(&v, &aad).map_err(|source| StoreError::Seal {
                tree: META,
                key: String::from_utf8_lossy(&k).into_owned(),
                source,
            })?;
            ops.push(put(&k, new.seal(&plain, &aad)));
        }
        let rewrapped = ops.len();
        match kdf {
            Some(kdf) => ops.push(put(KDF, serde_json::to_vec(kdf).unwrap_or_default())),
            None => ops.push(Op {
                tree: META,
                key: KDF.to_vec(),
                value: None,
            }),
        }
        backend.batch(&ops)?;
        backend.flush()?;
        *self.master.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(new);
        Ok(rewrapped)
    }

    /// Every data-key scope recorded, with its generations, for `llmos store check`.
    pub(crate) fn check_data_keys(&self, backend: &dyn Backend) -> Result<Vec<String>, StoreError> {
        let mut errors = Vec::new();
        for entry in backend.scan_prefix(META, DATA_KEY)? {
            let (k, v) = entry?;
            let ok = self
                .master()
                .open(&v, &meta_aad(&k))
                .ok()
                .and_then(|p| serde_json::from_slice::<DataKeyRecord>(&p).ok())
                .is_some_and(|r| r.keys.contains_key(&r.current));
            if !ok {
                errors.push(hex::encode(&k));
            }
        }
        Ok(errors)
    }
}

fn half(h: [u8; 32]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(h.get(..16).unwrap_or(&[0; 16]));
    out
}

fn value_aad(aad: &[u8], generation: u32) -> Vec<u8> {
    let mut a = Vec::with_capacity(aad.len().saturating_add(4));
    a.extend_from_slice(aad);
    a.extend_from_slice(&generation.to_be_bytes());
    a
}

/// The records a store without metadata gets: key check, index key, the rest's data key.
fn create_meta(master: &Sealer, writes: &mut Vec<Op>) {
    writes.push(put(CHECK, master.seal(CHECK_TEXT, &meta_aad(CHECK))));
    let root = Sealer::random_key();
    writes.push(put(INDEX, master.seal(&root, &meta_aad(INDEX))));
    let rest = DataKeyRecord {
        current: 1,
        keys: BTreeMap::from([(1, hex::encode(Sealer::random_key()))]),
    };
    let key = Scope::Rest.meta_key();
    let plain = serde_json::to_vec(&rest).unwrap_or_default();
    writes.push(put(&key, master.seal(&plain, &meta_aad(&key))));
}

/// The master key a source gives for this store. A missing key file is created, and a
/// passphrase gets a new salt, only for a store that holds nothing.
fn resolve(
    backend: &dyn Backend,
    source: &MasterSource,
    found: &Found,
    writes: &mut Vec<Op>,
) -> Result<Sealer, StoreError> {
    let used = found.check.is_some() || found.old_data;
    let err = |error| StoreError::MasterKey {
        path: backend.location().into(),
        error,
    };
    match source {
        MasterSource::Key(k) => Ok(Sealer::from_key(*k)),
        MasterSource::File(path) => match read_key_file(path).map_err(err)? {
            Some(k) => Ok(Sealer::from_key(k)),
            None if used => Err(err(SealError::KeyFile {
                path: path.clone(),
                message: "does not exist, but the store already holds data sealed with a \
                          master key: restore that key file, or give the key with \
                          LLMOS_MASTER_KEY, LLMOS_MASTER_PASSPHRASE or LLMOS_MASTER_KEY_FILE"
                    .into(),
            })),
            None => Ok(Sealer::from_key(create_key_file(path).map_err(err)?)),
        },
        MasterSource::Passphrase(p) => {
            let kdf = match backend.get(META, KDF)? {
                Some(json) => serde_json::from_slice::<Kdf>(&json).map_err(|e| {
                    err(SealError::Passphrase(format!(
                        "the store's key derivation record is not valid: {e}"
                    )))
                })?,
                None if used => {
                    return Err(err(SealError::Passphrase(
                        "this store's master key is not a passphrase (it has no Argon2 salt); \
                         give its key with LLMOS_MASTER_KEY or LLMOS_MASTER_KEY_FILE"
                            .into(),
                    )));
                }
                None => {
                    let kdf = Kdf::new_random();
                    writes.push(put(KDF, serde_json::to_vec(&kdf).unwrap_or_default()));
                    kdf
                }
            };
            Ok(Sealer::from_key(kdf.derive(p).map_err(err)?))
        }
    }
}

/// A store from before format 2 holds values sealed directly with the master key: the key is
/// right when it opens the first value of every tree.
fn verify_old(backend: &dyn Backend, master: &Sealer, trees: &[&'static str]) -> Result<(), String> {
    for t in trees {
        let first = backend
            .range(t, None)
            .map_err(|e| e.to_string())?
            .next()
            .transpose()
            .map_err(|e| e.to_string())?;
        if let Some((k, v)) = first
            && master.open(&v, &old_aad(t, &k)).is_err()
        {
            return Err(format!(
                "it does not open the first value of tree {t} (key {}), \
                 which this store's format (1) sealed with the master key",
                String::from_utf8_lossy(&k)
            ));
        }
    }
    Ok(())
}

/// The associated data of a value before format 2: `tree \0 key`.
pub(crate) fn old_aad(tree: &str, key: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(tree.len().saturating_add(1).saturating_add(key.len()));
    aad.extend_from_slice(tree.as_bytes());
    aad.push(0);
    aad.extend_from_slice(key);
    aad
}

//! Whole-store operations: migration from format 1, `rotate-master`, `rekey`, `check`.
//!
//! None of them may run while another process uses the store (the backend's lock refuses a
//! second opener, so `llmos store …` cannot run beside `llmos serve`).

use super::backend::{Op, RawEntry};
use super::keyring::{FORMAT_VERSION, Keyring, Scope, old_aad};
use super::store::{BATCH, Store, StoreError, Tree};
use crate::security::master::{Kdf, MasterSource, create_key_file, read_key_file};
use crate::security::seal::{SealError, Sealer};

/// What `rekey` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rekeyed {
    /// The collection.
    pub collection: String,
    /// The data-key generation its values are sealed with now.
    pub generation: u32,
    /// Values re-sealed by this run.
    pub resealed: usize,
    /// Whether this run continued an unfinished one.
    pub resumed: bool,
    /// Whether every value is under the new key (old generations are then forgotten); when
    /// not, run it again to continue.
    pub done: bool,
}

/// An entry that did not pass `check`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckError {
    /// The tree.
    pub tree: &'static str,
    /// The stored key: clear where the tree keeps clear keys, else `hex:` and its hash.
    pub key: String,
    /// What is wrong.
    pub error: String,
}

/// What `check` found, per tree.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckReport {
    /// Entries per tree, in [`Tree::ALL`] order.
    pub entries: Vec<(&'static str, usize)>,
    /// Every entry that does not open, and every data-key record that does not.
    pub errors: Vec<CheckError>,
}

fn key_name(tree: Tree, stored: &[u8]) -> String {
    match std::str::from_utf8(stored) {
        Ok(s) if !tree.hashed() && !s.contains(|c: char| c.is_control()) => s.to_string(),
        _ => format!("hex:{}", hex::encode(stored)),
    }
}

impl Store {
    /// Brings a store of an older format to the current one (see the module documentation of
    /// the store). Returns whether the database must now be rewritten (a migration replaced
    /// clear keys, which sled's log may still hold).
    pub(super) fn migrate(&self) -> Result<bool, StoreError> {
        let format = Keyring::format(self.backend())?;
        if format == FORMAT_VERSION {
            return Keyring::compact_pending(self.backend());
        }
        if format > FORMAT_VERSION {
            return Err(StoreError::Newer {
                path: self.backend().location().into(),
                found: format,
                known: FORMAT_VERSION,
            });
        }
        let mut moved = 0usize;
        for tree in Tree::ALL {
            let n = self.migrate_tree(tree)?;
            if n > 0 {
                tracing::info!(tree = tree.name(), entries = n, "store migrated to format 2");
            }
            moved = moved.saturating_add(n);
        }
        Keyring::set_format(self.backend(), moved > 0)?;
        Ok(moved > 0)
    }

    /// Re-seals a tree's format-1 entries under their new keys, a batch at a time (each batch
    /// atomic); entries already in format 2 are left alone, so a second run resumes. Usage
    /// counters are dropped (they are measured again on first use).
    fn migrate_tree(&self, tree: Tree) -> Result<usize, StoreError> {
        let mut after: Option<Vec<u8>> = None;
        let mut moved = 0usize;
        loop {
            let page = self
                .backend()
                .range(tree.name(), after.as_deref())?
                .take(BATCH)
                .collect::<Result<Vec<RawEntry>, _>>()?;
            let Some((last, _)) = page.last() else {
                break;
            };
            after = Some(last.clone());
            let mut ops = Vec::new();
            for (k, v) in page {
                let remove = Op {
                    tree: tree.name(),
                    key: k.clone(),
                    value: None,
                };
                if tree == Tree::Usage {
                    ops.push(remove);
                    continue;
                }
                if self.try_open(tree, &k, &v)?.is_some() {
                    continue;
                }
                let plain = self
                    .keyring()
                    .open_old(&v, &old_aad(tree.name(), &k))
                    .map_err(|source| StoreError::Seal {
                        tree: tree.name(),
                        key: String::from_utf8_lossy(&k).into_owned(),
                        source,
                    })?;
                let stored = self.stored_key(tree, &k);
                let sealed = self.seal(tree, &stored, &k, &plain)?;
                if stored != k {
                    ops.push(remove);
                }
                ops.push(Op {
                    tree: tree.name(),
                    key: stored,
                    value: Some(sealed),
                });
                moved = moved.saturating_add(1);
            }
            if !ops.is_empty() {
                self.backend().batch(&ops)?;
            }
        }
        self.flush()?;
        Ok(moved)
    }

    /// Re-wraps every data key (and the index key and key check) under the master key from
    /// `new`, in one atomic batch; no value is re-encrypted. Afterwards only the new key opens
    /// the store. A key file that does not exist is created (0600, random key); a passphrase
    /// gets a new salt. Returns how many records were re-wrapped.
    pub fn rotate_master(&self, new: &MasterSource) -> Result<usize, StoreError> {
        let err = |error| StoreError::MasterKey {
            path: self.backend().location().into(),
            error,
        };
        let (sealer, kdf) = match new {
            MasterSource::Key(k) => (Sealer::from_key(*k), None),
            MasterSource::File(p) => {
                let key = match read_key_file(p).map_err(err)? {
                    Some(k) => k,
                    None => create_key_file(p).map_err(err)?,
                };
                (Sealer::from_key(key), None)
            }
            MasterSource::Passphrase(p) => {
                let kdf = Kdf::new_random();
                (Sealer::from_key(kdf.derive(p).map_err(err)?), Some(kdf))
            }
        };
        self.keyring()
            .rotate_master(self.backend(), sealer, kdf.as_ref())
    }

    /// Re-seals one collection (its record, documents and chunks) under a new data key, a
    /// batch at a time; stops after `max_batches` batches when given. A run after an
    /// interrupted one continues with the same new key; when every value is re-sealed the
    /// old key is forgotten.
    pub fn rekey(
        &self,
        collection: &str,
        max_batches: Option<usize>,
    ) -> Result<Rekeyed, StoreError> {
        let b = self.backend();
        let h = self.keyring().ns_hash(collection.as_bytes());
        let scope = Scope::Collection(h);
        let Some(keys) = self.keyring().keys(b, scope)? else {
            return Err(StoreError::NotFound(format!(
                "no collection named {collection:?} in this store (nothing is sealed with \
                 its key); names are exact"
            )));
        };
        let resumed = keys.generations() > 1;
        let generation = if resumed {
            keys.current
        } else {
            self.keyring().new_generation(b, scope)?
        };
        let keys = self.keyring().write_keys(b, scope)?;
        let mut out = Rekeyed {
            collection: collection.into(),
            generation,
            resealed: 0,
            resumed,
            done: false,
        };
        let mut batches = 0usize;
        for tree in [Tree::Collections, Tree::Documents, Tree::Chunks] {
            let mut after = h.to_vec();
            loop {
                if max_batches.is_some_and(|m| batches >= m) {
                    return Ok(out);
                }
                let page = b
                    .range(tree.name(), Some(&after))?
                    .take_while(|e| e.as_ref().map_or(true, |(k, _)| k.starts_with(&h)))
                    .take(BATCH)
                    .collect::<Result<Vec<RawEntry>, _>>()?;
                let Some((last, _)) = page.last() else {
                    break;
                };
                after = last.clone();
                let mut ops = Vec::new();
                for (k, v) in page {
                    if Keyring::generation(&v) == Some(generation) {
                        continue;
                    }
                    let (real, value) =
                        self.open_entry(tree, &k, &v, || key_name(tree, &k))?;
                    let sealed = Store::seal_with(&keys, tree, &k, &real, &value);
                    ops.push(Op {
                        tree: tree.name(),
                        key: k,
                        value: Some(sealed),
                    });
                }
                if !ops.is_empty() {
                    b.batch(&ops)?;
                    b.flush()?;
                    batches = batches.saturating_add(1);
                    out.resealed = out.resealed.saturating_add(ops.len());
                }
            }
        }
        self.keyring().retire_old(b, scope)?;
        out.done = true;
        Ok(out)
    }

    /// Opens every value of every tree and every data-key record; reports counts and each
    /// entry that does not open (or whose real key does not hash to where it is stored).
    pub fn check(&self) -> Result<CheckReport, StoreError> {
        let mut report = CheckReport {
            entries: Vec::new(),
            errors: Vec::new(),
        };
        for key in self.keyring().check_data_keys(self.backend())? {
            report.errors.push(CheckError {
                tree: super::keyring::META,
                key: format!("hex:{key}"),
                error: SealError::Open.to_string(),
            });
        }
        for tree in Tree::ALL {
            let mut n = 0usize;
            for item in self.backend().scan_prefix(tree.name(), b"")? {
                let (k, v) = item?;
                n = n.saturating_add(1);
                let error = match self.try_open(tree, &k, &v)? {
                    None => "does not open: altered, moved, or sealed with a data key that is gone",
                    Some((real, _)) if tree.hashed() && self.stored_key(tree, &real) != k => {
                        "opens, but its key does not hash to where it is stored (moved)"
                    }
                    Some(_) => continue,
                };
                report.errors.push(CheckError {
                    tree: tree.name(),
                    key: key_name(tree, &k),
                    error: error.into(),
                });
            }
            report.entries.push((tree.name(), n));
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::keyring::META;
    use std::path::Path;

    type Raw = Vec<(&'static str, Vec<u8>, Vec<u8>)>;

    /// Every raw entry of every backend tree, metadata included.
    fn raw(s: &Store) -> Raw {
        let mut out = Vec::new();
        for t in Tree::ALL.iter().map(|t| t.name()).chain([META]) {
            for e in s.backend().scan_prefix(t, b"").unwrap() {
                let (k, v) = e.unwrap();
                out.push((t, k, v));
            }
        }
        out
    }

    /// Raw entries read without any key (the backend alone).
    fn raw_at(path: &Path) -> Raw {
        let b = crate::data::backend::SledBackend::open(path).unwrap();
        let mut out = Vec::new();
        for t in Tree::ALL.iter().map(|t| t.name()).chain([META]) {
            for e in crate::data::backend::Backend::scan_prefix(&b, t, b"").unwrap() {
                let (k, v) = e.unwrap();
                out.push((t, k, v));
            }
        }
        out
    }

    fn fill(s: &Store) {
        s.put(Tree::PluginKv, b"plug\0key", b"kv value").unwrap();
        s.put(Tree::Collections, b"books", b"{\"model\":\"minilm\"}").unwrap();
        s.put(Tree::Documents, b"books\0doc", b"document").unwrap();
        s.put(Tree::ApiKeys, b"id1", b"key record").unwrap();
    }

    fn readable(s: &Store) {
        assert_eq!(s.get(Tree::PluginKv, b"plug\0key").unwrap().unwrap(), b"kv value");
        assert_eq!(s.get(Tree::Documents, b"books\0doc").unwrap().unwrap(), b"document");
        assert_eq!(s.get(Tree::ApiKeys, b"id1").unwrap().unwrap(), b"key record");
        assert!(s.check().unwrap().errors.is_empty());
    }

    #[test]
    fn a_wrong_master_key_is_refused_at_open_and_nothing_changes() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("db");
        let s = Store::open(&path, Sealer::from_key([1; 32])).unwrap();
        fill(&s);
        let fp = s.fingerprint("c", b"x");
        drop(s);
        let before = raw_at(&path);
        let e = Store::open(&path, Sealer::from_key([2; 32])).unwrap_err();
        assert!(matches!(e, StoreError::WrongMasterKey { .. }), "{e}");
        assert!(e.to_string().contains("Nothing was changed"), "{e}");
        assert_eq!(raw_at(&path), before);
        let s = Store::open(&path, Sealer::from_key([1; 32])).unwrap();
        readable(&s);
        assert_eq!(s.fingerprint("c", b"x"), fp);
    }

    #[test]
    fn rotate_master_rewraps_keys_only_and_the_old_key_stops_working() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("db");
        let s = Store::open(&path, Sealer::from_key([1; 32])).unwrap();
        fill(&s);
        let fp = s.fingerprint("c", b"x");
        let values = |r: &Raw| -> Raw { r.iter().filter(|e| e.0 != META).cloned().collect() };
        let before = values(&raw(&s));
        assert!(s.rotate_master(&MasterSource::Key([3; 32])).unwrap() >= 4);
        assert_eq!(values(&raw(&s)), before, "no value is re-encrypted");
        readable(&s);
        s.put(Tree::Documents, b"books\0new", b"after rotation").unwrap();
        drop(s);
        let e = Store::open(&path, Sealer::from_key([1; 32])).unwrap_err();
        assert!(matches!(e, StoreError::WrongMasterKey { .. }), "{e}");
        let s = Store::open(&path, Sealer::from_key([3; 32])).unwrap();
        readable(&s);
        assert_eq!(s.fingerprint("c", b"x"), fp, "fingerprints survive rotation");
        // To a passphrase and back to a key file.
        let pass = MasterSource::passphrase("correct horse battery".into()).unwrap();
        s.rotate_master(&pass).unwrap();
        drop(s);
        let s = Store::open_source(&path, pass).unwrap();
        readable(&s);
        let file = d.path().join("new.key");
        s.rotate_master(&MasterSource::File(file.clone())).unwrap();
        drop(s);
        let s = Store::open_source(&path, MasterSource::File(file)).unwrap();
        readable(&s);
    }

    #[test]
    fn rekey_reseals_a_collection_and_an_interrupted_one_completes_on_rerun() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("db");
        let s = Store::open(&path, Sealer::from_key([1; 32])).unwrap();
        fill(&s);
        let keys: Vec<Vec<u8>> = (0..1300).map(|i| format!("books\0c{i}").into_bytes()).collect();
        let writes: Vec<(Tree, &[u8], &[u8])> =
            keys.iter().map(|k| (Tree::Chunks, k.as_slice(), &b"chunk"[..])).collect();
        s.put_many(&writes).unwrap();
        s.put(Tree::Chunks, b"other\0c", b"not books").unwrap();
        let other_before = raw(&s).into_iter().find(|e| e.0 == "chunks" && e.2[..5] == [2, 0, 0, 0, 1]);
        // Interrupted after one batch: everything still opens (two generations).
        let first = s.rekey("books", Some(1)).unwrap();
        assert!(!first.done && first.resealed > 0 && first.generation == 2, "{first:?}");
        drop(s);
        let s = Store::open(&path, Sealer::from_key([1; 32])).unwrap();
        readable(&s);
        assert_eq!(s.values(Tree::Chunks, b"books\0").unwrap().len(), 1300);
        let second = s.rekey("books", None).unwrap();
        assert!(second.done && second.resumed && second.generation == 2, "{second:?}");
        assert_eq!(first.resealed + second.resealed, 1302, "record, document, chunks once each");
        readable(&s);
        // Every value of the collection names generation 2; the other collection is untouched.
        let h = s.keyring().ns_hash(b"books");
        for (t, k, v) in raw(&s) {
            if t != META && k.starts_with(&h) {
                assert_eq!(Keyring::generation(&v), Some(2), "{t}");
            }
        }
        assert!(other_before.is_some());
        assert_eq!(s.get(Tree::Chunks, b"other\0c").unwrap().unwrap(), b"not books");
        let keys = s.keyring().keys(s.backend(), Scope::Collection(h)).unwrap().unwrap();
        assert_eq!((keys.current, keys.generations()), (2, 1), "the old key is forgotten");
        let e = s.rekey("nope", None).unwrap_err();
        assert!(e.to_string().contains("no collection named \"nope\""), "{e}");
    }

    #[test]
    fn removing_a_collection_forgets_its_key_so_copies_of_its_values_no_longer_open() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("db");
        let s = Store::open(&path, Sealer::from_key([1; 32])).unwrap();
        fill(&s);
        s.put(Tree::Chunks, b"books\0c1", b"chunk text").unwrap();
        s.rekey("books", Some(1)).unwrap(); // two generations
        let h = s.keyring().ns_hash(b"books");
        let key_records = |s: &Store| {
            raw(s)
                .into_iter()
                .filter(|(t, k, _)| *t == META && k.starts_with(b"data-key\0c") && k.ends_with(&h))
                .count()
        };
        assert_eq!(key_records(&s), 1);
        let stored = s.stored_key(Tree::Chunks, b"books\0c1");
        let saved = s.backend().get("chunks", &stored).unwrap().unwrap();
        // Refused (and nothing removed) while documents or chunks remain.
        let e = s.remove_collection("books").unwrap_err();
        assert!(matches!(e, StoreError::NotEmpty { .. }), "{e}");
        assert!(e.to_string().contains("delete the collection again"), "{e}");
        assert_eq!(s.get(Tree::Chunks, b"books\0c1").unwrap().unwrap(), b"chunk text");
        s.remove_prefix(Tree::Chunks, b"books\0").unwrap();
        s.remove_prefix(Tree::Documents, b"books\0").unwrap();
        assert!(s.remove_collection("books").unwrap());
        assert_eq!(key_records(&s), 0, "every generation is gone");
        assert_eq!(s.get(Tree::Collections, b"books").unwrap(), None);
        assert!(s.keyring().keys(s.backend(), Scope::Collection(h)).unwrap().is_none());
        // A sealed value copied before the delete (as sled's log may keep it) opens no more,
        // neither now nor once a collection of that name exists again, nor after reopening.
        s.backend().insert("chunks", &stored, &saved).unwrap();
        let e = s.get(Tree::Chunks, b"books\0c1").unwrap_err();
        assert!(matches!(e, StoreError::Seal { tree: "chunks", .. }), "{e}");
        s.put(Tree::Collections, b"books", b"{}").unwrap();
        assert!(s.get(Tree::Chunks, b"books\0c1").is_err());
        drop(s);
        let s = Store::open(&path, Sealer::from_key([1; 32])).unwrap();
        assert!(s.get(Tree::Chunks, b"books\0c1").is_err());
        assert_eq!(s.check().unwrap().errors.len(), 1);
        assert_eq!(s.get(Tree::PluginKv, b"plug\0key").unwrap().unwrap(), b"kv value");
    }

    /// Writes `entries` the way the store wrote them before format 2: clear keys, values
    /// sealed with the master key bound to `tree \0 key`, no metadata.
    fn write_format_1(path: &Path, master: [u8; 32], entries: &[(Tree, &[u8], &[u8])]) {
        let b = crate::data::backend::SledBackend::open(path).unwrap();
        let sealer = Sealer::from_key(master);
        for (t, k, v) in entries {
            let sealed = sealer.seal(v, &old_aad(t.name(), k));
            crate::data::backend::Backend::insert(&b, t.name(), k, &sealed).unwrap();
        }
        crate::data::backend::Backend::flush(&b).unwrap();
    }

    #[test]
    fn a_format_1_store_is_migrated_once_and_an_interrupted_migration_resumes() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("db");
        let old: Vec<(Tree, &[u8], &[u8])> = vec![
            (Tree::Plugins, b"plug", b"{\"plugin\":1}"),
            (Tree::PluginKv, b"plug\0old-kv-key", b"old kv value"),
            (Tree::PluginSecrets, b"plug\0token", b"old secret"),
            (Tree::Audit, &[0, 0, 0, 0, 0, 0, 0, 1], b"old audit"),
            (Tree::Usage, b"plugin-kv\0plug\0", b"{\"bytes\":1,\"keys\":1}"),
        ];
        write_format_1(&path, [9; 32], &old);
        // The wrong key is refused before anything is written.
        let before = raw_at(&path);
        let e = Store::open(&path, Sealer::from_key([8; 32])).unwrap_err();
        assert!(e.to_string().contains("first value of tree"), "{e}");
        assert_eq!(raw_at(&path), before);
        let s = Store::open(&path, Sealer::from_key([9; 32])).unwrap();
        for (t, k, v) in old.iter().filter(|e| e.0 != Tree::Usage) {
            assert_eq!(s.get(*t, k).unwrap().unwrap(), *v, "{t:?}");
        }
        for (_, k, v) in raw(&s) {
            for needle in [&b"old-kv-key"[..], b"token", b"old kv value"] {
                assert!(!k.windows(needle.len()).any(|w| w == needle));
                assert!(!v.windows(needle.len()).any(|w| w == needle));
            }
        }
        assert_eq!(Keyring::format(s.backend()).unwrap(), FORMAT_VERSION);
        assert_eq!(s.usage(Tree::PluginKv, b"plug\0").unwrap().keys, 1, "measured again");
        // An interruption: some entries still in format 1 and no format record.
        s.backend().remove(META, b"format").unwrap();
        drop(s);
        write_format_1(&path, [9; 32], &[(Tree::PluginKv, b"plug\0late", b"late value")]);
        let s = Store::open(&path, Sealer::from_key([9; 32])).unwrap();
        assert_eq!(s.get(Tree::PluginKv, b"plug\0late").unwrap().unwrap(), b"late value");
        assert_eq!(s.get(Tree::PluginKv, b"plug\0old-kv-key").unwrap().unwrap(), b"old kv value");
        assert_eq!(s.keys(Tree::PluginKv, b"plug\0", 10).unwrap().len(), 2);
        assert!(s.check().unwrap().errors.is_empty());
    }

    #[test]
    fn key_sources_passphrase_and_a_missing_key_file() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("db");
        let pass = |p: &str| MasterSource::passphrase(p.into()).unwrap();
        let s = Store::open_source(&path, pass("a long passphrase")).unwrap();
        fill(&s);
        drop(s);
        readable(&Store::open_source(&path, pass("a long passphrase")).unwrap());
        let e = Store::open_source(&path, pass("a long passphrasf")).unwrap_err();
        assert!(matches!(e, StoreError::WrongMasterKey { .. }), "{e}");
        // A key file that does not exist is not created for a store that holds data.
        let file = d.path().join("master.key");
        let e = Store::open_source(&path, MasterSource::File(file.clone())).unwrap_err();
        assert!(e.to_string().contains("already holds data"), "{e}");
        assert!(!file.exists());
        // A fresh store gets one, and a passphrase is refused there (no salt).
        let fresh = d.path().join("db2");
        drop(Store::open_source(&fresh, MasterSource::File(file.clone())).unwrap());
        assert!(file.exists());
        let e = Store::open_source(&fresh, pass("a long passphrase")).unwrap_err();
        assert!(e.to_string().contains("not a passphrase"), "{e}");
    }
}

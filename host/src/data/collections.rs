//! Collections: named sets of documents, chunked and embedded, sealed in the store.
//!
//! Trees (see docs/data.md): `Collections` (name → [`CollectionRecord`]), `Documents`
//! (`name \0 document-id` → [`DocumentRecord`], and `name \0 \0 hash` → the chunk id that
//! holds a chunk's content, for de-duplication), `Chunks` (`name \0 document-id:seq` →
//! [`ChunkRecord`]). Writes of one batch (chunks, the documents they complete, the hash
//! index and the collection's counts) are one atomic, flushed [`Store::put_many`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::data::{Store, StoreError, Tree};
use crate::security::audit::now_ms;

mod scan;

pub use scan::{Filter, Hit, Loaded};

/// Errors of collections and documents.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A collection name or document id that is not accepted.
    #[error("invalid {what} {value:?}: {accepted}")]
    BadName {
        /// `collection name` or `document id`.
        what: &'static str,
        /// What was given.
        value: String,
        /// What is accepted.
        accepted: &'static str,
    },
    /// Settings that cannot be used.
    #[error("{0}")]
    BadSettings(String),
    /// No such collection.
    #[error("no collection {0:?} (GET /v1/collections or `llmos data ls` lists them)")]
    NoCollection(String),
    /// No such document.
    #[error("collection {collection:?} has no document {id:?}")]
    NoDocument {
        /// The collection.
        collection: String,
        /// The document id.
        id: String,
    },
    /// A search that cannot run (wrong vector size, bad filter).
    #[error("{0}")]
    BadQuery(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What collection names may look like (also what a `data:<collection>` scope can name).
pub const NAME_RULE: &str = "1 to 64 characters: ASCII letters, digits, '.', '_' or '-', starting with a letter or digit";
/// What document ids may look like.
pub const ID_RULE: &str = "1 to 128 characters: ASCII letters, digits, '.', '_', '-', '~', '@', '+' or '='";

/// Checks a collection name.
pub fn check_name(name: &str) -> Result<(), DataError> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    ok.then_some(()).ok_or_else(|| DataError::BadName {
        what: "collection name",
        value: name.chars().take(80).collect(),
        accepted: NAME_RULE,
    })
}

/// Checks a document id.
pub fn check_id(id: &str) -> Result<(), DataError> {
    let ok = (1..=128).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-~@+=".contains(c));
    ok.then_some(()).ok_or_else(|| DataError::BadName {
        what: "document id",
        value: id.chars().take(140).collect(),
        accepted: ID_RULE,
    })
}

/// A collection's settings and counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionRecord {
    /// Record version.
    pub v: u32,
    /// Name.
    pub name: String,
    /// The embedding model.
    pub model: String,
    /// Tokens per chunk, special tokens included (at most the model's maximum).
    pub chunk_tokens: usize,
    /// Tokens shared by consecutive chunks of a document.
    pub overlap_tokens: usize,
    /// Preprocessor plugins each chunk (and each text query) runs through, in order.
    pub preprocessors: Vec<String>,
    /// Documents stored.
    pub documents: u64,
    /// Chunks stored.
    pub chunks: u64,
    /// Created, ms since the Unix epoch.
    pub created_ms: u64,
    /// Last changed, ms since the Unix epoch.
    pub updated_ms: u64,
}

/// A stored document: what it is, where it came from and how many chunks it has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentRecord {
    /// Record version.
    pub v: u32,
    /// Id.
    pub id: String,
    /// Metadata (also copied into each chunk, for filters).
    pub metadata: Map<String, Value>,
    /// Where it came from (`file` or `file:line`), when ingested from files.
    pub source: Option<String>,
    /// Keyed fingerprint of the text (hex): an unchanged document is skipped.
    pub hash: String,
    /// Chunks cut from it (ids `id:0` … `id:n-1`).
    pub chunks: u32,
    /// Of those, how many were already stored elsewhere (same content) and not stored again.
    pub duplicates: u32,
    /// Stored, ms since the Unix epoch.
    pub created_ms: u64,
}

/// A stored chunk (docs/data.md): text as stored (after the preprocessors), metadata, the
/// fingerprint of its text and its L2-normalised embedding (base64 of little-endian f32).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkRecord {
    /// Record version.
    pub v: u32,
    /// The document id.
    pub document: String,
    /// Position in the document.
    pub seq: u32,
    /// The text as stored.
    pub text: String,
    /// The document's metadata.
    pub metadata: Map<String, Value>,
    /// Keyed fingerprint (hex) of the chunk's text as cut from the document (before the
    /// preprocessors, so a re-run skips the plugins and the model for it).
    pub hash: String,
    /// The embedding.
    pub embedding: String,
}

impl ChunkRecord {
    /// The chunk id: `document:seq`.
    pub fn id(&self) -> String {
        chunk_id(&self.document, self.seq)
    }

    /// The embedding as numbers (`None` when it is not whole f32s).
    pub fn vector(&self) -> Option<Vec<f32>> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.embedding)
            .ok()?;
        let (whole, rest) = bytes.as_chunks::<4>();
        rest.is_empty()
            .then(|| whole.iter().map(|b| f32::from_le_bytes(*b)).collect())
    }
}

/// Encodes a vector for [`ChunkRecord::embedding`].
pub fn encode_vector(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `document:seq`.
pub fn chunk_id(document: &str, seq: u32) -> String {
    format!("{document}:{seq}")
}

fn key(collection: &str, rest: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(collection.len().saturating_add(rest.len()).saturating_add(1));
    k.extend_from_slice(collection.as_bytes());
    k.push(0);
    k.extend_from_slice(rest.as_bytes());
    k
}

fn hash_key(collection: &str, hash: &str) -> Vec<u8> {
    key(collection, &format!("\0{hash}"))
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// One atomic write of an ingest: chunks and the documents they complete.
#[derive(Debug, Default)]
pub struct Batch {
    /// New chunks.
    pub chunks: Vec<ChunkRecord>,
    /// Documents whose last chunk is in this batch (or earlier).
    pub documents: Vec<DocumentRecord>,
}

/// The collections of one store. Writes to one collection are serialised (counts stay
/// right); searches read the collection's vectors kept in memory (decrypted once, on first
/// search), which ingest writes update in place and deletes prune.
#[derive(Debug)]
pub struct Collections {
    store: Store,
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    loaded: Mutex<HashMap<String, Arc<RwLock<Loaded>>>>,
    /// Bumped by every write: a load that raced a write is used once, never kept.
    writes: AtomicU64,
}

impl Collections {
    /// Collections kept in `store`.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            locks: Mutex::default(),
            loaded: Mutex::default(),
            writes: AtomicU64::new(0),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn lock(&self, name: &str) -> Arc<Mutex<()>> {
        let mut m = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(name.to_string()).or_default().clone()
    }

    fn forget(&self, name: &str) {
        self.writes.fetch_add(1, Ordering::SeqCst);
        let mut m = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        m.remove(name);
    }

    /// The loaded index of `name`, if a search opened it.
    fn loaded_now(&self, name: &str) -> Option<Arc<RwLock<Loaded>>> {
        let m = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        m.get(name).cloned()
    }

    /// Brings a loaded index up to date after a stored batch (or drops it if that fails).
    fn loaded_add(&self, name: &str, chunks: Vec<ChunkRecord>) {
        self.writes.fetch_add(1, Ordering::SeqCst);
        if let Some(l) = self.loaded_now(name) {
            let mut w = l.write().unwrap_or_else(|e| e.into_inner());
            if w.add(chunks).is_err() {
                drop(w);
                self.forget(name);
            }
        }
    }

    /// A keyed fingerprint (hex, 128 bits) of `data` for `context`.
    pub fn fingerprint(&self, context: &str, data: &[u8]) -> String {
        let f = self.store.fingerprint(context, data);
        hex::encode(f.get(..16).unwrap_or(&f))
    }

    /// A collection's record.
    pub fn get(&self, name: &str) -> Result<Option<CollectionRecord>, DataError> {
        check_name(name)?;
        Ok(self.store.get_json(Tree::Collections, name.as_bytes())?)
    }

    /// A collection's record, or [`DataError::NoCollection`].
    pub fn require(&self, name: &str) -> Result<CollectionRecord, DataError> {
        self.get(name)?
            .ok_or_else(|| DataError::NoCollection(name.to_string()))
    }

    /// Every collection, by name.
    pub fn list(&self) -> Result<Vec<CollectionRecord>, DataError> {
        let mut out = Vec::new();
        for (k, v) in self.store.values(Tree::Collections, b"")? {
            let rec = serde_json::from_slice(&v).map_err(|e| StoreError::Decode {
                tree: Tree::Collections.name(),
                key: String::from_utf8_lossy(&k).into_owned(),
                message: e.to_string(),
            })?;
            out.push(rec);
        }
        Ok(out)
    }

    /// Writes a collection's settings (new, or changed): a collection that holds chunks
    /// keeps its model and chunking (its vectors were made with them).
    pub fn save(&self, rec: &CollectionRecord) -> Result<(), DataError> {
        check_name(&rec.name)?;
        let lock = self.lock(&rec.name);
        let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut rec = rec.clone();
        if let Some(old) = self.get(&rec.name)? {
            let changed = old.model != rec.model
                || old.chunk_tokens != rec.chunk_tokens
                || old.overlap_tokens != rec.overlap_tokens;
            if changed && old.chunks > 0 {
                return Err(DataError::BadSettings(format!(
                    "collection {:?} holds {} chunks embedded by {} with {} tokens per chunk and {} overlap: \
                     these cannot change (only `preprocessors` can); delete the collection or create another",
                    rec.name, old.chunks, old.model, old.chunk_tokens, old.overlap_tokens
                )));
            }
            rec.documents = old.documents;
            rec.chunks = old.chunks;
            rec.created_ms = old.created_ms;
        }
        rec.updated_ms = now_ms();
        self.store
            .put(Tree::Collections, rec.name.as_bytes(), &encode(&rec))?;
        Ok(())
    }

    /// Deletes a collection with its documents and chunks; returns its last record.
    pub fn delete(&self, name: &str) -> Result<CollectionRecord, DataError> {
        let rec = self.require(name)?;
        let lock = self.lock(name);
        let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
        let ns = key(name, "");
        // Chunks first: a crash part-way leaves a listed collection to delete again, never
        // searchable chunks without their collection.
        self.store.remove_prefix(Tree::Chunks, &ns)?;
        self.store.remove_prefix(Tree::Documents, &ns)?;
        self.store.remove(Tree::Collections, name.as_bytes())?;
        self.forget(name);
        Ok(rec)
    }

    /// A document's record.
    pub fn document(&self, name: &str, id: &str) -> Result<Option<DocumentRecord>, DataError> {
        check_id(id)?;
        Ok(self.store.get_json(Tree::Documents, &key(name, id))?)
    }

    /// Every document of a collection, by id.
    pub fn documents(&self, name: &str) -> Result<Vec<DocumentRecord>, DataError> {
        self.require(name)?;
        let mut out = Vec::new();
        for (k, v) in self.store.values(Tree::Documents, &key(name, ""))? {
            if k.get(name.len().saturating_add(1)) == Some(&0) {
                continue; // the hash index
            }
            out.push(decode(Tree::Documents, &k, &v)?);
        }
        Ok(out)
    }

    /// A document's chunks, in order.
    pub fn chunks(&self, name: &str, id: &str) -> Result<Vec<ChunkRecord>, DataError> {
        let prefix = key(name, &format!("{id}:"));
        let mut out: Vec<ChunkRecord> = self
            .store
            .values(Tree::Chunks, &prefix)?
            .iter()
            .map(|(k, v)| decode(Tree::Chunks, k, v))
            .collect::<Result<_, _>>()?;
        out.sort_by_key(|c| c.seq);
        Ok(out)
    }

    /// Every chunk of a collection (export, search load).
    pub fn all_chunks(&self, name: &str) -> Result<Vec<ChunkRecord>, DataError> {
        self.store
            .values(Tree::Chunks, &key(name, ""))?
            .iter()
            .map(|(k, v)| decode(Tree::Chunks, k, v))
            .collect()
    }

    /// Deletes a document and its chunks; returns its record.
    pub fn delete_document(&self, name: &str, id: &str) -> Result<DocumentRecord, DataError> {
        let lock = self.lock(name);
        let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut coll = self.require(name)?;
        let doc = self.document(name, id)?.ok_or_else(|| DataError::NoDocument {
            collection: name.to_string(),
            id: id.to_string(),
        })?;
        let removed = self
            .store
            .remove_prefix(Tree::Chunks, &key(name, &format!("{id}:")))?;
        self.store.remove(Tree::Documents, &key(name, id))?;
        coll.documents = coll.documents.saturating_sub(1);
        coll.chunks = coll.chunks.saturating_sub(removed as u64);
        coll.updated_ms = now_ms();
        self.store
            .put(Tree::Collections, name.as_bytes(), &encode(&coll))?;
        self.writes.fetch_add(1, Ordering::SeqCst);
        if let Some(l) = self.loaded_now(name) {
            l.write()
                .unwrap_or_else(|e| e.into_inner())
                .remove_document(id);
        }
        Ok(doc)
    }

    /// The id of the stored chunk whose cut text has fingerprint `hash`, if one is stored
    /// (an index entry whose chunk is gone, after a delete, does not count).
    pub fn stored_hash(&self, name: &str, hash: &str) -> Result<Option<String>, DataError> {
        let Some(id) = self.store.get(Tree::Documents, &hash_key(name, hash))? else {
            return Ok(None);
        };
        let id = String::from_utf8_lossy(&id).into_owned();
        let present = self.store.get(Tree::Chunks, &key(name, &id))?.is_some();
        Ok(present.then_some(id))
    }

    /// Stores a batch atomically (one flushed transaction) and updates the counts.
    pub fn write(&self, name: &str, batch: &Batch) -> Result<(), DataError> {
        let lock = self.lock(name);
        let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut coll = self.require(name)?;
        coll.documents = coll
            .documents
            .saturating_add(batch.documents.len() as u64);
        coll.chunks = coll.chunks.saturating_add(batch.chunks.len() as u64);
        coll.updated_ms = now_ms();
        let mut owned: Vec<(Tree, Vec<u8>, Vec<u8>)> = Vec::new();
        for c in &batch.chunks {
            let id = c.id();
            owned.push((Tree::Chunks, key(name, &id), encode(c)));
            owned.push((Tree::Documents, hash_key(name, &c.hash), id.into_bytes()));
        }
        for d in &batch.documents {
            owned.push((Tree::Documents, key(name, &d.id), encode(d)));
        }
        owned.push((Tree::Collections, name.as_bytes().to_vec(), encode(&coll)));
        let writes: Vec<(Tree, &[u8], &[u8])> = owned
            .iter()
            .map(|(t, k, v)| (*t, k.as_slice(), v.as_slice()))
            .collect();
        self.store.put_many(&writes)?;
        self.loaded_add(name, batch.chunks.clone());
        Ok(())
    }

    /// The `top_k` chunks nearest to `query` (an L2-normalised vector of the collection's
    /// model) that pass `filter`, best first. The collection's vectors are loaded (opened)
    /// on first use and kept until the next write.
    pub fn search(
        &self,
        name: &str,
        query: &[f32],
        top_k: usize,
        filter: &Filter,
    ) -> Result<Vec<Hit>, DataError> {
        let loaded = self.loaded(name)?;
        let l = loaded.read().unwrap_or_else(|e| e.into_inner());
        scan::search(&l, query, top_k, filter)
    }

    fn loaded(&self, name: &str) -> Result<Arc<RwLock<Loaded>>, DataError> {
        self.require(name)?;
        if let Some(l) = self.loaded_now(name) {
            return Ok(l);
        }
        let before = self.writes.load(Ordering::SeqCst);
        let l = Arc::new(RwLock::new(Loaded::from_chunks(self.all_chunks(name)?)?));
        let mut m = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if self.writes.load(Ordering::SeqCst) == before {
            m.insert(name.to_string(), l.clone());
        }
        Ok(l)
    }
}

fn decode<T: serde::de::DeserializeOwned>(tree: Tree, k: &[u8], v: &[u8]) -> Result<T, DataError> {
    serde_json::from_slice(v).map_err(|e| {
        DataError::Store(StoreError::Decode {
            tree: tree.name(),
            key: String::from_utf8_lossy(k).into_owned(),
            message: e.to_string(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::seal::Sealer;

    fn coll(name: &str) -> CollectionRecord {
        CollectionRecord {
            v: 1,
            name: name.into(),
            model: "m".into(),
            chunk_tokens: 8,
            overlap_tokens: 2,
            preprocessors: vec![],
            documents: 0,
            chunks: 0,
            created_ms: 1,
            updated_ms: 1,
        }
    }

    fn chunk(doc: &str, seq: u32, v: &[f32], meta: Value) -> ChunkRecord {
        ChunkRecord {
            v: 1,
            document: doc.into(),
            seq,
            text: format!("{doc} {seq}"),
            metadata: meta.as_object().cloned().unwrap_or_default(),
            hash: format!("h-{doc}-{seq}"),
            embedding: encode_vector(v),
        }
    }

    fn doc(id: &str, chunks: u32) -> DocumentRecord {
        DocumentRecord {
            v: 1,
            id: id.into(),
            metadata: Map::new(),
            source: None,
            hash: format!("d-{id}"),
            chunks,
            duplicates: 0,
            created_ms: 1,
        }
    }

    #[test]
    fn names_and_ids_are_checked_and_say_what_is_accepted() {
        for ok in ["a", "docs-2026", "A.b_c", &"x".repeat(64)] {
            check_name(ok).unwrap();
        }
        for bad in ["", "-a", "a b", "a/b", "a\0b", "*", &"x".repeat(65), "é"] {
            let e = check_name(bad).unwrap_err().to_string();
            assert!(e.contains("ASCII letters"), "{e}");
        }
        check_id("doc-1@v2").unwrap();
        assert!(check_id("a:1").is_err());
        assert!(check_id("a/b").is_err());
    }

    #[test]
    fn batches_counts_search_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db"), Sealer::from_key([3; 32])).unwrap();
        let c = Collections::new(s);
        c.save(&coll("one")).unwrap();
        c.save(&coll("onex")).unwrap();
        let batch = Batch {
            chunks: vec![
                chunk("a", 0, &[1.0, 0.0], serde_json::json!({"year": 2020})),
                chunk("a", 1, &[0.6, 0.8], serde_json::json!({"year": 2020})),
                chunk("b", 0, &[0.0, 1.0], serde_json::json!({"year": 2024})),
            ],
            documents: vec![doc("a", 2), doc("b", 1)],
        };
        c.write("one", &batch).unwrap();
        c.write("onex", &Batch { chunks: vec![chunk("z", 0, &[1.0, 0.0], Value::Null)], documents: vec![doc("z", 1)] }).unwrap();
        let rec = c.require("one").unwrap();
        assert_eq!((rec.documents, rec.chunks), (2, 3));
        assert_eq!(c.documents("one").unwrap().len(), 2, "the hash index is not listed");
        assert_eq!(c.stored_hash("one", "h-a-1").unwrap().as_deref(), Some("a:1"));
        let hits = c.search("one", &[1.0, 0.0], 2, &Filter::default()).unwrap();
        assert_eq!(hits.iter().map(|h| h.chunk.as_str()).collect::<Vec<_>>(), ["a:0", "a:1"]);
        let f = Filter::parse(&serde_json::json!({"year": {"gte": 2021}})).unwrap();
        let hits = c.search("one", &[1.0, 0.0], 5, &f).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].document, "b");
        // Deleting a document removes its chunks from search, and its hashes stop counting.
        c.delete_document("one", "a").unwrap();
        let hits = c.search("one", &[1.0, 0.0], 5, &Filter::default()).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(c.stored_hash("one", "h-a-1").unwrap(), None);
        let rec = c.require("one").unwrap();
        assert_eq!((rec.documents, rec.chunks), (1, 1));
        // A collection whose name is a prefix of another's is not touched by its delete.
        c.delete("one").unwrap();
        assert!(c.get("one").unwrap().is_none());
        assert_eq!(c.all_chunks("onex").unwrap().len(), 1);
        assert_eq!(c.documents("onex").unwrap().len(), 1);
    }

    #[test]
    fn a_collection_with_chunks_keeps_its_model_and_chunking() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db"), Sealer::from_key([3; 32])).unwrap();
        let c = Collections::new(s);
        c.save(&coll("one")).unwrap();
        c.write("one", &Batch { chunks: vec![chunk("a", 0, &[1.0], Value::Null)], documents: vec![doc("a", 1)] }).unwrap();
        let mut changed = coll("one");
        changed.chunk_tokens = 16;
        let e = c.save(&changed).unwrap_err().to_string();
        assert!(e.contains("only `preprocessors` can"), "{e}");
        let mut pre = coll("one");
        pre.preprocessors = vec!["normalize".into()];
        c.save(&pre).unwrap();
        let rec = c.require("one").unwrap();
        assert_eq!((rec.chunks, rec.preprocessors.len()), (1, 1));
    }
}

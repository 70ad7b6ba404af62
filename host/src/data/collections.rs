//! Collections: named sets of documents, chunked and embedded, sealed in the store.
//!
//! Trees (see docs/data.md): `Collections` (name → [`CollectionRecord`]), `Documents`
//! (`name \0 document-id` → [`DocumentRecord`], and `name \0 \0 hash` → the chunk id that
//! holds a chunk's content, for de-duplication), `Chunks` (`name \0 document-id:seq` →
//! [`ChunkRecord`]). Writes of one batch (chunks, the documents they complete, the hash
//! index and the collection's counts) are one atomic, flushed [`Store::put_many`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::data::backend::KeyChange;
use crate::data::{Store, StoreError, Tree};
use crate::security::audit::now_ms;

mod scan;
mod shared;

pub use scan::{Filter, Hit, Loaded};
pub use shared::{Owner, Shared, split_chunk_id};

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
    #[error(
        "no collection {0:?}: create it with POST /v1/collections/{0} (or `llmos data create {0}`); GET /v1/collections or `llmos data ls` lists those that exist"
    )]
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
    /// Chunks of those documents not stored because another chunk holds their text: the
    /// text's hash and the chunk (recorded in the hash's entry, so the text can move to it).
    pub shared: Vec<(String, Owner)>,
}

/// Pending keys of one collection past which following it reloads it whole.
const FOLLOW_KEYS_MAX: usize = 50_000;
/// Chunks read per backend call when following changes.
const FOLLOW_READ: usize = 512;

/// Changes other replicas made to one collection (by its namespace hash), not applied yet.
#[derive(Debug, Default)]
struct NsPending {
    /// Its record was removed (the collection deleted; maybe created again since).
    dropped: bool,
    /// More than [`FOLLOW_KEYS_MAX`] chunk keys: reload it whole.
    overflow: bool,
    /// Stored keys of chunks written or removed.
    chunks: HashSet<[u8; 32]>,
}

/// Changes other replicas made, waiting for [`Collections::follow`].
#[derive(Debug, Default)]
struct Pending {
    /// Anything may have changed (the listener reconnected): reload every collection.
    all: bool,
    by_ns: HashMap<[u8; 16], NsPending>,
}

/// Loads and followed changes of one collection in this process.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    loads: u64,
    applied: u64,
}

/// What this replica holds of a collection in memory (`GET /v1/collections/{name}`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Memory {
    /// Whether its vectors are in memory.
    pub loaded: bool,
    /// Chunks in memory.
    pub chunks: usize,
    /// Whole loads from the store since start (start-up, first search, reloads).
    pub loads: u64,
    /// Chunks written or removed by other replicas and applied in memory one by one.
    pub changes_followed: u64,
}

/// What one [`Collections::follow`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Followed {
    /// Chunk changes applied in place.
    pub applied: usize,
    /// Collections loaded whole (reloaded, or new here).
    pub loaded: usize,
    /// Whether some changes wait for a load in progress (call again shortly).
    pub waiting: bool,
}

/// The collections of one store. Writes to one collection are serialised (counts stay
/// right); searches read the collection's vectors kept in memory (decrypted once, at start by
/// [`Collections::load_all`] or on first search), which ingest writes update in place and
/// deletes prune. Changes made by other replicas sharing the store are noted
/// ([`Collections::note_change`]) and applied to the collection they name
/// ([`Collections::follow`]).
#[derive(Debug)]
pub struct Collections {
    store: Store,
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    loaded: Mutex<HashMap<String, Arc<RwLock<Loaded>>>>,
    /// Bumped by every write: a load that raced a write is used once, never kept.
    writes: AtomicU64,
    /// Changes of other replicas not applied yet.
    pending: Mutex<Pending>,
    /// Collections a search is loading now, and how many loads: their changes wait.
    loading: Mutex<HashMap<String, usize>>,
    stats: Mutex<HashMap<String, Stats>>,
}

impl Collections {
    /// Collections kept in `store`.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            locks: Mutex::default(),
            loaded: Mutex::default(),
            writes: AtomicU64::new(0),
            pending: Mutex::default(),
            loading: Mutex::default(),
            stats: Mutex::default(),
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

    /// How many collections have their vectors in memory now.
    pub fn loaded_count(&self) -> usize {
        self.loaded.lock().unwrap_or_else(|e| e.into_inner()).len()
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
        } else {
            // A new collection gets a fresh data key: one left by a collection of the same
            // name deleted before keys went with their collection is dropped first (unless
            // it still seals entries).
            match self.store.remove_collection(&rec.name) {
                Ok(_) | Err(StoreError::NotEmpty { .. }) => {}
                Err(e) => return Err(e.into()),
            }
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
        // searchable chunks without their collection. Then the record and the data key
        // together (crypto-shredding: leftovers in the database's log no longer open).
        self.store.remove_prefix(Tree::Chunks, &ns)?;
        self.store.remove_prefix(Tree::Documents, &ns)?;
        self.forget(name);
        self.store.remove_collection(name)?;
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
        // A stored document says how many chunks were cut from it (`id:0` … `id:n-1`): read
        // those keys directly. A prefix scan would open every chunk of the collection (its
        // keys are hashed); only a document cut short by a crash, with no record yet, needs it.
        if let Some(doc) = self.document(name, id)? {
            let mut out = Vec::new();
            for seq in 0..doc.chunks {
                let k = key(name, &chunk_id(id, seq));
                if let Some(v) = self.store.get(Tree::Chunks, &k)? {
                    out.push(decode(Tree::Chunks, &k, &v)?);
                }
            }
            return Ok(out);
        }
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
        let chunks = self.chunks(name, id)?;
        let mut plan = Rehome::new(id);
        for c in &chunks {
            plan.chunk(self, name, c)?;
        }
        coll.documents = coll.documents.saturating_sub(1);
        coll.chunks = coll
            .chunks
            .saturating_sub(chunks.len() as u64)
            .saturating_add(plan.chunks.len() as u64);
        coll.updated_ms = now_ms();
        let mut removes: Vec<(Tree, Vec<u8>)> = chunks
            .iter()
            .map(|c| (Tree::Chunks, key(name, &c.id())))
            .collect();
        removes.extend(plan.gone.iter().map(|h| (Tree::Documents, hash_key(name, h))));
        removes.push((Tree::Documents, key(name, id)));
        let mut puts: Vec<(Tree, Vec<u8>, Vec<u8>)> = Vec::new();
        for c in &plan.chunks {
            puts.push((Tree::Chunks, key(name, &c.id()), encode(c)));
        }
        for (h, e) in &plan.entries {
            puts.push((Tree::Documents, hash_key(name, h), encode(e)));
        }
        for d in plan.docs.values().flatten().filter(|d| plan.touched.contains(&d.id)) {
            puts.push((Tree::Documents, key(name, &d.id), encode(d)));
        }
        puts.push((Tree::Collections, name.as_bytes().to_vec(), encode(&coll)));
        let rm: Vec<(Tree, &[u8])> = removes.iter().map(|(t, k)| (*t, k.as_slice())).collect();
        let put: Vec<(Tree, &[u8], &[u8])> = puts
            .iter()
            .map(|(t, k, v)| (*t, k.as_slice(), v.as_slice()))
            .collect();
        // One atomic step: a crash leaves the document whole or gone, its shared texts moved.
        self.store.write_many(&put, &rm)?;
        self.writes.fetch_add(1, Ordering::SeqCst);
        if let Some(l) = self.loaded_now(name) {
            l.write()
                .unwrap_or_else(|e| e.into_inner())
                .remove_document(id);
        }
        self.loaded_add(name, plan.chunks);
        Ok(doc)
    }

    /// The id of the stored chunk whose cut text has fingerprint `hash`, if one is stored
    /// (an index entry whose chunk is gone, after a delete, does not count).
    pub fn stored_hash(&self, name: &str, hash: &str) -> Result<Option<String>, DataError> {
        let Some(entry) = self.shared(name, hash)? else {
            return Ok(None);
        };
        let present = self.store.get(Tree::Chunks, &key(name, &entry.chunk))?.is_some();
        Ok(present.then_some(entry.chunk))
    }

    /// The de-duplication entry of a chunk text's hash.
    pub fn shared(&self, name: &str, hash: &str) -> Result<Option<Shared>, DataError> {
        let k = hash_key(name, hash);
        let Some(bytes) = self.store.get(Tree::Documents, &k)? else {
            return Ok(None);
        };
        Shared::decode(&bytes)
            .map(Some)
            .map_err(|message| decode_error(Tree::Documents, &k, message))
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
        let mut entries: BTreeMap<&str, Shared> = BTreeMap::new();
        for c in &batch.chunks {
            let id = c.id();
            owned.push((Tree::Chunks, key(name, &id), encode(c)));
            // Owners recorded under an entry whose chunk is gone still count.
            let mut e = self.shared(name, &c.hash)?.unwrap_or_default();
            e.owners.retain(|o| o.chunk != id);
            e.chunk = id;
            entries.insert(&c.hash, e);
        }
        for (hash, owner) in &batch.shared {
            let e = match entries.entry(hash) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(v) => match self.shared(name, hash)? {
                    Some(e) => v.insert(e),
                    None => continue, // its holder was emptied by a preprocessor
                },
            };
            e.add(owner.clone());
        }
        for (hash, e) in &entries {
            owned.push((Tree::Documents, hash_key(name, hash), encode(e)));
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

    /// Loads the vectors of every collection that holds chunks into memory (at start, and
    /// again after another replica changed them), so that no search waits for a load. A
    /// collection that fails to load is logged and skipped (its searches then load it, and
    /// answer the error); returns how many were loaded.
    pub fn load_all(&self) -> Result<usize, DataError> {
        let mut n = 0usize;
        for c in self.list()? {
            if c.chunks == 0 {
                continue;
            }
            match self.loaded(&c.name) {
                Ok(_) => n = n.saturating_add(1),
                Err(e) => tracing::warn!("collection {:?} not loaded: {e}", c.name),
            }
        }
        Ok(n)
    }

    /// Whether any collection holds chunks (something for [`Collections::load_all`] to do).
    pub fn any_chunks(&self) -> Result<bool, DataError> {
        Ok(self.list()?.iter().any(|c| c.chunks > 0))
    }

    fn loaded(&self, name: &str) -> Result<Arc<RwLock<Loaded>>, DataError> {
        self.require(name)?;
        if let Some(l) = self.loaded_now(name) {
            return Ok(l);
        }
        // Changes other replicas make meanwhile wait in `pending` until this load is kept.
        let _loading = LoadingMark::new(&self.loading, name);
        let before = self.writes.load(Ordering::SeqCst);
        let l = Arc::new(RwLock::new(self.load_fresh(name)?));
        let mut m = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if self.writes.load(Ordering::SeqCst) == before {
            m.insert(name.to_string(), l.clone());
        }
        Ok(l)
    }

    /// Reads a collection's chunks from the store into a new index, streaming (one page of
    /// sealed values at a time, each chunk decoded straight into the index).
    fn load_fresh(&self, name: &str) -> Result<Loaded, DataError> {
        let expect = self.get(name)?.map_or(0, |c| c.chunks);
        let mut out = Loaded::with_capacity(usize::try_from(expect).unwrap_or(0));
        self.store
            .for_each_hashed(Tree::Chunks, &key(name, ""), |k, v| {
                out.add_one(decode(Tree::Chunks, &k, &v)?)
            })?;
        out.shrink();
        self.stat(name, |s| s.loads = s.loads.saturating_add(1));
        Ok(out)
    }

    fn stat(&self, name: &str, f: impl FnOnce(&mut Stats)) {
        let mut m = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        f(m.entry(name.to_string()).or_default());
    }

    /// What this process holds of `name` in memory.
    pub fn memory(&self, name: &str) -> Memory {
        let stats = self
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .copied()
            .unwrap_or_default();
        let chunks = self
            .loaded_now(name)
            .map(|l| l.read().unwrap_or_else(|e| e.into_inner()).len());
        Memory {
            loaded: chunks.is_some(),
            chunks: chunks.unwrap_or(0),
            loads: stats.loads,
            changes_followed: stats.applied,
        }
    }

    /// Whole loads and followed chunk changes, over every collection (`/metrics`).
    pub fn totals(&self) -> (u64, u64) {
        let m = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        m.values().fold((0u64, 0u64), |(l, a), s| {
            (l.saturating_add(s.loads), a.saturating_add(s.applied))
        })
    }

    /// Notes a change another replica made to a collection tree (called on the store's
    /// listener thread: it only records the key; [`Collections::follow`] applies it).
    /// Returns whether something is now due.
    pub fn note_change(&self, change: &KeyChange<'_>) -> bool {
        let Some(ns) = change.key.get(..16).and_then(|h| <[u8; 16]>::try_from(h).ok()) else {
            return false;
        };
        let chunk = if change.tree == Tree::Chunks.name() {
            match <[u8; 32]>::try_from(change.key) {
                Ok(k) => Some(k),
                Err(_) => return false,
            }
        } else if change.tree == Tree::Collections.name() {
            None
        } else {
            return false;
        };
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let e = p.by_ns.entry(ns).or_default();
        match chunk {
            Some(k) if !e.overflow => {
                e.chunks.insert(k);
                if e.chunks.len() > FOLLOW_KEYS_MAX {
                    e.overflow = true;
                    e.chunks = HashSet::new();
                }
            }
            Some(_) => {}
            None => e.dropped |= change.removed,
        }
        true
    }

    /// Notes that anything may have changed (the store's listener reconnected): the next
    /// [`Collections::follow`] reloads every collection.
    pub fn note_all(&self) {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).all = true;
    }

    /// Applies the changes noted since the last call: the chunks another replica wrote or
    /// removed are read (one round trip per [`FOLLOW_READ`]) and put into or taken out of the
    /// collection's index in place; a collection deleted elsewhere is dropped (and loaded
    /// again if it was created again); one with too many changes, or after `"*"`, is loaded
    /// again whole, and searches use the previous index until the new one replaces it. A
    /// collection this process does not hold is loaded if it now has chunks. Collections not
    /// named by a change are not touched.
    pub fn follow(&self) -> Followed {
        let p = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        let mut out = Followed::default();
        let held: Vec<String> = self
            .loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        if p.all {
            for name in &held {
                self.reload(name);
                out.loaded = out.loaded.saturating_add(1);
            }
            out.loaded = out.loaded.saturating_add(self.load_missing());
            return out;
        }
        if p.by_ns.is_empty() {
            return out;
        }
        let loading: Vec<String> = self
            .loading
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        let names: HashMap<[u8; 16], String> = held
            .iter()
            .chain(&loading)
            .map(|n| (self.store.ns_hash(n.as_bytes()), n.clone()))
            .collect();
        let mut unknown = false;
        for (ns, np) in p.by_ns {
            let Some(name) = names.get(&ns) else {
                unknown = true;
                continue;
            };
            if self.loaded_now(name).is_none() {
                if !loading.contains(name) {
                    continue; // dropped meanwhile: its next load reads the store as it is
                }
                // A search is loading it: apply once that load is kept.
                let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                let e = p.by_ns.entry(ns).or_default();
                e.dropped |= np.dropped;
                e.overflow |= np.overflow;
                e.chunks.extend(np.chunks);
                out.waiting = true;
                continue;
            }
            if np.dropped || np.overflow {
                self.reload(name);
                out.loaded = out.loaded.saturating_add(1);
                unknown |= np.dropped;
                continue;
            }
            if np.chunks.is_empty() {
                continue; // its record only (counts, settings)
            }
            match self.apply_chunks(name, &np.chunks) {
                Ok(n) => out.applied = out.applied.saturating_add(n),
                Err(e) => {
                    tracing::warn!("collection {name:?}: changes not applied ({e}); loading it again");
                    self.reload(name);
                    out.loaded = out.loaded.saturating_add(1);
                }
            }
        }
        if unknown {
            out.loaded = out.loaded.saturating_add(self.load_missing());
        }
        out
    }

    /// Loads the collections with chunks not in memory yet; returns how many were.
    fn load_missing(&self) -> usize {
        let Ok(all) = self.list() else {
            return 0;
        };
        let mut n = 0usize;
        for c in all {
            if c.chunks == 0 || self.loaded_now(&c.name).is_some() {
                continue;
            }
            match self.loaded(&c.name) {
                Ok(_) => n = n.saturating_add(1),
                Err(e) => tracing::warn!("collection {:?} not loaded: {e}", c.name),
            }
        }
        n
    }

    /// Loads `name` again whole and swaps it in (searches meanwhile use the index held
    /// now); a collection that no longer exists is dropped. A load that raced a local write
    /// is tried again (three times, then the index is dropped and the next search loads it).
    fn reload(&self, name: &str) {
        match self.get(name) {
            Ok(Some(_)) => {}
            Ok(None) => {
                self.forget(name);
                return;
            }
            Err(e) => {
                tracing::warn!("collection {name:?} not reloaded: {e}");
                self.forget(name);
                return;
            }
        }
        for _ in 0..3 {
            let before = self.writes.load(Ordering::SeqCst);
            let fresh = match self.load_fresh(name) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!("collection {name:?} not reloaded: {e}");
                    self.forget(name);
                    return;
                }
            };
            let mut m = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
            if self.writes.load(Ordering::SeqCst) == before {
                m.insert(name.to_string(), Arc::new(RwLock::new(fresh)));
                return;
            }
        }
        self.forget(name);
    }

    /// Reads the chunks stored under `keys` (changed by another replica) and puts them into
    /// `name`'s index, or takes out those no longer stored; returns how many changed.
    fn apply_chunks(&self, name: &str, keys: &HashSet<[u8; 32]>) -> Result<usize, DataError> {
        // Local writes to the collection wait: what is read here is what the store holds.
        let lock = self.lock(name);
        let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
        let Some(l) = self.loaded_now(name) else {
            return Ok(0);
        };
        let keys: Vec<[u8; 32]> = keys.iter().copied().collect();
        let prefix = key(name, "");
        let mut puts = Vec::new();
        let mut gone: HashSet<[u8; 32]> = HashSet::new();
        for part in keys.chunks(FOLLOW_READ) {
            let stored: Vec<Vec<u8>> = part.iter().map(|k| k.to_vec()).collect();
            let got = self.store.get_stored_many(Tree::Chunks, &stored)?;
            for (k, e) in part.iter().zip(got) {
                match e {
                    Some((real, v)) if real.starts_with(&prefix) => {
                        puts.push((*k, decode::<ChunkRecord>(Tree::Chunks, &real, &v)?));
                    }
                    Some(_) => {} // another namespace with the same hash prefix: not ours
                    None => {
                        gone.insert(*k);
                    }
                }
            }
        }
        // A removed chunk is known by its stored key only: find which of ours has it (the
        // map is built under the read lock; nothing else changes the index meanwhile, as the
        // collection's write lock is held).
        let built = if gone.is_empty() {
            None
        } else {
            let r = l.read().unwrap_or_else(|e| e.into_inner());
            r.key_map_to_build(|id| {
                <[u8; 32]>::try_from(self.store.stored_key(Tree::Chunks, &key(name, id))).ok()
            })
        };
        let mut w = l.write().unwrap_or_else(|e| e.into_inner());
        let removed = if gone.is_empty() {
            HashSet::new()
        } else {
            w.held_under(&gone, built)
        };
        let n = puts.len().saturating_add(removed.len());
        w.remove_ids(&removed);
        w.add_followed(puts)?;
        drop(w);
        self.stat(name, |s| s.applied = s.applied.saturating_add(n as u64));
        Ok(n)
    }
}

/// Marks a collection as being loaded for as long as it lives.
struct LoadingMark<'a> {
    map: &'a Mutex<HashMap<String, usize>>,
    name: String,
}

impl<'a> LoadingMark<'a> {
    fn new(map: &'a Mutex<HashMap<String, usize>>, name: &str) -> Self {
        let mut m = map.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(name.to_string()).or_default();
        *n = n.saturating_add(1);
        Self {
            map,
            name: name.to_string(),
        }
    }
}

impl Drop for LoadingMark<'_> {
    fn drop(&mut self) {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.name) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.name);
            }
        }
    }
}

/// What deleting one document changes in the de-duplication index: each text it holds moves
/// to the first recorded owner that still stands (a document of that id with the content it
/// had then), as a new chunk under that document with its metadata; a text nobody else has
/// loses its entry.
struct Rehome<'a> {
    /// The document being deleted.
    deleted: &'a str,
    /// Chunks made for the new holders.
    chunks: Vec<ChunkRecord>,
    /// Entries rewritten, by hash.
    entries: Vec<(String, Shared)>,
    /// Entries removed (nobody else has the text), by hash.
    gone: Vec<String>,
    /// Documents read (`None`: not stored), and those whose `duplicates` changed.
    docs: HashMap<String, Option<DocumentRecord>>,
    touched: std::collections::HashSet<String>,
}

impl<'a> Rehome<'a> {
    fn new(deleted: &'a str) -> Self {
        Self {
            deleted,
            chunks: Vec::new(),
            entries: Vec::new(),
            gone: Vec::new(),
            docs: HashMap::new(),
            touched: std::collections::HashSet::new(),
        }
    }

    /// Plans the move of `c`'s text, when `c` is what holds it.
    fn chunk(&mut self, c: &Collections, name: &str, chunk: &ChunkRecord) -> Result<(), DataError> {
        let Some(mut entry) = c.shared(name, &chunk.hash)? else {
            return Ok(());
        };
        if entry.chunk != chunk.id() {
            return Ok(()); // held by another chunk, which stays
        }
        let deleted = self.deleted;
        let mut owners = std::mem::take(&mut entry.owners)
            .into_iter()
            .filter(|o| split_chunk_id(&o.chunk).is_some_and(|(d, _)| d != deleted));
        while let Some(o) = owners.next() {
            let Some((doc, seq)) = split_chunk_id(&o.chunk) else {
                continue;
            };
            let slot = match self.docs.entry(doc.to_string()) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => v.insert(c.document(name, doc)?),
            };
            let Some(target) = slot.as_mut().filter(|d| d.hash == o.document_hash) else {
                continue; // deleted, or replaced by other content
            };
            target.duplicates = target.duplicates.saturating_sub(1);
            self.touched.insert(target.id.clone());
            self.chunks.push(ChunkRecord {
                document: target.id.clone(),
                seq,
                metadata: target.metadata.clone(),
                ..chunk.clone()
            });
            entry.chunk = o.chunk;
            entry.owners = owners.collect();
            self.entries.push((chunk.hash.clone(), entry));
            return Ok(());
        }
        self.gone.push(chunk.hash.clone());
        Ok(())
    }
}

fn decode<T: serde::de::DeserializeOwned>(tree: Tree, k: &[u8], v: &[u8]) -> Result<T, DataError> {
    serde_json::from_slice(v).map_err(|e| decode_error(tree, k, e.to_string()))
}

fn decode_error(tree: Tree, k: &[u8], message: String) -> DataError {
    DataError::Store(StoreError::Decode {
        tree: tree.name(),
        key: String::from_utf8_lossy(k).into_owned(),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::keyring::Keyring;
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
            ..Batch::default()
        };
        c.write("one", &batch).unwrap();
        c.write("onex", &Batch { chunks: vec![chunk("z", 0, &[1.0, 0.0], Value::Null)], documents: vec![doc("z", 1)], ..Batch::default() }).unwrap();
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
    fn a_shared_chunk_moves_to_a_remaining_owner_when_its_holder_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db"), Sealer::from_key([3; 32])).unwrap();
        let c = Collections::new(s.clone());
        c.save(&coll("one")).unwrap();
        let mut held = chunk("a", 0, &[1.0, 0.0], serde_json::json!({"tag": "a"}));
        (held.hash, held.text) = ("same".into(), "the shared paragraph".into());
        let a = Batch {
            chunks: vec![held, chunk("a", 1, &[0.0, 1.0], Value::Null)],
            documents: vec![doc("a", 2)],
            ..Batch::default()
        };
        c.write("one", &a).unwrap();
        let owner = |chunk: &str, hash: &str| Owner { chunk: chunk.into(), document_hash: hash.into() };
        let mut b = doc("b", 2);
        b.metadata = serde_json::json!({"tag": "b"}).as_object().cloned().unwrap();
        b.duplicates = 1;
        let mut stale = doc("s", 1);
        stale.duplicates = 1;
        // `s` was recorded with content it no longer has (replaced since): it does not count.
        let rest = Batch {
            chunks: vec![chunk("b", 1, &[0.6, 0.8], Value::Null)],
            documents: vec![b, stale],
            shared: vec![("same".into(), owner("s:0", "d-s-old")), ("same".into(), owner("b:0", "d-b"))],
        };
        c.write("one", &rest).unwrap();
        assert_eq!(c.shared("one", "same").unwrap().unwrap().owners.len(), 2);
        let hits = c.search("one", &[1.0, 0.0], 1, &Filter::default()).unwrap();
        assert_eq!(hits[0].chunk, "a:0");

        c.delete_document("one", "a").unwrap();
        assert_eq!(c.stored_hash("one", "same").unwrap().as_deref(), Some("b:0"));
        let moved = &c.chunks("one", "b").unwrap()[0];
        assert_eq!((moved.id().as_str(), moved.text.as_str()), ("b:0", "the shared paragraph"));
        assert_eq!(moved.metadata["tag"], "b", "the new holder's metadata");
        assert_eq!(c.document("one", "b").unwrap().unwrap().duplicates, 0);
        let rec = c.require("one").unwrap();
        assert_eq!((rec.documents, rec.chunks), (2, 2));
        // The loaded index and a fresh load agree: the text is found under b.
        let fresh = Collections::new(s.clone());
        for cs in [&c, &fresh] {
            let hits = cs.search("one", &[1.0, 0.0], 1, &Filter::default()).unwrap();
            assert_eq!((hits[0].chunk.as_str(), hits[0].text.as_str()), ("b:0", "the shared paragraph"));
            assert_eq!(hits[0].metadata["tag"], "b");
        }
        // Once every document that had it is gone, so is the text and its entry.
        c.delete_document("one", "b").unwrap();
        assert_eq!(c.shared("one", "same").unwrap(), None);
        let rec = c.require("one").unwrap();
        assert_eq!((rec.documents, rec.chunks), (1, 0));
        assert_eq!(c.all_chunks("one").unwrap().len(), 0);
        assert!(c.search("one", &[1.0, 0.0], 5, &Filter::default()).unwrap().is_empty());
    }

    #[test]
    fn deleting_a_collection_removes_its_data_key_and_a_new_one_gets_a_fresh_key() {
        use crate::data::keyring::Scope;
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db"), Sealer::from_key([3; 32])).unwrap();
        let c = Collections::new(s.clone());
        c.save(&coll("one")).unwrap();
        c.write("one", &Batch { chunks: vec![chunk("a", 0, &[1.0], Value::Null)], documents: vec![doc("a", 1)], ..Batch::default() }).unwrap();
        let scope = Scope::Collection(s.keyring().ns_hash(b"one"));
        let old = s.keyring().keys(s.backend(), scope).unwrap().unwrap();
        c.delete("one").unwrap();
        assert!(s.keyring().keys(s.backend(), scope).unwrap().is_none());
        c.save(&coll("one")).unwrap();
        let new = s.keyring().keys(s.backend(), scope).unwrap().unwrap();
        let sealed = Keyring::seal_with(&old, b"aad", b"x");
        assert!(Keyring::open_with(&new, b"aad", &sealed).is_none(), "a fresh key");
        assert!(s.check().unwrap().errors.is_empty());
    }

    #[test]
    fn following_applies_another_writers_chunks_to_the_named_collection_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db"), Sealer::from_key([3; 32])).unwrap();
        // Two replicas over one store: `a` writes, `b` follows what it is told changed.
        let (a, b) = (Collections::new(s.clone()), Collections::new(s.clone()));
        for name in ["one", "two"] {
            a.save(&coll(name)).unwrap();
        }
        let one = |d: &str, v: &[f32]| Batch { chunks: vec![chunk(d, 0, v, Value::Null)], documents: vec![doc(d, 1)], ..Batch::default() };
        a.write("one", &one("a", &[1.0, 0.0])).unwrap();
        a.write("two", &one("z", &[1.0, 0.0])).unwrap();
        assert_eq!(b.load_all().unwrap(), 2);
        let chunk_key = |name: &str, id: &str| s.stored_key(Tree::Chunks, &key(name, id));
        let note = |tree: Tree, k: &[u8], removed: bool| b.note_change(&KeyChange { tree: tree.name(), key: k, removed });

        a.write("one", &one("b", &[0.0, 1.0])).unwrap();
        assert!(note(Tree::Chunks, &chunk_key("one", "b:0"), false));
        assert!(!note(Tree::Documents, &chunk_key("one", "b"), false), "documents do not matter");
        let f = b.follow();
        assert_eq!((f.applied, f.loaded, f.waiting), (1, 0, false));
        let hits = b.search("one", &[0.0, 1.0], 1, &Filter::default()).unwrap();
        assert_eq!((hits[0].chunk.as_str(), hits[0].document.as_str()), ("b:0", "b"));
        let m = b.memory("one");
        assert_eq!((m.loaded, m.chunks, m.loads, m.changes_followed), (true, 2, 1, 1));
        assert_eq!(b.memory("two").loads, 1, "the other collection is not touched");

        // A deleted document: its chunk is known by its stored key only.
        a.delete_document("one", "a").unwrap();
        note(Tree::Chunks, &chunk_key("one", "a:0"), true);
        assert_eq!(b.follow().applied, 1);
        let hits = b.search("one", &[1.0, 0.0], 5, &Filter::default()).unwrap();
        assert_eq!(hits.iter().map(|h| h.chunk.as_str()).collect::<Vec<_>>(), ["b:0"]);
        assert_eq!(b.memory("one").loads, 1);
        // A chunk followed in, then removed elsewhere (found by the key it was followed under).
        a.write("one", &one("c", &[0.6, 0.8])).unwrap();
        note(Tree::Chunks, &chunk_key("one", "c:0"), false);
        assert_eq!(b.follow().applied, 1);
        assert_eq!(b.memory("one").chunks, 2);
        a.delete_document("one", "c").unwrap();
        note(Tree::Chunks, &chunk_key("one", "c:0"), true);
        assert_eq!(b.follow().applied, 1);
        assert_eq!(b.memory("one").chunks, 1);
        // A key written and removed before it was followed is nothing to remove.
        a.write("one", &one("d", &[0.6, 0.8])).unwrap();
        a.delete_document("one", "d").unwrap();
        note(Tree::Chunks, &chunk_key("one", "d:0"), false);
        assert_eq!(b.follow().applied, 0);
        assert_eq!(b.memory("one").chunks, 1);

        // A collection deleted elsewhere is dropped; one created elsewhere is loaded.
        a.delete("two").unwrap();
        a.save(&coll("three")).unwrap();
        a.write("three", &one("t", &[0.6, 0.8])).unwrap();
        note(Tree::Collections, &s.ns_hash(b"two"), true);
        note(Tree::Collections, &s.ns_hash(b"three"), false);
        let f = b.follow();
        assert_eq!(f.loaded, 2, "two dropped (a reload that finds it gone), three loaded");
        assert!(!b.memory("two").loaded);
        assert!(matches!(b.search("two", &[1.0, 0.0], 1, &Filter::default()), Err(DataError::NoCollection(_))));
        assert_eq!(b.memory("three").chunks, 1);

        // After "*" everything held is loaded again, and swapped in whole.
        b.note_all();
        assert_eq!(b.follow().loaded, 2);
        assert_eq!(b.memory("one").loads, 2);
        assert_eq!(b.search("one", &[0.0, 1.0], 5, &Filter::default()).unwrap().len(), 1);
    }

    #[test]
    fn a_collection_with_chunks_keeps_its_model_and_chunking() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db"), Sealer::from_key([3; 32])).unwrap();
        let c = Collections::new(s);
        c.save(&coll("one")).unwrap();
        c.write("one", &Batch { chunks: vec![chunk("a", 0, &[1.0], Value::Null)], documents: vec![doc("a", 1)], ..Batch::default() }).unwrap();
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

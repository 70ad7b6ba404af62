//! A collection opened for search: its chunks' vectors in a [`VectorIndex`] (one contiguous
//! normalised matrix, exact scan; see `data/search`) keyed by chunk id, and the rows' text,
//! document and metadata beside it. Kept in step with ingest writes; scores are cosine.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::{Map, Value};

use super::{ChunkRecord, DataError};
use crate::data::search::{self, Precision, SearchError, VectorIndex};

/// A metadata filter (see [`search::Filter`]); `null` or absent is no filter.
#[derive(Debug, Clone, Default)]
pub struct Filter(Option<search::Filter>);

impl Filter {
    /// Parses a filter: `null` is none, otherwise [`search::Filter::parse`]'s forms.
    pub fn parse(v: &Value) -> Result<Self, DataError> {
        match v {
            Value::Null => Ok(Self(None)),
            v => search::Filter::parse(v).map(|f| Self(Some(f))).map_err(bad),
        }
    }
}

fn bad(e: SearchError) -> DataError {
    DataError::BadQuery(e.to_string())
}

/// A search result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    /// Cosine similarity.
    pub score: f32,
    /// The document id.
    pub document: String,
    /// The chunk id (`document:seq`).
    pub chunk: String,
    /// The chunk's text.
    pub text: String,
    /// The chunk's metadata.
    pub metadata: Map<String, Value>,
}

/// A collection's chunks opened into memory: the index (vectors, chunk ids, metadata for
/// filters) and each chunk's text by chunk id (a result's document id is its chunk id's
/// first part).
#[derive(Debug, Default)]
pub struct Loaded {
    index: Option<VectorIndex>,
    rows: HashMap<String, Box<str>>,
    /// Chunks expected (room reserved once the first gives the vectors' size).
    expect: usize,
    /// Stored key → chunk id, to find the chunks another replica removed (known by stored
    /// key only): built on the first such removal (one keyed hash per chunk), then kept.
    by_key: HashMap<[u8; 32], Box<str>>,
    /// Whether `by_key` covers every chunk held (chunks added by this replica are not in it).
    by_key_complete: bool,
}

impl Loaded {
    /// Loads chunks (their embeddings must all have one size).
    pub fn from_chunks(chunks: Vec<ChunkRecord>) -> Result<Self, DataError> {
        let mut out = Self::with_capacity(chunks.len());
        out.add(chunks)?;
        Ok(out)
    }

    /// An empty collection with room for `n` chunks (at most 4 Mi reserved up front).
    pub fn with_capacity(n: usize) -> Self {
        let n = n.min(1 << 22);
        Self {
            index: None,
            rows: HashMap::with_capacity(n),
            expect: n,
            by_key: HashMap::new(),
            by_key_complete: false,
        }
    }

    /// Adds (or replaces) chunks.
    pub fn add(&mut self, chunks: Vec<ChunkRecord>) -> Result<(), DataError> {
        for c in chunks {
            self.add_one(c)?;
        }
        Ok(())
    }

    /// Adds (or replaces) one chunk.
    pub fn add_one(&mut self, c: ChunkRecord) -> Result<(), DataError> {
        let id = c.id();
        let v = c
            .vector()
            .ok_or_else(|| DataError::BadQuery(format!("chunk {id} has a malformed embedding")))?;
        let expect = self.expect.max(1024);
        let index = self.index.get_or_insert_with(|| {
            let mut i = VectorIndex::new(v.len(), Precision::F32);
            i.reserve(expect);
            i
        });
        index
            .upsert(&id, &v, c.metadata)
            .map_err(|e| DataError::BadQuery(format!("chunk {id}: {e}")))?;
        self.rows.insert(id, c.text.into_boxed_str());
        self.by_key_complete = false;
        Ok(())
    }

    /// Adds (or replaces) chunks another replica wrote, with their stored keys.
    pub fn add_followed(&mut self, chunks: Vec<([u8; 32], ChunkRecord)>) -> Result<(), DataError> {
        let complete = self.by_key_complete;
        for (k, c) in chunks {
            let id = c.id();
            self.add_one(c)?;
            if complete {
                self.by_key.insert(k, id.into_boxed_str());
            }
        }
        self.by_key_complete = complete;
        Ok(())
    }

    /// The stored key → chunk id map of every chunk held, when it must be built (the first
    /// removal followed, or chunks were added here since); `stored_key` gives a chunk id's
    /// stored key. Takes `&self`: the caller builds it under a read lock (searches go on).
    pub fn key_map_to_build(
        &self,
        stored_key: impl Fn(&str) -> Option<[u8; 32]>,
    ) -> Option<HashMap<[u8; 32], Box<str>>> {
        (!self.by_key_complete).then(|| {
            self.rows
                .keys()
                .filter_map(|id| Some((stored_key(id)?, id.clone().into_boxed_str())))
                .collect()
        })
    }

    /// The chunks held under `gone` stored keys, after installing `built` (from
    /// [`Loaded::key_map_to_build`], with nothing added in between).
    pub fn held_under(
        &mut self,
        gone: &HashSet<[u8; 32]>,
        built: Option<HashMap<[u8; 32], Box<str>>>,
    ) -> HashSet<String> {
        if let Some(map) = built {
            self.by_key = map;
            self.by_key_complete = true;
        }
        gone.iter()
            .filter_map(|k| self.by_key.get(k))
            .map(|id| id.to_string())
            .collect()
    }

    /// Removes the chunks of document `id`.
    pub fn remove_document(&mut self, id: &str) {
        let prefix = format!("{id}:");
        if let Some(index) = self.index.as_mut() {
            index.remove_where(|k| k.starts_with(&prefix));
        }
        self.rows.retain(|k, _| !k.starts_with(&prefix));
    }

    /// Removes the chunks `ids`.
    pub fn remove_ids(&mut self, ids: &HashSet<String>) {
        if ids.is_empty() {
            return;
        }
        if let Some(index) = self.index.as_mut() {
            index.remove_where(|k| ids.contains(k));
        }
        self.rows.retain(|k, _| !ids.contains(k));
        self.by_key.retain(|_, id| !ids.contains(&**id));
    }

    /// Gives back room reserved and not used (after a load).
    pub fn shrink(&mut self) {
        self.rows.shrink_to_fit();
        if let Some(i) = self.index.as_mut() {
            i.shrink_to_fit();
        }
    }

    /// How many chunks are loaded.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether nothing is loaded.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// The `top_k` best chunks of `l` for `query` that pass `filter`, best first.
pub(super) fn search(
    l: &Loaded,
    query: &[f32],
    top_k: usize,
    filter: &Filter,
) -> Result<Vec<Hit>, DataError> {
    let Some(index) = l.index.as_ref().filter(|i| !i.is_empty()) else {
        return Ok(Vec::new());
    };
    if query.len() != index.dims() {
        return Err(DataError::BadQuery(format!(
            "the query vector has {} dimensions; this collection's model makes {}",
            query.len(),
            index.dims()
        )));
    }
    let hits = index.search(query, top_k, filter.0.as_ref()).map_err(bad)?;
    Ok(hits
        .into_iter()
        .filter_map(|h| {
            let text = l.rows.get(&h.key)?;
            let document = super::split_chunk_id(&h.key).map_or("", |(d, _)| d);
            Some(Hit {
                score: h.score,
                document: document.to_string(),
                text: text.to_string(),
                metadata: index.metadata(&h.key).cloned().unwrap_or_default(),
                chunk: h.key,
            })
        })
        .collect())
}

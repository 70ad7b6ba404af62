//! Ingest: documents → chunks by the model's tokens → the collection's preprocessors → the
//! model's embeddings → the store, in batches of [`BATCH`] chunks, each one atomic and
//! flushed (a crash loses at most the batch being written). Re-running skips what is
//! stored: an unchanged document by its fingerprint, a chunk by the fingerprint of its
//! text (also a chunk of the same text in another document: de-duplication).
//!
//! The model and the plugins are reached through [`Embedder`], implemented above this layer
//! (`plugins::embedder`) by the same pipeline and batching path as the HTTP routes.

pub mod chunk;
pub mod formats;

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

pub use formats::{BadRecord, Doc, Fields, Format};

use crate::core::text::TokenSpan;
use crate::data::collections::{
    Batch, ChunkRecord, CollectionRecord, Collections, DataError, DocumentRecord, Owner,
    check_id, chunk_id, encode_vector, split_chunk_id,
};
use crate::security::audit::now_ms;

/// Chunks per write.
pub const BATCH: usize = 64;

/// The model and the preprocessors, as ingest needs them.
pub trait Embedder {
    /// A text's tokens (no special tokens, no truncation) and how many special tokens the
    /// model adds to every text.
    fn spans(&self, text: &str) -> Result<(Vec<TokenSpan>, usize), String>;
    /// Runs texts through the collection's preprocessors (as many texts come back).
    fn preprocess(&mut self, texts: Vec<String>) -> Result<Vec<String>, String>;
    /// Embeds texts (L2-normalised vectors, one per text).
    fn embed(&mut self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, String>;
}

/// Why an ingest stopped (what was acknowledged before stays stored).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The store or the collection.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The tokenizer, a preprocessor or the model failed.
    #[error("{0}")]
    Model(String),
}

/// What an ingest did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Documents stored (new or replaced).
    pub documents_stored: u64,
    /// Documents already stored with the same content and metadata (skipped).
    pub documents_unchanged: u64,
    /// Of the stored, how many replaced an older version with the same id.
    pub documents_replaced: u64,
    /// Chunks stored.
    pub chunks_stored: u64,
    /// Chunks not stored because the same text is stored already (in this or another
    /// document, or by an earlier interrupted run).
    pub chunks_skipped: u64,
    /// Chunks a preprocessor emptied (not stored).
    pub chunks_empty: u64,
    /// Records that could not be read or stored, with file and line.
    pub errors: Vec<BadRecord>,
}

/// A document cut into chunks, ready to store.
#[derive(Debug, Clone)]
pub struct Prepared {
    record: DocumentRecord,
    chunks: Vec<String>,
    replaces: bool,
    /// Its chunks whose text another document's chunk holds (hash, the chunk it would be).
    shared: Vec<(String, Owner)>,
}

impl Prepared {
    /// Its chunks.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }
}

fn bad(doc: &Doc, message: String) -> BadRecord {
    let source = doc.source.clone().unwrap_or_else(|| "request".into());
    let (file, line) = match source.rsplit_once(':') {
        Some((f, l)) if l.parse::<u64>().is_ok() => (f.to_string(), l.parse().unwrap_or(0)),
        _ => (source, 0),
    };
    BadRecord {
        file,
        line,
        message,
    }
}

/// Gives each document its id, skips unchanged ones and cuts the rest into chunks of the
/// collection's size (model tokens, special tokens included) with its overlap.
pub fn prepare(
    collections: &Collections,
    coll: &CollectionRecord,
    embedder: &dyn Embedder,
    docs: Vec<Doc>,
    report: &mut Report,
) -> Result<Vec<Prepared>, IngestError> {
    let mut out = Vec::new();
    for d in docs {
        let id = match &d.id {
            Some(id) => id.clone(),
            None => collections.fingerprint("llmos.document-id", d.text.as_bytes()),
        };
        if let Err(e) = check_id(&id) {
            report.errors.push(bad(&d, e.to_string()));
            continue;
        }
        let meta = Value::Object(d.metadata.clone()).to_string();
        let hash = collections.fingerprint(
            "llmos.document",
            format!("{}\0{meta}", d.text).as_bytes(),
        );
        let old = collections.document(&coll.name, &id)?;
        if old.as_ref().is_some_and(|o| o.hash == hash) {
            report.documents_unchanged = report.documents_unchanged.saturating_add(1);
            continue;
        }
        let (spans, added) = embedder.spans(&d.text).map_err(IngestError::Model)?;
        let size = coll.chunk_tokens.saturating_sub(added).max(1);
        let chunks = chunk::chunk(&d.text, &spans, size, coll.overlap_tokens);
        if chunks.is_empty() {
            report.errors.push(bad(&d, "holds no text".into()));
            continue;
        }
        let record = DocumentRecord {
            v: 1,
            id,
            metadata: d.metadata,
            source: d.source,
            hash,
            chunks: u32::try_from(chunks.len()).unwrap_or(u32::MAX),
            duplicates: 0,
            created_ms: now_ms(),
        };
        out.push(Prepared {
            record,
            chunks,
            replaces: old.is_some(),
            shared: Vec::new(),
        });
    }
    Ok(out)
}

/// How far an ingest is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Documents to store.
    pub documents_total: u64,
    /// Documents stored (acknowledged).
    pub documents_done: u64,
    /// Chunks to handle.
    pub chunks_total: u64,
    /// Chunks handled (stored or skipped).
    pub chunks_done: u64,
}

/// A chunk waiting for its batch.
struct Pending {
    doc: usize,
    seq: u32,
    text: String,
    hash: String,
}

/// Stores prepared documents in batches. After each batch, `acked` gets the progress and
/// the ids of the documents that batch completed (they are durable when it is called).
pub fn store(
    collections: &Collections,
    coll: &CollectionRecord,
    embedder: &mut dyn Embedder,
    mut docs: Vec<Prepared>,
    report: &mut Report,
    acked: &mut dyn FnMut(&Progress, &[String]),
) -> Result<(), IngestError> {
    let mut progress = Progress {
        documents_total: docs.len() as u64,
        chunks_total: docs.iter().map(|d| d.chunks.len() as u64).sum(),
        ..Progress::default()
    };
    let mut pending: Vec<Pending> = Vec::new();
    let mut complete: Vec<usize> = Vec::new();
    // Hashes written by this run (pending or stored) → the chunk holding them.
    let mut seen: HashMap<String, String> = HashMap::new();
    for i in 0..docs.len() {
        let Some((id, replaces, chunks)) = docs
            .get_mut(i)
            .map(|d| (d.record.id.clone(), d.replaces, std::mem::take(&mut d.chunks)))
        else {
            break;
        };
        if replaces {
            collections.delete_document(&coll.name, &id)?;
            report.documents_replaced = report.documents_replaced.saturating_add(1);
        }
        for (seq, text) in chunks.into_iter().enumerate() {
            let seq = u32::try_from(seq).unwrap_or(u32::MAX);
            let hash = collections.fingerprint("llmos.chunk", text.as_bytes());
            let own = chunk_id(&id, seq);
            let holder = match collections.stored_hash(&coll.name, &hash)? {
                Some(h) => Some(h),
                None => seen.get(&hash).cloned(),
            };
            if let Some(holder) = holder {
                if holder != own
                    && let Some(d) = docs.get_mut(i)
                {
                    d.record.duplicates = d.record.duplicates.saturating_add(1);
                    // Another document's chunk holds it: record this one as an owner, so the
                    // text moves here if that document goes.
                    if split_chunk_id(&holder).is_none_or(|(doc, _)| doc != id) {
                        let owner = Owner {
                            chunk: own,
                            document_hash: d.record.hash.clone(),
                        };
                        d.shared.push((hash, owner));
                    }
                }
                report.chunks_skipped = report.chunks_skipped.saturating_add(1);
                progress.chunks_done = progress.chunks_done.saturating_add(1);
                continue;
            }
            seen.insert(hash.clone(), own);
            pending.push(Pending {
                doc: i,
                seq,
                text,
                hash,
            });
            if pending.len() >= BATCH {
                let batch = std::mem::take(&mut pending);
                let done = std::mem::take(&mut complete);
                write(collections, coll, embedder, &docs, batch, done, report, &mut progress, acked)?;
            }
        }
        complete.push(i);
    }
    write(collections, coll, embedder, &docs, pending, complete, report, &mut progress, acked)
}

/// Preprocesses, embeds and writes one batch with the documents it completes.
#[allow(clippy::too_many_arguments)] // why: one step of `store`, sharing its state
fn write(
    collections: &Collections,
    coll: &CollectionRecord,
    embedder: &mut dyn Embedder,
    docs: &[Prepared],
    batch: Vec<Pending>,
    complete: Vec<usize>,
    report: &mut Report,
    progress: &mut Progress,
    acked: &mut dyn FnMut(&Progress, &[String]),
) -> Result<(), IngestError> {
    if batch.is_empty() && complete.is_empty() {
        return Ok(());
    }
    let texts = batch.iter().map(|p| p.text.clone()).collect();
    let texts = embedder.preprocess(texts).map_err(IngestError::Model)?;
    let (kept, texts): (Vec<&Pending>, Vec<String>) = batch
        .iter()
        .zip(texts)
        .filter(|(_, t)| !t.trim().is_empty())
        .unzip();
    let empty = batch.len().saturating_sub(kept.len()) as u64;
    let vectors = if texts.is_empty() {
        Vec::new()
    } else {
        embedder.embed(texts.clone()).map_err(IngestError::Model)?
    };
    let mut out = Batch::default();
    for ((p, text), v) in kept.iter().zip(texts).zip(vectors) {
        let Some(d) = docs.get(p.doc) else { continue };
        out.chunks.push(ChunkRecord {
            v: 1,
            document: d.record.id.clone(),
            seq: p.seq,
            text,
            metadata: d.record.metadata.clone(),
            hash: p.hash.clone(),
            embedding: encode_vector(&v),
        });
    }
    out.documents = complete
        .iter()
        .filter_map(|&i| docs.get(i).map(|d| d.record.clone()))
        .collect();
    out.shared = complete
        .iter()
        .filter_map(|&i| docs.get(i))
        .flat_map(|d| d.shared.iter().cloned())
        .collect();
    collections.write(&coll.name, &out)?;
    let n = out.chunks.len() as u64;
    report.chunks_stored = report.chunks_stored.saturating_add(n);
    report.chunks_empty = report.chunks_empty.saturating_add(empty);
    report.documents_stored = report
        .documents_stored
        .saturating_add(out.documents.len() as u64);
    progress.chunks_done = progress
        .chunks_done
        .saturating_add(batch.len() as u64);
    progress.documents_done = progress
        .documents_done
        .saturating_add(out.documents.len() as u64);
    let ids: Vec<String> = out.documents.into_iter().map(|d| d.id).collect();
    acked(progress, &ids);
    Ok(())
}

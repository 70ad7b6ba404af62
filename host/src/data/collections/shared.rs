//! The de-duplication index: for each chunk text stored in a collection (by the keyed
//! fingerprint of its text), the chunk that holds it and the chunks of other documents that
//! were not stored because it does. Deleting the holder's document moves the text to the
//! first of those that still stands ([`Collections::delete_document`]).
//!
//! [`Collections::delete_document`]: super::Collections::delete_document

use serde::{Deserialize, Serialize};

/// A de-duplication entry (`Documents` key `collection \0 \0 hash`). Entries written before
/// owners were recorded are a bare chunk id, read as an entry without owners.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shared {
    /// The chunk holding the text (`document:seq`).
    pub chunk: String,
    /// Chunks of other documents with the same text, not stored because `chunk` holds it,
    /// oldest first.
    #[serde(default)]
    pub owners: Vec<Owner>,
}

/// A chunk whose text another chunk holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// The id it would have had (`document:seq`).
    pub chunk: String,
    /// The hash of the document version that had it: once that document is deleted or
    /// replaced by other content, it no longer counts.
    pub document_hash: String,
}

impl Shared {
    /// Reads a stored entry (JSON, or a bare chunk id).
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.first() == Some(&b'{') {
            return serde_json::from_slice(bytes).map_err(|e| e.to_string());
        }
        let chunk = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
        Ok(Self {
            chunk: chunk.to_string(),
            owners: Vec::new(),
        })
    }

    /// Records `owner` (once; the holder itself is not an owner).
    pub fn add(&mut self, owner: Owner) {
        if owner.chunk == self.chunk {
            return;
        }
        self.owners.retain(|o| o.chunk != owner.chunk);
        self.owners.push(owner);
    }
}

/// The document id and position of a chunk id (`document:seq`).
pub fn split_chunk_id(id: &str) -> Option<(&str, u32)> {
    let (doc, seq) = id.rsplit_once(':')?;
    Some((doc, seq.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_ids_and_json_entries_decode_and_owners_are_kept_once() {
        let old = Shared::decode(b"doc-1:4").unwrap();
        assert_eq!((old.chunk.as_str(), old.owners.len()), ("doc-1:4", 0));
        let mut e = old.clone();
        let o = |c: &str, h: &str| Owner {
            chunk: c.into(),
            document_hash: h.into(),
        };
        e.add(o("b:0", "h1"));
        e.add(o("doc-1:4", "h0"));
        e.add(o("b:0", "h2"));
        assert_eq!(e.owners, [o("b:0", "h2")]);
        let back = Shared::decode(&serde_json::to_vec(&e).unwrap()).unwrap();
        assert_eq!(back, e);
        assert!(Shared::decode(b"{not json").is_err());
        assert_eq!(split_chunk_id("a.b@c:12"), Some(("a.b@c", 12)));
        assert_eq!(split_chunk_id("nope"), None);
    }
}

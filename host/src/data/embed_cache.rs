//! The embedding cache of training: a second run over the same texts and base model (other
//! hyper-parameters, another seed) embeds nothing.
//!
//! Entries live in [`Tree::EmbedCache`], sealed like every value of the store. The key is
//! `base-sha256 \0 fingerprint`, where the fingerprint is the store's keyed hash
//! ([`Store::fingerprint`]) of `base-sha256 \0 text`: the text itself is never stored, and
//! nobody without the master key can test whether a text is cached. The namespace (before the
//! `\0`) is the base model's digest, so one model's entries can be removed with
//! [`Store::remove_prefix`]. The value is the vector, f32 little-endian.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::store::{Store, StoreError, Tree};
use crate::core::train::run::Embedder;

/// Context of the fingerprints (keeps them apart from the store's other uses).
const CONTEXT: &str = "embed-cache";

/// An [`Embedder`] that answers from the cache and sends only missing texts to `inner`.
pub struct Cached<'a, E: Embedder + ?Sized> {
    store: &'a Store,
    inner: &'a E,
    base_sha256: String,
    cached: AtomicUsize,
}

impl<'a, E: Embedder + ?Sized> Cached<'a, E> {
    /// A cache of `inner`'s vectors, which are those of the base model with ONNX digest
    /// `base_sha256`.
    pub fn new(store: &'a Store, inner: &'a E, base_sha256: &str) -> Self {
        Self {
            store,
            inner,
            base_sha256: base_sha256.to_string(),
            cached: AtomicUsize::new(0),
        }
    }

    fn key(&self, text: &str) -> Vec<u8> {
        let mut data = Vec::with_capacity(self.base_sha256.len().saturating_add(text.len()).saturating_add(1));
        data.extend_from_slice(self.base_sha256.as_bytes());
        data.push(0);
        data.extend_from_slice(text.as_bytes());
        let mut key = self.base_sha256.as_bytes().to_vec();
        key.push(0);
        key.extend_from_slice(&self.store.fingerprint(CONTEXT, &data));
        key
    }

    fn lookup(&self, key: &[u8]) -> Result<Option<Vec<f32>>, StoreError> {
        Ok(self.store.get(Tree::EmbedCache, key)?.and_then(|v| decode(&v)))
    }
}

fn encode(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The vector of a value; `None` when the length is not a whole number of f32 (then the text
/// is embedded again and the entry replaced).
fn decode(bytes: &[u8]) -> Option<Vec<f32>> {
    let chunks = bytes.chunks_exact(4);
    if !chunks.remainder().is_empty() || bytes.is_empty() {
        return None;
    }
    chunks
        .map(|c| <[u8; 4]>::try_from(c).ok().map(f32::from_le_bytes))
        .collect()
}

impl<E: Embedder + ?Sized> Embedder for Cached<'_, E> {
    /// Looks every text up first, embeds the missing ones in one ordered call to the inner
    /// embedder, writes them (one atomic, flushed batch) and returns all in input order.
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, String> {
        let keys: Vec<Vec<u8>> = texts.iter().map(|t| self.key(t)).collect();
        let mut found: Vec<Option<Vec<f32>>> = Vec::with_capacity(texts.len());
        for k in &keys {
            found.push(self.lookup(k).map_err(|e| format!("embedding cache: {e}"))?);
        }
        let missing: Vec<String> = texts
            .iter()
            .zip(&found)
            .filter(|(_, f)| f.is_none())
            .map(|(t, _)| t.clone())
            .collect();
        let hits = texts.len().saturating_sub(missing.len());
        let mut fresh = if missing.is_empty() {
            Vec::new()
        } else {
            self.inner.embed(&missing)?
        };
        if fresh.len() != missing.len() {
            return Err(format!(
                "the base model gave {} vectors for {} texts",
                fresh.len(),
                missing.len()
            ));
        }
        let values: Vec<Vec<u8>> = fresh.iter().map(|v| encode(v)).collect();
        let missing_keys = keys.iter().zip(&found).filter(|(_, f)| f.is_none()).map(|(k, _)| k);
        let writes: Vec<(Tree, &[u8], &[u8])> = missing_keys
            .zip(&values)
            .map(|(k, v)| (Tree::EmbedCache, k.as_slice(), v.as_slice()))
            .collect();
        if !writes.is_empty() {
            self.store
                .put_many(&writes)
                .map_err(|e| format!("embedding cache: {e}"))?;
        }
        self.cached.fetch_add(hits, Ordering::Relaxed);
        let mut fresh = fresh.drain(..);
        found
            .into_iter()
            .map(|f| f.or_else(|| fresh.next()).ok_or_else(|| "embedding cache: a vector is missing".to_string()))
            .collect()
    }

    fn cached(&self) -> usize {
        self.cached.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)] // why: test data built from small counts and f64 samples
mod tests {
    use super::*;
    use crate::core::train::run::tests::Words;
    use crate::security::seal::Sealer;

    fn texts(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| format!("a {w} sentence")).collect()
    }

    #[test]
    fn a_second_pass_embeds_nothing_and_returns_the_same_vectors() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store"), Sealer::from_key([3; 32])).unwrap();
        let inner = Words::default();
        let cache = Cached::new(&store, &inner, "sha-a");
        let all = texts(&["zebra-marker", "b", "c", "d"]);
        let first = cache.embed(&all).unwrap();
        assert_eq!(first, inner.embed(&all).unwrap(), "the inner embedder's vectors");
        inner.calls.lock().unwrap().clear();
        let second = cache.embed(&all).unwrap();
        assert_eq!(second, first);
        assert!(inner.calls.lock().unwrap().is_empty(), "nothing embedded");
        assert_eq!(cache.cached(), 4);
        // Only the missing texts, in order, in one call.
        let mixed = texts(&["e", "b", "f", "d"]);
        let got = cache.embed(&mixed).unwrap();
        assert_eq!(*inner.calls.lock().unwrap(), vec![texts(&["e", "f"])]);
        assert_eq!(got, inner.embed(&mixed).unwrap());
        assert_eq!(cache.cached(), 6);
        // Another base model shares nothing.
        let other = Cached::new(&store, &inner, "sha-b");
        inner.calls.lock().unwrap().clear();
        other.embed(&all).unwrap();
        assert_eq!(inner.calls.lock().unwrap().len(), 1);
        assert_eq!(other.cached(), 0);
        // Entries are under the base model's namespace, and the text is not stored.
        assert_eq!(store.count(Tree::EmbedCache).unwrap(), 10);
        drop((cache, other));
        store.flush().unwrap();
        drop(store);
        for f in walk(dir.path()) {
            let bytes = std::fs::read(&f).unwrap();
            assert!(!bytes.windows(12).any(|w| w == b"zebra-marker"), "text found in {f:?}");
        }
        let store = Store::open(&dir.path().join("store"), Sealer::from_key([3; 32])).unwrap();
        assert_eq!(store.remove_prefix(Tree::EmbedCache, b"sha-a\0").unwrap(), 6);
        let again = Cached::new(&store, &inner, "sha-a");
        inner.calls.lock().unwrap().clear();
        again.embed(&all).unwrap();
        assert_eq!(inner.calls.lock().unwrap().len(), 1, "removed with its namespace");
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
        }
        out
    }

    #[test]
    fn training_through_the_cache_reports_what_was_cached() {
        use crate::core::train::run::{Progress, tests, train};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store"), Sealer::from_key([4; 32])).unwrap();
        let inner = Words::default();
        let ds = tests::sentences();
        let no = std::sync::atomic::AtomicBool::new(false);
        let first = train(&ds, &tests::recipe(), &Cached::new(&store, &inner, "s"), &|_| {}, &no).unwrap();
        assert_eq!((first.embedded, first.cached), (75, 0));
        let last = std::sync::Mutex::new(None);
        let second = train(&ds, &tests::recipe(), &Cached::new(&store, &inner, "s"), &|p| {
            if let Progress::Embedding { .. } = p { *last.lock().unwrap() = Some(p.clone()) }
        }, &no).unwrap();
        assert_eq!((second.embedded, second.cached), (0, 75));
        assert_eq!(*last.lock().unwrap(), Some(Progress::Embedding { done: 75, total: 75, cached: 75 }));
        assert_eq!(second.head, first.head, "cached vectors are the same bits");
        assert_eq!(inner.texts.load(Ordering::Relaxed), 75);
    }
}

//! How plugins reach the data collections (WIT `llmos:plugin/data@0.1.1`, `data.search`).
//!
//! The plugin host is opened before the collections exist in a process (the server builds
//! its data state over the host's store), so the backend is set on the host afterwards
//! ([`super::PluginHost::set_data`]). Without one, `data.search` is `unavailable`.
//! The capability check (`data:<collection>`) is the host's ([`super::state`]); a backend
//! only searches.

use std::sync::{Arc, Weak};

use serde_json::{Map, Value};

use crate::core::Core;
use crate::data::collections::{Collections, DataError, Filter};
use crate::plugins::embedder::CollectionEmbedder;

/// The most hits one `data.search` returns (the WIT's `top-k` range is 1 to this).
pub const MAX_TOP_K: u32 = 100;

/// One chunk found by a search.
#[derive(Debug, Clone, PartialEq)]
pub struct DataHit {
    /// The document's id.
    pub document: String,
    /// The chunk's id (`<document>:<seq>`).
    pub chunk: String,
    /// The chunk's text.
    pub text: String,
    /// Cosine similarity to the query.
    pub score: f32,
    /// The document's metadata.
    pub metadata: Map<String, Value>,
}

/// Why a search gave no hits; mapped onto the WIT `error` of the same name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataBackendError {
    /// No such collection.
    #[error("{0}")]
    NotFound(String),
    /// An empty query, a `top-k` out of range, a query the preprocessors emptied.
    #[error("{0}")]
    InvalidInput(String),
    /// The model or the store failed, or the host is shutting down.
    #[error("{0}")]
    Unavailable(String),
}

/// Searches collections for plugins. Blocking: the host calls it off the plugin's thread.
pub trait DataBackend: Send + Sync {
    /// The `top_k` chunks of `collection` nearest to `query` (embedded with the collection's
    /// model after its preprocessors), best first. `plugin` names the caller (for the
    /// preprocessors' request context).
    fn search(
        &self,
        plugin: &str,
        collection: &str,
        query: &str,
        top_k: u32,
    ) -> Result<Vec<DataHit>, DataBackendError>;
}

/// The collections of this process, searched as `POST /v1/collections/{name}/search`
/// searches them (the query through the collection's preprocessors, then its model).
pub struct CollectionsBackend {
    core: Arc<Core>,
    collections: Arc<Collections>,
    /// The plugin host, for the collection's preprocessors (weak: the host owns this backend).
    host: Weak<super::host::Inner>,
}

impl CollectionsBackend {
    /// Over the process's models and collections, running preprocessors on `host`.
    pub fn new(core: Arc<Core>, collections: Arc<Collections>, host: &super::PluginHost) -> Self {
        Self {
            core,
            collections,
            host: Arc::downgrade(&host.inner),
        }
    }
}

/// Checks a search's arguments (shared by every backend).
pub fn check_query(query: &str, top_k: u32) -> Result<(), DataBackendError> {
    if query.trim().is_empty() {
        return Err(DataBackendError::InvalidInput(
            "the query is empty: give a non-empty text".into(),
        ));
    }
    if !(1..=MAX_TOP_K).contains(&top_k) {
        return Err(DataBackendError::InvalidInput(format!(
            "top-k {top_k}: accepted 1 to {MAX_TOP_K}"
        )));
    }
    Ok(())
}

impl DataBackend for CollectionsBackend {
    fn search(
        &self,
        plugin: &str,
        collection: &str,
        query: &str,
        top_k: u32,
    ) -> Result<Vec<DataHit>, DataBackendError> {
        check_query(query, top_k)?;
        let data = |e: DataError| match e {
            DataError::NoCollection(_) | DataError::BadName { .. } => {
                DataBackendError::NotFound(e.to_string())
            }
            DataError::BadQuery(m) => DataBackendError::InvalidInput(m),
            e => DataBackendError::Unavailable(e.to_string()),
        };
        let coll = self.collections.require(collection).map_err(data)?;
        let model = self.core.model(&coll.model).map_err(|e| {
            DataBackendError::Unavailable(format!(
                "collection {collection}'s model {}: {e}",
                coll.model
            ))
        })?;
        let inner = self.host.upgrade().ok_or_else(|| {
            DataBackendError::Unavailable("the plugin host is shutting down".into())
        })?;
        let host = super::PluginHost { inner };
        let route = format!("plugin:{plugin}/data.search");
        let vector = CollectionEmbedder::new(&host, model, &coll.preprocessors, &route, None)
            .query(query)
            .map_err(|e| {
                if e.contains("empty after") {
                    DataBackendError::InvalidInput(e)
                } else {
                    DataBackendError::Unavailable(e)
                }
            })?;
        let filter = Filter::parse(&Value::Null)
            .map_err(|e| DataBackendError::Unavailable(e.to_string()))?;
        let top_k = usize::try_from(top_k).unwrap_or(1);
        let hits = self
            .collections
            .search(collection, &vector, top_k, &filter)
            .map_err(data)?;
        Ok(hits
            .into_iter()
            .map(|h| DataHit {
                document: h.document,
                chunk: h.chunk,
                text: h.text,
                score: h.score,
                metadata: h.metadata,
            })
            .collect())
    }
}

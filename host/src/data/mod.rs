//! Persistent data: the [`store`] (sealed values, keyed-hash keys, envelope keys) over a
//! [`backend`] (sled), [`collections`] of embedded documents, [`ingest`] (files to chunks to
//! vectors), background [`jobs`], [`anonymize`] and its pseudonym [`vault`].

pub mod anonymize;
pub mod backend;
pub mod collections;
pub mod embed_cache;
pub mod ingest;
pub mod jobs;
mod keyring;
pub mod maintain;
pub mod postgres;
pub mod search;
pub mod store;
pub mod train;
pub mod vault;

pub use store::{Store, StoreError, Tree};

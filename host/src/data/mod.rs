//! Persistent data: the [`store`] (sled with sealed values), [`collections`] of embedded
//! documents, [`ingest`] (files to chunks to vectors) and background [`jobs`].

pub mod collections;
pub mod ingest;
pub mod jobs;
pub mod store;

pub use store::{Store, StoreError, Tree};

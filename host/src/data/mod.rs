//! Persistent data. For now only the [`store`]: sled with sealed values. Collections, ingest
//! and search come in later issues.

pub mod search;
pub mod store;

pub use store::{Store, StoreError, Tree};

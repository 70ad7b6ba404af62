//! Persistent data. For now only the [`store`]: sled with sealed values. Collections, ingest
//! and search come in later issues.

pub mod anonymize;
pub mod store;
pub mod vault;

pub use store::{Store, StoreError, Tree};

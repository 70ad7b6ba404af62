//! Persistent data: the [`store`] (sealed values, keyed-hash keys, envelope keys) over a
//! [`backend`] (sled).

pub mod backend;
mod keyring;
pub mod maintain;
pub mod anonymize;
pub mod store;
pub mod vault;

pub use store::{Store, StoreError, Tree};

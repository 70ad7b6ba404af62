//! Persistent data: the [`store`] (sealed values, keyed-hash keys, envelope keys) over a
//! [`backend`] (sled).

pub mod backend;
mod keyring;
pub mod maintain;
pub mod store;

pub use store::{Store, StoreError, Tree};

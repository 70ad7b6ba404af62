//! `llmos-pii`: the one implementation of personal-data detection and replacement that the
//! llmos host (`POST /v1/anonymize`, `llmos anonymize`) and the `pii-redact` plugin share.
//!
//! - [`patterns`]: validated patterns (e-mail, phone, card + Luhn, IBAN + mod-97, IPv4/IPv6).
//! - [`merge`]: pattern spans and model (NER) spans merged without overlaps.
//! - [`operators`]: `redact`, `mask`, `tag`, `hash`, `pseudonymize`; hashes and pseudonyms come
//!   from the caller ([`operators::Keyed`]), so this crate holds no key and no storage.
//! - [`tokens`]: the pseudonym token format `<TYPE_hex>` and finding tokens in a text.
//!
//! Offsets are **bytes** of UTF-8 text throughout this crate (what Rust and WebAssembly
//! callers slice with); the host converts to characters for its HTTP answers.
//! Works on `std` only (no I/O): it builds for the host and for `wasm32-wasip2`.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic,
    clippy::unreachable,
    clippy::cast_possible_truncation
)]
#![warn(missing_docs)]

pub mod merge;
pub mod operators;
pub mod patterns;
pub mod tokens;

pub use merge::{Source, Span, canonical_type, join_adjacent, merge};
pub use operators::{Keyed, Operator, Replaced, apply, replace_with};
pub use patterns::{PATTERN_TYPES, find_patterns};

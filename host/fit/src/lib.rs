//! `llmos-fit`: the numeric core of classifier training in llmos (docs/classification.md): the
//! learnt [`head`], the seeded stratified [`split`] and the [`fit`]ting loop.
//!
//! A crate of its own so that it is built optimised in every profile (the workspace builds
//! dependencies at `opt-level = 2` in dev and test builds): a fit of 10k rows is ~50x slower
//! unoptimised. Optimisation does not change a result: every sum has one fixed order and no
//! float operation is reassociated, so debug and release builds give the same weights.

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

pub mod eval;
pub mod fit;
pub mod head;
pub mod split;

pub use head::{Dense, Head};

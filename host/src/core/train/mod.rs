//! Classifier training (docs/classification.md): a head learnt on a base model's pooled
//! embeddings, exported as one ONNX graph with the encoder (`core::onnx::classifier`).
//!
//! [`recipe`] and [`head`] are the shared contract: the manifest's `[training]` and
//! `[metrics]` sections and the learnt weights.

pub mod build;
pub mod data;
pub mod metrics;
pub mod recipe;
pub mod run;

pub use llmos_fit::{Dense, Head, fit, head, split};
pub use recipe::{Bin, ClassMetrics, DataSource, Format, Metrics, Recipe};
pub use data::{DataError, Dataset, RawRow};
pub use run::{Embedder, Progress, TrainError, Trained, train};

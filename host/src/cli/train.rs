//! `llmos train classifier`: a classifier head on a base model's embeddings, trained on a
//! CSV/TSV/JSONL/TREC file or a collection, exported as one ONNX model and registered with a
//! manifest (docs/classification.md).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::core::train::run::Progress;
use crate::core::train::{Bin, DataSource, Format, Recipe};
use crate::data::train::{self as train_data, Job, Rows};
use crate::data::Store;
use crate::data::collections::Collections;

/// Train models.
#[derive(Debug, clap::Subcommand)]
pub enum TrainCommand {
    /// Learn a classifier head (softmax regression, or one hidden layer) on a base embedding
    /// model's vectors; export encoder + head as one ONNX model named NAME.
    Classifier(ClassifierArgs),
}

/// `llmos train classifier` flags.
#[derive(Debug, clap::Args)]
pub struct ClassifierArgs {
    /// Base embedding model.
    #[arg(long, default_value = "minilm")]
    pub base: String,
    /// Labelled data: a .csv, .tsv, .jsonl file (or TREC lines with --format trec).
    #[arg(long, conflicts_with = "collection", required_unless_present = "collection")]
    pub data: Option<PathBuf>,
    /// A collection of the data store instead of a file; --label-column names the document
    /// metadata field holding the label.
    #[arg(long)]
    pub collection: Option<String>,
    /// Name of the new model (a-z, 0-9, '.', '_', '-').
    #[arg(long)]
    pub name: String,
    /// csv | tsv | jsonl | trec [default: from the file's extension].
    #[arg(long)]
    pub format: Option<String>,
    /// Column (header name, or 0-based index with --no-header) or JSON field of the text [default: text].
    #[arg(long)]
    pub text_column: Option<String>,
    /// Column or field of the label [default: label].
    #[arg(long)]
    pub label_column: Option<String>,
    /// The csv/tsv file has no header line.
    #[arg(long)]
    pub no_header: bool,
    /// Rename a label value: RAW=NAME (repeatable), e.g. 1=spam.
    #[arg(long = "label-name", value_name = "RAW=NAME")]
    pub label_names: Vec<String>,
    /// Numeric labels into classes: LABEL:ABOVE:BELOW (exclusive bounds, either may be empty;
    /// repeatable), e.g. negative::0 and positive:0: . Rows in no bin are left out.
    #[arg(long = "bin", value_name = "LABEL:ABOVE:BELOW")]
    pub bins: Vec<String>,
    /// Most epochs (early stopping usually ends sooner).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Seed of the split and the initial weights.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Width of a hidden ReLU layer (0 = none: softmax regression).
    #[arg(long)]
    pub hidden: Option<usize>,
    /// L2 regularisation strength.
    #[arg(long)]
    pub l2: Option<f32>,
    /// Adam step size.
    #[arg(long)]
    pub learning_rate: Option<f32>,
    /// Share of each class held out for validation.
    #[arg(long)]
    pub validation: Option<f32>,
    /// Epochs without a better validation loss before stopping.
    #[arg(long)]
    pub patience: Option<usize>,
    /// Do not weight classes by inverse frequency.
    #[arg(long)]
    pub no_class_weights: bool,
    /// One line for listings.
    #[arg(long)]
    pub description: Option<String>,
    /// SPDX licence of the result [default: the base model's]; mind your data's terms.
    #[arg(long)]
    pub license: Option<String>,
    /// Attribution of the data (appended to the base model's).
    #[arg(long)]
    pub attribution: Option<String>,
}

impl ClassifierArgs {
    fn format(&self) -> Result<Format> {
        let by_name = |f: &str| -> Result<Format> {
            Ok(match f {
                "csv" => Format::Csv,
                "tsv" | "tab" => Format::Tsv,
                "jsonl" | "ndjson" => Format::Jsonl,
                "trec" => Format::Trec,
                other => bail!("--format {other:?} is not accepted: csv, tsv, jsonl or trec"),
            })
        };
        if let Some(f) = &self.format {
            return by_name(f);
        }
        let Some(path) = &self.data else {
            return Ok(Format::Csv);
        };
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        by_name(ext.as_str()).with_context(|| {
            format!(
                "cannot tell the format of {} from its extension: pass --format csv|tsv|jsonl|trec",
                path.display()
            )
        })
    }

    /// The recipe these flags describe (defaults from `Recipe`'s serde defaults).
    pub fn recipe(&self, data: DataSource) -> Result<Recipe> {
        let mut r: Recipe = toml::from_str(&format!(
            "base = {:?}\nbase_sha256 = \"\"\n[data]\nkind = \"collection\"\nname = \"x\"\n",
            self.base
        ))
        .context("default recipe")?;
        r.data = data;
        r.format = self.format()?;
        r.text_column = self.text_column.clone();
        r.label_column = self.label_column.clone();
        r.header = !self.no_header;
        r.label_names = parse_names(&self.label_names)?;
        r.bins = self.bins.iter().map(|b| parse_bin(b)).collect::<Result<_>>()?;
        if let Some(v) = self.seed {
            r.seed = v;
        }
        if let Some(v) = self.epochs {
            r.epochs = v;
        }
        if let Some(v) = self.hidden {
            r.hidden = v;
        }
        if let Some(v) = self.l2 {
            r.l2 = v;
        }
        if let Some(v) = self.learning_rate {
            r.learning_rate = v;
        }
        if let Some(v) = self.validation {
            r.validation = v;
        }
        if let Some(v) = self.patience {
            r.patience = v;
        }
        r.class_weights = !self.no_class_weights;
        Ok(r)
    }
}

fn parse_names(items: &[String]) -> Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|s| match s.split_once('=') {
            Some((raw, name)) if !raw.is_empty() && !name.trim().is_empty() => {
                Ok((raw.to_string(), name.trim().to_string()))
            }
            _ => bail!("--label-name {s:?}: expected RAW=NAME, e.g. 1=spam"),
        })
        .collect()
}

/// `LABEL:ABOVE:BELOW`.
pub fn parse_bin(s: &str) -> Result<Bin> {
    let parts: Vec<&str> = s.split(':').collect();
    let [label, above, below] = parts.as_slice() else {
        bail!("--bin {s:?}: expected LABEL:ABOVE:BELOW, e.g. negative::0 or positive:0:");
    };
    let bound = |b: &str, what: &str| -> Result<Option<f64>> {
        if b.trim().is_empty() {
            return Ok(None);
        }
        b.trim()
            .parse::<f64>()
            .map(Some)
            .with_context(|| format!("--bin {s:?}: the {what} bound {b:?} is not a number"))
    };
    if label.trim().is_empty() {
        bail!("--bin {s:?}: the label is empty");
    }
    Ok(Bin {
        label: label.trim().to_string(),
        above: bound(above, "lower")?,
        below: bound(below, "upper")?,
    })
}

/// A progress line on stderr, rewritten in place.
pub fn progress_line(p: &Progress) {
    let line = match p {
        Progress::Embedding {
            done,
            total,
            cached,
        } => format!("embedding {done}/{total} ({cached} cached)"),
        Progress::Fitting {
            epoch,
            epochs,
            train_loss,
            validation_loss,
        } => format!(
            "fitting epoch {epoch}/{epochs}: loss {train_loss:.4}, validation {validation_loss:.4}"
        ),
    };
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[K{line}");
    let _ = err.flush();
}

/// Runs `llmos train classifier`.
pub fn classifier(
    core: &crate::core::Core,
    home: &Path,
    manifest_dir: Option<&Path>,
    a: &ClassifierArgs,
) -> Result<Value> {
    let Some(manifest_dir) = manifest_dir else {
        bail!("no manifest folder is configured ([models] manifests in llmos.toml)");
    };
    if core.store.manifest(&a.name).is_ok() {
        bail!(
            "a model named {:?} exists already; choose another --name, or remove it first (`llmos models rm {}` and its manifest)",
            a.name,
            a.name
        );
    }
    // The store holds the embedding cache and the collections; the server may hold it.
    let store = match Store::open_home(home) {
        Ok(s) => Some(s),
        Err(e) if a.collection.is_none() => {
            eprintln!("note: the data store cannot be opened ({e}); embeddings are not cached");
            None
        }
        Err(e) => return Err(e).context("cannot open the data store to read the collection"),
    };
    let (source, rows) = match (&a.data, &a.collection) {
        (Some(path), _) => {
            let source = train_data::local_source(path)?;
            let DataSource::Local { path: canonical, .. } = &source else {
                bail!("internal: a local source");
            };
            let rows = Rows::File {
                path: canonical.clone(),
                origin: path.display().to_string(),
            };
            (source, rows)
        }
        (None, Some(name)) => {
            let collections = Collections::new(store.clone().context("no data store")?);
            let label = a.label_column.as_deref().unwrap_or("label");
            let rows = train_data::collection_rows(&collections, name, label)?;
            (
                DataSource::Collection { name: name.clone() },
                Rows::Given {
                    rows,
                    origin: format!("collection {name}"),
                },
            )
        }
        (None, None) => bail!("give --data FILE or --collection NAME"),
    };
    let recipe = a.recipe(source)?;
    let base = core.store.manifest(&a.base)?;
    let origin = a
        .data
        .as_ref()
        .map_or_else(|| a.collection.clone().unwrap_or_default(), |p| p.display().to_string());
    let describe = train_data::describe(
        &a.name,
        &base,
        &origin,
        a.description.clone(),
        a.license.clone(),
        a.attribution.clone(),
    );
    let job = Job {
        core,
        store: store.as_ref(),
        describe,
        recipe,
        rows,
        out: core.store.model_dir(&a.name),
    };
    let cancel = AtomicBool::new(false);
    let built = train_data::run(job, &progress_line, &cancel);
    eprintln!();
    let built = built?;
    let path = train_data::register(core, manifest_dir, &built)?;
    if let Some(s) = &store {
        let audit = crate::security::AuditLog::new(s.clone());
        let _ = audit.record(
            "model-trained",
            &a.name,
            None,
            format!("classifier on {origin}, base {}", a.base),
        );
    }
    Ok(train_data::report(&built, Some(&path)))
}

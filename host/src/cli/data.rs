//! `llmos data …`: collections from the command line (the same functions the HTTP routes
//! call). The running server holds the store: use the HTTP API while it runs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::core::Core;
use crate::data::Store;
use crate::data::collections::{Collections, Filter};
use crate::data::ingest::{self, Fields, Report};
use crate::plugins::embedder::{CollectionEmbedder, SettingsUpdate, resolve_settings};
use crate::plugins::gateway::Gateway;

/// Collections: create, ingest, list, remove, export, search.
#[derive(Debug, clap::Subcommand)]
pub enum DataCommand {
    /// Create a collection, or change its settings.
    Create {
        /// Collection name.
        name: String,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Ingest files and folders (recursively): .txt, .md, .html, .csv, .jsonl.
    Ingest {
        /// Files and folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The collection (created with the settings given, or the defaults, if missing).
        #[arg(long)]
        collection: String,
        /// The text column of CSV files and text field of JSONL files.
        #[arg(long, alias = "text-column", default_value = "text")]
        text_field: String,
        /// The id column/field of CSV and JSONL records, used when present.
        #[arg(long, alias = "id-column", default_value = "id")]
        id_field: String,
        /// Append the id of each document to this file as soon as it is stored (durably).
        #[arg(long, value_name = "FILE")]
        ack_log: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Input read, chunked and stored at a time, in bytes (memory stays bounded by it).
        #[arg(long, default_value_t = GROUP_BYTES, hide = true)]
        group_bytes: u64,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// List collections, or one collection's documents.
    Ls {
        /// A collection.
        name: Option<String>,
    },
    /// Delete a collection, or one document of it.
    Rm {
        /// The collection.
        name: String,
        /// Only this document.
        #[arg(long)]
        document: Option<String>,
    },
    /// Print a collection decrypted, as JSON lines: each document, then its chunks.
    Export {
        /// The collection.
        name: String,
    },
    /// Search a collection; prints the best chunks as JSON.
    Search {
        /// The collection.
        #[arg(long)]
        collection: String,
        /// Results.
        #[arg(long, default_value_t = 10)]
        top_k: usize,
        /// Metadata filter (JSON), e.g. '{"year":{"gte":2020}}'.
        #[arg(long)]
        filter: Option<String>,
        /// The query text.
        query: String,
    },
}

/// Collection settings flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SettingsArgs {
    /// Embedding model [default: minilm].
    #[arg(long)]
    model: Option<String>,
    /// Tokens per chunk, special tokens included [default: the model's maximum].
    #[arg(long)]
    chunk_tokens: Option<usize>,
    /// Tokens shared by consecutive chunks [default: 32].
    #[arg(long)]
    overlap_tokens: Option<usize>,
    /// Preprocessor plugin each chunk runs through (repeatable, in order).
    #[arg(long = "preprocessor", value_name = "PLUGIN")]
    preprocessors: Vec<String>,
}

impl SettingsArgs {
    fn update(&self) -> SettingsUpdate {
        SettingsUpdate {
            model: self.model.clone(),
            chunk_tokens: self.chunk_tokens,
            overlap_tokens: self.overlap_tokens,
            preprocessors: (!self.preprocessors.is_empty()).then(|| self.preprocessors.clone()),
        }
    }

    fn is_empty(&self) -> bool {
        self.update() == SettingsUpdate::default()
    }
}

fn print(v: &Value) {
    println!("{v:#}");
}

const HELD: &str = "cannot open the store (if `llmos serve` is running, it holds the store: use the HTTP API, /v1/collections)";

/// Runs a `data` command. `core` makes the models (and, through the gateway, the plugins).
pub fn run_with(cmd: DataCommand, core: Core) -> Result<()> {
    match cmd {
        DataCommand::Ls { name } => ls(&collections(&core)?, name.as_deref()),
        DataCommand::Rm { name, document } => {
            let c = collections(&core)?;
            match document {
                Some(id) => {
                    let d = c.delete_document(&name, &id)?;
                    audit(c.store(), &name, format!("data rm {name} --document {id}"));
                    print(&json!({"collection": name, "document": d.id, "deleted": true}));
                }
                None => {
                    let r = c.delete(&name)?;
                    audit(c.store(), &name, format!("data rm {name}"));
                    print(&json!({"collection": r.name, "deleted": true, "documents": r.documents, "chunks": r.chunks}));
                }
            }
            Ok(())
        }
        DataCommand::Export { name } => export(&collections(&core)?, &name),
        DataCommand::Create { name, settings } => {
            let gw = gateway(core)?;
            let c = Collections::new(gw.host.store().clone());
            let old = c.get(&name)?;
            let rec = resolve_settings(&gw.core, c.store(), &name, old.as_ref(), &settings.update())?;
            c.save(&rec)?;
            audit(c.store(), &name, format!("data create {name}"));
            print(&serde_json::to_value(c.require(&name)?)?);
            Ok(())
        }
        DataCommand::Ingest {
            paths,
            collection,
            text_field,
            id_field,
            ack_log,
            quiet,
            group_bytes,
            settings,
        } => {
            let fields = Fields {
                text: text_field,
                id: id_field,
            };
            let gw = gateway(core)?;
            let opts = IngestOpts {
                collection: &collection,
                fields: &fields,
                ack_log: ack_log.as_deref(),
                quiet,
                group_bytes,
                settings: &settings,
            };
            ingest_paths(&gw, &paths, &opts)
        }
        DataCommand::Search {
            collection,
            top_k,
            filter,
            query,
        } => {
            if !(1..=crate::api::data::MAX_TOP_K).contains(&top_k) {
                bail!("--top-k {top_k}: accepted 1 to {}", crate::api::data::MAX_TOP_K);
            }
            let filter: Value = match filter {
                Some(f) => serde_json::from_str(&f).context("--filter is not JSON")?,
                None => Value::Null,
            };
            let filter = Filter::parse(&filter)?;
            let gw = gateway(core)?;
            let c = Collections::new(gw.host.store().clone());
            let rec = c.require(&collection)?;
            let m = gw.core.model(&rec.model)?;
            let v = CollectionEmbedder::new(&gw.host, m, &rec.preprocessors, "cli", None)
                .query(&query)
                .map_err(anyhow::Error::msg)?;
            let hits = c.search(&collection, &v, top_k, &filter)?;
            print(&json!({"collection": collection, "model": rec.model, "data": hits}));
            Ok(())
        }
    }
}

/// Records a change made from the command line in the audit log (who: `cli`).
fn audit(store: &Store, collection: &str, what: String) {
    let log = crate::security::AuditLog::new(store.clone());
    let event = crate::security::audit::AuditEvent::new(
        "data-write",
        &format!("collection:{collection}"),
    )
    .detail(what);
    if let Err(e) = log.event(event) {
        eprintln!("warning: audit log: {e}");
    }
}

fn collections(core: &Core) -> Result<Collections> {
    let store = Store::open_home(&core.paths().home).context(HELD)?;
    Ok(Collections::new(store))
}

fn gateway(core: Core) -> Result<Gateway> {
    Gateway::open(Arc::new(core), None).context(HELD)
}

fn ls(c: &Collections, name: Option<&str>) -> Result<()> {
    let Some(name) = name else {
        print(&json!({"collections": c.list()?}));
        return Ok(());
    };
    let rec = c.require(name)?;
    let docs: Vec<Value> = c
        .documents(name)?
        .iter()
        .map(|d| json!({"id": d.id, "source": d.source, "chunks": d.chunks, "duplicates": d.duplicates, "metadata": d.metadata}))
        .collect();
    print(&json!({"collection": rec, "documents": docs}));
    Ok(())
}

fn export(c: &Collections, name: &str) -> Result<()> {
    let mut docs = c.documents(name)?;
    docs.sort_by(|a, b| a.id.cmp(&b.id));
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    for d in docs {
        let mut v = serde_json::to_value(&d)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("object".into(), json!("document"));
        }
        writeln!(out, "{v}")?;
        for ch in c.chunks(name, &d.id)? {
            let mut v = serde_json::to_value(&ch)?;
            if let Some(o) = v.as_object_mut() {
                o.insert("object".into(), json!("chunk"));
            }
            writeln!(out, "{v}")?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Input read, chunked and stored at a time by `llmos data ingest`.
const GROUP_BYTES: u64 = 8 << 20;

struct IngestOpts<'a> {
    collection: &'a str,
    fields: &'a Fields,
    ack_log: Option<&'a Path>,
    quiet: bool,
    group_bytes: u64,
    settings: &'a SettingsArgs,
}

fn ingest_paths(gw: &Gateway, paths: &[PathBuf], o: &IngestOpts<'_>) -> Result<()> {
    let c = Collections::new(gw.host.store().clone());
    let old = c.get(o.collection)?;
    if old.is_none() || !o.settings.is_empty() {
        let rec = resolve_settings(&gw.core, c.store(), o.collection, old.as_ref(), &o.settings.update())?;
        c.save(&rec)?;
    }
    let coll = c.require(o.collection)?;
    let m = gw.core.model(&coll.model)?;
    let (files, skipped) = ingest::formats::walk(paths);
    let sizes: Vec<u64> = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .collect();
    let bar = if o.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(sizes.iter().sum())
    };
    let mut log = match o.ack_log {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("opening the ack log {}", p.display()))?,
        ),
        None => None,
    };
    let mut report = Report::default();
    let mut emb = CollectionEmbedder::new(&gw.host, m, &coll.preprocessors, "cli", None);
    // Files are read, parsed, chunked and stored a group at a time (up to GROUP_BYTES of
    // input), so memory stays bounded by the group, not by everything given.
    let mut stored = Ok(());
    let (mut at, mut bytes_done) = (0usize, 0u64);
    while at < files.len() && stored.is_ok() {
        let (mut docs, mut group_bytes) = (Vec::new(), 0u64);
        while let Some(f) = files.get(at) {
            if group_bytes >= o.group_bytes.max(1) {
                break;
            }
            let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
            let (d, e) = ingest::formats::parse(&f.display().to_string(), &bytes, o.fields);
            docs.extend(d);
            report.errors.extend(e);
            group_bytes = group_bytes.saturating_add(sizes.get(at).copied().unwrap_or(0));
            at = at.saturating_add(1);
        }
        let prepared = ingest::prepare(&c, &coll, &emb, docs, &mut report)?;
        let mut on_batch = |p: &ingest::Progress, ids: &[String]| {
            let part = p
                .chunks_done
                .saturating_mul(group_bytes)
                .checked_div(p.chunks_total)
                .unwrap_or(0);
            bar.set_position(bytes_done.saturating_add(part));
            if let Some(f) = log.as_mut() {
                let lines: String = ids.iter().map(|i| format!("{i}\n")).collect();
                let _ = f.write_all(lines.as_bytes());
            }
        };
        stored = ingest::store(&c, &coll, &mut emb, prepared, &mut report, &mut on_batch);
        bytes_done = bytes_done.saturating_add(group_bytes);
        bar.set_position(bytes_done);
    }
    bar.finish_and_clear();
    let outcome = stored.as_ref().map_or_else(|e| format!("failed: {e}"), |()| "ok".into());
    audit(
        c.store(),
        &coll.name,
        format!(
            "data ingest into {}: {} documents, {} chunks stored ({outcome})",
            coll.name, report.documents_stored, report.chunks_stored
        ),
    );
    for e in &report.errors {
        eprintln!("{e}");
    }
    print(&json!({
        "collection": coll.name,
        "files": files.len(),
        "skipped_files": skipped,
        "report": report,
    }));
    stored?;
    Ok(())
}

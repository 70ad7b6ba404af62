//! `llmos store …`: master key rotation, re-encryption of a collection, integrity check.
//! They open the store themselves, so they cannot run while `llmos serve` holds it.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::json;

use crate::data::Store;
use crate::security::master::{MasterSource, NEW_MASTER_KEY_ENV, parse_hex_key};

/// Maintain the data store (stop `llmos serve` first: it holds the store).
#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    /// Re-wrap every data key under a new master key; no data is re-encrypted, and afterwards
    /// only the new key opens the store. The new key: `--new-key-file`,
    /// `--new-passphrase-env`, or LLMOS_NEW_MASTER_KEY (64 hex digits); exactly one.
    RotateMaster {
        /// The new key file: read (32 raw bytes, mode 0600), or created with a random key
        /// when it does not exist. Keep it outside the data folder.
        #[arg(long, value_name = "FILE")]
        new_key_file: Option<PathBuf>,
        /// Name of the environment variable holding the new passphrase (stretched with
        /// Argon2id; at least 12 characters).
        #[arg(long, value_name = "VAR")]
        new_passphrase_env: Option<String>,
    },
    /// Re-encrypt one collection (its record, documents and chunks) under a new data key, in
    /// batches. Safe to interrupt: run it again to finish.
    Rekey {
        /// The collection.
        collection: String,
        /// Stop after this many batches (of 512 values); run again to continue.
        #[arg(long, value_name = "N")]
        max_batches: Option<usize>,
    },
    /// Open every value of the store; report counts per tree and every entry that does not
    /// open (exit status 1 when there is one).
    Check,
}

/// Runs a store command on the data location `home`.
pub fn run(cmd: StoreCommand, home: &Path) -> anyhow::Result<()> {
    let store = Store::open_home(home).context("cannot open the data store")?;
    match cmd {
        StoreCommand::RotateMaster {
            new_key_file,
            new_passphrase_env,
        } => rotate(&store, new_key_file, new_passphrase_env),
        StoreCommand::Rekey {
            collection,
            max_batches,
        } => {
            if max_batches == Some(0) {
                bail!("--max-batches must be at least 1");
            }
            let r = store.rekey(&collection, max_batches)?;
            record(
                &store,
                "store-rekeyed",
                &collection,
                format!("generation {}, {} values", r.generation, r.resealed),
            );
            super::print(&json!(r));
            if !r.done {
                eprintln!(
                    "rekey of {collection} stopped after {} values; run `llmos store rekey {collection}` again to finish",
                    r.resealed
                );
            }
            Ok(())
        }
        StoreCommand::Check => {
            let report = store.check()?;
            let trees: serde_json::Map<String, serde_json::Value> = report
                .entries
                .iter()
                .map(|(t, n)| ((*t).to_string(), json!(n)))
                .collect();
            super::print(&json!({"entries": trees, "errors": report.errors}));
            if !report.errors.is_empty() {
                bail!(
                    "{} entries of the store do not open (altered, moved, or their data key is gone); they are listed above",
                    report.errors.len()
                );
            }
            Ok(())
        }
    }
}

/// The new master key source: exactly one of the three ways.
fn new_source(file: Option<PathBuf>, pass_env: Option<String>) -> anyhow::Result<MasterSource> {
    let hex = std::env::var(NEW_MASTER_KEY_ENV)
        .ok()
        .filter(|v| !v.is_empty());
    match (file, pass_env, hex) {
        (Some(f), None, None) => Ok(MasterSource::File(f)),
        (None, Some(var), None) => {
            let Some(p) = std::env::var(&var).ok().filter(|v| !v.is_empty()) else {
                bail!("--new-passphrase-env names {var}, which is not set (or empty)");
            };
            Ok(MasterSource::passphrase(p)?)
        }
        (None, None, Some(h)) => Ok(MasterSource::Key(parse_hex_key(&h, NEW_MASTER_KEY_ENV)?)),
        (None, None, None) => bail!(
            "give the new master key: --new-key-file FILE, --new-passphrase-env VAR, or {NEW_MASTER_KEY_ENV} (64 hex digits)"
        ),
        _ => bail!(
            "give the new master key one way only: --new-key-file, --new-passphrase-env or {NEW_MASTER_KEY_ENV}"
        ),
    }
}

fn rotate(
    store: &Store,
    file: Option<PathBuf>,
    pass_env: Option<String>,
) -> anyhow::Result<()> {
    let source = new_source(file, pass_env.clone())?;
    let n = store.rotate_master(&source)?;
    record(
        store,
        "master-key-rotated",
        "store",
        format!("{n} records re-wrapped; new key: {}", source.describe()),
    );
    let next = match &source {
        MasterSource::File(f) => format!("LLMOS_MASTER_KEY_FILE={}", f.display()),
        MasterSource::Passphrase(_) => format!(
            "LLMOS_MASTER_PASSPHRASE (the passphrase in {})",
            pass_env.unwrap_or_default()
        ),
        MasterSource::Key(_) => format!("LLMOS_MASTER_KEY (the value of {NEW_MASTER_KEY_ENV})"),
    };
    super::print(&json!({"rotated": true, "rewrapped": n}));
    eprintln!(
        "master key rotated ({n} records re-wrapped); the old key no longer opens the store. \
         From now on give {next}, and remove the old key (and any copy of it)"
    );
    Ok(())
}

/// Writes an audit record; a failure to do so is reported, not fatal (the change is made).
fn record(store: &Store, kind: &str, subject: &str, detail: String) {
    let audit = crate::security::AuditLog::new(store.clone());
    if let Err(e) = audit.record(kind, subject, None, detail) {
        eprintln!("warning: could not write the audit record: {e}");
    }
}

//! `llmos anonymize` and `llmos deanonymize`: the same functions `POST /v1/anonymize` and
//! `POST /v1/deanonymize` call, on the store of the data location (so not while
//! `llmos serve` holds it).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};

use crate::core::engine::Core;
use crate::data::Store;
use crate::data::anonymize::{self, NER_MODEL, Options};
use crate::data::vault::Vault;

/// Flags of `llmos anonymize`.
#[derive(Debug, Args)]
pub struct AnonymizeArgs {
    /// Operator for an entity type, TYPE=OP (repeatable); OP is redact, mask, tag (default),
    /// hash or pseudonymize, e.g. --operator PERSON=pseudonymize --operator EMAIL=mask.
    #[arg(long = "operator", value_name = "TYPE=OP")]
    operators: Vec<String>,
    /// Vault scope of pseudonyms and hashes (a tenant or collection name).
    #[arg(long, default_value = "default")]
    scope: String,
    /// Entity types to detect, comma-separated [default: all].
    #[arg(long, value_delimiter = ',')]
    entities: Option<Vec<String>>,
    /// Report each entity's original text too.
    #[arg(long)]
    include_text: bool,
    /// The text (else all of stdin).
    text: Option<String>,
}

/// Flags of `llmos deanonymize`.
#[derive(Debug, Args)]
pub struct DeanonymizeArgs {
    /// The vault scope that issued the tokens.
    #[arg(long, default_value = "default")]
    scope: String,
    /// The text (else all of stdin).
    text: Option<String>,
}

fn open_vault(home: &Path) -> Result<Vault> {
    let store = Store::open_home(home).context(
        "cannot open the store (if `llmos serve` is running, it holds the store: use POST /v1/anonymize)",
    )?;
    Ok(Vault::new(store))
}

fn text_or_stdin(text: Option<String>) -> Result<String> {
    match text {
        Some(t) => Ok(t),
        None => super::read_stdin(),
    }
}

fn operators(pairs: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for p in pairs {
        let Some((kind, op)) = p.split_once('=') else {
            bail!("--operator {p:?}: expected TYPE=OP, e.g. PERSON=pseudonymize");
        };
        out.insert(kind.trim().to_string(), op.trim().to_string());
    }
    Ok(out)
}

/// `llmos anonymize`: prints `{"scope","text","entities"}`.
pub fn run_anonymize(core: &Core, home: &Path, a: AnonymizeArgs) -> Result<Value> {
    let options = Options::new(
        &operators(&a.operators)?,
        Some(&a.scope),
        a.entities.as_deref(),
        a.include_text,
    )?;
    let text = text_or_stdin(a.text)?;
    let model = if options.needs_model() {
        Some(core.model(NER_MODEL)?)
    } else {
        None
    };
    let vault = open_vault(home)?;
    let out = anonymize::anonymize(model.as_deref(), &vault, &[text], &options)?;
    let first = out.into_iter().next();
    Ok(json!({
        "scope": options.scope,
        "text": first.as_ref().map(|a| &a.text),
        "entities": first.as_ref().map(|a| &a.entities),
    }))
}

/// `llmos deanonymize`: prints `{"scope","text","restored","unknown"}`.
pub fn run_deanonymize(home: &Path, a: DeanonymizeArgs) -> Result<Value> {
    let text = text_or_stdin(a.text)?;
    let r = open_vault(home)?.deanonymize(&a.scope, &text)?;
    Ok(json!({"scope": a.scope, "text": r.text, "restored": r.restored, "unknown": r.unknown}))
}

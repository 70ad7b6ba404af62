//! `/v1/classify` with `labels` on an embedding model: zero-shot classification
//! ([`crate::core::zero_shot`]), through the model's plugin pipeline like any other request.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;
use utoipa::ToSchema;

use crate::api::error::ApiError;
use crate::api::{AppState, Caller, chain_is_empty, request_id, routed_value};
use crate::core::engine::Model;
use crate::core::manifest::Task;
use crate::core::text::{Input, Truncation};
use crate::core::zero_shot::{self, LabelSpec, MAX_EXAMPLES, MAX_LABELS, MIN_LABELS};
use crate::plugins::gateway::{self, TextTask, classes_json};

const ROUTE: &str = "/v1/classify";

/// One label of a zero-shot request: its name, or an object.
#[derive(serde::Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // describes the accepted shapes; `parse_labels` reads them
pub enum ZeroShotLabel {
    /// The label's name (also the text embedded for it).
    Name(String),
    /// A label with what it means and examples.
    Described {
        /// The label's name, returned in the scores; unique and non-empty.
        name: String,
        /// What the label means; embedded instead of the name when given.
        description: Option<String>,
        /// Up to 32 example texts of the label.
        examples: Option<Vec<String>>,
    },
}

fn bad(message: String) -> ApiError {
    ApiError::invalid(Some("labels".into()), message)
}

const ACCEPTED: &str = "a string (the label's name) or an object {\"name\": string, \"description\"?: string, \"examples\"?: [string, …]}";

fn string_list(v: &Value, at: &str) -> Result<Vec<String>, ApiError> {
    let items = v.as_array().ok_or_else(|| {
        bad(format!(
            "{at} is {}: it must be an array of up to {MAX_EXAMPLES} strings",
            crate::api::strict::kind(v)
        ))
    })?;
    if items.len() > MAX_EXAMPLES {
        return Err(bad(format!(
            "{at} has {} examples; at most {MAX_EXAMPLES} are accepted",
            items.len()
        )));
    }
    items
        .iter()
        .enumerate()
        .map(|(j, x)| match x.as_str() {
            Some(s) if !s.trim().is_empty() => Ok(s.to_string()),
            _ => Err(bad(format!("{at}[{j}] is {x}: an example must be a non-empty string"))),
        })
        .collect()
}

fn parse_label(i: usize, v: &Value) -> Result<LabelSpec, ApiError> {
    let at = format!("labels[{i}]");
    let (name, description, examples) = match v {
        Value::String(s) => (s.clone(), None, Vec::new()),
        Value::Object(o) => {
            if let Some(k) = o
                .keys()
                .find(|k| !["name", "description", "examples"].contains(&k.as_str()))
            {
                return Err(bad(format!(
                    "{at} has the unknown key {k:?}: accepted are name, description and examples"
                )));
            }
            let name = match o.get("name") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => return Err(bad(format!("{at}.name is {other}: it must be a string"))),
                None => return Err(bad(format!("{at} has no `name`: give {ACCEPTED}"))),
            };
            let description = match o.get("description") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
                Some(other) => {
                    return Err(bad(format!(
                        "{at}.description is {other}: it must be a non-empty string"
                    )));
                }
            };
            let examples = match o.get("examples") {
                None | Some(Value::Null) => Vec::new(),
                Some(e) => string_list(e, &format!("{at}.examples"))?,
            };
            (name, description, examples)
        }
        other => return Err(bad(format!("{at} is {other}: each label must be {ACCEPTED}"))),
    };
    if name.trim().is_empty() {
        return Err(bad(format!("{at} has an empty name: a label needs a non-empty name")));
    }
    Ok(LabelSpec {
        name,
        description,
        examples,
    })
}

/// `labels` of a classify body: 2 to 64 labels with unique, non-empty names.
pub fn parse_labels(v: &Value) -> Result<Vec<LabelSpec>, ApiError> {
    let items = v.as_array().ok_or_else(|| {
        bad(format!(
            "`labels` is {}: it must be an array of {MIN_LABELS} to {MAX_LABELS} labels, each {ACCEPTED}",
            crate::api::strict::kind(v)
        ))
    })?;
    if !(MIN_LABELS..=MAX_LABELS).contains(&items.len()) {
        return Err(bad(format!(
            "`labels` has {} labels; give {MIN_LABELS} to {MAX_LABELS}",
            items.len()
        )));
    }
    let labels: Vec<LabelSpec> = items
        .iter()
        .enumerate()
        .map(|(i, x)| parse_label(i, x))
        .collect::<Result<_, _>>()?;
    let mut seen = BTreeSet::new();
    for (i, l) in labels.iter().enumerate() {
        if !seen.insert(l.name.as_str()) {
            return Err(bad(format!(
                "labels[{i}] repeats the name {:?}: label names must be unique",
                l.name
            )));
        }
    }
    Ok(labels)
}

/// The error for `labels` sent to a model that is not an embedding model.
pub fn check_model(m: &Model) -> Result<(), ApiError> {
    match m.manifest.task {
        Task::Embed => Ok(()),
        Task::Classify => Err(bad(format!(
            "model {} has trained labels; labels is for embed models (zero-shot): leave `labels` out, or pick an embed model",
            m.name()
        ))),
        other => Err(bad(format!(
            "model {} does {}; labels is for embed models (zero-shot classification)",
            m.name(),
            other.as_str()
        ))),
    }
}

/// Zero-shot classification of `input` against `labels` with embedding model `m`, through
/// the model's pipeline on `/v1/classify` (plugins see the inputs; the label texts are the
/// client's and are embedded as given).
pub async fn run(
    state: &AppState,
    caller: Option<Caller>,
    m: &Arc<Model>,
    labels: Vec<LabelSpec>,
    input: Input,
    policy: Truncation,
) -> Result<Value, ApiError> {
    if chain_is_empty(&state.gateway.chain(m.name(), ROUTE)) {
        let out = zero_shot::classify(m, &labels, input, policy).await?;
        return Ok(classes_json(m.name(), &out));
    }
    let Input::Texts(texts) = input else {
        return Err(ApiError::invalid(
            Some("input".into()),
            format!(
                "model {} runs a plugin pipeline on {ROUTE}, which works on text: send texts, not token ids",
                m.name()
            ),
        ));
    };
    let key = caller.map(|c| c.0.id);
    let ctx = gateway::context(m.name(), TextTask::Classify, ROUTE, key, request_id());
    let routed = state
        .gateway
        .route_with(ctx, texts, async |texts| {
            let out = zero_shot::classify(m, &labels, Input::Texts(texts), policy).await?;
            Ok(classes_json(m.name(), &out))
        })
        .await;
    routed_value(routed)
}

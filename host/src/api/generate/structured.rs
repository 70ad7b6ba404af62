//! `response_format` on `/v1/chat/completions` and how a chat answer is shaped
//! (docs/generation.md §6a): `text` (default), `json_object` (any JSON object),
//! `json_schema` (a schema of the subset in `core/generate/grammar`), both decoded under a
//! grammar so the answer always parses; and llmos' `html` (the answer's Markdown rendered
//! and sanitised by `api/html.rs`, whole answers only). With `tools`, see `tools.rs`.

use std::sync::Arc;

use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::tools::{self, Tools};
use crate::api::error::ApiError;
use crate::core::Model;
use crate::core::generate::ChatMessage;
use crate::core::generate::grammar::order::{Ordered, property_orders};
use crate::core::generate::grammar::{Constraint, Grammar, JsonConstraint, Start};

/// `response_format`, parsed.
#[derive(Debug, Clone)]
pub(crate) enum ResponseFormat {
    /// Free text.
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON valid under this schema.
    JsonSchema(Grammar),
    /// Markdown rendered to sanitised HTML.
    Html,
}

/// `response_format` in a request (the shape `/openapi.json` describes).
#[derive(serde::Serialize, ToSchema)]
#[allow(dead_code)] // describes the accepted shape; `response_format` reads it
pub struct ResponseFormatInput {
    /// `text`, `json_object`, `json_schema`, or llmos' `html`.
    #[serde(rename = "type")]
    pub kind: String,
    /// With `json_schema`: `{"name", "schema", "strict"?, "description"?}`.
    #[schema(value_type = Object)]
    pub json_schema: Option<Value>,
}

const TYPES: &str = "\"text\", \"json_object\", \"json_schema\" and \"html\"";

fn bad(message: String) -> ApiError {
    ApiError::invalid(Some("response_format".to_string()), message)
}

/// `order`: the schema as the request wrote it (its properties' declared order).
fn json_schema(v: Option<&Value>, order: Option<&Ordered>) -> Result<Grammar, ApiError> {
    let shape = "give {\"name\", \"schema\", \"strict\"?, \"description\"?}";
    let Some(Value::Object(o)) = v else {
        return Err(bad(format!("`response_format.json_schema` is missing or not an object: {shape}")));
    };
    if let Some(k) = o.keys().find(|k| !["name", "schema", "strict", "description"].contains(&k.as_str())) {
        return Err(bad(format!("`response_format.json_schema` has the field `{k}`; accepted are name, schema, strict, description")));
    }
    match o.get("name").and_then(Value::as_str) {
        Some(n) if (1..=64).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') => {}
        _ => return Err(bad(format!("`response_format.json_schema.name` must be 1-64 letters, digits, _ or -: {shape}"))),
    }
    if let Some(s) = o.get("strict").filter(|s| !s.is_boolean() && !s.is_null()) {
        return Err(bad(format!("`response_format.json_schema.strict` is {s}: give true or false")));
    }
    match o.get("schema") {
        None | Some(Value::Null) => Ok(Grammar::any_object()),
        Some(s) => Grammar::compile_in_order(s, order.map(property_orders).unwrap_or_default()).map_err(|e| {
            ApiError::invalid(Some("response_format.json_schema.schema".to_string()), e.to_string()).with_code("unsupported_schema")
        }),
    }
}

/// Reads `response_format` (absent: text); `raw` is the request's JSON text, read again
/// for the declared order of a json_schema's properties (`serde_json::Value` sorts keys).
pub(crate) fn response_format(body: &Map<String, Value>, raw: Option<&[u8]>) -> Result<ResponseFormat, ApiError> {
    let Some(v) = body.get("response_format").filter(|v| !v.is_null()) else {
        return Ok(ResponseFormat::Text);
    };
    let Some(o) = v.as_object() else {
        return Err(bad(format!("`response_format` is {v}: give {{\"type\": …}}; accepted types are {TYPES}")));
    };
    let kind = o.get("type").and_then(Value::as_str).unwrap_or_default();
    let own: &[&str] = if kind == "json_schema" { &["type", "json_schema"] } else { &["type"] };
    if let Some(k) = o.keys().find(|k| !own.contains(&k.as_str())) {
        return Err(bad(format!("`response_format` has the field `{k}`, which type \"{kind}\" does not take")));
    }
    match kind {
        "text" => Ok(ResponseFormat::Text),
        "json_object" => Ok(ResponseFormat::JsonObject),
        "json_schema" => {
            let ordered: Option<Ordered> = raw.and_then(|r| serde_json::from_slice(r).ok());
            let schema = ordered.as_ref().and_then(|o| o.get("response_format")?.get("json_schema")?.get("schema"));
            json_schema(o.get("json_schema"), schema).map(ResponseFormat::JsonSchema)
        }
        "html" => Ok(ResponseFormat::Html),
        other => Err(bad(format!("`response_format.type` is \"{other}\"; accepted are {TYPES}"))),
    }
}

/// How a chat answer is decoded and shaped: the parsed `response_format` and tools.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// `response_format`.
    pub(crate) format: ResponseFormat,
    /// `tools` and `tool_choice`.
    pub(crate) tools: Option<Tools>,
}

impl Plan {
    /// Reads `response_format`, `tools`, `tool_choice`, `parallel_tool_calls` of a chat body
    /// (`raw`: its JSON text, when the handler has it). `resolve` finds the `llmos_tool`
    /// entries (and checks the caller may use them).
    pub(crate) fn from_body(body: &Value, raw: Option<&[u8]>, stream: bool, resolve: tools::Resolve<'_>) -> Result<Self, ApiError> {
        let empty = Map::new();
        let body = body.as_object().unwrap_or(&empty);
        let format = response_format(body, raw)?;
        // The request as written, read again only for a tool list (its parameters' order).
        let ordered: Option<Ordered> = body.get("tools").filter(|t| t.is_array()).and(raw).and_then(|r| serde_json::from_slice(r).ok());
        let tools = tools::parse(body, ordered.as_ref(), resolve)?;
        if matches!(format, ResponseFormat::Html) && stream {
            return Err(bad("`response_format` {\"type\": \"html\"} answers whole only: it cannot be used with `stream: true`".into()));
        }
        let calls = tools.as_ref().is_some_and(|t| t.choice != tools::Choice::None || t.has_llmos());
        if calls && !matches!(format, ResponseFormat::Text) {
            return Err(bad("`response_format` other than text cannot be combined with tool calls: give `tool_choice: \"none\"` or drop `response_format`".into()));
        }
        Ok(Self { format, tools })
    }

    /// The constraint the answer is decoded under, if any (the model's token table is
    /// built on first use).
    pub(crate) fn constraint(&self, m: &Model) -> Result<Option<Arc<dyn Constraint>>, ApiError> {
        let (grammar, start) = match (&self.format, &self.tools) {
            (_, Some(t)) if t.choice != tools::Choice::None => match t.grammar()? {
                Some(g) => g,
                None => return Ok(None),
            },
            (ResponseFormat::JsonObject, _) => (Grammar::any_object(), Start::Always),
            (ResponseFormat::JsonSchema(g), _) => (g.clone(), Start::Always),
            _ => return Ok(None),
        };
        let table = m.token_table()?;
        Ok(Some(Arc::new(Arc::new(JsonConstraint::new(grammar, table, start)))))
    }

    /// The messages with the tools described in the system message (when the model's
    /// template does not take `tools` itself).
    pub(crate) fn messages(&self, mut messages: Vec<ChatMessage>, template_takes_tools: bool) -> Vec<ChatMessage> {
        let Some(t) = &self.tools else { return messages };
        if template_takes_tools {
            return messages;
        }
        let text = t.system_text();
        match messages.first_mut() {
            Some(m) if m.role == "system" => {
                m.content.push_str("\n\n");
                m.content.push_str(&text);
            }
            _ => messages.insert(0, ChatMessage { role: "system".into(), content: text }),
        }
        messages
    }

    /// What the response shows of each answer.
    pub(crate) fn shape(&self) -> super::response::Shape {
        match (&self.format, &self.tools) {
            (_, Some(t)) if t.choice != tools::Choice::None => super::response::Shape::Tools(t.clone()),
            (ResponseFormat::Html, _) => super::response::Shape::Html,
            _ => super::response::Shape::Text,
        }
    }
}

//! Tools that a model (the chat tool loop) and MCP clients call (docs/tools.md): the
//! catalogue of every installed `tool` plugin's tools and every registered MCP server's
//! tools, behind one [`ToolProvider`] trait.
//!
//! Ids: a plugin tool is named by its own name (`calculator`, unique across installed
//! plugins); a tool of a registered MCP server is `mcp:<server>:<tool>`. An API key lets its
//! requests use a tool with `tools:<id>`, `tools:mcp:<server>:*` or `tools:*`
//! ([`crate::security::keys::Key::allows_tool`]). The model sees [`ToolSpec::function_name`]
//! (`:` is not allowed in an OpenAI function name).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use serde_json::Value;

/// Where a tool comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ToolSource {
    /// A `tool` plugin (WIT `llmos:plugin@0.1.1`, world `tool`).
    Plugin {
        /// The plugin's name.
        plugin: String,
        /// Its installed version.
        version: String,
    },
    /// A registered remote MCP server.
    Mcp {
        /// The server's name as registered (`llmos mcp add NAME URL`).
        server: String,
        /// The tool's name on that server.
        tool: String,
    },
}

/// One tool as the catalogue lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ToolSpec {
    /// `calculator`, or `mcp:<server>:<tool>`.
    pub id: String,
    /// For the model.
    pub description: String,
    /// JSON Schema (an object schema) of the arguments.
    pub parameters: Value,
    /// Where it comes from.
    pub source: ToolSource,
}

impl ToolSpec {
    /// The name the model calls the tool by: the id with each `:` written `__`
    /// (`mcp__wiki__search`). Plugin tool names contain neither `:` nor `__`, so the
    /// mapping is one to one.
    pub fn function_name(&self) -> String {
        function_name(&self.id)
    }
}

/// The function name of tool `id` (see [`ToolSpec::function_name`]).
pub fn function_name(id: &str) -> String {
    id.replace(':', "__")
}

/// Who calls a tool, for the plugin's `tool-call.context` and the audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolCallCtx {
    /// The request's id.
    pub request_id: String,
    /// The API key's id, when authenticated.
    pub key_id: Option<String>,
    /// The model that asked for the call; empty when a client called the tool directly.
    pub model: String,
    /// The route the request came in on (`/v1/chat/completions`, `/mcp`, `cli`).
    pub route: String,
}

/// Why a tool call gave no result. The chat loop shows each to the model as the tool's
/// answer (never a 500); MCP returns it as a tool error result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    /// No such tool; the message lists the tools there are.
    #[error("{0}")]
    NotFound(String),
    /// A capability (of the plugin) or scope (of the key) is missing; names which.
    #[error("denied: {0}")]
    Denied(String),
    /// The arguments do not match the tool's schema, or the tool refused them.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// A limit of the plugin call (time, memory, host calls, output) or of the loop.
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    /// The tool is disabled, busy, or its server unreachable.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The tool ran and failed (a trap, or an error it returned).
    #[error("failed: {0}")]
    Failed(String),
}

/// A boxed future of a tool call.
pub type ToolFuture<'a> = Pin<Box<dyn Future<Output = Result<String, ToolError>> + Send + 'a>>;

/// A source of tools: the plugin host's `tool` plugins, or the registered MCP servers.
pub trait ToolProvider: Send + Sync {
    /// The tools it offers now (cheap: from a cache, no plugin call or network).
    fn tools(&self) -> Vec<ToolSpec>;

    /// Calls tool `id` (one of [`ToolProvider::tools`]) with `arguments`, a JSON object the
    /// catalogue has already validated against the tool's schema.
    fn invoke<'a>(&'a self, id: &'a str, arguments: Value, ctx: ToolCallCtx) -> ToolFuture<'a>;
}

/// Every provider's tools, by id.
#[derive(Default)]
pub struct ToolCatalog {
    providers: RwLock<Vec<Arc<dyn ToolProvider>>>,
}

impl std::fmt::Debug for ToolCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolCatalog")
            .field("tools", &self.list().iter().map(|t| t.id.clone()).collect::<Vec<_>>())
            .finish()
    }
}

impl ToolCatalog {
    /// An empty catalogue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a provider; its tools are listed from then on.
    pub fn add(&self, provider: Arc<dyn ToolProvider>) {
        self.providers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(provider);
    }

    fn providers(&self) -> Vec<Arc<dyn ToolProvider>> {
        self.providers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every tool, sorted by id (an id offered twice: the provider added first wins).
    pub fn list(&self) -> Vec<ToolSpec> {
        let mut out: Vec<ToolSpec> = Vec::new();
        for p in self.providers() {
            for t in p.tools() {
                if !out.iter().any(|o| o.id == t.id) {
                    out.push(t);
                }
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// The tool `id`, or the one whose [`ToolSpec::function_name`] is `id`.
    pub fn get(&self, id: &str) -> Option<ToolSpec> {
        self.list()
            .into_iter()
            .find(|t| t.id == id || t.function_name() == id)
    }

    /// Calls tool `id`: `NotFound` (listing the tools there are) for an unknown id; the
    /// arguments are checked against the tool's schema before the provider sees them
    /// (`InvalidArguments` naming what was wrong). Scopes are the caller's to check
    /// ([`crate::security::keys::Key::allows_tool`]) before calling.
    pub async fn invoke(&self, id: &str, arguments: Value, ctx: ToolCallCtx) -> Result<String, ToolError> {
        let Some(spec) = self.get(id) else {
            let known: Vec<String> = self.list().into_iter().map(|t| t.id).collect();
            return Err(ToolError::NotFound(if known.is_empty() {
                format!("no tool named {id:?}: no tools are installed")
            } else {
                format!("no tool named {id:?}: the tools are {}", known.join(", "))
            }));
        };
        validate_arguments(&spec.parameters, &arguments).map_err(ToolError::InvalidArguments)?;
        let provider = self
            .providers()
            .into_iter()
            .find(|p| p.tools().iter().any(|t| t.id == spec.id));
        match provider {
            Some(p) => p.invoke(&spec.id, arguments, ctx).await,
            None => Err(ToolError::Unavailable(format!("tool {} was removed", spec.id))),
        }
    }
}

/// Checks `arguments` against `schema` (the structured-output subset of docs/generation.md
/// §6a, compiled by the same grammar constrained decoding uses, so exactly what the model
/// could have written is accepted). The error names the path and what is accepted there
/// (`arguments.city is 5: expected a string`); a schema outside the subset says so.
pub fn validate_arguments(schema: &Value, arguments: &Value) -> Result<(), String> {
    if !arguments.is_object() {
        return Err(format!(
            "the arguments are {}: expected a JSON object",
            crate::json::kind(arguments)
        ));
    }
    let grammar = crate::core::generate::grammar::Grammar::compile(schema)
        .map_err(|e| format!("the tool's parameters schema cannot be checked: {e}"))?;
    grammar.validate(arguments, "arguments")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn validate_arguments_checks_the_schema() {
        let schema = json!({
            "type": "object",
            "properties": {"collection": {"type": "string"}, "query": {"type": "string"}, "top_k": {"type": "integer"}},
            "required": ["collection", "query"]
        });
        assert_eq!(validate_arguments(&schema, &json!({"collection": "docs", "query": "q"})), Ok(()));
        assert_eq!(validate_arguments(&schema, &json!({"collection": "docs", "query": "q", "top_k": 3})), Ok(()));
        assert_eq!(
            validate_arguments(&schema, &json!({"collection": "docs", "query": "q", "top_k": "3"})).unwrap_err(),
            "arguments.top_k is \"3\": expected an integer (no fraction or exponent)"
        );
        assert_eq!(
            validate_arguments(&schema, &json!({"query": "q"})).unwrap_err(),
            "arguments.collection is missing: the property \"collection\" is required"
        );
        assert_eq!(
            validate_arguments(&schema, &json!("q")).unwrap_err(),
            "the arguments are a string: expected a JSON object"
        );
        let e = validate_arguments(&json!({"type": "object", "properties": {"a": {"pattern": "x"}}}), &json!({})).unwrap_err();
        assert!(e.contains("`pattern`") && e.contains("accepted are"), "{e}");
    }
}

//! `/mcp`: llmos as an MCP server (Streamable HTTP, docs/tools.md §4), and `/admin/mcp`: the
//! MCP servers llmos is a client of (§5).
//!
//! The server is `rmcp`'s `StreamableHttpService`, stateless with JSON answers, behind the
//! same access layer as every route (`access::auth`: the `Authorization: Bearer` API key, or
//! open loopback mode). The key reaches the tool handlers through the HTTP request's
//! extensions, which rmcp hands over in the request context.
//!
//! Tools: llmos's own tasks, each dispatched as an internal request to its HTTP route
//! through the same router (so the same scope checks, validation, pipelines, metrics and
//! audit apply: `embed` → `POST /v1/embeddings`, `entities`, `classify`, `anonymize`,
//! `collection_search` → `POST /v1/collections/{collection}/search`), and every tool of the
//! catalogue (`Gateway::tools`: tool plugins, registered MCP servers), each under
//! `tools:<id>`. Catalogue tools are named by [`ToolSpec::function_name`] (MCP tool names
//! have no `:`: `mcp:wiki:search` is `mcp__wiki__search`). A call the key may not make is a
//! tool result with `isError: true` naming the missing scope.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tower::ServiceExt as _;
use utoipa::ToSchema;

use crate::api::error::ApiError;
use crate::api::routes::{Access, ApiRoute, delete, get, post};
use crate::api::{AppState, Caller};
use crate::plugins::mcp::{self, McpError, McpServerStatus};
use crate::plugins::tools::{ToolCallCtx, ToolSpec};
use crate::security::keys::KeyRecord;

/// The routes of this module.
pub(crate) fn routes() -> Vec<ApiRoute> {
    vec![
        post("/mcp", Access::Key, serve_mcp).body::<McpMessage>(),
        get("/admin/mcp", Access::Admin, list_servers),
        post("/admin/mcp", Access::Admin, add_server).body::<AddServer>(),
        delete("/admin/mcp/{name}", Access::Admin, remove_server),
        post("/admin/mcp/secrets/{name}", Access::Admin, set_secret).body::<SecretValue>(),
    ]
}

/// One JSON-RPC 2.0 message of MCP (for the API description; rmcp reads the body itself).
#[derive(serde::Serialize, ToSchema)]
pub struct McpMessage {
    /// `"2.0"`.
    pub jsonrpc: String,
    /// The request's id (absent in a notification).
    #[schema(value_type = Option<Object>)]
    pub id: Option<Value>,
    /// `initialize`, `tools/list`, `tools/call`, `notifications/initialized`, …
    pub method: Option<String>,
    /// The method's parameters.
    #[schema(value_type = Option<Object>)]
    pub params: Option<Value>,
}

/// Hands the request to rmcp's Streamable HTTP service (stateless: every POST carries one
/// JSON-RPC message and gets its answer as JSON; GET and DELETE are answered 405 by the
/// router, as the specification allows a server without sessions). rmcp's refusals of the
/// HTTP request itself (Accept, Content-Type, body) are given llmos's JSON error shape.
async fn serve_mcp(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let resp = mcp_service(&state, req).await;
    let status = resp.status();
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || json {
        return resp;
    }
    let bytes = axum::body::to_bytes(resp.into_body(), 64 * 1024).await.unwrap_or_default();
    let why = String::from_utf8_lossy(&bytes);
    let kind = if status.is_server_error() {
        "server_error"
    } else {
        "invalid_request_error"
    };
    ApiError::new(
        status,
        kind,
        format!(
            "MCP (Streamable HTTP): {}; POST one JSON-RPC message with Content-Type: application/json and Accept: application/json, text/event-stream",
            why.trim()
        ),
    )
    .into_response()
}

async fn mcp_service(state: &Arc<AppState>, req: Request) -> Response {
    let service = state.mcp.service(state);
    match service.oneshot(req).await {
        Ok(resp) => resp.map(Body::new),
        Err(never) => match never {},
    }
}

/// The rmcp service behind `/mcp`, as the server keeps it.
type Service = StreamableHttpService<McpServer, LocalSessionManager>;

/// What `/mcp` builds once per server (`AppState::mcp`) rather than per request: rmcp's
/// Streamable HTTP service, and the MCP tool list (llmos's own tasks and the catalogue's
/// tools as rmcp `Tool`s), rebuilt only when the catalogue's tools change (an install,
/// upgrade, grant, enable, disable or removal of a tool plugin; an MCP server added,
/// removed or refreshed).
#[derive(Default)]
pub(crate) struct McpCache {
    service: std::sync::OnceLock<Service>,
    tools: std::sync::Mutex<Option<Arc<ToolList>>>,
    /// The router the built-in tasks are dispatched through (the server's own routes; it
    /// holds the state, so it lives as long as the server).
    router: std::sync::OnceLock<axum::Router>,
}

/// The MCP tool list of one state of the catalogue.
struct ToolList {
    /// The catalogue it was built from.
    catalogue: Vec<ToolSpec>,
    /// Every tool, with the catalogue id a key needs (`None`: a built-in task, listed to
    /// every key; its route checks the scopes).
    tools: Vec<(Option<String>, Tool)>,
}

impl std::fmt::Debug for McpCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpCache")
            .field("service_built", &self.service.get().is_some())
            .finish_non_exhaustive()
    }
}

impl McpCache {
    /// The service, built on first use. Its handlers hold the state weakly (the state
    /// holds the service).
    fn service(&self, state: &Arc<AppState>) -> Service {
        self.service
            .get_or_init(|| {
                let config = StreamableHttpServerConfig::default()
                    .with_legacy_session_mode(false)
                    .with_json_response(true)
                    .with_sse_keep_alive(None)
                    // Host and Origin are checked by `access::auth` (open mode's browser
                    // guards); a server with keys answers any Host, like every other route.
                    .disable_allowed_hosts()
                    .disable_allowed_origins()
                    .with_max_request_body_bytes(state.limits.body_bytes);
                let weak = Arc::downgrade(state);
                tracing::debug!("MCP service built");
                StreamableHttpService::new(
                    move || {
                        weak.upgrade()
                            .map(|state| McpServer { state })
                            .ok_or_else(|| std::io::Error::other("the server is shutting down"))
                    },
                    Arc::new(LocalSessionManager::default()),
                    config,
                )
            })
            .clone()
    }

    /// The tool list for the catalogue as it is now: the cached one unless the catalogue's
    /// tools changed since it was built.
    fn tools(&self, catalogue: Vec<ToolSpec>) -> Arc<ToolList> {
        let mut cached = self.tools.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = cached.as_ref()
            && list.catalogue == catalogue
        {
            return list.clone();
        }
        let list = Arc::new(ToolList::build(catalogue));
        tracing::debug!(tools = list.tools.len(), "MCP tool list built");
        *cached = Some(list.clone());
        list
    }
}

impl ToolList {
    fn build(catalogue: Vec<ToolSpec>) -> Self {
        let builtins = builtins();
        let mut tools: Vec<(Option<String>, Tool)> = Vec::with_capacity(builtins.len().saturating_add(catalogue.len()));
        for (name, description, schema) in &builtins {
            tools.push((None, Tool::new(*name, *description, object(schema.clone()))));
        }
        for t in &catalogue {
            // A catalogue tool named like a built-in is hidden: the built-in wins.
            if builtins.iter().any(|b| b.0 == t.function_name()) {
                continue;
            }
            let description = format!("{} (llmos tool {}; scope tools:{})", t.description, t.id, t.id);
            tools.push((Some(t.id.clone()), Tool::new(t.function_name(), description, object(t.parameters.clone()))));
        }
        Self { catalogue, tools }
    }

    /// The tools `key` may see (all of them in open mode).
    fn visible(&self, key: Option<&KeyRecord>) -> Vec<Tool> {
        self.tools
            .iter()
            .filter(|(id, _)| match (id, key) {
                (Some(id), Some(k)) => k.allows_tool(id),
                _ => true,
            })
            .map(|(_, t)| t.clone())
            .collect()
    }
}

/// The MCP server of one request (rmcp's service makes one per request).
#[derive(Clone)]
struct McpServer {
    state: Arc<AppState>,
}

/// The names of llmos's own tasks (in [`builtins`]'s order).
const BUILTIN_NAMES: [&str; 5] = ["embed", "entities", "classify", "anonymize", "collection_search"];

/// llmos's own tasks: name, description, the route it runs, its arguments' schema.
fn builtins() -> Vec<(&'static str, &'static str, Value)> {
    let texts = json!({"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
        "description": "one text or a list of texts"});
    let model = |what: &str| json!({"type": "string", "description": format!("the model ({what}; GET /v1/models lists them); the key needs models:<model>")});
    vec![
        (
            "embed",
            "Embeds texts with an embedding model (the same as POST /v1/embeddings, whose fields it takes): one vector per text.",
            json!({"type": "object", "properties": {"model": model("an embed model, e.g. minilm"), "input": texts},
                "required": ["model", "input"]}),
        ),
        (
            "entities",
            "Finds named entities and personal data (spans with types and scores) in texts with a token-classification model (POST /v1/entities).",
            json!({"type": "object", "properties": {"model": model("a token-classify model, e.g. pii-ner"), "input": texts},
                "required": ["model", "input"]}),
        ),
        (
            "classify",
            "Classifies texts with a classification model, or zero-shot with an embed model and `labels` (POST /v1/classify).",
            json!({"type": "object", "properties": {"model": model("a classify model, or an embed model with labels"), "input": texts,
                "labels": {"type": "array", "items": {"type": "string"}, "description": "zero-shot label names (2 to 64)"}},
                "required": ["model", "input"]}),
        ),
        (
            "anonymize",
            "Replaces personal data in texts (pii-ner entities and validated patterns) by tags, masks, hashes or pseudonyms (POST /v1/anonymize; needs the scope pii:anonymize).",
            json!({"type": "object", "properties": {"text": {"type": "string"}, "texts": {"type": "array", "items": {"type": "string"}},
                "operators": {"type": "object", "additionalProperties": {"type": "string", "enum": ["redact", "mask", "tag", "hash", "pseudonymize"]},
                    "description": "operator per entity type, e.g. {\"PERSON\": \"pseudonymize\"} (default tag)"},
                "scope": {"type": "string", "description": "vault scope of pseudonyms (default `default`)"},
                "entities": {"type": "array", "items": {"type": "string"}}}}),
        ),
        (
            "collection_search",
            "Searches a collection by meaning: the query is embedded with the collection's model and the closest chunks come back with their documents (POST /v1/collections/{collection}/search; needs data:<collection>).",
            json!({"type": "object", "properties": {"collection": {"type": "string"}, "query": {"type": "string"},
                "top_k": {"type": "integer", "minimum": 1, "maximum": 1000, "description": "results (default 10)"},
                "filter": {"type": "object", "description": "metadata filter: {\"field\": value} or {\"field\": {\"gte\": 1, \"in\": [..]}}"}},
                "required": ["collection", "query"]}),
        ),
    ]
}

fn object(v: Value) -> Arc<Map<String, Value>> {
    Arc::new(match v {
        Value::Object(m) => m,
        _ => Map::new(),
    })
}

/// The HTTP request an MCP message came in (rmcp puts its parts in the context).
fn parts(ctx: &RequestContext<RoleServer>) -> Option<&http::request::Parts> {
    ctx.extensions.get::<http::request::Parts>()
}

/// The caller's key; `None` on an open loopback server (which needs none).
fn caller(ctx: &RequestContext<RoleServer>) -> Option<KeyRecord> {
    parts(ctx)?.extensions.get::<Caller>().map(|c| c.0.clone())
}

fn text_result(text: String, is_error: bool) -> CallToolResult {
    let content = vec![ContentBlock::text(text)];
    if is_error {
        CallToolResult::error(content)
    } else {
        CallToolResult::success(content)
    }
}

impl McpServer {
    /// Runs a built-in task through its HTTP route, with the caller's credentials.
    async fn builtin(
        &self,
        name: &str,
        mut args: Map<String, Value>,
        ctx: &RequestContext<RoleServer>,
    ) -> CallToolResult {
        let path = match name {
            "embed" => "/v1/embeddings".to_string(),
            "entities" => "/v1/entities".to_string(),
            "classify" => "/v1/classify".to_string(),
            "anonymize" => "/v1/anonymize".to_string(),
            _ => match args.remove("collection") {
                Some(Value::String(c)) if !c.is_empty() && !c.contains(['/', '?', '#', '%']) => {
                    format!("/v1/collections/{c}/search")
                }
                Some(other) => {
                    return text_result(
                        format!("`collection` is {other}: it must be a collection's name (GET /v1/collections lists them)"),
                        true,
                    );
                }
                None => {
                    return text_result(
                        "missing required argument `collection`: the name of the collection to search".into(),
                        true,
                    );
                }
            },
        };
        match self.dispatch(&path, Value::Object(args), ctx).await {
            Ok(v) => {
                let mut r = text_result(v.to_string(), false);
                if v.is_object() {
                    r.structured_content = Some(v);
                }
                r
            }
            Err(msg) => text_result(msg, true),
        }
    }

    /// `POST path` with `body` through the router, as the MCP request's caller (its
    /// `Authorization`, `Host` and `Origin` headers, its peer address, or the admin socket's
    /// owner). The answer's JSON, or the API error's message.
    async fn dispatch(&self, path: &str, body: Value, ctx: &RequestContext<RoleServer>) -> Result<Value, String> {
        let mut req = Request::builder()
            .method(http::Method::POST)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json");
        let outer = parts(ctx);
        if let Some(p) = outer {
            for h in [header::HOST, header::AUTHORIZATION, header::ORIGIN] {
                if let Some(v) = p.headers.get(&h) {
                    req = req.header(h, v);
                }
            }
        }
        let mut req = req
            .body(Body::from(body.to_string()))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        if let Some(p) = outer {
            if let Some(c) = p.extensions.get::<ConnectInfo<SocketAddr>>() {
                req.extensions_mut().insert(*c);
            }
            if let Some(l) = p.extensions.get::<crate::api::local::LocalPeer>() {
                req.extensions_mut().insert(*l);
            }
        }
        let router = self.state.mcp.router.get_or_init(|| crate::api::router(self.state.clone())).clone();
        let resp = match router.oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .map_err(|e| format!("cannot read the answer of {path}: {e}"))?;
        let v: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        if status.is_success() {
            Ok(v)
        } else {
            let msg = v
                .pointer("/error/message")
                .and_then(Value::as_str)
                .map_or_else(|| v.to_string(), str::to_string);
            Err(format!("{path} answered {}: {msg}", status.as_u16()))
        }
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("llmos", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "llmos: local models and sandboxed tools. Built-in tools embed, entities, classify, \
                 anonymize and collection_search need the scopes of their HTTP routes; other tools \
                 need tools:<id>.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let key = caller(&ctx);
        let tools = self.state.mcp.tools(self.state.gateway.tools.list()).visible(key.as_ref());
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.to_string();
        let args = request.arguments.unwrap_or_default();
        if BUILTIN_NAMES.contains(&name.as_str()) {
            return Ok(self.builtin(&name, args, &ctx).await.into());
        }
        let key = caller(&ctx);
        let Some(spec) = self.state.gateway.tools.get(&name) else {
            let list = self.state.mcp.tools(self.state.gateway.tools.list());
            let known: Vec<String> = list.visible(key.as_ref()).iter().map(|t| t.name.to_string()).collect();
            return Err(ErrorData::invalid_params(
                format!("no tool named {name:?}: the tools are {}", known.join(", ")),
                None,
            ));
        };
        if let Some(k) = &key
            && !k.allows_tool(&spec.id)
        {
            self.state.audit(
                "auth-denied",
                &k.id,
                format!("/mcp: tool {}: no scope tools:{}", spec.id, spec.id),
            );
            let also = match &spec.source {
                crate::plugins::tools::ToolSource::Mcp { server, .. } => format!(", tools:mcp:{server}:*"),
                crate::plugins::tools::ToolSource::Plugin { .. } => String::new(),
            };
            return Ok(text_result(
                format!(
                    "denied: key {} lacks the scope tools:{} (or tools:*{also}) needed for the tool {}; it has {}",
                    k.id,
                    spec.id,
                    spec.id,
                    k.scopes.join(", ")
                ),
                true,
            )
            .into());
        }
        let call = ToolCallCtx {
            request_id: crate::api::request_id(),
            key_id: key.map(|k| k.id),
            model: String::new(),
            route: "/mcp".into(),
        };
        Ok(match self.state.gateway.tools.invoke(&spec.id, Value::Object(args), call).await {
            Ok(text) => text_result(text, false),
            Err(e) => text_result(e.to_string(), true),
        }
        .into())
    }
}

fn mcp_err(e: McpError) -> ApiError {
    let status = match &e {
        McpError::NotFound(_) => StatusCode::NOT_FOUND,
        McpError::Exists(_) => StatusCode::CONFLICT,
        McpError::Invalid(_) => StatusCode::BAD_REQUEST,
        McpError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let kind = if status == StatusCode::INTERNAL_SERVER_ERROR {
        "server_error"
    } else {
        "invalid_request_error"
    };
    ApiError::new(status, kind, e.to_string())
}

/// `GET /admin/mcp`: the registered servers, each with its state and tools.
async fn list_servers(State(s): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let list = s.gateway.mcp.status().await.map_err(mcp_err)?;
    Ok(Json(json!({"servers": list})))
}

/// `POST /admin/mcp`: registers a server. Registering is a grant of the `http:` capability
/// its URL needs: `approve` must be true.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddServer {
    /// Its name: `mcp:<name>:<tool>`.
    name: String,
    /// Its Streamable HTTP endpoint (`http://` or `https://`).
    url: String,
    /// The llmos secret holding its bearer token (`POST /admin/mcp/secrets/{name}`).
    #[serde(default)]
    token_secret: Option<String>,
    /// The operator's approval of the `http:` capability the URL needs.
    #[serde(default)]
    approve: bool,
}

async fn add_server(
    State(s): State<Arc<AppState>>,
    crate::api::ApiJson(body): crate::api::ApiJson<AddServer>,
) -> Result<(StatusCode, Json<McpServerStatus>), ApiError> {
    let store = s.gateway.host.store().clone();
    let (name, url, secret) = (body.name.clone(), body.url.clone(), body.token_secret.clone());
    let record = tokio::task::spawn_blocking(move || mcp::new_record(&store, &name, &url, secret.as_deref()))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", e.to_string()))?
        .map_err(mcp_err)?;
    if !body.approve {
        return Err(ApiError::invalid(
            Some("approve".into()),
            format!(
                "registering MCP server {} at {} grants llmos the capability {}: send \"approve\": true to approve it",
                record.name, record.url, record.capability
            ),
        )
        .with_code("approval_required"));
    }
    let status = s.gateway.mcp.add(record).await.map_err(mcp_err)?;
    Ok((StatusCode::CREATED, Json(status)))
}

async fn remove_server(State(s): State<Arc<AppState>>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let r = crate::api::off_worker(|| s.gateway.mcp.remove(&name)).map_err(mcp_err)?;
    Ok(Json(json!({"removed": r.name})))
}

/// `POST /admin/mcp/secrets/{name}`: stores a token secret (sealed).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretValue {
    /// The token.
    value: String,
}

async fn set_secret(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
    crate::api::ApiJson(body): crate::api::ApiJson<SecretValue>,
) -> Result<Response, ApiError> {
    let store = s.gateway.host.store().clone();
    let n = name.clone();
    tokio::task::spawn_blocking(move || mcp::set_secret(&store, &n, &body.value))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", e.to_string()))?
        .map_err(mcp_err)?;
    Ok(Json(json!({"secret": name})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::tools::ToolSource;

    fn spec(id: &str) -> ToolSpec {
        ToolSpec {
            id: id.into(),
            description: format!("the tool {id}"),
            parameters: json!({"type": "object", "properties": {"x": {"type": "string"}}}),
            source: ToolSource::Plugin { plugin: "p".into(), version: "0.1.0".into() },
        }
    }

    fn names(list: &ToolList, key: Option<&KeyRecord>) -> Vec<String> {
        list.visible(key).iter().map(|t| t.name.to_string()).collect()
    }

    #[test]
    fn the_tool_list_is_rebuilt_only_when_the_catalogue_changes() {
        let cache = McpCache::default();
        let a = cache.tools(vec![spec("calculator")]);
        let again = cache.tools(vec![spec("calculator")]);
        assert!(Arc::ptr_eq(&a, &again), "same catalogue: the same list");
        assert_eq!(names(&a, None), ["embed", "entities", "classify", "anonymize", "collection_search", "calculator"]);
        assert_eq!(BUILTIN_NAMES.to_vec(), builtins().iter().map(|b| b.0).collect::<Vec<_>>());

        // A tool added: rebuilt; one named like a built-in stays hidden.
        let b = cache.tools(vec![spec("calculator"), spec("embed"), spec("mcp:wiki:search")]);
        assert!(!Arc::ptr_eq(&a, &b));
        let all = names(&b, Some(&KeyRecord::local_owner(0)));
        assert_eq!(all.iter().filter(|n| *n == "embed").count(), 1, "{all:?}");
        assert!(all.contains(&"mcp__wiki__search".to_string()), "{all:?}");
        // A changed description is a change too.
        let mut changed = spec("calculator");
        changed.description = "new".into();
        assert!(!Arc::ptr_eq(&b, &cache.tools(vec![changed])));
    }
}

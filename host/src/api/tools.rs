//! The tool catalogue over HTTP (docs/tools.md §2): `GET /v1/tools` lists the tools the
//! caller's key may use (`tools:<id>`, `tools:*`; open mode: all) with their schemas, and
//! `POST /v1/tools/{id}/invoke` calls one.
//!
//! What the request got wrong is an HTTP error: 403 without `tools:<id>` (checked by
//! `access::auth`), 404 for an unknown tool, 400 for arguments that are not an object or do
//! not match the tool's schema. What the tool did is a 200: `{"result": "…"}`, or
//! `{"error": {"kind": "…", "message": "…"}}` when it ran and failed (a capability its
//! plugin lacks, a limit, a trap, its own error) — the same outcome the chat loop shows the
//! model and MCP returns as a tool error.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::api::error::ApiError;
use crate::api::routes::{Access, ApiRoute, get, post};
use crate::api::{ApiJson, AppState, Caller, request_id};
use crate::plugins::plugin_tools::kind;
use crate::plugins::tools::{ToolCallCtx, ToolSpec, validate_arguments};

/// The route of an invocation (what plugins see in their request context).
pub const INVOKE_ROUTE: &str = "/v1/tools/{id}/invoke";

/// The routes of this module.
pub(crate) fn routes() -> Vec<ApiRoute> {
    vec![
        get("/v1/tools", Access::Key, list),
        post(INVOKE_ROUTE, Access::Tool, invoke).body::<InvokeRequest>(),
    ]
}

/// A tool as `GET /v1/tools` lists it.
pub fn tool_json(t: &ToolSpec) -> Value {
    json!({
        "id": t.id,
        "function_name": t.function_name(),
        "description": t.description,
        "parameters": t.parameters,
        "source": t.source,
    })
}

async fn list(
    State(state): State<Arc<AppState>>,
    caller: Option<Extension<Caller>>,
) -> Json<Value> {
    let tools: Vec<Value> = state
        .gateway
        .tools
        .list()
        .iter()
        .filter(|t| caller.as_ref().is_none_or(|c| c.0.0.allows_tool(&t.id)))
        .map(tool_json)
        .collect();
    Json(json!({"object": "list", "data": tools}))
}

/// `POST /v1/tools/{id}/invoke`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvokeRequest {
    /// The tool's arguments: a JSON object matching its `parameters` schema.
    #[schema(value_type = Object)]
    pub arguments: Value,
}

async fn invoke(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    caller: Option<Extension<Caller>>,
    ApiJson(body): ApiJson<InvokeRequest>,
) -> Result<Json<Value>, ApiError> {
    let catalog = state.gateway.tools.clone();
    let Some(spec) = catalog.get(&id) else {
        let known: Vec<String> = catalog.list().into_iter().map(|t| t.id).collect();
        let there = if known.is_empty() {
            "no tools are installed".to_string()
        } else {
            format!("the tools are {}", known.join(", "))
        };
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("no tool named {id:?}: {there} (GET /v1/tools lists those your key may use)"),
        )
        .with_code("tool_not_found"));
    };
    validate_arguments(&spec.parameters, &body.arguments).map_err(|e| {
        ApiError::invalid(
            Some("arguments".into()),
            format!("the arguments of tool {}: {e}", spec.id),
        )
    })?;
    let ctx = ToolCallCtx {
        request_id: request_id(),
        key_id: caller.map(|c| c.0.0.id),
        model: String::new(),
        route: INVOKE_ROUTE.to_string(),
    };
    Ok(Json(match catalog.invoke(&spec.id, body.arguments, ctx).await {
        Ok(result) => json!({"result": result}),
        Err(e) => json!({"error": {"kind": kind(&e), "message": e.to_string()}}),
    }))
}

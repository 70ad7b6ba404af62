//! The KServe v2 handlers: server and model metadata, health, readiness, inference.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::request::{InferRequest, Wanted, check_inputs, parse_request};
use super::run::{Output, run_graph, run_text};
use super::{HEADER_LENGTH, Port, VERSION, bad, interface, is_text, kmodel, labelled, names};
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::routes::{Access, ApiRoute, get, post};

/// The routes of this module.
pub(crate) fn routes() -> Vec<ApiRoute> {
    vec![
        get("/v2", Access::Key, server_metadata),
        get("/v2/health/live", Access::Public, live),
        get("/v2/health/ready", Access::Public, ready),
        get("/v2/models/{name}", Access::Model, metadata),
        get(
            "/v2/models/{name}/versions/{version}",
            Access::Model,
            metadata_v,
        ),
        get("/v2/models/{name}/ready", Access::Model, model_ready),
        get(
            "/v2/models/{name}/versions/{version}/ready",
            Access::Model,
            model_ready_v,
        ),
        post("/v2/models/{name}/infer", Access::Model, infer),
        post(
            "/v2/models/{name}/versions/{version}/infer",
            Access::Model,
            infer_v,
        ),
    ]
}

async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "llmos",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data"],
    }))
}

async fn live() -> Json<Value> {
    Json(json!({"live": true}))
}

/// Ready once the models `serve` was asked to load are loaded (it loads them before it
/// listens, so in practice: once any model is loaded) and the collections' vectors are in
/// memory (loaded in the background at start).
async fn ready(State(state): State<Arc<AppState>>) -> Response {
    if state.core.loaded().is_empty() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "error": "no model is loaded yet"})),
        )
            .into_response()
    } else if !state.data.ready() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "error": "the collections' vectors are still loading"})),
        )
            .into_response()
    } else {
        Json(json!({"ready": true})).into_response()
    }
}

async fn metadata(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    metadata_of(&state, &name, None).await
}

async fn metadata_v(
    State(state): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    metadata_of(&state, &name, Some(&version)).await
}

async fn metadata_of(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> Result<Response, ApiError> {
    let m = kmodel(state, name, version).await?;
    let (inputs, outputs) = interface(&m);
    let body = json!({
        "name": m.name(),
        "versions": [VERSION],
        "platform": "onnxruntime_onnx",
        "inputs": inputs.iter().map(Port::json).collect::<Vec<_>>(),
        "outputs": outputs.iter().map(Port::json).collect::<Vec<_>>(),
    });
    Ok(labelled(Json(body), name))
}

async fn model_ready(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    model_ready_of(&state, &name, None).await
}

async fn model_ready_v(
    State(state): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    model_ready_of(&state, &name, Some(&version)).await
}

/// Ready when loaded; a known, pulled model is loaded here (as on first use), so a model
/// that cannot load answers 503 with the reason and an unknown one 404.
async fn model_ready_of(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> Result<Response, ApiError> {
    let m = kmodel(state, name, version).await?;
    Ok(labelled(
        Json(json!({"name": m.name(), "ready": true})),
        name,
    ))
}

async fn infer(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    infer_of(&state, &name, None, &headers, body).await
}

async fn infer_v(
    State(state): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    infer_of(&state, &name, Some(&version), &headers, body).await
}

/// The route name pipelines use for KServe inference.
pub(crate) const KSERVE_ROUTE: &str = "/v2/models/{name}/infer";

async fn infer_of(
    state: &AppState,
    name: &str,
    version: Option<&str>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|r| body_error(state, &r))?;
    let req = parse_request(headers, &body)?;
    let done = run_request(state, name, version, req).await?;
    let model = done.model.clone();
    Ok(labelled(answer(done)?, &model))
}

/// An inference's outputs, in the order the caller asked for (each with whether it asked for
/// binary data), before they are encoded for HTTP (`answer`) or gRPC (`api/grpc`).
pub(crate) struct Answer {
    /// The model's name.
    pub(crate) model: String,
    /// The request's id, echoed.
    pub(crate) id: Option<String>,
    /// Requested outputs in the order asked (each once); otherwise all, in the model's order.
    pub(crate) outputs: Vec<(Output, bool)>,
}

/// Runs a parsed inference request on model `name`: the part of `POST /v2/models/{name}/infer`
/// after parsing, shared with the gRPC `ModelInfer` (`api/grpc`), which builds the same
/// request from its message.
pub(crate) async fn run_request(
    state: &AppState,
    name: &str,
    version: Option<&str>,
    req: InferRequest,
) -> Result<Answer, ApiError> {
    let m = kmodel(state, name, version).await?;
    let (in_ports, out_ports) = interface(&m);
    check_inputs(m.name(), &in_ports, &req.inputs)?;
    check_outputs(m.name(), &out_ports, req.outputs.as_deref())?;
    let mut outputs = if is_text(&m) {
        // Plugins work on the OpenAI-shaped text routes; a KServe text request to a model
        // with a chain would bypass its policies, so it is refused rather than let through.
        if !crate::api::chain_is_empty(&state.gateway.chain(m.name(), KSERVE_ROUTE)) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "permission_error",
                format!(
                    "model {} runs a plugin pipeline, which KServe requests would bypass: use /v1/embeddings, \
                     /v1/classify or /v1/entities, or configure an empty chain for route \"{KSERVE_ROUTE}\"",
                    m.name()
                ),
            )
            .kserve());
        }
        run_text(&m, req.inputs, req.truncation).await?
    } else {
        run_graph(&m, req.inputs, req.outputs.as_deref()).await?
    };
    // Requested outputs, in the order asked; otherwise all, in the model's order.
    let order: Vec<(String, bool)> = match &req.outputs {
        Some(w) => w.iter().map(|w| (w.name.clone(), w.binary)).collect(),
        None => out_ports
            .iter()
            .map(|p| (p.name.clone(), req.binary_default))
            .collect(),
    };
    let mut ordered = Vec::with_capacity(order.len());
    for (oname, binary) in order {
        // Asked twice: answered once.
        if let Some(i) = outputs.iter().position(|o| o.name == oname) {
            ordered.push((outputs.swap_remove(i), binary));
        }
    }
    Ok(Answer {
        model: m.name().to_string(),
        id: req.id,
        outputs: ordered,
    })
}

/// The body could not be read: too large (413) or broken (400).
fn body_error(state: &AppState, r: &BytesRejection) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!(
                "request body is larger than the limit of {} bytes; send fewer or smaller tensors per request",
                state.limits.body_bytes
            ),
        )
        .kserve()
    } else {
        bad(format!("cannot read the request body: {r}"))
    }
}

/// Every requested output must be one of the model's.
fn check_outputs(model: &str, ports: &[Port], wanted: Option<&[Wanted]>) -> Result<(), ApiError> {
    match wanted
        .unwrap_or_default()
        .iter()
        .find(|w| !ports.iter().any(|p| p.name == w.name))
    {
        Some(w) => Err(bad(format!(
            "unknown output {:?}: model {model}'s outputs are {}",
            w.name,
            names(ports)
        ))),
        None => Ok(()),
    }
}

/// The answer: JSON, or a JSON header followed by binary data when any output asks for it.
fn answer(done: Answer) -> Result<Response, ApiError> {
    let Answer { model, id, outputs } = done;
    let mut json_outputs = Vec::with_capacity(outputs.len());
    let mut raw = Vec::new();
    let mut any_binary = false;
    for (o, binary) in outputs {
        let mut entry = Map::new();
        entry.insert("name".into(), json!(o.name));
        entry.insert("datatype".into(), json!(o.data.datatype()));
        entry.insert("shape".into(), json!(o.shape));
        if binary {
            any_binary = true;
            let bytes = o.data.raw()?;
            entry.insert(
                "parameters".into(),
                json!({"binary_data_size": bytes.len()}),
            );
            raw.extend_from_slice(&bytes);
        } else {
            entry.insert("data".into(), o.data.json());
        }
        json_outputs.push(Value::Object(entry));
    }
    let mut answer = Map::new();
    answer.insert("model_name".into(), json!(model));
    answer.insert("model_version".into(), json!(VERSION));
    answer.insert("outputs".into(), Value::Array(json_outputs));
    if let Some(id) = id {
        answer.insert("id".into(), Value::String(id));
    }
    let head = serde_json::to_vec(&answer).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            format!("cannot encode the answer: {e}"),
        )
        .kserve()
    })?;
    Ok(if any_binary {
        binary_response(head, &raw)
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            head,
        )
            .into_response()
    })
}

/// A binary answer: the JSON header, its length in `Inference-Header-Content-Length`,
/// then the outputs' raw data.
fn binary_response(head: Vec<u8>, raw: &[u8]) -> Response {
    let len = head.len();
    let mut body = head;
    body.extend_from_slice(raw);
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::HeaderName::from_static(HEADER_LENGTH),
                HeaderValue::from(len),
            ),
        ],
        body,
    )
        .into_response()
}

//! KServe v2 / Open Inference Protocol routes, as Triton serves them: server and model
//! metadata, health, readiness, and inference with JSON tensors or Triton's binary tensor
//! data extension (`Inference-Header-Content-Length`), which Triton's own client library
//! uses by default. Errors are `{"error": "..."}`.
//!
//! Models whose task is `infer` expose their graph's tensors. Text models (embed, classify,
//! token-classify) expose a text interface instead: input `text` (BYTES `[-1]`), outputs
//! `embedding` (FP32 `[-1, dim]`), `scores` (FP32 `[-1, labels]`, in label order) and
//! `label` (BYTES `[-1]`), or `entities` (BYTES `[-1]`, one JSON list per text).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use half::f16;
use serde_json::{Map, Value, json};

use crate::api::error::ApiError;
use crate::api::routes::{Access, ApiRoute, get, post};
use crate::api::{AppState, ModelLabel, model};
use crate::core::engine::Model;
use crate::core::manifest::Task;
use crate::core::tensor::{DType, NamedTensor, TensorData, TensorSpec};
use crate::core::text::Truncation;

/// Triton's header giving the length of the JSON part of a binary request or response.
const HEADER_LENGTH: &str = "inference-header-content-length";
/// The one version every model has.
const VERSION: &str = "1";
/// Datatypes llmos exchanges, for messages.
const ACCEPTED: &str = "FP32, FP16, INT64, INT32, BOOL, BYTES (BYTES for text models)";

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

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::invalid(None, message).kserve()
}

fn labelled(resp: impl IntoResponse, name: &str) -> Response {
    (Extension(ModelLabel(name.to_string())), resp).into_response()
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
/// listens, so in practice: once any model is loaded).
async fn ready(State(state): State<Arc<AppState>>) -> Response {
    if state.core.loaded().is_empty() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "error": "no model is loaded yet"})),
        )
            .into_response()
    } else {
        Json(json!({"ready": true})).into_response()
    }
}

fn check_version(name: &str, version: Option<&str>) -> Result<(), ApiError> {
    match version {
        None | Some("") | Some(VERSION) => Ok(()),
        Some(v) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("model {name} has no version {v:?}: its only version is \"{VERSION}\""),
        )
        .kserve()),
    }
}

/// Loads (or gets) a model, errors in KServe's shape.
async fn kmodel(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> Result<Arc<Model>, ApiError> {
    check_version(name, version)?;
    model(state, name).await.map_err(ApiError::kserve)
}

// ---------------------------------------------------------------------------------------
// The interface a model shows: graph tensors, or the text interface.

/// One input or output as KServe describes it.
struct Port {
    name: String,
    datatype: String,
    shape: Vec<i64>,
}

impl Port {
    fn new(name: &str, datatype: &str, shape: &[i64]) -> Self {
        Self {
            name: name.into(),
            datatype: datatype.into(),
            shape: shape.to_vec(),
        }
    }

    fn json(&self) -> Value {
        json!({"name": self.name, "datatype": self.datatype, "shape": self.shape})
    }

    fn graph(spec: &TensorSpec) -> Self {
        let datatype = match spec.dtype {
            Some(d) => datatype(d).to_string(),
            None => match spec.ort_type.as_str() {
                "f64" => "FP64".into(),
                "bf16" => "BF16".into(),
                "i8" => "INT8".into(),
                "i16" => "INT16".into(),
                "u8" => "UINT8".into(),
                "u16" => "UINT16".into(),
                "u32" => "UINT32".into(),
                "u64" => "UINT64".into(),
                "String" => "BYTES".into(),
                other => other.to_ascii_uppercase(),
            },
        };
        Self {
            name: spec.name.clone(),
            datatype,
            shape: spec.shape.clone(),
        }
    }
}

fn datatype(d: DType) -> &'static str {
    match d {
        DType::F32 => "FP32",
        DType::F16 => "FP16",
        DType::I64 => "INT64",
        DType::I32 => "INT32",
        DType::Bool => "BOOL",
    }
}

fn is_text(m: &Model) -> bool {
    m.manifest.task != Task::Infer
}

fn interface(m: &Model) -> (Vec<Port>, Vec<Port>) {
    match m.manifest.task {
        Task::Infer => (
            m.inputs.iter().map(Port::graph).collect(),
            m.outputs.iter().map(Port::graph).collect(),
        ),
        task => {
            let inputs = vec![Port::new("text", "BYTES", &[-1])];
            let outputs = match task {
                Task::Embed => {
                    let dim = m
                        .dimensions()
                        .and_then(|d| i64::try_from(d).ok())
                        .unwrap_or(-1);
                    vec![Port::new("embedding", "FP32", &[-1, dim])]
                }
                Task::Classify => {
                    let n = m
                        .labels
                        .as_ref()
                        .and_then(|l| i64::try_from(l.len()).ok())
                        .unwrap_or(-1);
                    vec![
                        Port::new("scores", "FP32", &[-1, n]),
                        Port::new("label", "BYTES", &[-1]),
                    ]
                }
                _ => vec![Port::new("entities", "BYTES", &[-1])],
            };
            (inputs, outputs)
        }
    }
}

fn names(ports: &[Port]) -> String {
    ports
        .iter()
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn shape_string(shape: &[i64]) -> String {
    format!(
        "[{}]",
        shape
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn dims_string(shape: &[usize]) -> String {
    format!(
        "[{}]",
        shape
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

// ---------------------------------------------------------------------------------------
// Metadata and readiness.

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

// ---------------------------------------------------------------------------------------
// Tensors as KServe carries them.

/// Elements of one tensor, row-major.
#[derive(Debug, Clone, PartialEq)]
enum Elems {
    F32(Vec<f32>),
    F16(Vec<f16>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    Bool(Vec<bool>),
    Bytes(Vec<Vec<u8>>),
}

impl Elems {
    fn datatype(&self) -> &'static str {
        match self {
            Self::F32(_) => "FP32",
            Self::F16(_) => "FP16",
            Self::I64(_) => "INT64",
            Self::I32(_) => "INT32",
            Self::Bool(_) => "BOOL",
            Self::Bytes(_) => "BYTES",
        }
    }

    fn from_tensor(d: TensorData) -> Self {
        match d {
            TensorData::F32(v) => Self::F32(v),
            TensorData::F16(v) => Self::F16(v),
            TensorData::I64(v) => Self::I64(v),
            TensorData::I32(v) => Self::I32(v),
            TensorData::Bool(v) => Self::Bool(v),
        }
    }

    fn into_tensor(self) -> Option<TensorData> {
        Some(match self {
            Self::F32(v) => TensorData::F32(v),
            Self::F16(v) => TensorData::F16(v),
            Self::I64(v) => TensorData::I64(v),
            Self::I32(v) => TensorData::I32(v),
            Self::Bool(v) => TensorData::Bool(v),
            Self::Bytes(_) => return None,
        })
    }

    fn json(&self) -> Value {
        match self {
            Self::F32(v) => json!(v),
            Self::F16(v) => Value::Array(v.iter().map(|x| json!(x.to_f32())).collect()),
            Self::I64(v) => json!(v),
            Self::I32(v) => json!(v),
            Self::Bool(v) => json!(v),
            Self::Bytes(v) => Value::Array(
                v.iter()
                    .map(|b| Value::String(String::from_utf8_lossy(b).into_owned()))
                    .collect(),
            ),
        }
    }

    /// Raw little-endian bytes (BYTES: 4-byte length + bytes per element; BOOL: one byte).
    fn raw(&self) -> Result<Vec<u8>, ApiError> {
        Ok(match self {
            Self::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Self::F16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Self::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Self::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Self::Bool(v) => v.iter().map(|&b| u8::from(b)).collect(),
            Self::Bytes(v) => {
                let size = v
                    .iter()
                    .try_fold(0usize, |n, b| n.checked_add(b.len())?.checked_add(4));
                let mut out = Vec::with_capacity(size.unwrap_or(0));
                for b in v {
                    let len = u32::try_from(b.len()).map_err(|_| {
                        bad(format!(
                            "an output element of {} bytes is too long for binary BYTES data (at most 4294967295): ask for JSON output",
                            b.len()
                        ))
                    })?;
                    out.extend_from_slice(&len.to_le_bytes());
                    out.extend_from_slice(b);
                }
                out
            }
        })
    }
}

/// Fixed element size of a datatype, `None` for BYTES; `Err` for datatypes llmos does
/// not exchange.
fn element_size(datatype: &str) -> Result<Option<usize>, ()> {
    Ok(Some(match datatype {
        "FP32" | "INT32" => 4,
        "FP16" => 2,
        "INT64" => 8,
        "BOOL" => 1,
        "BYTES" => return Ok(None),
        _ => return Err(()),
    }))
}

/// Decodes raw bytes of `count` elements.
fn decode_raw(input: &str, datatype: &str, count: usize, raw: &[u8]) -> Result<Elems, ApiError> {
    let size = element_size(datatype).map_err(|()| unsupported(input, datatype))?;
    if let Some(size) = size
        && count.checked_mul(size) != Some(raw.len())
    {
        return Err(bad(format!(
            "input {input:?} has binary_data_size {}, but {count} {datatype} elements need {} bytes",
            raw.len(),
            (count as u128).saturating_mul(size as u128)
        )));
    }
    fn chunks<const N: usize, T>(raw: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
        let (whole, _) = raw.as_chunks::<N>();
        whole.iter().map(|&c| f(c)).collect()
    }
    Ok(match datatype {
        "FP32" => Elems::F32(chunks(raw, f32::from_le_bytes)),
        "FP16" => Elems::F16(chunks(raw, f16::from_le_bytes)),
        "INT64" => Elems::I64(chunks(raw, i64::from_le_bytes)),
        "INT32" => Elems::I32(chunks(raw, i32::from_le_bytes)),
        "BOOL" => Elems::Bool(raw.iter().map(|&b| b != 0).collect()),
        _ => {
            let mut out = Vec::new();
            let mut rest = raw;
            while !rest.is_empty() {
                let Some((prefix, after)) = rest.split_first_chunk::<4>() else {
                    return Err(bad(format!(
                        "input {input:?}: BYTES element {} has a truncated length prefix ({} of 4 bytes)",
                        out.len(),
                        rest.len()
                    )));
                };
                let len = u32::from_le_bytes(*prefix);
                let Some((item, after)) = usize::try_from(len)
                    .ok()
                    .and_then(|n| after.split_at_checked(n))
                else {
                    return Err(bad(format!(
                        "input {input:?}: BYTES element {} says {len} bytes, but only {} remain in its binary data",
                        out.len(),
                        after.len()
                    )));
                };
                out.push(item.to_vec());
                rest = after;
            }
            if out.len() != count {
                return Err(bad(format!(
                    "input {input:?} has {} BYTES elements in its binary data, but its shape needs {count}",
                    out.len()
                )));
            }
            Elems::Bytes(out)
        }
    })
}

fn unsupported(input: &str, datatype: &str) -> ApiError {
    bad(format!(
        "input {input:?} has datatype {datatype:?}, which llmos does not accept: accepted are {ACCEPTED}"
    ))
}

fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|x| flatten(x, out)),
        other => out.push(other),
    }
}

/// Decodes JSON `data` (nested or flat, row-major) of `count` elements.
fn decode_json(
    input: &str,
    datatype: &str,
    count: usize,
    shape: &[usize],
    data: &Value,
) -> Result<Elems, ApiError> {
    element_size(datatype).map_err(|()| unsupported(input, datatype))?;
    let mut flat = Vec::new();
    flatten(data, &mut flat);
    if flat.len() != count {
        return Err(bad(format!(
            "input {input:?} has {} elements in \"data\", but its shape {} needs {count}",
            flat.len(),
            dims_string(shape)
        )));
    }
    let wrong = |i: usize, v: &Value, what: &str| {
        bad(format!(
            "input {input:?}: data[{i}] is {v}, which is not {what} (datatype {datatype})"
        ))
    };
    fn each<T>(
        flat: &[&Value],
        f: impl Fn(&Value) -> Option<T>,
        wrong: impl Fn(usize, &Value) -> ApiError,
    ) -> Result<Vec<T>, ApiError> {
        flat.iter()
            .enumerate()
            .map(|(i, v)| f(v).ok_or_else(|| wrong(i, v)))
            .collect()
    }
    Ok(match datatype {
        "FP32" => Elems::F32(each(
            &flat,
            |v| v.as_f64().map(|x| x as f32),
            |i, v| wrong(i, v, "a number"),
        )?),
        "FP16" => Elems::F16(each(
            &flat,
            |v| v.as_f64().map(f16::from_f64),
            |i, v| wrong(i, v, "a number"),
        )?),
        "INT64" => Elems::I64(each(&flat, Value::as_i64, |i, v| {
            wrong(i, v, "a 64-bit integer")
        })?),
        "INT32" => Elems::I32(each(
            &flat,
            |v| v.as_i64().and_then(|x| i32::try_from(x).ok()),
            |i, v| wrong(i, v, "a 32-bit integer"),
        )?),
        "BOOL" => Elems::Bool(each(&flat, Value::as_bool, |i, v| {
            wrong(i, v, "true or false")
        })?),
        _ => Elems::Bytes(each(
            &flat,
            |v| v.as_str().map(|s| s.as_bytes().to_vec()),
            |i, v| wrong(i, v, "a string"),
        )?),
    })
}

// ---------------------------------------------------------------------------------------
// The inference request.

/// One decoded input.
struct Input {
    name: String,
    shape: Vec<usize>,
    data: Elems,
}

/// One requested output.
struct Wanted {
    name: String,
    binary: bool,
}

/// A parsed request.
struct InferRequest {
    id: Option<String>,
    inputs: Vec<Input>,
    outputs: Option<Vec<Wanted>>,
    binary_default: bool,
    truncation: Truncation,
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn params<'a>(v: Option<&'a Value>, at: &str) -> Result<Option<&'a Map<String, Value>>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(other) => Err(bad(format!(
            "{at} \"parameters\" is {}: it must be an object",
            kind(other)
        ))),
    }
}

fn flag(p: Option<&Map<String, Value>>, key: &str, at: &str) -> Result<Option<bool>, ApiError> {
    match p.and_then(|p| p.get(key)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(bad(format!(
            "{at} parameter {key:?} is {other}: it must be true or false"
        ))),
    }
}

/// Splits the body into the JSON header and the binary tensor data.
fn split(headers: &HeaderMap, body: &Bytes) -> Result<(Bytes, Bytes), ApiError> {
    if let Some(enc) = headers.get(header::CONTENT_ENCODING) {
        let enc = enc.to_str().unwrap_or("?");
        if !enc.eq_ignore_ascii_case("identity") {
            return Err(bad(format!(
                "Content-Encoding {enc:?} is not supported: send the request uncompressed"
            )));
        }
    }
    let Some(len) = headers.get(HEADER_LENGTH) else {
        return Ok((body.clone(), Bytes::new()));
    };
    let text = len.to_str().unwrap_or("");
    let n: usize = text.trim().parse().map_err(|_| {
        bad(format!(
            "Inference-Header-Content-Length is {text:?}: it must be the length in bytes of the JSON header at the start of the body"
        ))
    })?;
    if n == 0 {
        return Err(bad(
            "Inference-Header-Content-Length is 0: the body must start with a JSON inference request of that many bytes",
        ));
    }
    if n > body.len() {
        return Err(bad(format!(
            "Inference-Header-Content-Length is {n}, but the body has only {} bytes",
            body.len()
        )));
    }
    Ok((body.slice(..n), body.slice(n..)))
}

fn parse_request(headers: &HeaderMap, body: &Bytes) -> Result<InferRequest, ApiError> {
    if body.is_empty() {
        return Err(bad(
            "the request body is empty: send a JSON inference request {\"inputs\": [...]}",
        ));
    }
    let binary_framing = headers.contains_key(HEADER_LENGTH);
    let (head, binary) = split(headers, body)?;
    let what = if binary_framing {
        "the JSON header (the first Inference-Header-Content-Length bytes of the body)"
    } else {
        "the request body"
    };
    let v: Value = serde_json::from_slice(&head).map_err(|e| {
        let utf8 = if std::str::from_utf8(&head).is_err() {
            " UTF-8"
        } else {
            ""
        };
        bad(format!("{what} is not valid{utf8} JSON: {e}"))
    })?;
    let Value::Object(obj) = v else {
        return Err(bad(format!(
            "{what} must be a JSON object {{\"inputs\": [...]}}, got {}",
            kind(&v)
        )));
    };

    let id = match obj.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(bad(format!("\"id\" is {other}: it must be a string")));
        }
    };
    let rp = params(obj.get("parameters"), "request")?;
    let binary_default = flag(rp, "binary_data_output", "request")?.unwrap_or(false);
    let truncation = match flag(rp, "truncate", "request")? {
        Some(true) => Truncation::Truncate,
        _ => Truncation::Error,
    };

    let items = match obj.get("inputs") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) => {
            return Err(bad("\"inputs\" is empty: give at least one input tensor"));
        }
        None => {
            return Err(bad(
                "missing required field \"inputs\": a list of {\"name\", \"shape\", \"datatype\", \"data\"}",
            ));
        }
        Some(other) => {
            return Err(bad(format!(
                "\"inputs\" is {}: it must be a list of {{\"name\", \"shape\", \"datatype\", \"data\"}}",
                kind(other)
            )));
        }
    };

    // Binary sizes first, so that framing errors are reported as such.
    struct Head<'a> {
        name: String,
        shape: Vec<usize>,
        datatype: String,
        data: Option<&'a Value>,
        size: Option<usize>,
    }
    let mut heads = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(t) = item else {
            return Err(bad(format!(
                "inputs[{i}] is {}: it must be an object {{\"name\", \"shape\", \"datatype\", \"data\"}}",
                kind(item)
            )));
        };
        let name = match t.get("name") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(bad(format!("inputs[{i}] has no \"name\" string"))),
        };
        let shape = match t.get("shape") {
            Some(Value::Array(dims)) => dims
                .iter()
                .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                .collect::<Option<Vec<usize>>>()
                .ok_or_else(|| {
                    bad(format!(
                        "input {name:?} has shape {}: dimensions must be non-negative integers",
                        t["shape"]
                    ))
                })?,
            _ => {
                return Err(bad(format!(
                    "input {name:?} has no \"shape\": give a list of dimensions, e.g. [2, 3]"
                )));
            }
        };
        let datatype = match t.get("datatype") {
            Some(Value::String(s)) => s.clone(),
            _ => {
                return Err(bad(format!(
                    "input {name:?} has no \"datatype\" string: accepted are {ACCEPTED}"
                )));
            }
        };
        let at = format!("input {name:?}");
        let p = params(t.get("parameters"), &at)?;
        let size = match p.and_then(|p| p.get("binary_data_size")) {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .and_then(|s| usize::try_from(s).ok())
                    .ok_or_else(|| {
                        bad(format!(
                            "{at} has binary_data_size {v}: it must be a non-negative integer"
                        ))
                    })?,
            ),
        };
        let data = t.get("data").filter(|d| !d.is_null());
        match (data, size) {
            (Some(_), Some(_)) => {
                return Err(bad(format!(
                    "{at} has both \"data\" and binary_data_size: give one"
                )));
            }
            (None, None) => {
                return Err(bad(format!(
                    "{at} has no \"data\" (nor binary_data_size for binary tensor data)"
                )));
            }
            (None, Some(_)) if !binary_framing => {
                return Err(bad(format!(
                    "{at} has binary_data_size, but the request has no Inference-Header-Content-Length header saying where its binary data starts"
                )));
            }
            _ => {}
        }
        heads.push(Head {
            name,
            shape,
            datatype,
            data,
            size,
        });
    }
    let total = heads
        .iter()
        .filter_map(|h| h.size)
        .try_fold(0usize, usize::checked_add);
    if total != Some(binary.len()) {
        let total = total.map_or_else(
            || "more than llmos can address".to_string(),
            |t| t.to_string(),
        );
        let parts: Vec<String> = heads
            .iter()
            .filter_map(|h| h.size.map(|s| format!("{} {s}", h.name)))
            .collect();
        return Err(bad(format!(
            "the body carries {} bytes of binary tensor data after the JSON header, but the inputs' binary_data_size add up to {total}{}",
            binary.len(),
            if parts.is_empty() {
                String::new()
            } else {
                format!(" ({})", parts.join(", "))
            }
        )));
    }

    let mut offset = 0usize;
    let mut inputs = Vec::with_capacity(heads.len());
    for h in heads {
        let count = h
            .shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| {
                bad(format!(
                    "input {:?} has shape {}, which has more elements than llmos can address",
                    h.name,
                    dims_string(&h.shape)
                ))
            })?;
        let data = match (h.data, h.size) {
            (Some(d), _) => decode_json(&h.name, &h.datatype, count, &h.shape, d)?,
            (None, Some(s)) => {
                // The sizes were checked to add up to the binary data, so this cannot fail;
                // it is checked anyway rather than trusted.
                let end = offset.checked_add(s);
                let raw = end
                    .and_then(|end| binary.get(offset..end))
                    .ok_or_else(|| {
                        bad(format!(
                            "input {:?}: binary_data_size {s} at offset {offset} lies outside the {} bytes of binary data",
                            h.name,
                            binary.len()
                        ))
                    })?;
                offset = end.unwrap_or(offset);
                decode_raw(&h.name, &h.datatype, count, raw)?
            }
            (None, None) => {
                return Err(bad(format!(
                    "input {:?} has no \"data\" (nor binary_data_size for binary tensor data)",
                    h.name
                )));
            }
        };
        inputs.push(Input {
            name: h.name,
            shape: h.shape,
            data,
        });
    }

    let outputs = match obj.get("outputs") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .enumerate()
                .map(|(i, o)| {
                    let name = o.get("name").and_then(Value::as_str).ok_or_else(|| {
                        bad(format!("outputs[{i}] has no \"name\" string"))
                    })?;
                    let at = format!("output {name:?}");
                    let p = params(o.get("parameters"), &at)?;
                    if p.is_some_and(|p| p.get("classification").is_some_and(|c| !c.is_null())) {
                        return Err(bad(format!(
                            "{at} asks for the classification extension, which llmos does not implement; text classifiers return \"scores\" and \"label\""
                        )));
                    }
                    Ok(Wanted {
                        name: name.to_string(),
                        binary: flag(p, "binary_data", &at)?.unwrap_or(binary_default),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(other) => {
            return Err(bad(format!(
                "\"outputs\" is {}: it must be a list of {{\"name\"}}",
                kind(other)
            )));
        }
    };

    Ok(InferRequest {
        id,
        inputs,
        outputs,
        binary_default,
        truncation,
    })
}

/// Checks each input against the model's interface: known name, datatype, shape.
fn check_inputs(model: &str, ports: &[Port], inputs: &[Input]) -> Result<(), ApiError> {
    for (i, t) in inputs.iter().enumerate() {
        if inputs[..i].iter().any(|u| u.name == t.name) {
            return Err(bad(format!(
                "input {:?} is given twice: give each of model {model}'s inputs ({}) once",
                t.name,
                names(ports)
            )));
        }
        let Some(port) = ports.iter().find(|p| p.name == t.name) else {
            return Err(bad(format!(
                "unknown input {:?}: model {model}'s inputs are {}",
                t.name,
                names(ports)
            )));
        };
        if t.data.datatype() != port.datatype {
            return Err(bad(format!(
                "input {:?} has datatype {}, but model {model} expects {}",
                t.name,
                t.data.datatype(),
                port.datatype
            )));
        }
        let fits = port.shape.len() == t.shape.len()
            && port
                .shape
                .iter()
                .zip(&t.shape)
                .all(|(&want, &got)| want < 0 || usize::try_from(want) == Ok(got));
        if !fits {
            return Err(bad(format!(
                "input {:?} has shape {}, but model {model} expects {} (-1: any size)",
                t.name,
                dims_string(&t.shape),
                shape_string(&port.shape)
            )));
        }
    }
    Ok(())
}

/// One output of the answer.
struct Output {
    name: String,
    shape: Vec<usize>,
    data: Elems,
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
    let body = body.map_err(|r| {
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
    })?;
    let req = parse_request(headers, &body)?;
    let m = kmodel(state, name, version).await?;
    let (in_ports, out_ports) = interface(&m);
    check_inputs(m.name(), &in_ports, &req.inputs)?;
    if let Some(wanted) = &req.outputs
        && let Some(w) = wanted
            .iter()
            .find(|w| !out_ports.iter().any(|p| p.name == w.name))
    {
        return Err(bad(format!(
            "unknown output {:?}: model {}'s outputs are {}",
            w.name,
            m.name(),
            names(&out_ports)
        )));
    }
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
    let mut json_outputs = Vec::with_capacity(order.len());
    let mut raw = Vec::new();
    let mut any_binary = false;
    for (oname, binary) in order {
        let Some(i) = outputs.iter().position(|o| o.name == oname) else {
            continue; // asked twice: answered once
        };
        let o = outputs.swap_remove(i);
        let mut entry = json!({
            "name": o.name,
            "datatype": o.data.datatype(),
            "shape": o.shape,
        });
        if binary {
            any_binary = true;
            let bytes = o.data.raw()?;
            entry["parameters"] = json!({"binary_data_size": bytes.len()});
            raw.extend_from_slice(&bytes);
        } else {
            entry["data"] = o.data.json();
        }
        json_outputs.push(entry);
    }
    let mut answer = json!({
        "model_name": m.name(),
        "model_version": VERSION,
        "outputs": json_outputs,
    });
    if let Some(id) = req.id {
        answer["id"] = Value::String(id);
    }
    let head = serde_json::to_vec(&answer).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            format!("cannot encode the answer: {e}"),
        )
        .kserve()
    })?;
    let resp = if !any_binary {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            head,
        )
            .into_response()
    } else {
        let len = head.len();
        let mut body = head;
        body.extend_from_slice(&raw);
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
    };
    Ok(labelled(resp, m.name()))
}

async fn run_graph(
    m: &Model,
    inputs: Vec<Input>,
    wanted: Option<&[Wanted]>,
) -> Result<Vec<Output>, ApiError> {
    let tensors = inputs
        .into_iter()
        .map(|t| {
            let datatype = t.data.datatype();
            let Some(data) = t.data.into_tensor() else {
                return Err(bad(format!(
                    "input {:?} has datatype {datatype}: model {} takes it as a string tensor, which llmos \
                     cannot pass to a graph; graph inputs accept FP32, FP16, INT64, INT32 and BOOL \
                     (BYTES only for the text input of embed, classify and token-classify models)",
                    t.name,
                    m.name()
                )));
            };
            Ok(NamedTensor {
                data,
                name: t.name,
                shape: t.shape,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let names = wanted.map(|w| {
        let mut n: Vec<String> = Vec::with_capacity(w.len());
        for w in w {
            if !n.contains(&w.name) {
                n.push(w.name.clone());
            }
        }
        n
    });
    let out = m
        .infer(tensors, names)
        .map_err(|e| ApiError::from(e).kserve())?
        .recv()
        .await
        .map_err(|e| ApiError::from(e).kserve())?;
    Ok(out
        .into_iter()
        .map(|t| Output {
            name: t.name,
            shape: t.shape,
            data: Elems::from_tensor(t.data),
        })
        .collect())
}

async fn run_text(
    m: &Model,
    inputs: Vec<Input>,
    truncation: Truncation,
) -> Result<Vec<Output>, ApiError> {
    let Some(input) = inputs.into_iter().find(|t| t.name == "text") else {
        return Err(bad(format!(
            "missing input \"text\": model {} takes texts as input \"text\" (BYTES, shape [-1])",
            m.name()
        )));
    };
    let Elems::Bytes(items) = input.data else {
        return Err(bad(format!(
            "input \"text\" has datatype {}: model {} takes texts as BYTES",
            input.data.datatype(),
            m.name()
        )));
    };
    let texts = items
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            String::from_utf8(b).map_err(|e| {
                bad(format!(
                    "input \"text\": element {i} is not valid UTF-8 ({e}): texts must be UTF-8"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let n = texts.len();
    let task_err = |e| ApiError::from(e).kserve();
    Ok(match m.manifest.task {
        Task::Embed => {
            let out = m
                .embed(texts, truncation)
                .map_err(task_err)?
                .recv()
                .await
                .map_err(task_err)?;
            let dim = out.vectors.first().map_or(0, Vec::len);
            vec![Output {
                name: "embedding".into(),
                shape: vec![n, dim],
                data: Elems::F32(out.vectors.into_iter().flatten().collect()),
            }]
        }
        Task::Classify => {
            let out = m
                .classify(texts, truncation)
                .map_err(task_err)?
                .recv()
                .await
                .map_err(task_err)?;
            let labels = m.labels.clone().unwrap_or_default();
            let mut scores = Vec::with_capacity(n.saturating_mul(labels.len()));
            let mut top = Vec::with_capacity(n);
            for row in &out.scores {
                for l in &labels {
                    scores.push(
                        row.iter()
                            .find(|s| &s.label == l)
                            .map_or(f32::NAN, |s| s.score),
                    );
                }
                top.push(
                    row.first()
                        .map_or_else(Vec::new, |s| s.label.clone().into_bytes()),
                );
            }
            vec![
                Output {
                    name: "scores".into(),
                    shape: vec![n, labels.len()],
                    data: Elems::F32(scores),
                },
                Output {
                    name: "label".into(),
                    shape: vec![n],
                    data: Elems::Bytes(top),
                },
            ]
        }
        _ => {
            let out = m
                .entities(texts, truncation)
                .map_err(task_err)?
                .recv()
                .await
                .map_err(task_err)?;
            vec![Output {
                name: "entities".into(),
                shape: vec![n],
                data: Elems::Bytes(
                    out.entities
                        .iter()
                        .map(serde_json::to_vec)
                        .collect::<Result<_, _>>()
                        .map_err(|e| {
                            ApiError::new(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                "server_error",
                                format!("cannot encode the entities: {e}"),
                            )
                            .kserve()
                        })?,
                ),
            }]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(len: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(l) = len {
            h.insert(HEADER_LENGTH, HeaderValue::from_str(l).unwrap());
        }
        h
    }

    #[test]
    fn raw_round_trip_for_every_datatype() {
        for e in [
            Elems::F32(vec![1.5, -2.0]),
            Elems::F16(vec![f16::from_f32(0.5), f16::from_f32(-3.0)]),
            Elems::I64(vec![1, -1 << 40]),
            Elems::I32(vec![7, -9]),
            Elems::Bool(vec![true, false]),
            Elems::Bytes(vec![b"ab".to_vec(), Vec::new()]),
        ] {
            let raw = e.raw().unwrap();
            assert_eq!(decode_raw("x", e.datatype(), 2, &raw).unwrap(), e);
        }
    }

    #[test]
    fn nested_and_flat_json_data_agree() {
        let nested = json!([[1, 2, 3], [4, 5, 6]]);
        let flat = json!([1, 2, 3, 4, 5, 6]);
        let a = decode_json("a", "FP32", 6, &[2, 3], &nested).unwrap();
        assert_eq!(a, decode_json("a", "FP32", 6, &[2, 3], &flat).unwrap());
        let e = decode_json("a", "INT32", 6, &[2, 3], &json!([1, 2, 3, 4, 5, 1.5])).unwrap_err();
        assert!(e.message.contains("data[5] is 1.5"), "{}", e.message);
        let e = decode_json("a", "FP32", 6, &[2, 3], &json!([1, 2])).unwrap_err();
        assert!(e.message.contains("has 2 elements"), "{}", e.message);
        let e = decode_json("a", "UINT8", 1, &[1], &json!([1])).unwrap_err();
        assert!(e.message.contains("\"UINT8\""), "{}", e.message);
    }

    #[test]
    fn binary_framing_is_checked() {
        let head = br#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":4}}]}"#;
        let mut body = head.to_vec();
        body.extend_from_slice(&1.0f32.to_le_bytes());
        let body = Bytes::from(body);
        let n = head.len().to_string();
        let r = parse_request(&headers(Some(&n)), &body).unwrap();
        assert_eq!(r.inputs[0].data, Elems::F32(vec![1.0]));
        let e = parse_request(&headers(Some("100000")), &body)
            .err()
            .unwrap();
        assert!(e.message.contains("only"), "{}", e.message);
        let short = (head.len() - 1).to_string();
        assert!(parse_request(&headers(Some(&short)), &body).is_err());
        let e = parse_request(&headers(Some("x")), &body).err().unwrap();
        assert!(e.message.contains("Inference-Header-Content-Length"));
        let mut longer = body.to_vec();
        longer.push(0);
        let e = parse_request(&headers(Some(&n)), &Bytes::from(longer))
            .err()
            .unwrap();
        assert!(e.message.contains("add up to 4"), "{}", e.message);
        let e = parse_request(&headers(None), &Bytes::from_static(head))
            .err()
            .unwrap();
        assert!(e.message.contains("no Inference-Header-Content-Length"));
    }
}

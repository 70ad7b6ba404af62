//! KServe v2 / Open Inference Protocol routes, as Triton serves them: server and model
//! metadata, health, readiness, and inference with JSON tensors or Triton's binary tensor
//! data extension (`Inference-Header-Content-Length`), which Triton's own client library
//! uses by default. Errors are `{"error": "..."}`.
//!
//! Models whose task is `infer` expose their graph's tensors. Text models (embed, classify,
//! token-classify) expose a text interface instead: input `text` (BYTES `[-1]`), outputs
//! `embedding` (FP32 `[-1, dim]`), `scores` (FP32 `[-1, labels]`, in label order) and
//! `label` (BYTES `[-1]`), or `entities` (BYTES `[-1]`, one JSON list per text).

//!
//! Files: `routes.rs` (the handlers), `request.rs` (the inference request, parsed and
//! checked), `json.rs` and `binary.rs` (tensor data as JSON or as Triton's binary
//! extension), `elems.rs` (decoded elements), `run.rs` (running a graph or a text model).

mod binary;
mod elems;
mod json;
mod request;
mod routes;
mod run;

use std::sync::Arc;

use axum::Extension;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::api::error::ApiError;
use crate::api::{AppState, ModelLabel, model};
use crate::core::engine::Model;
use crate::core::manifest::Task;
use crate::core::tensor::{DType, TensorSpec};

pub(crate) use binary::decode_raw;
pub(crate) use elems::{Elems, element_size, unsupported};
pub(crate) use request::{InferRequest, Input, Wanted};
pub(crate) use routes::{Answer, routes, run_request};

/// The inference request parsing (JSON, or Triton's binary extension when
/// `header_length` is given) as the `infer` route runs it, for the fuzz targets
/// `kserve_json` and `kserve_binary` (`crate::fuzzing`).
pub(crate) fn parse_for_fuzzing(
    header_length: Option<u64>,
    body: &[u8],
) -> Result<(), ApiError> {
    let mut headers = axum::http::HeaderMap::new();
    if let Some(n) = header_length {
        headers.insert(HEADER_LENGTH, axum::http::HeaderValue::from(n));
    }
    request::parse_request(&headers, &axum::body::Bytes::copy_from_slice(body)).map(drop)
}

/// Triton's header giving the length of the JSON part of a binary request or response.
const HEADER_LENGTH: &str = "inference-header-content-length";
/// The one version every model has.
pub(crate) const VERSION: &str = "1";
/// Datatypes llmos exchanges, for messages.
const ACCEPTED: &str = "FP32, FP16, INT64, INT32, BOOL, BYTES (BYTES for text models)";

pub(crate) fn bad(message: impl Into<String>) -> ApiError {
    ApiError::invalid(None, message).kserve()
}

fn labelled(resp: impl IntoResponse, name: &str) -> Response {
    (Extension(ModelLabel(name.to_string())), resp).into_response()
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
pub(crate) async fn kmodel(
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
pub(crate) struct Port {
    pub(crate) name: String,
    pub(crate) datatype: String,
    pub(crate) shape: Vec<i64>,
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
    // A generation model is served on /v2 as its raw graph (text goes to /v1/completions).
    !matches!(m.manifest.task, Task::Infer | Task::Generate)
}

/// A model's inputs and outputs as KServe shows them (graph tensors, or the text interface).
pub(crate) fn interface(m: &Model) -> (Vec<Port>, Vec<Port>) {
    match m.manifest.task {
        Task::Infer | Task::Generate => (
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

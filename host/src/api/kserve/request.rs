//! The inference request: the JSON header parsed field by field (every error names the
//! field and what is accepted), binary sizes checked against the body, inputs decoded.

use axum::body::Bytes;
use axum::http::HeaderMap;
use serde_json::{Map, Value};

use super::binary::{decode_raw, split};
use super::elems::Elems;
use super::json::{decode_json, flag, kind, params};
use super::{ACCEPTED, HEADER_LENGTH, Port, bad, dims_string, names, shape_string};
use crate::api::error::ApiError;
use crate::core::text::Truncation;

/// One decoded input.
pub(crate) struct Input {
    pub(crate) name: String,
    pub(crate) shape: Vec<usize>,
    pub(crate) data: Elems,
}

/// One requested output.
pub(crate) struct Wanted {
    pub(crate) name: String,
    pub(crate) binary: bool,
}

/// A parsed request.
pub(crate) struct InferRequest {
    pub(crate) id: Option<String>,
    pub(crate) inputs: Vec<Input>,
    pub(crate) outputs: Option<Vec<Wanted>>,
    pub(crate) binary_default: bool,
    pub(crate) truncation: Truncation,
}

/// One input as its JSON header describes it, before its data is decoded.
struct Head<'a> {
    name: String,
    shape: Vec<usize>,
    datatype: String,
    data: Option<&'a Value>,
    size: Option<usize>,
}

pub(crate) fn parse_request(headers: &HeaderMap, body: &Bytes) -> Result<InferRequest, ApiError> {
    if body.is_empty() {
        return Err(bad(
            "the request body is empty: send a JSON inference request {\"inputs\": [...]}",
        ));
    }
    let binary_framing = headers.contains_key(HEADER_LENGTH);
    let (head, binary) = split(headers, body)?;
    let obj = header_object(&head, binary_framing)?;
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
    // Binary sizes first, so that framing errors are reported as such.
    let heads = input_items(&obj)?
        .iter()
        .enumerate()
        .map(|(i, item)| input_head(i, item, binary_framing))
        .collect::<Result<Vec<_>, _>>()?;
    check_binary_total(&heads, binary.len())?;
    let inputs = decode_inputs(heads, &binary)?;
    let outputs = wanted_outputs(obj.get("outputs"), binary_default)?;
    Ok(InferRequest {
        id,
        inputs,
        outputs,
        binary_default,
        truncation,
    })
}

/// The JSON header as an object.
fn header_object(head: &[u8], binary_framing: bool) -> Result<Map<String, Value>, ApiError> {
    let what = if binary_framing {
        "the JSON header (the first Inference-Header-Content-Length bytes of the body)"
    } else {
        "the request body"
    };
    let v: Value = serde_json::from_slice(head).map_err(|e| {
        let utf8 = if std::str::from_utf8(head).is_err() {
            " UTF-8"
        } else {
            ""
        };
        bad(format!("{what} is not valid{utf8} JSON: {e}"))
    })?;
    match v {
        Value::Object(obj) => Ok(obj),
        v => Err(bad(format!(
            "{what} must be a JSON object {{\"inputs\": [...]}}, got {}",
            kind(&v)
        ))),
    }
}

/// The non-empty `inputs` list.
fn input_items(obj: &Map<String, Value>) -> Result<&Vec<Value>, ApiError> {
    match obj.get("inputs") {
        Some(Value::Array(a)) if !a.is_empty() => Ok(a),
        Some(Value::Array(_)) => Err(bad("\"inputs\" is empty: give at least one input tensor")),
        None => Err(bad(
            "missing required field \"inputs\": a list of {\"name\", \"shape\", \"datatype\", \"data\"}",
        )),
        Some(other) => Err(bad(format!(
            "\"inputs\" is {}: it must be a list of {{\"name\", \"shape\", \"datatype\", \"data\"}}",
            kind(other)
        ))),
    }
}

/// `inputs[i]`: name, shape, datatype, and either JSON data or a binary size.
fn input_head(i: usize, item: &Value, binary_framing: bool) -> Result<Head<'_>, ApiError> {
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
    let shape = input_shape(&name, t.get("shape"))?;
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
        (Some(_), Some(_)) => Err(bad(format!(
            "{at} has both \"data\" and binary_data_size: give one"
        ))),
        (None, None) => Err(bad(format!(
            "{at} has no \"data\" (nor binary_data_size for binary tensor data)"
        ))),
        (None, Some(_)) if !binary_framing => Err(bad(format!(
            "{at} has binary_data_size, but the request has no Inference-Header-Content-Length header saying where its binary data starts"
        ))),
        _ => Ok(Head {
            name,
            shape,
            datatype,
            data,
            size,
        }),
    }
}

/// An input's `shape`: a list of non-negative integers.
fn input_shape(name: &str, shape: Option<&Value>) -> Result<Vec<usize>, ApiError> {
    match shape {
        Some(v @ Value::Array(dims)) => dims
            .iter()
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| {
                bad(format!(
                    "input {name:?} has shape {v}: dimensions must be non-negative integers"
                ))
            }),
        _ => Err(bad(format!(
            "input {name:?} has no \"shape\": give a list of dimensions, e.g. [2, 3]"
        ))),
    }
}

/// The inputs' binary sizes must add up to the binary data after the JSON header.
fn check_binary_total(heads: &[Head<'_>], binary: usize) -> Result<(), ApiError> {
    let total = heads
        .iter()
        .filter_map(|h| h.size)
        .try_fold(0usize, usize::checked_add);
    if total == Some(binary) {
        return Ok(());
    }
    let total = total.map_or_else(
        || "more than llmos can address".to_string(),
        |t| t.to_string(),
    );
    let parts: Vec<String> = heads
        .iter()
        .filter_map(|h| h.size.map(|s| format!("{} {s}", h.name)))
        .collect();
    Err(bad(format!(
        "the body carries {binary} bytes of binary tensor data after the JSON header, but the inputs' binary_data_size add up to {total}{}",
        if parts.is_empty() {
            String::new()
        } else {
            format!(" ({})", parts.join(", "))
        }
    )))
}

/// Decodes each input's data, from JSON or from its slice of the binary data.
fn decode_inputs(heads: Vec<Head<'_>>, binary: &[u8]) -> Result<Vec<Input>, ApiError> {
    let mut rest = binary;
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
                let (raw, after) = rest.split_at_checked(s).ok_or_else(|| {
                    bad(format!(
                        "input {:?}: binary_data_size {s} lies outside the {} bytes of binary data left",
                        h.name,
                        rest.len()
                    ))
                })?;
                rest = after;
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
    Ok(inputs)
}

/// The requested `outputs`, if any.
fn wanted_outputs(
    outputs: Option<&Value>,
    binary_default: bool,
) -> Result<Option<Vec<Wanted>>, ApiError> {
    Ok(match outputs {
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
    })
}

/// Checks each input against the model's interface: known name, datatype, shape.
pub(crate) fn check_inputs(model: &str, ports: &[Port], inputs: &[Input]) -> Result<(), ApiError> {
    for (i, t) in inputs.iter().enumerate() {
        if inputs.iter().take(i).any(|u| u.name == t.name) {
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

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(len: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(l) = len {
            h.insert(HEADER_LENGTH, HeaderValue::from_str(l).unwrap());
        }
        h
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

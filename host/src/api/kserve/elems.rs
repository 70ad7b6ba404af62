//! Tensor elements as KServe carries them, and their datatypes.

use half::f16;
use serde_json::{Value, json};

use super::{ACCEPTED, bad};
use crate::api::error::ApiError;
use crate::core::tensor::TensorData;

/// Elements of one tensor, row-major.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Elems {
    F32(Vec<f32>),
    F16(Vec<f16>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    Bool(Vec<bool>),
    Bytes(Vec<Vec<u8>>),
}

impl Elems {
    pub(crate) fn datatype(&self) -> &'static str {
        match self {
            Self::F32(_) => "FP32",
            Self::F16(_) => "FP16",
            Self::I64(_) => "INT64",
            Self::I32(_) => "INT32",
            Self::Bool(_) => "BOOL",
            Self::Bytes(_) => "BYTES",
        }
    }

    pub(crate) fn from_tensor(d: TensorData) -> Self {
        match d {
            TensorData::F32(v) => Self::F32(v),
            TensorData::F16(v) => Self::F16(v),
            TensorData::I64(v) => Self::I64(v),
            TensorData::I32(v) => Self::I32(v),
            TensorData::Bool(v) => Self::Bool(v),
        }
    }

    pub(crate) fn into_tensor(self) -> Option<TensorData> {
        Some(match self {
            Self::F32(v) => TensorData::F32(v),
            Self::F16(v) => TensorData::F16(v),
            Self::I64(v) => TensorData::I64(v),
            Self::I32(v) => TensorData::I32(v),
            Self::Bool(v) => TensorData::Bool(v),
            Self::Bytes(_) => return None,
        })
    }

    pub(crate) fn json(&self) -> Value {
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
    pub(crate) fn raw(&self) -> Result<Vec<u8>, ApiError> {
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
pub(crate) fn element_size(datatype: &str) -> Result<Option<usize>, ()> {
    Ok(Some(match datatype {
        "FP32" | "INT32" => 4,
        "FP16" => 2,
        "INT64" => 8,
        "BOOL" => 1,
        "BYTES" => return Ok(None),
        _ => return Err(()),
    }))
}

pub(crate) fn unsupported(input: &str, datatype: &str) -> ApiError {
    bad(format!(
        "input {input:?} has datatype {datatype:?}, which llmos does not accept: accepted are {ACCEPTED}"
    ))
}

//! Named tensors for raw inference, checked against the model's own metadata.

use std::fmt;

use half::f16;
use ort::value::{DynValue, Tensor as OrtTensor, TensorElementType, ValueType};
use serde::Serialize;

/// Element types llmos accepts and returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// 32-bit float (KServe `FP32`).
    F32,
    /// 16-bit float (`FP16`).
    F16,
    /// 64-bit signed integer (`INT64`).
    I64,
    /// 32-bit signed integer (`INT32`).
    I32,
    /// Boolean (`BOOL`).
    Bool,
}

impl DType {
    /// Every accepted type, for error messages.
    pub const ACCEPTED: &'static str = "f32, f16, i64, i32, bool";

    /// Name as used in llmos' JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::I64 => "i64",
            Self::I32 => "i32",
            Self::Bool => "bool",
        }
    }

    /// Parses `f32`/`float32`/`FP32`, etc.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" | "float" | "fp32" => Self::F32,
            "f16" | "float16" | "fp16" => Self::F16,
            "i64" | "int64" => Self::I64,
            "i32" | "int32" => Self::I32,
            "bool" | "boolean" => Self::Bool,
            _ => return None,
        })
    }

    fn from_ort(t: TensorElementType) -> Option<Self> {
        Some(match t {
            TensorElementType::Float32 => Self::F32,
            TensorElementType::Float16 => Self::F16,
            TensorElementType::Int64 => Self::I64,
            TensorElementType::Int32 => Self::I32,
            TensorElementType::Bool => Self::Bool,
            _ => return None,
        })
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The elements of a tensor, row-major. Serialises as a flat JSON list of numbers
/// (f16 as their f32 value) or booleans.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// f32 elements.
    F32(Vec<f32>),
    /// f16 elements.
    F16(Vec<f16>),
    /// i64 elements.
    I64(Vec<i64>),
    /// i32 elements.
    I32(Vec<i32>),
    /// bool elements.
    Bool(Vec<bool>),
}

impl Serialize for TensorData {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::F32(v) => v.serialize(s),
            Self::F16(v) => s.collect_seq(v.iter().map(|x| x.to_f32())),
            Self::I64(v) => v.serialize(s),
            Self::I32(v) => v.serialize(s),
            Self::Bool(v) => v.serialize(s),
        }
    }
}

impl TensorData {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Self::F32(_) => DType::F32,
            Self::F16(_) => DType::F16,
            Self::I64(_) => DType::I64,
            Self::I32(_) => DType::I32,
            Self::Bool(_) => DType::Bool,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Self::F32(v) => v.len(),
            Self::F16(v) => v.len(),
            Self::I64(v) => v.len(),
            Self::I32(v) => v.len(),
            Self::Bool(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A named tensor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NamedTensor {
    /// Input or output name.
    pub name: String,
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Elements.
    pub data: TensorData,
}

/// What a model declares for one input or output.
#[derive(Debug, Clone, Serialize)]
pub struct TensorSpec {
    /// Name.
    pub name: String,
    /// Element type, or `None` for types llmos cannot exchange (then `ort_type` says which).
    pub dtype: Option<DType>,
    /// ONNX Runtime's name of the element type.
    pub ort_type: String,
    /// Dimensions; `-1` is dynamic.
    pub shape: Vec<i64>,
    /// Names of symbolic dimensions (empty where fixed).
    pub dim_names: Vec<String>,
}

impl TensorSpec {
    pub(crate) fn from_outlet(name: &str, ty: &ValueType) -> Self {
        match ty {
            ValueType::Tensor {
                ty,
                shape,
                dimension_symbols,
            } => Self {
                name: name.into(),
                dtype: DType::from_ort(*ty),
                ort_type: format!("{ty}"),
                shape: shape.iter().copied().collect(),
                dim_names: dimension_symbols.iter().cloned().collect(),
            },
            other => Self {
                name: name.into(),
                dtype: None,
                ort_type: format!("{other}"),
                shape: Vec::new(),
                dim_names: Vec::new(),
            },
        }
    }

    /// Shape for messages: `[batch, 3]`.
    pub fn shape_string(&self) -> String {
        let dims: Vec<String> = self
            .shape
            .iter()
            .enumerate()
            .map(|(i, d)| match (*d, self.dim_names.get(i)) {
                (d, _) if d >= 0 => d.to_string(),
                (_, Some(n)) if !n.is_empty() => n.clone(),
                _ => "?".into(),
            })
            .collect();
        format!("[{}]", dims.join(", "))
    }
}

/// A tensor that does not fit the model.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum TensorError {
    /// A required input is missing.
    #[error("missing input {name:?}: the model needs {}", .needed.join(", "))]
    Missing {
        /// Input.
        name: String,
        /// Every input the model needs.
        needed: Vec<String>,
    },
    /// A name the model does not have.
    #[error("unknown {kind} {name:?}: the model's {kind}s are {}", .known.join(", "))]
    Unknown {
        /// "input" or "output".
        kind: &'static str,
        /// Name given.
        name: String,
        /// Accepted names.
        known: Vec<String>,
    },
    /// Wrong element type.
    #[error("input {name:?} has dtype {received}, but the model expects {expected}")]
    DType {
        /// Input.
        name: String,
        /// Expected type.
        expected: String,
        /// Received type.
        received: DType,
    },
    /// Wrong shape.
    #[error("input {name:?} has shape {received:?}, but the model expects {expected}")]
    Shape {
        /// Input.
        name: String,
        /// The model's shape.
        expected: String,
        /// Received shape.
        received: Vec<usize>,
    },
    /// Element count does not match the shape.
    #[error("input {name:?} has {count} elements, but its shape {shape:?} needs {needed}")]
    Count {
        /// Input.
        name: String,
        /// Elements given.
        count: usize,
        /// Shape given.
        shape: Vec<usize>,
        /// Elements the shape needs.
        needed: usize,
    },
    /// A zero-sized dimension.
    #[error("input {name:?} is empty (shape {shape:?}): every dimension must be at least 1")]
    Empty {
        /// Input.
        name: String,
        /// Shape given.
        shape: Vec<usize>,
    },
    /// A model output of a type llmos cannot return.
    #[error(
        "output {name:?} has element type {ort_type}, which llmos cannot return (accepted: {})",
        DType::ACCEPTED
    )]
    Unsupported {
        /// Output.
        name: String,
        /// Its type.
        ort_type: String,
    },
}

/// Checks `inputs` against the model's `specs`: every input present once, dtype equal,
/// rank equal, fixed dimensions equal, element count consistent, no empty dimension.
pub fn validate_inputs(specs: &[TensorSpec], inputs: &[NamedTensor]) -> Result<(), TensorError> {
    let known: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    for t in inputs {
        let Some(spec) = specs.iter().find(|s| s.name == t.name) else {
            return Err(TensorError::Unknown {
                kind: "input",
                name: t.name.clone(),
                known,
            });
        };
        let needed: usize = t.shape.iter().product();
        if needed != t.data.len() {
            return Err(TensorError::Count {
                name: t.name.clone(),
                count: t.data.len(),
                shape: t.shape.clone(),
                needed,
            });
        }
        if t.shape.contains(&0) {
            return Err(TensorError::Empty {
                name: t.name.clone(),
                shape: t.shape.clone(),
            });
        }
        if spec.dtype != Some(t.data.dtype()) {
            return Err(TensorError::DType {
                name: t.name.clone(),
                expected: spec.dtype.map_or(spec.ort_type.clone(), |d| d.to_string()),
                received: t.data.dtype(),
            });
        }
        let fits = spec.shape.len() == t.shape.len()
            && spec
                .shape
                .iter()
                .zip(&t.shape)
                .all(|(&want, &got)| want < 0 || usize::try_from(want) == Ok(got));
        if !fits {
            return Err(TensorError::Shape {
                name: t.name.clone(),
                expected: spec.shape_string(),
                received: t.shape.clone(),
            });
        }
    }
    for spec in specs {
        if !inputs.iter().any(|t| t.name == spec.name) {
            return Err(TensorError::Missing {
                name: spec.name.clone(),
                needed: known,
            });
        }
    }
    let mut names: Vec<&str> = inputs.iter().map(|t| t.name.as_str()).collect();
    names.sort_unstable();
    if let Some(twice) = names.windows(2).find_map(|w| match w {
        [a, b] if a == b => Some(a),
        _ => None,
    }) {
        return Err(TensorError::Unknown {
            kind: "input",
            name: format!("{twice} (given twice)"),
            known,
        });
    }
    Ok(())
}

/// Converts to an ort value.
pub(crate) fn to_ort(t: &NamedTensor) -> ort::Result<DynValue> {
    let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
    Ok(match &t.data {
        TensorData::F32(v) => OrtTensor::from_array((shape, v.clone()))?.into_dyn(),
        TensorData::F16(v) => OrtTensor::from_array((shape, v.clone()))?.into_dyn(),
        TensorData::I64(v) => OrtTensor::from_array((shape, v.clone()))?.into_dyn(),
        TensorData::I32(v) => OrtTensor::from_array((shape, v.clone()))?.into_dyn(),
        TensorData::Bool(v) => OrtTensor::from_array((shape, v.clone()))?.into_dyn(),
    })
}

/// Converts an ort output back.
pub(crate) fn from_ort(name: &str, v: &DynValue) -> Result<NamedTensor, TensorError> {
    let unsupported = || TensorError::Unsupported {
        name: name.into(),
        ort_type: format!("{}", v.dtype()),
    };
    let dtype = v
        .dtype()
        .tensor_type()
        .and_then(DType::from_ort)
        .ok_or_else(unsupported)?;
    fn grab<T: ort::value::PrimitiveTensorElementType + Clone>(
        v: &DynValue,
    ) -> Option<(Vec<usize>, Vec<T>)> {
        let (shape, data) = v.try_extract_tensor::<T>().ok()?;
        let shape = shape
            .iter()
            .map(|&d| usize::try_from(d).ok())
            .collect::<Option<Vec<usize>>>()?;
        Some((shape, data.to_vec()))
    }
    let (shape, data) = match dtype {
        DType::F32 => grab::<f32>(v).map(|(s, d)| (s, TensorData::F32(d))),
        DType::F16 => grab::<f16>(v).map(|(s, d)| (s, TensorData::F16(d))),
        DType::I64 => grab::<i64>(v).map(|(s, d)| (s, TensorData::I64(d))),
        DType::I32 => grab::<i32>(v).map(|(s, d)| (s, TensorData::I32(d))),
        DType::Bool => grab::<bool>(v).map(|(s, d)| (s, TensorData::Bool(d))),
    }
    .ok_or_else(unsupported)?;
    Ok(NamedTensor {
        name: name.into(),
        shape,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, dtype: DType, shape: &[i64]) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            dtype: Some(dtype),
            ort_type: dtype.to_string(),
            shape: shape.to_vec(),
            dim_names: shape
                .iter()
                .map(|&d| if d < 0 { "batch".into() } else { String::new() })
                .collect(),
        }
    }

    fn t(name: &str, shape: &[usize], data: TensorData) -> NamedTensor {
        NamedTensor {
            name: name.into(),
            shape: shape.to_vec(),
            data,
        }
    }

    #[test]
    fn validation_names_input_expected_and_received() {
        let specs = [spec("a", DType::F32, &[-1, 3])];
        assert!(validate_inputs(&specs, &[t("a", &[2, 3], TensorData::F32(vec![0.0; 6]))]).is_ok());
        let e =
            validate_inputs(&specs, &[t("a", &[2, 4], TensorData::F32(vec![0.0; 8]))]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "input \"a\" has shape [2, 4], but the model expects [batch, 3]"
        );
        let e =
            validate_inputs(&specs, &[t("a", &[1, 3], TensorData::I64(vec![0; 3]))]).unwrap_err();
        assert!(
            e.to_string().contains("dtype i64") && e.to_string().contains("expects f32"),
            "{e}"
        );
        let e =
            validate_inputs(&specs, &[t("a", &[2, 3], TensorData::F32(vec![0.0; 5]))]).unwrap_err();
        assert!(matches!(e, TensorError::Count { needed: 6, .. }), "{e}");
        let e = validate_inputs(&specs, &[]).unwrap_err();
        assert!(matches!(e, TensorError::Missing { .. }), "{e}");
        let e = validate_inputs(&specs, &[t("b", &[1], TensorData::F32(vec![0.0]))]).unwrap_err();
        assert!(e.to_string().contains("inputs are a"), "{e}");
        let e = validate_inputs(&specs, &[t("a", &[0, 3], TensorData::F32(vec![]))]).unwrap_err();
        assert!(matches!(e, TensorError::Empty { .. }), "{e}");
    }
}

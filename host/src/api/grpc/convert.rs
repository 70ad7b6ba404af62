//! gRPC messages to the KServe inference request of the HTTP `/v2` routes, and its answer
//! back: raw (`raw_input_contents`) or typed (`contents`) inputs are decoded into the same
//! `Elems` the HTTP parser builds; outputs always travel as `raw_output_contents`, as Triton
//! answers them (`tritonclient.grpc` reads them with `as_numpy`).

use std::collections::HashMap;

use super::inference::infer_parameter::ParameterChoice;
use super::inference::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use super::inference::model_infer_response::InferOutputTensor;
use super::inference::{InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse};
use crate::api::error::ApiError;
use crate::api::kserve::{
    Answer, Elems, InferRequest, Input, VERSION, Wanted, bad, decode_raw, element_size,
    unsupported,
};
use crate::core::text::Truncation;

/// A `ModelInfer` request: the model's name, its version (if given) and the request.
pub(super) struct Call {
    pub(super) model: String,
    pub(super) version: Option<String>,
    pub(super) request: InferRequest,
}

/// Checks and converts a `ModelInferRequest`; every error names the field and what is accepted.
pub(super) fn request(msg: ModelInferRequest) -> Result<Call, ApiError> {
    if msg.model_name.is_empty() {
        return Err(bad(
            "model_name is empty: name the model to run (its metadata: ModelMetadata)",
        ));
    }
    let truncation = match flag(&msg.parameters, "truncate", "request")? {
        Some(true) => Truncation::Truncate,
        _ => Truncation::Error,
    };
    if msg.inputs.is_empty() {
        return Err(bad("inputs is empty: give at least one input tensor"));
    }
    let raw = msg.raw_input_contents;
    if !raw.is_empty() {
        if raw.len() != msg.inputs.len() {
            return Err(bad(format!(
                "raw_input_contents has {} entries, but inputs has {}: give one entry per input, in the order of inputs",
                raw.len(),
                msg.inputs.len()
            )));
        }
        if let Some(t) = msg.inputs.iter().find(|t| t.contents.is_some()) {
            return Err(bad(format!(
                "input {:?} has contents, but the request carries raw_input_contents: give every input's data one way",
                t.name
            )));
        }
    }
    let mut raw = raw.into_iter();
    let inputs = msg
        .inputs
        .into_iter()
        .enumerate()
        .map(|(i, t)| input(i, t, raw.next()))
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = msg
        .outputs
        .into_iter()
        .enumerate()
        .map(|(i, o)| output(i, o))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Call {
        model: msg.model_name,
        version: Some(msg.model_version).filter(|v| !v.is_empty()),
        request: InferRequest {
            id: Some(msg.id).filter(|id| !id.is_empty()),
            inputs,
            outputs: (!outputs.is_empty()).then_some(outputs),
            binary_default: true,
            truncation,
        },
    })
}

/// One input, its data from its raw contents or its typed `contents`.
fn input(i: usize, t: InferInputTensor, raw: Option<Vec<u8>>) -> Result<Input, ApiError> {
    if t.name.is_empty() {
        return Err(bad(format!("inputs[{i}] has no name")));
    }
    let name = t.name;
    let shape = t
        .shape
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| {
            bad(format!(
                "input {name:?} has shape {:?}: dimensions must be non-negative integers",
                t.shape
            ))
        })?;
    let count = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| {
            bad(format!(
                "input {name:?} has shape {:?}, which has more elements than llmos can address",
                t.shape
            ))
        })?;
    let datatype = t.datatype;
    let size = element_size(&datatype).map_err(|()| unsupported(&name, &datatype))?;
    let data = match raw {
        Some(raw) => {
            if let Some(size) = size
                && count.checked_mul(size) != Some(raw.len())
            {
                return Err(bad(format!(
                    "raw_input_contents[{i}] (input {name:?}) has {} bytes, but shape {:?} of {datatype} needs {} bytes",
                    raw.len(),
                    t.shape,
                    (count as u128).saturating_mul(size as u128)
                )));
            }
            decode_raw(&name, &datatype, count, &raw)?
        }
        None => typed(&name, &datatype, count, t.contents)?,
    };
    Ok(Input { name, shape, data })
}

/// Typed contents: the field that matches the datatype, with as many elements as the shape.
fn typed(
    name: &str,
    datatype: &str,
    count: usize,
    contents: Option<InferTensorContents>,
) -> Result<Elems, ApiError> {
    let Some(c) = contents else {
        return Err(bad(format!(
            "input {name:?} has no contents: give its elements in contents (e.g. fp32_contents for FP32) or every input's data in raw_input_contents"
        )));
    };
    let field = match datatype {
        "FP32" => "fp32_contents",
        "INT32" => "int_contents",
        "INT64" => "int64_contents",
        "BOOL" => "bool_contents",
        "BYTES" => "bytes_contents",
        _ => {
            return Err(bad(format!(
                "input {name:?} is {datatype}, which has no typed contents field: send it in raw_input_contents"
            )));
        }
    };
    let given = [
        ("bool_contents", c.bool_contents.len()),
        ("int_contents", c.int_contents.len()),
        ("int64_contents", c.int64_contents.len()),
        ("uint_contents", c.uint_contents.len()),
        ("uint64_contents", c.uint64_contents.len()),
        ("fp32_contents", c.fp32_contents.len()),
        ("fp64_contents", c.fp64_contents.len()),
        ("bytes_contents", c.bytes_contents.len()),
    ];
    if let Some((other, _)) = given.iter().find(|(f, n)| *f != field && *n > 0) {
        return Err(bad(format!(
            "input {name:?} is {datatype}, but its elements are in contents.{other}: {datatype} elements go in contents.{field}"
        )));
    }
    let data = match datatype {
        "FP32" => Elems::F32(c.fp32_contents),
        "INT32" => Elems::I32(c.int_contents),
        "INT64" => Elems::I64(c.int64_contents),
        "BOOL" => Elems::Bool(c.bool_contents),
        _ => Elems::Bytes(c.bytes_contents),
    };
    let n = match &data {
        Elems::F32(v) => v.len(),
        Elems::I32(v) => v.len(),
        Elems::I64(v) => v.len(),
        Elems::Bool(v) => v.len(),
        Elems::F16(v) => v.len(),
        Elems::Bytes(v) => v.len(),
    };
    if n != count {
        return Err(bad(format!(
            "input {name:?} has {n} elements in contents.{field}, but its shape needs {count}"
        )));
    }
    Ok(data)
}

/// One requested output.
fn output(i: usize, o: InferRequestedOutputTensor) -> Result<Wanted, ApiError> {
    if o.name.is_empty() {
        return Err(bad(format!("outputs[{i}] has no name")));
    }
    if o.parameters.contains_key("classification") {
        return Err(bad(format!(
            "output {:?} asks for the classification extension, which llmos does not implement; text classifiers return \"scores\" and \"label\"",
            o.name
        )));
    }
    Ok(Wanted {
        name: o.name,
        binary: true,
    })
}

/// A boolean parameter, if given.
fn flag(
    params: &HashMap<String, InferParameter>,
    key: &str,
    at: &str,
) -> Result<Option<bool>, ApiError> {
    match params.get(key).and_then(|p| p.parameter_choice.as_ref()) {
        None => Ok(None),
        Some(ParameterChoice::BoolParam(b)) => Ok(Some(*b)),
        Some(other) => Err(bad(format!(
            "{at} parameter {key:?} is {other:?}: it must be bool_param (true or false)"
        ))),
    }
}

/// The answer as a `ModelInferResponse`, every output's data in `raw_output_contents`.
pub(super) fn response(done: Answer) -> Result<ModelInferResponse, ApiError> {
    let mut outputs = Vec::with_capacity(done.outputs.len());
    let mut raw = Vec::with_capacity(done.outputs.len());
    for (o, _) in done.outputs {
        let shape = o
            .shape
            .iter()
            .map(|&d| i64::try_from(d).map_err(|_| bad(format!("output {:?} is too large", o.name))))
            .collect::<Result<Vec<_>, _>>()?;
        raw.push(o.data.raw()?);
        outputs.push(InferOutputTensor {
            datatype: o.data.datatype().to_string(),
            name: o.name,
            shape,
            parameters: HashMap::new(),
            contents: None,
        });
    }
    Ok(ModelInferResponse {
        model_name: done.model,
        model_version: VERSION.to_string(),
        id: done.id.unwrap_or_default(),
        parameters: HashMap::new(),
        outputs,
        raw_output_contents: raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(name: &str, datatype: &str, shape: &[i64]) -> InferInputTensor {
        InferInputTensor {
            name: name.into(),
            datatype: datatype.into(),
            shape: shape.to_vec(),
            parameters: HashMap::new(),
            contents: None,
        }
    }

    fn infer(inputs: Vec<InferInputTensor>, raw: Vec<Vec<u8>>) -> ModelInferRequest {
        ModelInferRequest {
            model_name: "m".into(),
            inputs,
            raw_input_contents: raw,
            ..ModelInferRequest::default()
        }
    }

    fn message(r: Result<Call, ApiError>) -> String {
        match r {
            Ok(_) => panic!("accepted"),
            Err(e) => e.message,
        }
    }

    #[test]
    fn raw_and_typed_contents_decode_alike() {
        let raw: Vec<u8> = [1.0f32, 2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        let a = request(infer(vec![tensor("a", "FP32", &[2])], vec![raw])).unwrap();
        let mut t = tensor("a", "FP32", &[2]);
        t.contents = Some(InferTensorContents {
            fp32_contents: vec![1.0, 2.0],
            ..InferTensorContents::default()
        });
        let b = request(infer(vec![t], vec![])).unwrap();
        assert_eq!(a.request.inputs[0].data, b.request.inputs[0].data);
        assert_eq!(a.request.inputs[0].data, Elems::F32(vec![1.0, 2.0]));
        assert_eq!(a.version, None);
        assert!(a.request.outputs.is_none());
    }

    #[test]
    fn errors_name_the_field() {
        let e = message(request(infer(vec![tensor("a", "FP32", &[2])], vec![vec![0; 4]])));
        assert!(e.contains("raw_input_contents[0]") && e.contains("needs 8 bytes"), "{e}");
        let e = message(request(infer(vec![tensor("a", "UINT8", &[1])], vec![vec![0]])));
        assert!(e.contains("accepted are"), "{e}");
        let e = message(request(infer(vec![tensor("a", "FP32", &[-2])], vec![])));
        assert!(e.contains("non-negative"), "{e}");
        let e = message(request(infer(vec![tensor("a", "FP32", &[1])], vec![])));
        assert!(e.contains("no contents"), "{e}");
        let mut t = tensor("a", "FP32", &[1]);
        t.contents = Some(InferTensorContents {
            int_contents: vec![1],
            ..InferTensorContents::default()
        });
        let e = message(request(infer(vec![t], vec![])));
        assert!(e.contains("contents.int_contents") && e.contains("fp32_contents"), "{e}");
        let e = message(request(infer(
            vec![tensor("a", "FP32", &[1]), tensor("b", "FP32", &[1])],
            vec![vec![0; 4]],
        )));
        assert!(e.contains("has 1 entries, but inputs has 2"), "{e}");
        let e = message(request(infer(vec![tensor("a", "FP16", &[1])], vec![])));
        assert!(e.contains("raw_input_contents"), "{e}");
    }
}

//! JSON tensor data (nested or flat) and the small JSON readers of the request.

use half::f16;
use serde_json::{Map, Value};

use super::elems::{Elems, element_size, unsupported};
use super::{bad, dims_string};
use crate::api::error::ApiError;
pub(super) use crate::api::strict::kind;

fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|x| flatten(x, out)),
        other => out.push(other),
    }
}

/// Decodes JSON `data` (nested or flat, row-major) of `count` elements.
pub(super) fn decode_json(
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
            // why: FP32 data given as JSON numbers is rounded to the nearest f32, as Triton does.
            #[allow(clippy::cast_possible_truncation)]
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

pub(super) fn params<'a>(
    v: Option<&'a Value>,
    at: &str,
) -> Result<Option<&'a Map<String, Value>>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(other) => Err(bad(format!(
            "{at} \"parameters\" is {}: it must be an object",
            kind(other)
        ))),
    }
}

pub(super) fn flag(
    p: Option<&Map<String, Value>>,
    key: &str,
    at: &str,
) -> Result<Option<bool>, ApiError> {
    match p.and_then(|p| p.get(key)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(bad(format!(
            "{at} parameter {key:?} is {other}: it must be true or false"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

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
}

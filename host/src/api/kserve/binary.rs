//! Triton's binary tensor data extension: the body split at
//! `Inference-Header-Content-Length`, raw little-endian elements decoded.

use axum::body::Bytes;
use axum::http::{HeaderMap, header};
use half::f16;

use super::elems::{Elems, element_size, unsupported};
use super::{HEADER_LENGTH, bad};
use crate::api::error::ApiError;

/// Decodes raw bytes of `count` elements.
pub(crate) fn decode_raw(
    input: &str,
    datatype: &str,
    count: usize,
    raw: &[u8],
) -> Result<Elems, ApiError> {
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

/// Splits the body into the JSON header and the binary tensor data.
pub(crate) fn split(headers: &HeaderMap, body: &Bytes) -> Result<(Bytes, Bytes), ApiError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

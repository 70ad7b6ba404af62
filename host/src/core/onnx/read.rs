//! Reading an ONNX model: decoding, and the questions the classifier export asks of a graph.

use prost::Message;

use super::proto::{Dimension, GraphProto, ModelProto, ValueInfoProto};

/// Errors of reading or extending an ONNX model.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The bytes are not an ONNX `ModelProto`.
    #[error("not an ONNX model (protobuf ModelProto): {0}")]
    Decode(#[from] prost::DecodeError),
    /// The model has no graph.
    #[error("the ONNX model has no graph")]
    NoGraph,
    /// A required graph input is missing.
    #[error("the encoder has no `{name}` input (its inputs: {inputs}); a classifier needs it to pool over real tokens")]
    MissingInput {
        /// The input looked for.
        name: String,
        /// The inputs it has, comma-separated.
        inputs: String,
    },
    /// The encoder's output is not token embeddings.
    #[error("the encoder's first output {0}; a classifier needs token embeddings [batch, sequence, hidden] of float")]
    BadOutput(String),
    /// The head does not fit the encoder, or is inconsistent.
    #[error("{0}")]
    Head(String),
    /// Labels do not match the head.
    #[error("{0}")]
    Labels(String),
    /// The encoder already uses a name the export adds.
    #[error("the encoder already has a value or initializer named `{0}` (an exported classifier cannot be exported again)")]
    NameTaken(String),
}

/// Decodes a model.
pub fn decode(bytes: &[u8]) -> Result<ModelProto, OnnxError> {
    Ok(ModelProto::decode(bytes)?)
}

/// The value's name (`""` when absent).
pub fn name_of(v: &ValueInfoProto) -> &str {
    v.name.as_deref().unwrap_or_default()
}

/// The value's tensor element type and dimensions, if it is a tensor with a shape.
pub fn tensor_shape(v: &ValueInfoProto) -> Option<(i32, &[Dimension])> {
    let t = v.r#type.as_ref()?.tensor_type.as_ref()?;
    let shape = t.shape.as_ref()?;
    Some((t.elem_type.unwrap_or_default(), shape.dim.as_slice()))
}

/// The graph input named `name`, or an error listing the inputs there are.
pub fn input<'g>(g: &'g GraphProto, name: &str) -> Result<&'g ValueInfoProto, OnnxError> {
    g.input
        .iter()
        .find(|i| name_of(i) == name)
        .ok_or_else(|| OnnxError::MissingInput {
            name: name.into(),
            inputs: g.input.iter().map(name_of).collect::<Vec<_>>().join(", "),
        })
}

/// The default-domain opset the model imports (0 when none).
pub fn onnx_opset(m: &ModelProto) -> i64 {
    m.opset_import
        .iter()
        .filter(|o| matches!(o.domain.as_deref(), None | Some("" | "ai.onnx")))
        .filter_map(|o| o.version)
        .max()
        .unwrap_or(0)
}

/// Every name the graph defines or uses: inputs, outputs, initializers, node outputs and names.
pub fn names(g: &GraphProto) -> impl Iterator<Item = &str> {
    let values = g.input.iter().chain(&g.output).chain(&g.value_info).map(name_of);
    let inits = g.initializer.iter().filter_map(|t| t.name.as_deref());
    let nodes = g
        .node
        .iter()
        .flat_map(|n| n.output.iter().map(String::as_str).chain(n.name.as_deref()));
    values.chain(inits).chain(nodes)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::core::onnx::encode;
    use crate::core::onnx::proto::{AttributeProto, TensorProto};

    /// Models the integration tests fetch (`target/tmp/models`); absent on a fresh checkout.
    fn fetched(name: &str) -> Option<Vec<u8>> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/tmp/models")
            .join(name)
            .join("model.onnx");
        match std::fs::read(&path) {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!(
                    "skipped {name}: {} ({e}); `cargo test --test all` fetches it",
                    path.display()
                );
                None
            }
        }
    }

    /// Exported encoders (pytorch, onnxruntime quantiser), Python-written fixtures and llmos'
    /// own GGUF import: decode → encode gives the same bytes.
    #[test]
    fn decode_then_encode_is_byte_identical() {
        for name in ["minilm", "pii-ner", "tiny-classifier", "tiny-ner", "dtypes", "add", "tiny-llama"] {
            let Some(bytes) = fetched(name) else { continue };
            let model = decode(&bytes).unwrap();
            let again = encode(&model);
            let first = bytes.iter().zip(&again).position(|(a, b)| a != b);
            assert!(
                again == bytes,
                "{name}: {} bytes read, {} written, first difference at {first:?}",
                bytes.len(),
                again.len()
            );
        }
    }

    #[test]
    fn presence_and_packing_are_kept() {
        // An attribute `i = 0` and unpacked ints, as protobuf's own writers emit them.
        let attr = AttributeProto {
            name: Some("keepdims".into()),
            i: Some(0),
            ints: vec![1, 2],
            r#type: Some(2),
            ..Default::default()
        };
        let bytes = attr.encode_to_vec();
        // name (1), i (3) = 0, ints (8) one tag each, type (20).
        assert_eq!(
            bytes,
            [&[0x0a, 8][..], b"keepdims", &[0x18, 0, 0x40, 1, 0x40, 2, 0xa0, 1, 2]].concat()
        );
        let back = AttributeProto::decode(bytes.as_slice()).unwrap();
        assert_eq!(back, attr);
        let packed = TensorProto {
            dims: vec![3, 4],
            dims_packed: true,
            ..Default::default()
        };
        assert_eq!(packed.encode_to_vec(), [0x0a, 2, 3, 4]);
        assert_eq!(TensorProto::decode(&[0x0a, 2, 3, 4][..]).unwrap(), packed);
        let unpacked = TensorProto::decode(&[0x08, 3, 0x08, 4][..]).unwrap();
        assert_eq!((unpacked.dims.as_slice(), unpacked.dims_packed), (&[3, 4][..], false));
        assert_eq!(unpacked.encode_to_vec(), [0x08, 3, 0x08, 4]);
    }

    #[test]
    fn garbage_is_a_decode_error() {
        let e = decode(b"not a model at all").unwrap_err();
        assert!(e.to_string().starts_with("not an ONNX model"), "{e}");
    }
}

//! ONNX models: the protobuf messages ([`proto`]), reading a model ([`read`]), a small graph
//! builder, and the classifier export ([`classifier`]).
//!
//! The builder names values and nodes from a counter, in call order, so the same calls give
//! the same bytes (imports are deterministic and verified by sha256). It writes a field only
//! when its value differs from the default, and repeated integers packed: the bytes the GGUF
//! import has always written.

pub mod classifier;
pub mod proto;
pub mod read;

pub use read::{OnnxError, decode};

use prost::Message;

use proto::{
    AttributeProto, Dimension, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TensorTypeProto, TypeProto,
    ValueInfoProto, attribute_type, data_type,
};

/// The `com.microsoft` contrib-operator domain of ONNX Runtime.
pub const MS_DOMAIN: &str = "com.microsoft";

/// One dimension of a graph input or output.
#[derive(Debug, Clone)]
pub enum Dim {
    /// A fixed size.
    Fixed(i64),
    /// A symbolic size (`batch`, `sequence`, …).
    Named(String),
}

/// Builds one graph; [`GraphBuilder::finish`] wraps it in a model.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    counter: u64,
}

fn value_info(name: &str, elem: i32, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| match d {
            Dim::Fixed(v) => Dimension {
                dim_value: Some(*v),
                ..Default::default()
            },
            Dim::Named(n) => Dimension {
                dim_param: Some(n.clone()),
                ..Default::default()
            },
        })
        .collect();
    ValueInfoProto {
        name: text(name),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: int(elem),
                shape: Some(TensorShapeProto { dim }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A string field as the builder writes it: absent when empty.
pub fn text(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// An integer field as the builder writes it: absent when 0.
pub fn int<T: Default + PartialEq>(v: T) -> Option<T> {
    (v != T::default()).then_some(v)
}

/// An `INT` attribute.
pub fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: text(name),
        i: int(i),
        r#type: Some(attribute_type::INT),
        ..Default::default()
    }
}

/// An `INTS` attribute.
pub fn attr_ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: text(name),
        ints: ints.to_vec(),
        ints_packed: true,
        r#type: Some(attribute_type::INTS),
        ..Default::default()
    }
}

/// A `FLOAT` attribute.
pub fn attr_float(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: text(name),
        f: int(f),
        r#type: Some(attribute_type::FLOAT),
        ..Default::default()
    }
}

/// A `TENSOR` attribute.
pub fn attr_tensor(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto {
        name: text(name),
        t: Some(t),
        r#type: Some(attribute_type::TENSOR),
        ..Default::default()
    }
}

/// A tensor with raw little-endian data.
pub fn tensor(name: &str, elem: i32, dims: &[i64], raw_data: Vec<u8>) -> TensorProto {
    TensorProto {
        dims: dims.to_vec(),
        dims_packed: true,
        data_type: int(elem),
        name: text(name),
        raw_data: (!raw_data.is_empty()).then_some(raw_data),
        ..Default::default()
    }
}

/// Little-endian bytes of `f32`s.
pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

impl GraphBuilder {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    fn fresh(&mut self, stem: &str) -> String {
        self.counter = self.counter.wrapping_add(1);
        format!("{stem}_{}", self.counter)
    }

    /// Declares a graph input.
    pub fn input(&mut self, name: &str, elem: i32, dims: &[Dim]) {
        self.inputs.push(value_info(name, elem, dims));
    }

    /// Declares a graph output.
    pub fn output(&mut self, name: &str, elem: i32, dims: &[Dim]) {
        self.outputs.push(value_info(name, elem, dims));
    }

    /// Adds an initializer and returns its name.
    pub fn initializer(&mut self, name: &str, elem: i32, dims: &[i64], raw: Vec<u8>) -> String {
        self.initializers.push(tensor(name, elem, dims, raw));
        name.to_string()
    }

    /// A 1-D `int64` constant (an initializer with a fresh name).
    pub fn const_i64(&mut self, values: &[i64]) -> String {
        let name = self.fresh("const_i64");
        let raw = values.iter().flat_map(|x| x.to_le_bytes()).collect();
        let dims = [i64::try_from(values.len()).unwrap_or(i64::MAX)];
        self.initializer(&name, data_type::INT64, &dims, raw)
    }

    /// A scalar `float` constant.
    pub fn const_f32(&mut self, value: f32) -> String {
        let name = self.fresh("const_f32");
        self.initializer(&name, data_type::FLOAT, &[], value.to_le_bytes().to_vec())
    }

    /// A node of the default domain with one output; returns the output's name.
    pub fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        self.op_in("", op, inputs, attrs)
    }

    /// A node of `domain` with one output; returns the output's name.
    pub fn op_in(
        &mut self,
        domain: &str,
        op: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> String {
        let out = self.fresh(op);
        self.op_to(domain, op, inputs, &[&out], attrs);
        out
    }

    /// A node of the default domain with `n` outputs; returns their names.
    pub fn op_n(
        &mut self,
        op: &str,
        inputs: &[&str],
        n: usize,
        attrs: Vec<AttributeProto>,
    ) -> Vec<String> {
        let outs: Vec<String> = (0..n).map(|_| self.fresh(op)).collect();
        let refs: Vec<&str> = outs.iter().map(String::as_str).collect();
        self.op_to("", op, inputs, &refs, attrs);
        outs
    }

    /// A node whose outputs have the given names (graph outputs).
    pub fn op_to(
        &mut self,
        domain: &str,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) {
        let name = self.fresh(&format!("{op}_node"));
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name: text(&name),
            op_type: text(op),
            attribute: attrs,
            domain: text(domain),
            ..Default::default()
        });
    }

    /// The model: IR version 8, opset 17 and `com.microsoft` 1, with metadata.
    pub fn finish(self, name: &str, doc: &str, metadata: &[(&str, String)]) -> ModelProto {
        ModelProto {
            ir_version: Some(8),
            producer_name: text("llmos"),
            producer_version: text(env!("CARGO_PKG_VERSION")),
            doc_string: text(doc),
            graph: Some(GraphProto {
                node: self.nodes,
                name: text(name),
                initializer: self.initializers,
                input: self.inputs,
                output: self.outputs,
                ..Default::default()
            }),
            opset_import: vec![
                OperatorSetIdProto {
                    domain: None,
                    version: Some(17),
                },
                OperatorSetIdProto {
                    domain: text(MS_DOMAIN),
                    version: Some(1),
                },
            ],
            metadata_props: metadata.iter().map(|(k, v)| entry(k, v)).collect(),
            ..Default::default()
        }
    }
}

/// A key/value entry (absent parts when empty, as the builder writes fields).
pub fn entry(key: &str, value: &str) -> StringStringEntryProto {
    StringStringEntryProto {
        key: text(key),
        value: text(value),
    }
}

/// The model's protobuf bytes.
pub fn encode(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_calls_give_same_bytes_and_decode_back() {
        let build = || {
            let mut g = GraphBuilder::new();
            g.input("x", data_type::FLOAT, &[Dim::Named("n".into()), Dim::Fixed(2)]);
            let c = g.const_f32(2.0);
            let y = g.op("Mul", &["x", &c], vec![]);
            g.op_to("", "Identity", &[&y], &["y"], vec![]);
            g.output("y", data_type::FLOAT, &[Dim::Named("n".into()), Dim::Fixed(2)]);
            encode(&g.finish("t", "", &[("k", "v".into())]))
        };
        let a = build();
        assert_eq!(a, build());
        let m = ModelProto::decode(a.as_slice()).unwrap();
        // Decoding remembers the packed dims, so encoding gives the same bytes back.
        assert_eq!(encode(&m), a);
        let g = m.graph.unwrap();
        assert_eq!(g.node.len(), 2);
        assert_eq!(g.node[0].op_type.as_deref(), Some("Mul"));
        assert_eq!(g.initializer[0].raw_data.as_deref(), Some(&2.0f32.to_le_bytes()[..]));
        assert_eq!(m.opset_import[0].version, Some(17));
        // ModelProto field 1 (ir_version) is written first: tag byte 0x08, value 8.
        assert_eq!(&a[..2], &[0x08, 8]);
    }
}

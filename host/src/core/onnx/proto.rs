//! `onnx.proto` (ONNX IR up to version 10) as `prost` messages, with the field numbers of the
//! upstream schema (onnx/onnx `onnx/onnx.proto`, proto2). Written by hand so no `protoc` runs
//! at build time.
//!
//! Decoding a model and encoding it again gives the same bytes (tested on minilm, pii-ner and
//! the fixtures), which takes three things prost does not do by itself:
//! - **presence**: proto2 `optional` fields are `Option`s, so a field written with its default
//!   value (an attribute `i = 0`, a node `domain = ""`) is written again;
//! - **packing**: `TensorProto.dims` and `AttributeProto.{floats,ints}` are unpacked in the
//!   schema (one tag per element, as the official writers emit them) while llmos' own GGUF
//!   import has always written them packed (its files are pinned by sha256); these two messages
//!   implement [`prost::Message`] by hand and remember which form was read (`*_packed`);
//! - **order**: fields are written in field-number order, as protobuf's writers do (prost's
//!   derive sorts them by tag; the hand-written impls list them in that order).
//!
//! Fields the schema marks `[packed = true]` (`float_data`, `int64_data`…) are packed; other
//! repeated scalars of the schema are unpacked. Unknown fields are dropped on decode; the
//! round-trip tests would see it.

use prost::bytes::{Buf, BufMut};
use prost::encoding::{
    DecodeContext, WireType, bytes, double, float, int32, int64, message, skip_field, string,
    uint64,
};
use prost::{DecodeError, Message};

/// `ModelProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    /// IR version (8 supports opset 17).
    #[prost(int64, optional, tag = "1")]
    pub ir_version: Option<i64>,
    /// Producer name.
    #[prost(string, optional, tag = "2")]
    pub producer_name: Option<String>,
    /// Producer version.
    #[prost(string, optional, tag = "3")]
    pub producer_version: Option<String>,
    /// Reverse-DNS domain of the model.
    #[prost(string, optional, tag = "4")]
    pub domain: Option<String>,
    /// Version of the model.
    #[prost(int64, optional, tag = "5")]
    pub model_version: Option<i64>,
    /// Free text.
    #[prost(string, optional, tag = "6")]
    pub doc_string: Option<String>,
    /// The graph.
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    /// Operator sets used.
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    /// Key/value metadata.
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
    /// Training steps.
    #[prost(message, repeated, tag = "20")]
    pub training_info: Vec<TrainingInfoProto>,
    /// Model-local functions.
    #[prost(message, repeated, tag = "25")]
    pub functions: Vec<FunctionProto>,
}

/// `OperatorSetIdProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorSetIdProto {
    /// `""` (or absent) for the default ONNX domain.
    #[prost(string, optional, tag = "1")]
    pub domain: Option<String>,
    /// Opset version.
    #[prost(int64, optional, tag = "2")]
    pub version: Option<i64>,
}

/// `StringStringEntryProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StringStringEntryProto {
    /// Key.
    #[prost(string, optional, tag = "1")]
    pub key: Option<String>,
    /// Value.
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// `TrainingInfoProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TrainingInfoProto {
    /// Initialisation graph.
    #[prost(message, optional, tag = "1")]
    pub initialization: Option<GraphProto>,
    /// One training step.
    #[prost(message, optional, tag = "2")]
    pub algorithm: Option<GraphProto>,
    /// Initialiser ← output of `initialization`.
    #[prost(message, repeated, tag = "3")]
    pub initialization_binding: Vec<StringStringEntryProto>,
    /// Initialiser ← output of `algorithm`.
    #[prost(message, repeated, tag = "4")]
    pub update_binding: Vec<StringStringEntryProto>,
}

/// `FunctionProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FunctionProto {
    /// Name (the `op_type` that calls it).
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// Input names.
    #[prost(string, repeated, tag = "4")]
    pub input: Vec<String>,
    /// Output names.
    #[prost(string, repeated, tag = "5")]
    pub output: Vec<String>,
    /// Attribute names (no defaults).
    #[prost(string, repeated, tag = "6")]
    pub attribute: Vec<String>,
    /// Body.
    #[prost(message, repeated, tag = "7")]
    pub node: Vec<NodeProto>,
    /// Free text.
    #[prost(string, optional, tag = "8")]
    pub doc_string: Option<String>,
    /// Operator sets used by the body.
    #[prost(message, repeated, tag = "9")]
    pub opset_import: Vec<OperatorSetIdProto>,
    /// Domain (with `name`, the function's identity).
    #[prost(string, optional, tag = "10")]
    pub domain: Option<String>,
    /// Attributes with defaults.
    #[prost(message, repeated, tag = "11")]
    pub attribute_proto: Vec<AttributeProto>,
    /// Types of values of the body.
    #[prost(message, repeated, tag = "12")]
    pub value_info: Vec<ValueInfoProto>,
    /// Overload (with `domain` and `name`, the identity).
    #[prost(string, optional, tag = "13")]
    pub overload: Option<String>,
    /// Key/value metadata.
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// `TensorAnnotation` (quantisation parameters of a tensor).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorAnnotation {
    /// The annotated tensor.
    #[prost(string, optional, tag = "1")]
    pub tensor_name: Option<String>,
    /// `SCALE_TENSOR`/`ZERO_POINT_TENSOR` → tensor name.
    #[prost(message, repeated, tag = "2")]
    pub quant_parameter_tensor_names: Vec<StringStringEntryProto>,
}

/// `GraphProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphProto {
    /// Nodes in topological order.
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    /// Graph name.
    #[prost(string, optional, tag = "2")]
    pub name: Option<String>,
    /// Constant tensors.
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    /// Free text.
    #[prost(string, optional, tag = "10")]
    pub doc_string: Option<String>,
    /// Graph inputs.
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    /// Graph outputs.
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
    /// Types and shapes of intermediate values.
    #[prost(message, repeated, tag = "13")]
    pub value_info: Vec<ValueInfoProto>,
    /// Quantisation parameters.
    #[prost(message, repeated, tag = "14")]
    pub quantization_annotation: Vec<TensorAnnotation>,
    /// Sparse constant tensors.
    #[prost(message, repeated, tag = "15")]
    pub sparse_initializer: Vec<SparseTensorProto>,
    /// Key/value metadata.
    #[prost(message, repeated, tag = "16")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// `NodeProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeProto {
    /// Input value names (`""` = omitted optional input).
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    /// Output value names.
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    /// Node name.
    #[prost(string, optional, tag = "3")]
    pub name: Option<String>,
    /// Operator.
    #[prost(string, optional, tag = "4")]
    pub op_type: Option<String>,
    /// Attributes.
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    /// Free text.
    #[prost(string, optional, tag = "6")]
    pub doc_string: Option<String>,
    /// Operator domain (`""` or absent: ONNX; `com.microsoft`…).
    #[prost(string, optional, tag = "7")]
    pub domain: Option<String>,
    /// Overload of a model-local function.
    #[prost(string, optional, tag = "8")]
    pub overload: Option<String>,
    /// Key/value metadata.
    #[prost(message, repeated, tag = "9")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// `AttributeProto.AttributeType` values.
pub mod attribute_type {
    /// `FLOAT`.
    pub const FLOAT: i32 = 1;
    /// `INT`.
    pub const INT: i32 = 2;
    /// `STRING`.
    pub const STRING: i32 = 3;
    /// `TENSOR`.
    pub const TENSOR: i32 = 4;
    /// `GRAPH`.
    pub const GRAPH: i32 = 5;
    /// `FLOATS`.
    pub const FLOATS: i32 = 6;
    /// `INTS`.
    pub const INTS: i32 = 7;
    /// `STRINGS`.
    pub const STRINGS: i32 = 8;
}

/// `TensorProto.DataType` values used here.
pub mod data_type {
    /// `FLOAT`.
    pub const FLOAT: i32 = 1;
    /// `UINT8`.
    pub const UINT8: i32 = 2;
    /// `INT64`.
    pub const INT64: i32 = 7;
    /// `FLOAT16`.
    pub const FLOAT16: i32 = 10;
}

/// `TensorProto.Segment`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Segment {
    /// First element.
    #[prost(int64, optional, tag = "1")]
    pub begin: Option<i64>,
    /// One past the last.
    #[prost(int64, optional, tag = "2")]
    pub end: Option<i64>,
}

/// `SparseTensorProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SparseTensorProto {
    /// Non-default values, `[NNZ]`.
    #[prost(message, optional, tag = "1")]
    pub values: Option<TensorProto>,
    /// Their indices, `[NNZ]` or `[NNZ, rank]`.
    #[prost(message, optional, tag = "2")]
    pub indices: Option<TensorProto>,
    /// Dense shape (unpacked, as in the schema).
    #[prost(int64, repeated, packed = "false", tag = "3")]
    pub dims: Vec<i64>,
}

/// `ValueInfoProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueInfoProto {
    /// Value name.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// Its type.
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
    /// Free text.
    #[prost(string, optional, tag = "3")]
    pub doc_string: Option<String>,
    /// Key/value metadata.
    #[prost(message, repeated, tag = "4")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// `TypeProto`: one of the `value` oneof is set (kept as separate fields: same bytes).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeProto {
    /// A tensor.
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TensorTypeProto>,
    /// A sequence.
    #[prost(message, optional, boxed, tag = "4")]
    pub sequence_type: Option<Box<SequenceTypeProto>>,
    /// A map.
    #[prost(message, optional, boxed, tag = "5")]
    pub map_type: Option<Box<MapTypeProto>>,
    /// Standard denotation of the type.
    #[prost(string, optional, tag = "6")]
    pub denotation: Option<String>,
    /// An opaque type.
    #[prost(message, optional, tag = "7")]
    pub opaque_type: Option<OpaqueTypeProto>,
    /// A sparse tensor.
    #[prost(message, optional, tag = "8")]
    pub sparse_tensor_type: Option<TensorTypeProto>,
    /// An optional value.
    #[prost(message, optional, boxed, tag = "9")]
    pub optional_type: Option<Box<SequenceTypeProto>>,
}

/// `TypeProto.Tensor` (also `TypeProto.SparseTensor`: same fields).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorTypeProto {
    /// Element type ([`data_type`]).
    #[prost(int32, optional, tag = "1")]
    pub elem_type: Option<i32>,
    /// Shape.
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

/// `TypeProto.Sequence` (also `TypeProto.Optional`: same field).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SequenceTypeProto {
    /// Element type.
    #[prost(message, optional, boxed, tag = "1")]
    pub elem_type: Option<Box<TypeProto>>,
}

/// `TypeProto.Map`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MapTypeProto {
    /// Key element type.
    #[prost(int32, optional, tag = "1")]
    pub key_type: Option<i32>,
    /// Value type.
    #[prost(message, optional, boxed, tag = "2")]
    pub value_type: Option<Box<TypeProto>>,
}

/// `TypeProto.Opaque`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OpaqueTypeProto {
    /// Domain.
    #[prost(string, optional, tag = "1")]
    pub domain: Option<String>,
    /// Name.
    #[prost(string, optional, tag = "2")]
    pub name: Option<String>,
}

/// `TensorShapeProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    /// Dimensions.
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

/// `TensorShapeProto.Dimension`: a fixed size (`dim_value`, 1) or a name (`dim_param`, 2).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Dimension {
    /// Fixed size.
    #[prost(int64, optional, tag = "1")]
    pub dim_value: Option<i64>,
    /// Symbolic name.
    #[prost(string, optional, tag = "2")]
    pub dim_param: Option<String>,
    /// Standard denotation (`DATA_BATCH`…).
    #[prost(string, optional, tag = "3")]
    pub denotation: Option<String>,
}

/// `TensorProto`. `Message` is implemented by hand for the packing of `dims` (see the module).
#[derive(Clone, PartialEq, Default, Debug)]
pub struct TensorProto {
    /// Shape (1).
    pub dims: Vec<i64>,
    /// `dims` is written packed (llmos' GGUF import) rather than one tag per element (the schema).
    pub dims_packed: bool,
    /// Element type ([`data_type`]) (2).
    pub data_type: Option<i32>,
    /// Part of a chunked tensor (3).
    pub segment: Option<Segment>,
    /// `FLOAT`/`COMPLEX64` elements (4, packed).
    pub float_data: Vec<f32>,
    /// `INT32`, smaller integers, `BOOL`, `FLOAT16` bits (5, packed).
    pub int32_data: Vec<i32>,
    /// `STRING` elements (6).
    pub string_data: Vec<Vec<u8>>,
    /// `INT64` elements (7, packed).
    pub int64_data: Vec<i64>,
    /// Name (initializers) (8).
    pub name: Option<String>,
    /// Elements, little-endian (9).
    pub raw_data: Option<Vec<u8>>,
    /// `DOUBLE`/`COMPLEX128` elements (10, packed).
    pub double_data: Vec<f64>,
    /// `UINT32`/`UINT64` elements (11, packed).
    pub uint64_data: Vec<u64>,
    /// Free text (12).
    pub doc_string: Option<String>,
    /// `location`/`offset`/`length` of external data (13).
    pub external_data: Vec<StringStringEntryProto>,
    /// 0 `DEFAULT`, 1 `EXTERNAL` (14).
    pub data_location: Option<i32>,
    /// Key/value metadata (16).
    pub metadata_props: Vec<StringStringEntryProto>,
}

fn ints_encode(tag: u32, values: &[i64], packed: bool, buf: &mut impl BufMut) {
    if packed {
        int64::encode_packed(tag, values, buf);
    } else {
        int64::encode_repeated(tag, values, buf);
    }
}

fn ints_len(tag: u32, values: &[i64], packed: bool) -> usize {
    if packed {
        int64::encoded_len_packed(tag, values)
    } else {
        int64::encoded_len_repeated(tag, values)
    }
}

fn opt_string(tag: u32, v: &Option<String>, buf: &mut impl BufMut) {
    if let Some(v) = v {
        string::encode(tag, v, buf);
    }
}

fn opt_string_len(tag: u32, v: &Option<String>) -> usize {
    v.as_ref().map_or(0, |v| string::encoded_len(tag, v))
}

fn opt_message<M: Message>(tag: u32, v: &Option<M>, buf: &mut impl BufMut) {
    if let Some(v) = v {
        message::encode(tag, v, buf);
    }
}

fn opt_message_len<M: Message>(tag: u32, v: &Option<M>) -> usize {
    v.as_ref().map_or(0, |v| message::encoded_len(tag, v))
}

impl Message for TensorProto {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        ints_encode(1, &self.dims, self.dims_packed, buf);
        if let Some(v) = &self.data_type {
            int32::encode(2, v, buf);
        }
        opt_message(3, &self.segment, buf);
        float::encode_packed(4, &self.float_data, buf);
        int32::encode_packed(5, &self.int32_data, buf);
        bytes::encode_repeated(6, &self.string_data, buf);
        int64::encode_packed(7, &self.int64_data, buf);
        opt_string(8, &self.name, buf);
        if let Some(v) = &self.raw_data {
            bytes::encode(9, v, buf);
        }
        double::encode_packed(10, &self.double_data, buf);
        uint64::encode_packed(11, &self.uint64_data, buf);
        opt_string(12, &self.doc_string, buf);
        message::encode_repeated(13, &self.external_data, buf);
        if let Some(v) = &self.data_location {
            int32::encode(14, v, buf);
        }
        message::encode_repeated(16, &self.metadata_props, buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => {
                self.dims_packed = wire_type == WireType::LengthDelimited;
                int64::merge_repeated(wire_type, &mut self.dims, buf, ctx)
            }
            2 => int32::merge(wire_type, self.data_type.get_or_insert(0), buf, ctx),
            3 => message::merge(wire_type, self.segment.get_or_insert_default(), buf, ctx),
            4 => float::merge_repeated(wire_type, &mut self.float_data, buf, ctx),
            5 => int32::merge_repeated(wire_type, &mut self.int32_data, buf, ctx),
            6 => bytes::merge_repeated(wire_type, &mut self.string_data, buf, ctx),
            7 => int64::merge_repeated(wire_type, &mut self.int64_data, buf, ctx),
            8 => string::merge(wire_type, self.name.get_or_insert_default(), buf, ctx),
            9 => bytes::merge(wire_type, self.raw_data.get_or_insert_default(), buf, ctx),
            10 => double::merge_repeated(wire_type, &mut self.double_data, buf, ctx),
            11 => uint64::merge_repeated(wire_type, &mut self.uint64_data, buf, ctx),
            12 => string::merge(wire_type, self.doc_string.get_or_insert_default(), buf, ctx),
            13 => message::merge_repeated(wire_type, &mut self.external_data, buf, ctx),
            14 => int32::merge(wire_type, self.data_location.get_or_insert(0), buf, ctx),
            16 => message::merge_repeated(wire_type, &mut self.metadata_props, buf, ctx),
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        [
            ints_len(1, &self.dims, self.dims_packed),
            self.data_type.map_or(0, |v| int32::encoded_len(2, &v)),
            opt_message_len(3, &self.segment),
            float::encoded_len_packed(4, &self.float_data),
            int32::encoded_len_packed(5, &self.int32_data),
            bytes::encoded_len_repeated(6, &self.string_data),
            int64::encoded_len_packed(7, &self.int64_data),
            opt_string_len(8, &self.name),
            self.raw_data.as_ref().map_or(0, |v| bytes::encoded_len(9, v)),
            double::encoded_len_packed(10, &self.double_data),
            uint64::encoded_len_packed(11, &self.uint64_data),
            opt_string_len(12, &self.doc_string),
            message::encoded_len_repeated(13, &self.external_data),
            self.data_location.map_or(0, |v| int32::encoded_len(14, &v)),
            message::encoded_len_repeated(16, &self.metadata_props),
        ]
        .iter()
        .fold(0usize, |a, b| a.saturating_add(*b))
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

/// `AttributeProto`. `Message` is implemented by hand for the packing of `floats`/`ints`.
#[derive(Clone, PartialEq, Default, Debug)]
pub struct AttributeProto {
    /// Attribute name (1).
    pub name: Option<String>,
    /// `FLOAT` value (2).
    pub f: Option<f32>,
    /// `INT` value (3).
    pub i: Option<i64>,
    /// `STRING` value, UTF-8 bytes (4).
    pub s: Option<Vec<u8>>,
    /// `TENSOR` value (5).
    pub t: Option<TensorProto>,
    /// `GRAPH` value (6).
    pub g: Option<GraphProto>,
    /// `FLOATS` value (7).
    pub floats: Vec<f32>,
    /// `floats` is written packed instead of one tag per element.
    pub floats_packed: bool,
    /// `INTS` value (8).
    pub ints: Vec<i64>,
    /// `ints` is written packed (llmos' GGUF import) instead of one tag per element (schema).
    pub ints_packed: bool,
    /// `STRINGS` value (9).
    pub strings: Vec<Vec<u8>>,
    /// `TENSORS` value (10).
    pub tensors: Vec<TensorProto>,
    /// `GRAPHS` value (11).
    pub graphs: Vec<GraphProto>,
    /// Free text (13).
    pub doc_string: Option<String>,
    /// `TYPE_PROTO` value (14).
    pub tp: Option<TypeProto>,
    /// `TYPE_PROTOS` value (15).
    pub type_protos: Vec<TypeProto>,
    /// Which of the values is set ([`attribute_type`]) (20).
    pub r#type: Option<i32>,
    /// In a function body: the caller's attribute this one refers to (21).
    pub ref_attr_name: Option<String>,
    /// `SPARSE_TENSOR` value (22).
    pub sparse_tensor: Option<SparseTensorProto>,
    /// `SPARSE_TENSORS` value (23).
    pub sparse_tensors: Vec<SparseTensorProto>,
}

impl Message for AttributeProto {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        opt_string(1, &self.name, buf);
        if let Some(v) = &self.f {
            float::encode(2, v, buf);
        }
        if let Some(v) = &self.i {
            int64::encode(3, v, buf);
        }
        if let Some(v) = &self.s {
            bytes::encode(4, v, buf);
        }
        opt_message(5, &self.t, buf);
        opt_message(6, &self.g, buf);
        if self.floats_packed {
            float::encode_packed(7, &self.floats, buf);
        } else {
            float::encode_repeated(7, &self.floats, buf);
        }
        ints_encode(8, &self.ints, self.ints_packed, buf);
        bytes::encode_repeated(9, &self.strings, buf);
        message::encode_repeated(10, &self.tensors, buf);
        message::encode_repeated(11, &self.graphs, buf);
        opt_string(13, &self.doc_string, buf);
        opt_message(14, &self.tp, buf);
        message::encode_repeated(15, &self.type_protos, buf);
        if let Some(v) = &self.r#type {
            int32::encode(20, v, buf);
        }
        opt_string(21, &self.ref_attr_name, buf);
        opt_message(22, &self.sparse_tensor, buf);
        message::encode_repeated(23, &self.sparse_tensors, buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        let packed = wire_type == WireType::LengthDelimited;
        match tag {
            1 => string::merge(wire_type, self.name.get_or_insert_default(), buf, ctx),
            2 => float::merge(wire_type, self.f.get_or_insert(0.0), buf, ctx),
            3 => int64::merge(wire_type, self.i.get_or_insert(0), buf, ctx),
            4 => bytes::merge(wire_type, self.s.get_or_insert_default(), buf, ctx),
            5 => message::merge(wire_type, self.t.get_or_insert_default(), buf, ctx),
            6 => message::merge(wire_type, self.g.get_or_insert_default(), buf, ctx),
            7 => {
                self.floats_packed = packed;
                float::merge_repeated(wire_type, &mut self.floats, buf, ctx)
            }
            8 => {
                self.ints_packed = packed;
                int64::merge_repeated(wire_type, &mut self.ints, buf, ctx)
            }
            9 => bytes::merge_repeated(wire_type, &mut self.strings, buf, ctx),
            10 => message::merge_repeated(wire_type, &mut self.tensors, buf, ctx),
            11 => message::merge_repeated(wire_type, &mut self.graphs, buf, ctx),
            13 => string::merge(wire_type, self.doc_string.get_or_insert_default(), buf, ctx),
            14 => message::merge(wire_type, self.tp.get_or_insert_default(), buf, ctx),
            15 => message::merge_repeated(wire_type, &mut self.type_protos, buf, ctx),
            20 => int32::merge(wire_type, self.r#type.get_or_insert(0), buf, ctx),
            21 => string::merge(wire_type, self.ref_attr_name.get_or_insert_default(), buf, ctx),
            22 => message::merge(wire_type, self.sparse_tensor.get_or_insert_default(), buf, ctx),
            23 => message::merge_repeated(wire_type, &mut self.sparse_tensors, buf, ctx),
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        let floats = if self.floats_packed {
            float::encoded_len_packed(7, &self.floats)
        } else {
            float::encoded_len_repeated(7, &self.floats)
        };
        [
            opt_string_len(1, &self.name),
            self.f.map_or(0, |v| float::encoded_len(2, &v)),
            self.i.map_or(0, |v| int64::encoded_len(3, &v)),
            self.s.as_ref().map_or(0, |v| bytes::encoded_len(4, v)),
            opt_message_len(5, &self.t),
            opt_message_len(6, &self.g),
            floats,
            ints_len(8, &self.ints, self.ints_packed),
            bytes::encoded_len_repeated(9, &self.strings),
            message::encoded_len_repeated(10, &self.tensors),
            message::encoded_len_repeated(11, &self.graphs),
            opt_string_len(13, &self.doc_string),
            opt_message_len(14, &self.tp),
            message::encoded_len_repeated(15, &self.type_protos),
            self.r#type.map_or(0, |v| int32::encoded_len(20, &v)),
            opt_string_len(21, &self.ref_attr_name),
            opt_message_len(22, &self.sparse_tensor),
            message::encoded_len_repeated(23, &self.sparse_tensors),
        ]
        .iter()
        .fold(0usize, |a, b| a.saturating_add(*b))
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

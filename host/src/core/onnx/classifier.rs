//! Export of a trained classifier: the encoder's graph with pooling, L2 normalisation, the head
//! and a softmax appended, as one ONNX model that the store loads as `task = "classify"`.
//!
//! The appended nodes compute what [`crate::core::text::pool`] and [`Head::probabilities`]
//! compute in process: mean over the tokens whose mask is not 0, divided by `max(count, 1e-9)`
//! (or the first token for CLS), then `v / max(‖v‖, 1e-12)`, then `x · W + b` per layer with ReLU
//! between. Every added name starts with [`PREFIX`]; the outputs are `logits` then
//! `probabilities`, both `[batch, classes]`. The same inputs give the same bytes.

use super::proto::{
    AttributeProto, Dimension, GraphProto, ModelProto, NodeProto, TensorProto, TensorShapeProto,
    TensorTypeProto, TypeProto, ValueInfoProto, attribute_type, data_type,
};
use super::read::{self, OnnxError};
use super::{encode, entry, f32_bytes};
use crate::core::manifest::Pooling;
use crate::core::train::head::Head;

/// Prefix of every node, value and initializer the export adds.
pub const PREFIX: &str = "llmos_head/";
/// Metadata key of the labels (a JSON list, in output order).
pub const META_LABELS: &str = "llmos.labels";
/// Metadata key of the head's layer widths (a JSON list: input, hidden…, classes).
pub const META_HEAD: &str = "llmos.head";
/// ONNX `BOOL` element type.
const BOOL: i32 = 9;

/// The classifier model: `encoder` (an ONNX model with an `attention_mask` input whose first
/// output is `[batch, sequence, hidden]`) followed by pooling, optional L2 normalisation, `head`
/// and a softmax. `labels` name the head's outputs in order.
pub fn classifier_model(
    encoder: &[u8],
    head: &Head,
    labels: &[String],
    pooling: Pooling,
    normalize: bool,
) -> Result<Vec<u8>, OnnxError> {
    check_head(head, labels)?;
    let mut model = read::decode(encoder)?;
    let opset = read::onnx_opset(&model);
    let graph = model.graph.as_mut().ok_or(OnnxError::NoGraph)?;
    read::input(graph, "attention_mask")?;
    for taken in ["logits", "probabilities"] {
        if let Some(n) = read::names(graph).find(|n| *n == taken || n.starts_with(PREFIX)) {
            return Err(OnnxError::NameTaken(n.to_string()));
        }
    }
    let hidden = token_output(graph, head)?;
    let batch = batch_dim(graph);
    let mut g = Appender { graph, opset, counter: 0 };
    let pooled = match pooling {
        Pooling::Mean => g.mean(&hidden.name),
        Pooling::Cls => g.cls(&hidden.name),
    };
    let pooled = if normalize { g.l2(&pooled) } else { pooled };
    g.head(&pooled, head)?;
    g.graph.output = ["logits", "probabilities"]
        .iter()
        .map(|n| output(n, batch.clone(), head.classes()))
        .collect::<Result<_, _>>()?;
    g.graph.value_info.push(hidden.info);
    set_metadata(&mut model, head, labels)?;
    Ok(encode(&model))
}

fn check_head(head: &Head, labels: &[String]) -> Result<(), OnnxError> {
    if head.layers.is_empty() {
        return Err(OnnxError::Head("the head has no layer (expected 1 or more dense layers)".into()));
    }
    let mut width = head.inputs();
    for (i, l) in head.layers.iter().enumerate() {
        let cells = l.inputs.checked_mul(l.outputs);
        if l.inputs != width || cells != Some(l.weight.len()) || l.bias.len() != l.outputs {
            return Err(OnnxError::Head(format!(
                "head layer {i} is inconsistent: {} inputs (expected {width}), {} outputs, {} weights \
                 (expected inputs × outputs), {} biases (expected outputs)",
                l.inputs,
                l.outputs,
                l.weight.len(),
                l.bias.len()
            )));
        }
        width = l.outputs;
    }
    if labels.len() != head.classes() || labels.is_empty() {
        return Err(OnnxError::Labels(format!(
            "{} labels for a head with {} outputs: give one label per class, in output order",
            labels.len(),
            head.classes()
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(l) = labels.iter().find(|l| l.trim().is_empty() || !seen.insert(l.as_str())) {
        return Err(OnnxError::Labels(format!(
            "label {l:?} is empty or given twice: labels must be distinct, non-empty names"
        )));
    }
    Ok(())
}

/// The encoder's first output, removed from the outputs (it becomes an intermediate value).
struct Hidden {
    name: String,
    info: ValueInfoProto,
}

fn token_output(graph: &mut GraphProto, head: &Head) -> Result<Hidden, OnnxError> {
    let info = graph
        .output
        .first()
        .cloned()
        .ok_or_else(|| OnnxError::BadOutput("is missing: the graph has no output".into()))?;
    let name = read::name_of(&info).to_string();
    if let Some((elem, dims)) = read::tensor_shape(&info) {
        if elem != data_type::FLOAT || dims.len() != 3 {
            return Err(OnnxError::BadOutput(format!(
                "`{name}` has element type {elem} and {} dimensions",
                dims.len()
            )));
        }
        let width = dims.get(2).and_then(|d| d.dim_value);
        if let Some(w) = width.filter(|w| usize::try_from(*w).ok() != Some(head.inputs())) {
            return Err(OnnxError::Head(format!(
                "the head takes {} inputs but the encoder's hidden size (last dimension of `{name}`) is {w}",
                head.inputs()
            )));
        }
    }
    Ok(Hidden { name, info })
}

/// The batch dimension of the encoder's first output (or a named `batch`).
fn batch_dim(graph: &GraphProto) -> Dimension {
    graph
        .output
        .first()
        .and_then(read::tensor_shape)
        .and_then(|(_, dims)| dims.first().cloned())
        .unwrap_or_else(|| Dimension {
            dim_param: Some("batch".into()),
            ..Default::default()
        })
}

fn output(name: &str, batch: Dimension, classes: usize) -> Result<ValueInfoProto, OnnxError> {
    let classes = Dimension {
        dim_value: Some(to_i64(classes)?),
        ..Default::default()
    };
    Ok(ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: Some(data_type::FLOAT),
                shape: Some(TensorShapeProto {
                    dim: vec![batch, classes],
                }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn set_metadata(model: &mut ModelProto, head: &Head, labels: &[String]) -> Result<(), OnnxError> {
    let widths: Vec<usize> = std::iter::once(head.inputs())
        .chain(head.layers.iter().map(|l| l.outputs))
        .collect();
    let json = |v: serde_json::Result<String>| v.map_err(|e| OnnxError::Labels(e.to_string()));
    let labels = json(serde_json::to_string(labels))?;
    let widths = json(serde_json::to_string(&widths))?;
    let ours = [META_LABELS, META_HEAD];
    model
        .metadata_props
        .retain(|e| !ours.contains(&e.key.as_deref().unwrap_or_default()));
    model.metadata_props.push(entry(META_LABELS, &labels));
    model.metadata_props.push(entry(META_HEAD, &widths));
    Ok(())
}

fn to_i64(n: usize) -> Result<i64, OnnxError> {
    i64::try_from(n).map_err(|_| OnnxError::Head(format!("{n} does not fit an ONNX dimension")))
}

fn attr_i(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        i: Some(i),
        r#type: Some(attribute_type::INT),
        ..Default::default()
    }
}

fn attr_is(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        ints: ints.to_vec(),
        r#type: Some(attribute_type::INTS),
        ..Default::default()
    }
}

/// Appends nodes and initializers to the encoder's graph under [`PREFIX`].
struct Appender<'g> {
    graph: &'g mut GraphProto,
    opset: i64,
    counter: u64,
}

impl Appender<'_> {
    fn fresh(&mut self, stem: &str) -> String {
        self.counter = self.counter.wrapping_add(1);
        format!("{PREFIX}{stem}_{}", self.counter)
    }

    fn init(&mut self, stem: &str, elem: i32, dims: &[i64], raw: Vec<u8>) -> String {
        let name = self.fresh(stem);
        self.graph.initializer.push(TensorProto {
            dims: dims.to_vec(),
            data_type: Some(elem),
            name: Some(name.clone()),
            raw_data: Some(raw),
            ..Default::default()
        });
        name
    }

    fn ints(&mut self, values: &[i64]) -> String {
        let raw = values.iter().flat_map(|x| x.to_le_bytes()).collect();
        let n = i64::try_from(values.len()).unwrap_or(i64::MAX);
        self.init("axes", data_type::INT64, &[n], raw)
    }

    fn scalar(&mut self, v: f32) -> String {
        self.init("eps", data_type::FLOAT, &[], v.to_le_bytes().to_vec())
    }

    fn node(&mut self, op: &str, inputs: &[&str], out: &str, attrs: Vec<AttributeProto>) {
        let name = self.fresh(op);
        self.graph.node.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.to_string()],
            name: Some(name),
            op_type: Some(op.into()),
            attribute: attrs,
            ..Default::default()
        });
    }

    fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        let out = self.fresh(&op.to_lowercase());
        self.node(op, inputs, &out, attrs);
        out
    }

    /// `Unsqueeze`/`ReduceSum` take their axes as an input from opset 13, before as an attribute.
    fn with_axes(&mut self, op: &str, x: &str, axes: &[i64], mut attrs: Vec<AttributeProto>) -> String {
        if self.opset >= 13 {
            let a = self.ints(axes);
            self.op(op, &[x, &a], attrs)
        } else {
            attrs.push(attr_is("axes", axes));
            self.op(op, &[x], attrs)
        }
    }

    fn reduce_sum(&mut self, x: &str, axis: i64, keepdims: i64) -> String {
        self.with_axes("ReduceSum", x, &[axis], vec![attr_i("keepdims", keepdims)])
    }

    /// Σ over tokens whose mask is not 0, divided by `max(count, 1e-9)`: `[batch, hidden]`.
    fn mean(&mut self, hidden: &str) -> String {
        let on = self.op("Cast", &["attention_mask"], vec![attr_i("to", i64::from(BOOL))]);
        let m = self.op("Cast", &[&on], vec![attr_i("to", i64::from(data_type::FLOAT))]);
        let m = self.with_axes("Unsqueeze", &m, &[-1], vec![]);
        let masked = self.op("Mul", &[hidden, &m], vec![]);
        let sum = self.reduce_sum(&masked, 1, 0);
        let count = self.reduce_sum(&m, 1, 0);
        let eps = self.scalar(1e-9);
        let count = self.op("Max", &[&count, &eps], vec![]);
        self.op("Div", &[&sum, &count], vec![])
    }

    /// The first token: `[batch, hidden]`.
    fn cls(&mut self, hidden: &str) -> String {
        let zero = self.init("index", data_type::INT64, &[], 0i64.to_le_bytes().to_vec());
        self.op("Gather", &[hidden, &zero], vec![attr_i("axis", 1)])
    }

    /// `v / max(‖v‖₂, 1e-12)` per row.
    fn l2(&mut self, v: &str) -> String {
        let sq = self.op("Mul", &[v, v], vec![]);
        let ss = self.reduce_sum(&sq, -1, 1);
        let norm = self.op("Sqrt", &[&ss], vec![]);
        let eps = self.scalar(1e-12);
        let norm = self.op("Max", &[&norm, &eps], vec![]);
        self.op("Div", &[v, &norm], vec![])
    }

    /// The dense layers (ReLU between), the last writing `logits`; then `probabilities`.
    fn head(&mut self, x: &str, head: &Head) -> Result<(), OnnxError> {
        let mut x = x.to_string();
        let last = head.layers.len().saturating_sub(1);
        for (i, l) in head.layers.iter().enumerate() {
            let dims = [to_i64(l.inputs)?, to_i64(l.outputs)?];
            let w = self.init("weight", data_type::FLOAT, &dims, f32_bytes(&l.weight));
            let b = self.init("bias", data_type::FLOAT, &[to_i64(l.outputs)?], f32_bytes(&l.bias));
            let y = self.op("MatMul", &[&x, &w], vec![]);
            if i == last {
                self.node("Add", &[&y, &b], "logits", vec![]);
            } else {
                let y = self.op("Add", &[&y, &b], vec![]);
                x = self.op("Relu", &[&y], vec![]);
            }
        }
        self.node("Softmax", &["logits"], "probabilities", vec![attr_i("axis", -1)]);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)] // why: test-only weights from small counts
mod tests {
    use super::*;
    use crate::core::onnx::proto::ModelProto;
    use crate::core::onnx::{Dim, GraphBuilder};
    use crate::core::train::head::Dense;

    /// A 4-wide "encoder": token embeddings looked up from a table.
    fn encoder(with_mask: bool, hidden_dims: &[Dim]) -> Vec<u8> {
        let mut g = GraphBuilder::new();
        let bs = [Dim::Named("batch".into()), Dim::Named("sequence".into())];
        g.input("input_ids", data_type::INT64, &bs);
        if with_mask {
            g.input("attention_mask", data_type::INT64, &bs);
        }
        let table: Vec<f32> = (0..40u8).map(|i| f32::from(i) / 10.0 - 2.0).collect();
        g.initializer("emb", data_type::FLOAT, &[10, 4], f32_bytes(&table));
        g.op_to("", "Gather", &["emb", "input_ids"], &["last_hidden_state"], vec![]);
        g.output("last_hidden_state", data_type::FLOAT, hidden_dims);
        encode(&g.finish("enc", "", &[]))
    }

    fn hidden_dims(width: i64) -> Vec<Dim> {
        vec![Dim::Named("batch".into()), Dim::Named("sequence".into()), Dim::Fixed(width)]
    }

    fn dense(inputs: usize, outputs: usize, seed: f32) -> Dense {
        let cells = inputs * outputs;
        Dense {
            inputs,
            outputs,
            weight: (0..cells).map(|i| ((i as f32 + seed) * 0.37).sin()).collect(),
            bias: (0..outputs).map(|o| o as f32 * 0.1 - seed).collect(),
        }
    }

    fn labels(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("class-{i}")).collect()
    }

    fn export(enc: &[u8], head: &Head) -> Result<Vec<u8>, OnnxError> {
        classifier_model(enc, head, &labels(head.classes()), Pooling::Mean, true)
    }

    #[test]
    fn export_is_deterministic_and_appends_under_the_prefix() {
        let enc = encoder(true, &hidden_dims(4));
        let head = Head { layers: vec![dense(4, 5, 0.5), dense(5, 3, 1.5)] };
        let a = export(&enc, &head).unwrap();
        assert_eq!(a, export(&enc, &head).unwrap(), "same inputs, same bytes");
        let original = read::decode(&enc).unwrap();
        let m: ModelProto = read::decode(&a).unwrap();
        assert_eq!((m.ir_version, &m.opset_import), (original.ir_version, &original.opset_import));
        let g = m.graph.unwrap();
        let og = original.graph.unwrap();
        // The encoder is kept as it was; everything added carries the prefix.
        assert_eq!(&g.node[..og.node.len()], og.node.as_slice());
        assert_eq!(&g.initializer[..og.initializer.len()], og.initializer.as_slice());
        for n in &g.node[og.node.len()..] {
            assert!(n.name.as_deref().unwrap().starts_with(PREFIX), "{n:?}");
            for o in &n.output {
                assert!(o.starts_with(PREFIX) || o == "logits" || o == "probabilities", "{o}");
            }
        }
        assert!(g.initializer[og.initializer.len()..]
            .iter()
            .all(|t| t.name.as_deref().unwrap().starts_with(PREFIX)));
        let outs: Vec<_> = g.output.iter().map(read::name_of).collect();
        assert_eq!(outs, ["logits", "probabilities"]);
        for o in &g.output {
            let (elem, dims) = read::tensor_shape(o).unwrap();
            assert_eq!(elem, data_type::FLOAT);
            assert_eq!(dims[0].dim_param.as_deref(), Some("batch"));
            assert_eq!(dims[1].dim_value, Some(3));
        }
        assert_eq!(read::name_of(&g.value_info[0]), "last_hidden_state");
        let ops: Vec<_> = g.node[og.node.len()..].iter().map(|n| n.op_type.clone().unwrap()).collect();
        let want = [
            "Cast", "Cast", "Unsqueeze", "Mul", "ReduceSum", "ReduceSum", "Max", "Div", // mean
            "Mul", "ReduceSum", "Sqrt", "Max", "Div", // L2
            "MatMul", "Add", "Relu", "MatMul", "Add", "Softmax",
        ];
        assert_eq!(ops, want);
        let meta: Vec<_> = m
            .metadata_props
            .iter()
            .map(|e| (e.key.clone().unwrap(), e.value.clone().unwrap()))
            .collect();
        assert_eq!(
            meta,
            [
                (META_LABELS.to_string(), r#"["class-0","class-1","class-2"]"#.to_string()),
                (META_HEAD.to_string(), "[4,5,3]".to_string())
            ]
        );
    }

    #[test]
    fn cls_without_normalising_gathers_the_first_token() {
        let enc = encoder(true, &hidden_dims(4));
        let head = Head { layers: vec![dense(4, 2, 0.0)] };
        let bytes = classifier_model(&enc, &head, &labels(2), Pooling::Cls, false).unwrap();
        let g = read::decode(&bytes).unwrap().graph.unwrap();
        let ops: Vec<_> = g.node.iter().skip(1).map(|n| n.op_type.clone().unwrap()).collect();
        assert_eq!(ops, ["Gather", "MatMul", "Add", "Softmax"]);
    }

    #[test]
    fn before_opset_13_axes_are_attributes() {
        let mut m = read::decode(&encoder(true, &hidden_dims(4))).unwrap();
        m.opset_import.retain(|o| o.domain.is_none());
        m.opset_import[0].version = Some(11);
        let head = Head { layers: vec![dense(4, 2, 0.0)] };
        let bytes = classifier_model(&encode(&m), &head, &labels(2), Pooling::Mean, true).unwrap();
        let g = read::decode(&bytes).unwrap().graph.unwrap();
        for n in g.node.iter().filter(|n| {
            matches!(n.op_type.as_deref(), Some("ReduceSum" | "Unsqueeze"))
        }) {
            assert_eq!(n.input.len(), 1, "{n:?}");
            assert_eq!(n.attribute.iter().filter(|a| a.name.as_deref() == Some("axes")).count(), 1);
        }
    }

    #[test]
    fn bad_encoders_and_heads_are_named() {
        let head = Head { layers: vec![dense(4, 3, 0.0)] };
        let err = |r: Result<Vec<u8>, OnnxError>| r.unwrap_err().to_string();
        let e = err(export(&encoder(false, &hidden_dims(4)), &head));
        assert!(e.contains("no `attention_mask` input") && e.contains("input_ids"), "{e}");
        let enc = encoder(true, &hidden_dims(4));
        let wide = Head { layers: vec![dense(5, 3, 0.0)] };
        let e = err(export(&enc, &wide));
        assert!(e.contains("takes 5 inputs") && e.contains("hidden size") && e.contains("is 4"), "{e}");
        let flat = encoder(true, &[Dim::Named("batch".into()), Dim::Fixed(4)]);
        let e = err(export(&flat, &head));
        assert!(e.contains("`last_hidden_state`") && e.contains("2 dimensions"), "{e}");
        let e = err(classifier_model(&enc, &head, &labels(2), Pooling::Mean, true));
        assert!(e.contains("2 labels for a head with 3 outputs"), "{e}");
        let twice = ["a", "b", "a"].map(String::from);
        let e = err(classifier_model(&enc, &head, &twice, Pooling::Mean, true));
        assert!(e.contains("label \"a\" is empty or given twice"), "{e}");
        let mut broken = head.clone();
        broken.layers[0].weight.pop();
        let e = err(export(&enc, &broken));
        assert!(e.contains("head layer 0 is inconsistent") && e.contains("11 weights"), "{e}");
        let chained = Head { layers: vec![dense(4, 5, 0.0), dense(6, 3, 0.0)] };
        let e = err(export(&enc, &chained));
        assert!(e.contains("head layer 1") && e.contains("6 inputs (expected 5)"), "{e}");
        let e = err(export(&enc, &Head { layers: vec![] }));
        assert!(e.contains("no layer"), "{e}");
        let twice = export(&export(&enc, &head).unwrap(), &Head { layers: vec![dense(3, 3, 0.0)] });
        assert!(err(twice).contains("already has a value or initializer named"));
        let e = err(export(b"\xff\xff\xff", &head));
        assert!(e.starts_with("not an ONNX model"), "{e}");
    }

    /// Without a fixed hidden size in the graph the width is checked by ONNX Runtime at the
    /// first run; the export itself succeeds.
    #[test]
    fn an_unknown_hidden_size_is_left_to_the_runtime() {
        let dims = [Dim::Named("batch".into()), Dim::Named("sequence".into()), Dim::Named("hidden".into())];
        let head = Head { layers: vec![dense(7, 2, 0.0)] };
        assert!(export(&encoder(true, &dims), &head).is_ok());
    }
}

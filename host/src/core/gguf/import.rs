//! Importing a llama-architecture GGUF as an ONNX causal LM (docs/generation.md §1).
//!
//! The graph: token embedding (Gather of the 8-bit table, or of floats), per block RMSNorm,
//! Q/K/V projections, RoPE (rotate-half, explicit `position_ids`), the KV cache as
//! `past_key_values.*` in and `present.*` out, grouped-query attention with a causal and
//! `attention_mask` bias, output projection, SwiGLU feed-forward, final norm and the (tied or
//! separate) lm head. Linear layers keep the file's quantisation where ONNX Runtime's
//! `MatMulNBits` holds it exactly (Q4_0, Q4_1, Q8_0); F16/F32 stay floats; other types are
//! dequantised and re-quantised to 4 bits (block 32).
//!
//! llama.cpp's converter permutes the rows of Q and K inside each head (pairs interleaved for
//! its RoPE); [`unpermute_rows`] puts them back in the rotate-half order.

use std::collections::BTreeMap;
use std::path::Path;

use super::quant::{self, GgmlType, NBits, QK};
use super::{GgufError, GgufFile, GgufVocab, TensorInfo, Value};
use crate::core::generate::LOGITS_TO_KEEP;
use crate::core::onnx::{
    Dim, GraphBuilder, MS_DOMAIN, attr_int, attr_ints, encode, f32_bytes, proto::data_type,
};

/// How to store the weights.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Precision {
    /// Keep the file's quantisation where exact (the default).
    #[default]
    Quantized,
    /// Dequantise every weight to `f32` (for measuring the 4-bit error; 4× larger).
    Float32,
    /// The weights as [`Precision::Quantized`], but every `MatMulNBits` computes with int8
    /// activations (`accuracy_level = 4`), and a tied 8-bit embedding is the lm head as an
    /// 8-bit `MatMulNBits` (instead of a table folded to f32 at load): faster, approximate
    /// (`llmos models import --int8-activations`; docs/generation.md §10).
    Int8Activations,
}

impl Precision {
    /// `MatMulNBits`'s `accuracy_level`: 4 (int8 activations) or 0 (not written: ONNX
    /// Runtime's default, fp32 activations).
    fn accuracy_level(self) -> i64 {
        if self == Self::Int8Activations { 4 } else { 0 }
    }
}

/// The hyper-parameters of a llama model, from the GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaParams {
    /// `llama.block_count`.
    pub layers: usize,
    /// `llama.embedding_length`.
    pub hidden: usize,
    /// `llama.attention.head_count`.
    pub heads: usize,
    /// `llama.attention.head_count_kv` (grouped-query attention).
    pub kv_heads: usize,
    /// `hidden / heads`.
    pub head_dim: usize,
    /// `llama.feed_forward_length`.
    pub ffn: usize,
    /// `llama.attention.layer_norm_rms_epsilon`.
    pub eps: f32,
    /// `llama.rope.freq_base`.
    pub rope_base: f32,
    /// `llama.context_length`.
    pub context_length: usize,
    /// Rows of `token_embd.weight`.
    pub vocab: usize,
    /// No `output.weight`: the lm head is the embedding.
    pub tied: bool,
}

/// What an import produced.
#[derive(Debug, Clone)]
pub struct Imported {
    /// `model.onnx`.
    pub model: Vec<u8>,
    /// `generation.json`.
    pub generation: String,
    /// The tokenizer metadata (for `tokenizer.json`).
    pub vocab: GgufVocab,
    /// The hyper-parameters.
    pub params: LlamaParams,
}

fn unsupported(f: &GgufFile, message: String) -> GgufError {
    GgufError::Unsupported {
        path: f.path.clone(),
        message,
    }
}

impl LlamaParams {
    /// Reads and checks the hyper-parameters.
    pub fn of(f: &GgufFile) -> Result<Self, GgufError> {
        let arch = f.get("general.architecture").and_then(Value::as_str);
        if arch != Some("llama") {
            return Err(unsupported(
                f,
                format!(
                    "general.architecture is {arch:?}; only \"llama\" (Llama, SmolLM, Mistral-style) is imported"
                ),
            ));
        }
        let int = |key: &str| -> Result<usize, GgufError> {
            f.get(&format!("llama.{key}"))
                .and_then(Value::as_u64)
                .and_then(|v| usize::try_from(v).ok())
                .filter(|v| *v > 0)
                .ok_or_else(|| unsupported(f, format!("llama.{key} is missing or not a positive integer")))
        };
        let float = |key: &str, default: f64| -> f32 {
            // why: hyper-parameters are small floats; f32 is what the graph computes in.
            #[allow(clippy::cast_possible_truncation)]
            let v = f.get(&format!("llama.{key}")).and_then(Value::as_f64).unwrap_or(default) as f32;
            v
        };
        let (hidden, heads) = (int("embedding_length")?, int("attention.head_count")?);
        let kv_heads = match f.get("llama.attention.head_count_kv") {
            None => heads,
            Some(_) => int("attention.head_count_kv")?,
        };
        let head_dim = hidden.checked_div(heads).unwrap_or(0);
        if head_dim.checked_mul(heads) != Some(hidden)
            || heads.checked_rem(kv_heads) != Some(0)
            || head_dim % 2 != 0
        {
            return Err(unsupported(f, format!(
                "embedding_length {hidden}, head_count {heads}, head_count_kv {kv_heads}: the heads must divide the width evenly, kv heads must divide the heads, and the head size must be even"
            )));
        }
        if let Some(rot) = f.get("llama.rope.dimension_count").and_then(Value::as_u64)
            && rot != head_dim as u64
        {
            return Err(unsupported(f, format!(
                    "llama.rope.dimension_count is {rot} but the head size is {head_dim}; partial rotary embeddings are not imported"
                )));
        }
        let embd = f
            .tensor("token_embd.weight")
            .ok_or_else(|| unsupported(f, "it has no token_embd.weight".into()))?;
        let vocab = match embd.dims.as_slice() {
            [h, v] if *h == hidden as u64 => usize::try_from(*v).unwrap_or(0),
            d => return Err(unsupported(f, format!("token_embd.weight has dimensions {d:?}, expected [{hidden}, vocab]"))),
        };
        Ok(Self {
            layers: int("block_count")?,
            hidden,
            heads,
            kv_heads,
            head_dim,
            ffn: int("feed_forward_length")?,
            eps: float("attention.layer_norm_rms_epsilon", 1e-5),
            rope_base: float("rope.freq_base", 10000.0),
            context_length: int("context_length")?,
            vocab,
            tied: f.tensor("output.weight").is_none(),
        })
    }
}

/// Undoes llama.cpp's Q/K row permutation: within each head of `head_dim` rows, GGUF row
/// `2i + j` is row `j·head_dim/2 + i` of the original (rotate-half) layout.
pub fn unpermute_rows(rows: &[u8], row_bytes: usize, head_dim: usize) -> Vec<u8> {
    let half = head_dim / 2;
    let mut out = Vec::with_capacity(rows.len());
    for head in rows.chunks(row_bytes.saturating_mul(head_dim)) {
        for r in 0..head_dim {
            let h = half.max(1);
            let (j, i) = (r.checked_div(h).unwrap_or(0), r.checked_rem(h).unwrap_or(0));
            let old = i.saturating_mul(2).saturating_add(j);
            let start = old.saturating_mul(row_bytes);
            if let Some(row) = head.get(start..start.saturating_add(row_bytes)) {
                out.extend_from_slice(row);
            }
        }
    }
    out
}

/// Imports the model in `f` (weights read from its file).
pub fn import(f: &GgufFile, precision: Precision) -> Result<Imported, GgufError> {
    let params = LlamaParams::of(f)?;
    let vocab = f.vocab()?;
    let mut b = Builder {
        f,
        g: GraphBuilder::new(),
        p: params.clone(),
        precision,
        types: BTreeMap::new(),
        mapped: BTreeMap::new(),
    };
    b.graph()?;
    let generation = generation_json(f, &params, &vocab, &b.types, &b.mapped, precision);
    // Only the file's content goes into the bytes (never its path): imports are verified by sha256.
    let name = f.get("general.name").and_then(Value::as_str).unwrap_or("a GGUF file");
    let mut doc = format!("Imported by llmos from {name} (llama, {} layers)", params.layers);
    if precision == Precision::Int8Activations {
        doc.push_str("; MatMulNBits with int8 activations (accuracy_level 4)");
    }
    let model = encode(&b.g.finish("llama", &doc, &[]));
    Ok(Imported {
        model,
        generation,
        vocab,
        params,
    })
}

fn generation_json(
    f: &GgufFile,
    p: &LlamaParams,
    v: &GgufVocab,
    types: &BTreeMap<String, usize>,
    mapped: &BTreeMap<String, String>,
    precision: Precision,
) -> String {
    let source_sha256 = crate::core::fetch::sha256_file(&f.path).unwrap_or_default();
    let mut doc = serde_json::json!({
        "architecture": "llama",
        "context_length": p.context_length,
        "bos_token_id": v.bos_token_id,
        "eos_token_ids": v.eos_token_id.into_iter().collect::<Vec<_>>(),
        "add_bos_token": v.add_bos_token.unwrap_or(false),
        "chat_template": v.chat_template,
        "import": {
            "source_sha256": source_sha256,
            "quantization": types,
            "mapped": mapped,
            "tied_embeddings": p.tied,
        }
    });
    // Only written by the opt-in: the exact import's bytes (and sha256) stay as they were.
    if precision == Precision::Int8Activations
        && let Some(import) = doc.get_mut("import").and_then(serde_json::Value::as_object_mut)
    {
        import.insert(
            "activations".into(),
            "int8: every MatMulNBits has accuracy_level 4 (approximate; --int8-activations)".into(),
        );
    }
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

struct Builder<'a> {
    f: &'a GgufFile,
    g: GraphBuilder,
    p: LlamaParams,
    precision: Precision,
    /// Tensors per ggml type in the file.
    types: BTreeMap<String, usize>,
    /// How each ggml type was mapped.
    mapped: BTreeMap<String, String>,
}

/// Shared values every layer uses.
struct Ctx {
    cos: String,
    sin: String,
    bias: String,
}

fn named(s: &str) -> Dim {
    Dim::Named(s.into())
}

fn to_i64(v: usize) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Builder<'_> {
    fn tensor(&mut self, name: &str) -> Result<TensorInfo, GgufError> {
        let t = self
            .f
            .tensor(name)
            .cloned()
            .ok_or_else(|| unsupported(self.f, format!("it has no tensor {name}")))?;
        let n = self.types.entry(t.ty.name().to_string()).or_insert(0);
        *n = n.saturating_add(1);
        Ok(t)
    }

    fn note(&mut self, ty: GgmlType, how: &str) {
        self.mapped.insert(ty.name().into(), how.into());
    }

    /// `[K]`-vector weight (norms) as a float initializer.
    fn vector(&mut self, name: &str) -> Result<String, GgufError> {
        let t = self.tensor(name)?;
        let v = self.f.tensor_f32(&t)?;
        if v.len() != self.p.hidden {
            return Err(unsupported(self.f, format!("{name} has {} elements, expected {}", v.len(), self.p.hidden)));
        }
        Ok(self.g.initializer(name, data_type::FLOAT, &[to_i64(v.len())], f32_bytes(&v)))
    }

    fn graph(&mut self) -> Result<(), GgufError> {
        let p = self.p.clone();
        let (b, s) = (named("batch_size"), named("sequence_length"));
        let past = named("past_sequence_length");
        let total = named("total_sequence_length");
        self.g.input("input_ids", data_type::INT64, &[b.clone(), s.clone()]);
        self.g.input("attention_mask", data_type::INT64, &[b.clone(), total]);
        self.g.input("position_ids", data_type::INT64, &[b.clone(), s.clone()]);
        let kv = [b.clone(), Dim::Fixed(to_i64(p.kv_heads)), past, Dim::Fixed(to_i64(p.head_dim))];
        for i in 0..p.layers {
            for kind in ["key", "value"] {
                self.g.input(&format!("past_key_values.{i}.{kind}"), data_type::FLOAT, &kv);
            }
        }
        // `logits_to_keep`: an overridable input (its initializer is the default, 0 = every
        // position). A caller that needs only the last position's logits (a prefill) feeds 1
        // and the head reads one row instead of every prompt position; callers that do not
        // feed it get `[B, S, vocab]` as before.
        self.g.input(LOGITS_TO_KEEP, data_type::INT64, &[Dim::Fixed(1)]);
        let keep = self.g.initializer(LOGITS_TO_KEEP, data_type::INT64, &[1], 0i64.to_le_bytes().to_vec());
        let ctx = self.shared()?;
        let (mut h, lm_head) = self.embedding()?;
        for i in 0..p.layers {
            h = self.layer(i, &h, &ctx)?;
        }
        // The last `logits_to_keep` positions (Slice from −k; −0 = 0 keeps them all).
        let start = self.g.op("Neg", &[&keep], vec![]);
        let end = self.g.const_i64(&[i64::MAX]);
        let axis = self.g.const_i64(&[1]);
        let h = self.g.op("Slice", &[&h, &start, &end, &axis], vec![]);
        let x = self.rms_norm(&h, "output_norm.weight")?;
        let logits = match lm_head {
            Some(head) => head.apply(&mut self.g, &x),
            None => self.linear("output.weight", &x, false)?,
        };
        self.g.op_to("", "Identity", &[&logits], &["logits"], vec![]);
        let kept = named("logits_positions");
        self.g.output("logits", data_type::FLOAT, &[b.clone(), kept, Dim::Fixed(to_i64(p.vocab))]);
        let present = [b, Dim::Fixed(to_i64(p.kv_heads)), named("total_sequence_length"), Dim::Fixed(to_i64(p.head_dim))];
        for i in 0..p.layers {
            for kind in ["key", "value"] {
                self.g.output(&format!("present.{i}.{kind}"), data_type::FLOAT, &present);
            }
        }
        Ok(())
    }

    /// RoPE tables `[B,1,S,D]` and the attention bias `[B,1,G·S,T]`.
    fn shared(&mut self) -> Result<Ctx, GgufError> {
        let p = self.p.clone();
        let g = &mut self.g;
        // RoPE: angle = position · base^(−2i/D), duplicated for the two halves.
        let half = p.head_dim / 2;
        let inv: Vec<f32> = (0..half)
            .map(|i| {
                let e = f64::from(u32::try_from(i.saturating_mul(2)).unwrap_or(0))
                    / f64::from(u32::try_from(p.head_dim).unwrap_or(1));
                // why: an inverse frequency in (0, 1]; f32 is the graph's type.
                #[allow(clippy::cast_possible_truncation)]
                let v = (1.0 / f64::from(p.rope_base).powf(e)) as f32;
                v
            })
            .collect();
        let inv = g.initializer("rope.inv_freq", data_type::FLOAT, &[to_i64(half)], f32_bytes(&inv));
        let pos = g.op("Cast", &["position_ids"], vec![attr_int("to", data_type::FLOAT.into())]);
        let ax2 = g.const_i64(&[2]);
        let pos = g.op("Unsqueeze", &[&pos, &ax2], vec![]);
        let freqs = g.op("Mul", &[&pos, &inv], vec![]);
        let emb = g.op("Concat", &[&freqs, &freqs], vec![attr_int("axis", -1)]);
        let ax1 = g.const_i64(&[1]);
        let cos = g.op("Cos", &[&emb], vec![]);
        let cos = g.op("Unsqueeze", &[&cos, &ax1], vec![]);
        let sin = g.op("Sin", &[&emb], vec![]);
        let sin = g.op("Unsqueeze", &[&sin, &ax1], vec![]);
        // Mask: key t is visible to new token s (absolute P+s) iff t ≤ P+s and mask[b,t] = 1.
        let s_len = g.op("Shape", &["input_ids"], vec![attr_int("start", 1), attr_int("end", 2)]);
        let t_len = g.op("Shape", &["attention_mask"], vec![attr_int("start", 1), attr_int("end", 2)]);
        let p_len = g.op("Sub", &[&t_len, &s_len], vec![]);
        let t_sc = g.op("Squeeze", &[&t_len], vec![]);
        let p_sc = g.op("Squeeze", &[&p_len], vec![]);
        let zero = g.initializer("const_zero_i64", data_type::INT64, &[], 0i64.to_le_bytes().to_vec());
        let one = g.initializer("const_one_i64", data_type::INT64, &[], 1i64.to_le_bytes().to_vec());
        let q_idx = g.op("Range", &[&p_sc, &t_sc, &one], vec![]);
        let q_idx = g.op("Unsqueeze", &[&q_idx, &ax1], vec![]);
        let k_idx = g.op("Range", &[&zero, &t_sc, &one], vec![]);
        let causal = g.op("LessOrEqual", &[&k_idx, &q_idx], vec![]);
        let pad = g.op("Cast", &["attention_mask"], vec![attr_int("to", 9)]);
        let ax12 = g.const_i64(&[1, 2]);
        let pad = g.op("Unsqueeze", &[&pad, &ax12], vec![]);
        let allowed = g.op("And", &[&causal, &pad], vec![]);
        let z = g.const_f32(0.0);
        let neg = g.const_f32(f32::MIN);
        let bias = g.op("Where", &[&allowed, &z, &neg], vec![]);
        let groups = p.heads.checked_div(p.kv_heads).unwrap_or(1);
        let reps = g.const_i64(&[1, 1, to_i64(groups), 1]);
        let bias = g.op("Tile", &[&bias, &reps], vec![]);
        Ok(Ctx { cos, sin, bias })
    }

    fn rms_norm(&mut self, x: &str, weight: &str) -> Result<String, GgufError> {
        let w = self.vector(weight)?;
        let g = &mut self.g;
        let sq = g.op("Mul", &[x, x], vec![]);
        let ms = g.op("ReduceMean", &[&sq], vec![attr_ints("axes", &[-1]), attr_int("keepdims", 1)]);
        let eps = g.const_f32(self.p.eps);
        let ms = g.op("Add", &[&ms, &eps], vec![]);
        let r = g.op("Sqrt", &[&ms], vec![]);
        let y = g.op("Div", &[x, &r], vec![]);
        Ok(g.op("Mul", &[&y, &w], vec![]))
    }

    fn rope(&mut self, x: &str, ctx: &Ctx) -> String {
        let g = &mut self.g;
        let halves = g.op_n("Split", &[x], 2, vec![attr_int("axis", -1)]);
        let (x1, x2) = match halves.as_slice() {
            [a, b] => (a.clone(), b.clone()),
            _ => return x.to_string(),
        };
        let n2 = g.op("Neg", &[&x2], vec![]);
        let rot = g.op("Concat", &[&n2, &x1], vec![attr_int("axis", -1)]);
        let a = g.op("Mul", &[x, &ctx.cos], vec![]);
        let b = g.op("Mul", &[&rot, &ctx.sin], vec![]);
        g.op("Add", &[&a, &b], vec![])
    }

    /// `[B,S,heads·D]` → `[B,heads,S,D]`.
    fn heads(&mut self, x: &str, heads: usize) -> String {
        let shape = self.g.const_i64(&[0, 0, to_i64(heads), to_i64(self.p.head_dim)]);
        let r = self.g.op("Reshape", &[x, &shape], vec![]);
        self.g.op("Transpose", &[&r], vec![attr_ints("perm", &[0, 2, 1, 3])])
    }

    fn layer(&mut self, i: usize, h: &str, ctx: &Ctx) -> Result<String, GgufError> {
        let p = self.p.clone();
        let blk = |n: &str| format!("blk.{i}.{n}.weight");
        let x = self.rms_norm(h, &blk("attn_norm"))?;
        let q = self.linear(&blk("attn_q"), &x, true)?;
        let k = self.linear(&blk("attn_k"), &x, true)?;
        let v = self.linear(&blk("attn_v"), &x, false)?;
        let q = self.heads(&q, p.heads);
        let k = self.heads(&k, p.kv_heads);
        let v = self.heads(&v, p.kv_heads);
        let q = self.rope(&q, ctx);
        let k = self.rope(&k, ctx);
        let (pk, pv) = (format!("present.{i}.key"), format!("present.{i}.value"));
        let g = &mut self.g;
        g.op_to("", "Concat", &[&format!("past_key_values.{i}.key"), &k], &[&pk], vec![attr_int("axis", 2)]);
        g.op_to("", "Concat", &[&format!("past_key_values.{i}.value"), &v], &[&pv], vec![attr_int("axis", 2)]);
        // Grouped-query attention without copying the cache: query heads of one kv head are
        // stacked along the sequence axis ([B, kv, G·S, D]).
        let grouped = g.const_i64(&[0, to_i64(p.kv_heads), -1, to_i64(p.head_dim)]);
        let qg = g.op("Reshape", &[&q, &grouped], vec![]);
        let kt = g.op("Transpose", &[&pk], vec![attr_ints("perm", &[0, 1, 3, 2])]);
        let sc = g.op("MatMul", &[&qg, &kt], vec![]);
        let d = f32::from(u16::try_from(p.head_dim).unwrap_or(u16::MAX));
        let scale = g.const_f32(1.0 / d.sqrt());
        let sc = g.op("Mul", &[&sc, &scale], vec![]);
        let sc = g.op("Add", &[&sc, &ctx.bias], vec![]);
        let pr = g.op("Softmax", &[&sc], vec![attr_int("axis", -1)]);
        let o = g.op("MatMul", &[&pr, &pv], vec![]);
        let back = g.const_i64(&[0, to_i64(p.heads), -1, to_i64(p.head_dim)]);
        let o = g.op("Reshape", &[&o, &back], vec![]);
        let o = g.op("Transpose", &[&o], vec![attr_ints("perm", &[0, 2, 1, 3])]);
        let flat = g.const_i64(&[0, 0, to_i64(p.hidden)]);
        let o = g.op("Reshape", &[&o, &flat], vec![]);
        let o = self.linear(&blk("attn_output"), &o, false)?;
        let h = self.g.op("Add", &[h, &o], vec![]);
        let x = self.rms_norm(&h, &blk("ffn_norm"))?;
        let gate = self.linear(&blk("ffn_gate"), &x, false)?;
        let up = self.linear(&blk("ffn_up"), &x, false)?;
        let g = &mut self.g;
        let sg = g.op("Sigmoid", &[&gate], vec![]);
        let silu = g.op("Mul", &[&gate, &sg], vec![]);
        let act = g.op("Mul", &[&silu, &up], vec![]);
        let down = self.linear(&blk("ffn_down"), &act, false)?;
        Ok(self.g.op("Add", &[&h, &down], vec![]))
    }

    /// `x · Wᵀ` for a GGUF weight `[K (ne0), N (ne1)]`; `rope` undoes the Q/K permutation.
    fn linear(&mut self, name: &str, x: &str, rope: bool) -> Result<String, GgufError> {
        let t = self.tensor(name)?;
        let (k, n) = match t.dims.as_slice() {
            [k, n] => (usize::try_from(*k).unwrap_or(0), usize::try_from(*n).unwrap_or(0)),
            d => return Err(unsupported(self.f, format!("{name} has dimensions {d:?}, expected 2"))),
        };
        let mut bytes = self.f.tensor_bytes(&t)?;
        if rope {
            let row = usize::try_from(t.ty.bytes_for(k as u64).unwrap_or(0)).unwrap_or(0);
            bytes = unpermute_rows(&bytes, row, self.p.head_dim);
        }
        let dq = |b: &Builder<'_>, bytes: &[u8]| {
            quant::dequantize(t.ty, bytes).map_err(|m| unsupported(b.f, format!("{name}: {m}")))
        };
        if self.precision == Precision::Float32 || matches!(t.ty, GgmlType::F32 | GgmlType::F16) {
            self.note(t.ty, "MatMul, f32 weights");
            let w = dq(self, &bytes)?;
            return Ok(self.float_matmul(name, x, &w, n, k));
        }
        let nb = match quant::to_nbits(t.ty, &bytes, n, k) {
            Some(nb) => {
                let zp = if t.ty == GgmlType::Q4_1 {
                    ", min as a per-block offset 8d+m (blocksum(x) MatMul)"
                } else {
                    ""
                };
                self.note(t.ty, &format!("MatMulNBits {}-bit block 32, exact{zp}", nb.bits));
                nb
            }
            None => {
                self.note(t.ty, "dequantised, re-quantised to MatMulNBits 4-bit block 32 (min/max, per-block offset)");
                let w = dq(self, &bytes)?;
                quant::requantize_q4(&w, n, k).ok_or_else(|| {
                    unsupported(self.f, format!("{name}: {k} input features is not a multiple of {QK}"))
                })?
            }
        };
        let w = NbitsWeight::add(&mut self.g, name, nb);
        Ok(w.apply(&mut self.g, x, self.precision.accuracy_level()))
    }

    /// `x · Wᵀ` with `W` row-major `[N, K]` floats, stored transposed `[K, N]`.
    fn float_matmul(&mut self, name: &str, x: &str, w: &[f32], n: usize, k: usize) -> String {
        let mut t = vec![0f32; w.len()];
        for (r, row) in w.chunks_exact(k.max(1)).enumerate() {
            for (c, v) in row.iter().enumerate() {
                if let Some(slot) = t.get_mut(c.saturating_mul(n).saturating_add(r)) {
                    *slot = *v;
                }
            }
        }
        let init = self.g.initializer(name, data_type::FLOAT, &[to_i64(k), to_i64(n)], f32_bytes(&t));
        self.g.op("MatMul", &[x, &init], vec![])
    }

    /// The embedding lookup `[B,S,H]`, and the lm head when the embedding is tied.
    fn embedding(&mut self) -> Result<(String, Option<LmHead>), GgufError> {
        let t = self.tensor("token_embd.weight")?;
        let (h, v) = (self.p.hidden, self.p.vocab);
        let bytes = self.f.tensor_bytes(&t)?;
        let nb = match (self.precision, t.ty) {
            (Precision::Float32, _) | (_, GgmlType::F32 | GgmlType::F16) => None,
            (_, GgmlType::Q8_0) => quant::to_nbits(t.ty, &bytes, v, h),
            (_, ty) => {
                let w = quant::dequantize(ty, &bytes).map_err(|m| unsupported(self.f, m))?;
                self.note(ty, "embedding: dequantised, re-quantised to 8-bit block 32");
                quant::requantize_q8(&w, v, h)
            }
        };
        let Some(nb) = nb else {
            self.note(t.ty, "MatMul / Gather, f32 weights");
            let w = quant::dequantize(t.ty, &bytes).map_err(|m| unsupported(self.f, m))?;
            let e = self.g.initializer("token_embd.weight", data_type::FLOAT, &[to_i64(v), to_i64(h)], f32_bytes(&w));
            let x = self.g.op("Gather", &[&e, "input_ids"], vec![]);
            let head = self.p.tied.then_some(LmHead::Float(e));
            return Ok((x, head));
        };
        let int8 = self.precision == Precision::Int8Activations;
        if t.ty == GgmlType::Q8_0 && int8 && self.p.tied {
            self.note(t.ty, "embedding Gather of the 8-bit blocks x scale; tied lm head: MatMulNBits 8-bit block 32 over the same blocks, int8 activations");
        } else if t.ty == GgmlType::Q8_0 {
            self.note(t.ty, "embedding Gather of the 8-bit blocks x scale; tied lm head: the same blocks dequantised at load (constant-folded), f32 MatMul; exact");
        }
        let w = NbitsWeight::add(&mut self.g, "token_embd.weight", nb);
        let g = &mut self.g;
        let q = g.op("Gather", &[&w.data, "input_ids"], vec![]);
        let q = g.op("Cast", &[&q], vec![attr_int("to", data_type::FLOAT.into())]);
        let c128 = g.const_f32(128.0);
        let q = g.op("Sub", &[&q, &c128], vec![]);
        let shape = g.const_i64(&[to_i64(v), to_i64(h / QK), 1]);
        let sc = g.op("Reshape", &[&w.scales, &shape], vec![]);
        let sc = g.op("Gather", &[&sc, "input_ids"], vec![]);
        let x = g.op("Mul", &[&q, &sc], vec![]);
        let flat = g.const_i64(&[0, 0, to_i64(h)]);
        let x = g.op("Reshape", &[&x, &flat], vec![]);
        let head = if int8 { LmHead::NBits8(w) } else { LmHead::NBits(w) };
        Ok((x, self.p.tied.then_some(head)))
    }
}

/// The tied lm head: the embedding table used as a `[vocab, hidden]` weight.
enum LmHead {
    Float(String),
    NBits(NbitsWeight),
    /// The 8-bit blocks read by an 8-bit `MatMulNBits` with int8 activations (its fp32
    /// kernel dequantises the whole table on every call, which is why [`LmHead::NBits`]
    /// folds it instead; with `accuracy_level = 4` it is the fastest head, measured).
    NBits8(NbitsWeight),
}

impl LmHead {
    fn apply(&self, g: &mut GraphBuilder, x: &str) -> String {
        match self {
            Self::Float(e) => {
                let t = g.op("Transpose", &[e], vec![]);
                g.op("MatMul", &[x, &t], vec![])
            }
            // The whole table dequantised by graph nodes whose inputs are all initializers:
            // ONNX Runtime folds them into one f32 constant when the session loads, so the file
            // keeps the 8-bit blocks and the product is an exact f32 MatMul (its 8-bit
            // MatMulNBits kernel dequantises on every call: 0.9 s a step, measured).
            Self::NBits(w) => {
                let q = g.op("Cast", &[&w.data], vec![attr_int("to", data_type::FLOAT.into())]);
                let c128 = g.const_f32(128.0);
                let q = g.op("Sub", &[&q, &c128], vec![]);
                let blocks = w.k / QK;
                let shape = g.const_i64(&[to_i64(w.n), to_i64(blocks), 1]);
                let sc = g.op("Reshape", &[&w.scales, &shape], vec![]);
                let table = g.op("Mul", &[&q, &sc], vec![]);
                let flat = g.const_i64(&[to_i64(w.n), to_i64(w.k)]);
                let table = g.op("Reshape", &[&table, &flat], vec![]);
                let t = g.op("Transpose", &[&table], vec![]);
                g.op("MatMul", &[x, &t], vec![])
            }
            Self::NBits8(w) => w.apply(g, x, Precision::Int8Activations.accuracy_level()),
        }
    }
}

/// A `MatMulNBits` weight's initializers.
struct NbitsWeight {
    data: String,
    scales: String,
    /// `[K/32, N]` per-block offsets (see [`NBits::offsets`]).
    offsets: Option<String>,
    bits: u8,
    n: usize,
    k: usize,
}

impl NbitsWeight {
    fn add(g: &mut GraphBuilder, name: &str, nb: NBits) -> Self {
        let blocks = nb.k / QK;
        let blob = QK.saturating_mul(usize::from(nb.bits)) / 8;
        let dims = [to_i64(nb.n), to_i64(blocks), to_i64(blob)];
        let data = g.initializer(&format!("{name}.q"), data_type::UINT8, &dims, nb.data);
        let count = [to_i64(nb.n.saturating_mul(blocks))];
        let scales = g.initializer(&format!("{name}.scales"), data_type::FLOAT, &count, f32_bytes(&nb.scales));
        let offsets = nb.offsets.map(|o| {
            // Row-major [N, K/32] → [K/32, N] for `blocksum(x) · offsets`.
            let mut t = vec![0f32; o.len()];
            for (r, row) in o.chunks_exact(blocks.max(1)).enumerate() {
                for (c, v) in row.iter().enumerate() {
                    if let Some(slot) = t.get_mut(c.saturating_mul(nb.n).saturating_add(r)) {
                        *slot = *v;
                    }
                }
            }
            let dims = [to_i64(blocks), to_i64(nb.n)];
            g.initializer(&format!("{name}.offsets"), data_type::FLOAT, &dims, f32_bytes(&t))
        });
        Self {
            data,
            scales,
            offsets,
            bits: nb.bits,
            n: nb.n,
            k: nb.k,
        }
    }

    /// `x · Wᵀ`; `accuracy_level` 0 is not written (the exact import's bytes).
    fn apply(&self, g: &mut GraphBuilder, x: &str, accuracy_level: i64) -> String {
        let inputs = [x, self.data.as_str(), self.scales.as_str()];
        let mut attrs = vec![
            attr_int("K", to_i64(self.k)),
            attr_int("N", to_i64(self.n)),
            attr_int("bits", i64::from(self.bits)),
            attr_int("block_size", to_i64(QK)),
        ];
        if accuracy_level != 0 {
            attrs.push(attr_int("accuracy_level", accuracy_level));
        }
        let y = g.op_in(MS_DOMAIN, "MatMulNBits", &inputs, attrs);
        let Some(offsets) = &self.offsets else {
            return y;
        };
        let shape = g.const_i64(&[0, 0, to_i64(self.k / QK), to_i64(QK)]);
        let blocks = g.op("Reshape", &[x, &shape], vec![]);
        let last = g.const_i64(&[-1]);
        let sums = g.op("ReduceSum", &[&blocks, &last], vec![attr_int("keepdims", 0)]);
        let corr = g.op("MatMul", &[&sums, offsets], vec![]);
        g.op("Add", &[&y, &corr], vec![])
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// The files of an imported model, written into `dir`: `(name, sha256)` of `model.onnx`,
/// `tokenizer.json` and `generation.json`. Each is written to a temporary name and renamed,
/// so a failed import leaves no half-written file.
pub fn import_to_dir(gguf: &Path, dir: &Path, precision: Precision) -> Result<Vec<(String, String)>, GgufError> {
    let f = GgufFile::open(gguf)?;
    let imported = import(&f, precision)?;
    let tokenizer = super::tokenizer::build_tokenizer(&imported.vocab)
        .map_err(|e| unsupported(&f, e.to_string()))?;
    let io = |source| GgufError::Io { path: dir.to_path_buf(), source };
    std::fs::create_dir_all(dir).map_err(io)?;
    let files = [
        ("model.onnx", imported.model),
        ("tokenizer.json", tokenizer.into_bytes()),
        ("generation.json", imported.generation.into_bytes()),
    ];
    let mut out = Vec::new();
    for (name, bytes) in files {
        let tmp = dir.join(format!(".{name}.part"));
        std::fs::write(&tmp, &bytes).map_err(io)?;
        std::fs::rename(&tmp, dir.join(name)).map_err(io)?;
        out.push((name.to_string(), sha256_hex(&bytes)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_restores_rotate_half_order() {
        // One head of 4 rows, 1 byte each: GGUF order (0,2,1,3) of the original rows.
        // llama.cpp: original row j·2 + i goes to GGUF row 2i + j.
        assert_eq!(unpermute_rows(&[10, 12, 11, 13], 1, 4), vec![10, 11, 12, 13]);
        // Two heads, rows of 2 bytes.
        let rows = [0, 0, 2, 2, 1, 1, 3, 3, 4, 4, 6, 6, 5, 5, 7, 7];
        assert_eq!(unpermute_rows(&rows, 2, 4), vec![0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7]);
    }
}

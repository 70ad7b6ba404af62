//! ggml tensor types: dequantisation (as gguf-py's `quants.py` and llama.cpp's
//! `ggml-quants.c` define it) and the mapping of 4- and 8-bit blocks onto ONNX Runtime's
//! `com.microsoft.MatMulNBits` (`B` `[N, K/32, blob]` uint8, low nibble first, `scales`
//! `[N·K/32]`, optional `zero_points`; a value is `(q − zero_point) · scale`).

use half::{bf16, f16};

/// Elements in a legacy quant block (Q4_0 … Q8_0) and in a MatMulNBits block here.
pub const QK: usize = 32;
/// Elements in a k-quant super-block.
pub const QK_K: usize = 256;

/// A ggml element type llmos reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(non_camel_case_types)] // why: ggml's own names, as users see them in GGUF tools
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// 16-bit float.
    F16,
    /// bfloat16.
    BF16,
    /// 4-bit, block 32, scale.
    Q4_0,
    /// 4-bit, block 32, scale and min.
    Q4_1,
    /// 5-bit, block 32, scale.
    Q5_0,
    /// 5-bit, block 32, scale and min.
    Q5_1,
    /// 8-bit, block 32, scale.
    Q8_0,
    /// 2-bit k-quant.
    Q2_K,
    /// 3-bit k-quant.
    Q3_K,
    /// 4-bit k-quant.
    Q4_K,
    /// 5-bit k-quant.
    Q5_K,
    /// 6-bit k-quant.
    Q6_K,
}

impl GgmlType {
    /// The names of the readable types, for error messages.
    pub const ALL_NAMES: &'static str =
        "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K";

    /// The type of ggml's numeric id.
    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            7 => Self::Q5_1,
            8 => Self::Q8_0,
            10 => Self::Q2_K,
            11 => Self::Q3_K,
            12 => Self::Q4_K,
            13 => Self::Q5_K,
            14 => Self::Q6_K,
            30 => Self::BF16,
            _ => return None,
        })
    }

    /// ggml's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
            Self::Q4_0 => "Q4_0",
            Self::Q4_1 => "Q4_1",
            Self::Q5_0 => "Q5_0",
            Self::Q5_1 => "Q5_1",
            Self::Q8_0 => "Q8_0",
            Self::Q2_K => "Q2_K",
            Self::Q3_K => "Q3_K",
            Self::Q4_K => "Q4_K",
            Self::Q5_K => "Q5_K",
            Self::Q6_K => "Q6_K",
        }
    }

    /// Elements per block.
    pub fn block_size(self) -> usize {
        match self {
            Self::F32 | Self::F16 | Self::BF16 => 1,
            Self::Q4_0 | Self::Q4_1 | Self::Q5_0 | Self::Q5_1 | Self::Q8_0 => QK,
            _ => QK_K,
        }
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q5_0 => 22,
            Self::Q5_1 => 24,
            Self::Q8_0 => 34,
            Self::Q2_K => 84,
            Self::Q3_K => 110,
            Self::Q4_K => 144,
            Self::Q5_K => 176,
            Self::Q6_K => 210,
        }
    }

    /// Bytes of `n` elements; `None` unless `n` is a whole number of blocks.
    pub fn bytes_for(self, n: u64) -> Option<u64> {
        let bs = self.block_size() as u64;
        if n.checked_rem(bs)? != 0 {
            return None;
        }
        n.checked_div(bs)?.checked_mul(self.type_size() as u64)
    }
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    match b.get(at..at.saturating_add(2)) {
        Some(&[x, y]) => f16::from_le_bytes([x, y]).to_f32(),
        _ => 0.0,
    }
}

/// Dequantises whole blocks of `ty` to `f32`.
pub fn dequantize(ty: GgmlType, data: &[u8]) -> Result<Vec<f32>, String> {
    let ts = ty.type_size();
    if data.len().checked_rem(ts) != Some(0) {
        return Err(format!(
            "{} bytes is not a whole number of {} blocks ({ts} bytes each)",
            data.len(),
            ty.name()
        ));
    }
    let blocks = data.len().checked_div(ts).unwrap_or(0);
    let mut out = Vec::with_capacity(blocks.saturating_mul(ty.block_size()));
    let blocks = data.chunks_exact(ts);
    match ty {
        GgmlType::F32 => out.extend(
            blocks.map(|b| f32::from_le_bytes(b.try_into().unwrap_or_default())),
        ),
        GgmlType::F16 => out.extend(blocks.map(|b| f16_at(b, 0))),
        GgmlType::BF16 => out.extend(
            blocks.map(|b| bf16::from_le_bytes(b.try_into().unwrap_or_default()).to_f32()),
        ),
        _ => {
            let f = kernel(ty);
            let mut buf = [0f32; QK_K];
            for b in blocks {
                let n = f(b, &mut buf);
                out.extend(buf.iter().take(n));
            }
        }
    }
    Ok(out)
}

type Kernel = fn(&[u8], &mut [f32; QK_K]) -> usize;

fn kernel(ty: GgmlType) -> Kernel {
    match ty {
        GgmlType::Q4_0 => k::q4_0,
        GgmlType::Q4_1 => k::q4_1,
        GgmlType::Q5_0 => k::q5_0,
        GgmlType::Q5_1 => k::q5_1,
        GgmlType::Q8_0 => k::q8_0,
        GgmlType::Q2_K => k::q2_k,
        GgmlType::Q3_K => k::q3_k,
        GgmlType::Q4_K => k::q4_k,
        GgmlType::Q5_K => k::q5_k,
        _ => k::q6_k,
    }
}

/// Block kernels. Each takes exactly one block (`chunks_exact(type_size)`) and writes its
/// elements into a buffer of `QK_K`; every index is a constant expression below the block or
/// buffer size, so indexing and the small integer arithmetic cannot fail.
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
// why: fixed-layout block decoding, bounds fixed by the block sizes above (chunks_exact).
mod k {
    use super::{QK_K, f16_at};

    pub(super) fn q4_0(b: &[u8], o: &mut [f32; QK_K]) -> usize {
        let d = f16_at(b, 0);
        for j in 0..16 {
            o[j] = f32::from(i16::from(b[2 + j] & 0xF) - 8) * d;
            o[j + 16] = f32::from(i16::from(b[2 + j] >> 4) - 8) * d;
        }
        32
    }
    pub(super) fn q4_1(b: &[u8], o: &mut [f32; QK_K]) -> usize {
        let (d, m) = (f16_at(b, 0), f16_at(b, 2));
        for j in 0..16 {
            o[j] = d * f32::from(b[4 + j] & 0xF) + m;
            o[j + 16] = d * f32::from(b[4 + j] >> 4) + m;
        }
        32
    }
    fn q5(qh: u32, qs: &[u8], i: usize) -> u8 {
        let low = if i < 16 {
            qs[i] & 0xF
        } else {
            qs[i - 16] >> 4
        };
        low | (u8::from((qh >> i) & 1 == 1) << 4)
    }
    pub(super) fn q5_0(b: &[u8], o: &mut [f32; QK_K]) -> usize {
        let d = f16_at(b, 0);
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        for (i, v) in o.iter_mut().take(32).enumerate() {
            *v = f32::from(i16::from(q5(qh, &b[6..22], i)) - 16) * d;
        }
        32
    }
    pub(super) fn q5_1(b: &[u8], o: &mut [f32; QK_K]) -> usize {
        let (d, m) = (f16_at(b, 0), f16_at(b, 2));
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        for (i, v) in o.iter_mut().take(32).enumerate() {
            *v = d * f32::from(q5(qh, &b[8..24], i)) + m;
        }
        32
    }
    pub(super) fn q8_0(b: &[u8], o: &mut [f32; QK_K]) -> usize {
        let d = f16_at(b, 0);
        for j in 0..32 {
            o[j] = f32::from(b[2 + j] as i8) * d;
        }
        32
    }
    pub(super) fn q2_k(b: &[u8], o: &mut [f32; QK_K]) -> usize {
        let (scales, qs) = (&b[0..16], &b[16..80]);
        let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
        for c in 0..2 {
            for s in 0..4 {
                for l in 0..32 {
                    let flat = c * 128 + s * 32 + l;
                    let q = (qs[c * 32 + l] >> (2 * s)) & 3;
                    let sc = scales[flat / 16];
                    o[flat] = d * f32::from(sc & 0xF) * f32::from(q) - dmin * f32::from(sc >> 4);
                }
            }
        }
        QK_K
    }
    pub(super) fn q3_k(b: &[u8], o: &mut [f32; QK_K]) -> usize {
        let (hmask, qs, scales) = (&b[0..32], &b[32..96], &b[96..108]);
        let d = f16_at(b, 108);
        let mut sc = [0f32; 16];
        for (k, s) in sc.iter_mut().enumerate() {
            let low = (scales[k % 8] >> (4 * (k / 8))) & 0xF;
            let high = (scales[8 + k % 4] >> (2 * (k / 4))) & 3;
            *s = d * f32::from(i16::from(low | (high << 4)) - 32);
        }
        for c in 0..2 {
            for s in 0..4 {
                for l in 0..32 {
                    let flat = c * 128 + s * 32 + l;
                    let ql = i16::from((qs[c * 32 + l] >> (2 * s)) & 3);
                    let hbit = (hmask[l] >> (flat / 32)) & 1;
                    let q = ql - i16::from((hbit ^ 1) << 2);
                    o[flat] = sc[flat / 16] * f32::from(q);
                }
            }
        }
        QK_K
    }
    /// The 8 six-bit scales and mins of Q4_K/Q5_K (`get_scale_min`).
    fn scale_min(s: &[u8]) -> ([u8; 8], [u8; 8]) {
        let (mut sc, mut mn) = ([0u8; 8], [0u8; 8]);
        for j in 0..4 {
            sc[j] = s[j] & 0x3F;
            sc[4 + j] = (s[8 + j] & 0xF) | ((s[j] >> 2) & 0x30);
            mn[j] = s[4 + j] & 0x3F;
            mn[4 + j] = (s[8 + j] >> 4) | ((s[4 + j] >> 2) & 0x30);
        }
        (sc, mn)
    }
    fn q45_k(b: &[u8], o: &mut [f32; QK_K], qh: Option<&[u8]>, qs: &[u8]) -> usize {
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        let (sc, mn) = scale_min(&b[4..16]);
        for c in 0..4 {
            for s in 0..2 {
                let g = c * 2 + s;
                for l in 0..32 {
                    let mut q = (qs[c * 32 + l] >> (4 * s)) & 0xF;
                    if let Some(qh) = qh {
                        q |= ((qh[l] >> g) & 1) << 4;
                    }
                    o[g * 32 + l] =
                        d * f32::from(sc[g]) * f32::from(q) - dmin * f32::from(mn[g]);
                }
            }
        }
        QK_K
    }
    pub(super) fn q4_k(b: &[u8], o: &mut [f32; QK_K]) -> usize {
        q45_k(b, o, None, &b[16..144])
    }
    pub(super) fn q5_k(b: &[u8], o: &mut [f32; QK_K]) -> usize {
        q45_k(b, o, Some(&b[16..48]), &b[48..176])
    }
    pub(super) fn q6_k(b: &[u8], o: &mut [f32; QK_K]) -> usize {
        let (ql, qh, scales) = (&b[0..128], &b[128..192], &b[192..208]);
        let d = f16_at(b, 208);
        for c in 0..2 {
            for s in 0..2 {
                for l in 0..64 {
                    let flat = c * 128 + s * 64 + l;
                    let low = (ql[c * 64 + l] >> (4 * s)) & 0xF;
                    let (hc, hs, hl) = (flat / 128, (flat % 128) / 32, flat % 32);
                    let high = (qh[hc * 32 + hl] >> (2 * hs)) & 3;
                    let q = i16::from(low | (high << 4)) - 32;
                    o[flat] = d * f32::from(scales[flat / 16] as i8) * f32::from(q);
                }
            }
        }
        QK_K
    }
}

/// A weight `[N, K]` in `MatMulNBits` form.
#[derive(Debug, Clone, PartialEq)]
pub struct NBits {
    /// 4 or 8.
    pub bits: u8,
    /// Output features.
    pub n: usize,
    /// Input features.
    pub k: usize,
    /// `[N, K/32, 32·bits/8]` uint8.
    pub data: Vec<u8>,
    /// `[N·K/32]`.
    pub scales: Vec<f32>,
    /// `[N·K/32]` per-block offsets added to every value of the block (`None` = 0). The zero
    /// point is always MatMulNBits' default `2^(bits−1)`: a value is `(q − 2^(bits−1))·scale +
    /// offset`, and the graph adds `Σ_block(x) · offset` with a small MatMul. (A float
    /// `zero_points` input would be exact too, but ONNX Runtime's CPU kernel then dequantises
    /// the whole weight on every call: measured 1.4 s per decode step instead of 0.0x s.)
    pub offsets: Option<Vec<f32>>,
}

/// Maps Q4_0, Q4_1 or Q8_0 blocks of a row-major `[N, K]` weight onto `MatMulNBits` exactly:
/// Q4_0 `d·(q−8)` ⇒ default zero point 8; Q4_1 `d·q + m = d·(q−8) + (8d + m)` ⇒ default zero
/// point and offset `8d + m`; Q8_0 `d·q` ⇒ `q + 128` with the default 128.
/// Other types return `None` (dequantise and use [`requantize_q4`]).
pub fn to_nbits(ty: GgmlType, data: &[u8], n: usize, k: usize) -> Option<NBits> {
    let blocks = n.checked_mul(k)? / QK;
    if !k.is_multiple_of(QK) || data.len() != blocks.checked_mul(ty.type_size())? {
        return None;
    }
    let mut nb = NBits {
        bits: 4,
        n,
        k,
        data: Vec::with_capacity(blocks.checked_mul(16)?),
        scales: Vec::with_capacity(blocks),
        offsets: None,
    };
    match ty {
        GgmlType::Q4_0 => {
            for b in data.chunks_exact(18) {
                nb.scales.push(f16_at(b, 0));
                repack_nibbles(b.get(2..18)?, &mut nb.data);
            }
        }
        GgmlType::Q4_1 => {
            let mut offsets = Vec::with_capacity(blocks);
            for b in data.chunks_exact(20) {
                let (d, m) = (f16_at(b, 0), f16_at(b, 2));
                nb.scales.push(d);
                offsets.push(8.0 * d + m);
                repack_nibbles(b.get(4..20)?, &mut nb.data);
            }
            nb.offsets = Some(offsets);
        }
        GgmlType::Q8_0 => {
            nb.bits = 8;
            for b in data.chunks_exact(34) {
                nb.scales.push(f16_at(b, 0));
                nb.data.extend(b.get(2..34)?.iter().map(|q| q ^ 0x80));
            }
        }
        _ => return None,
    }
    Some(nb)
}

/// ggml keeps element `j` in the low nibble of byte `j` and element `j+16` in its high
/// nibble; MatMulNBits keeps elements `2i` and `2i+1` in the low and high nibble of byte `i`.
fn repack_nibbles(qs: &[u8], out: &mut Vec<u8>) {
    let nib = |j: usize| -> u8 {
        match (qs.get(j % 16), j < 16) {
            (Some(b), true) => b & 0xF,
            (Some(b), false) => b >> 4,
            (None, _) => 0,
        }
    };
    for i in 0..16usize {
        let e = i.saturating_mul(2);
        out.push(nib(e) | (nib(e.saturating_add(1)) << 4));
    }
}

/// Quantises a row-major `[N, K]` `f32` weight to 4 bits in blocks of 32 with a float scale
/// and offset per block (min/max, as ggml's Q4_1 but with `f32` scales).
pub fn requantize_q4(w: &[f32], n: usize, k: usize) -> Option<NBits> {
    if !k.is_multiple_of(QK) || w.len() != n.checked_mul(k)? {
        return None;
    }
    let blocks = w.len() / QK;
    let mut nb = NBits {
        bits: 4,
        n,
        k,
        data: Vec::with_capacity(blocks.checked_mul(16)?),
        scales: Vec::with_capacity(blocks),
        offsets: Some(Vec::with_capacity(blocks)),
    };
    let offsets = nb.offsets.get_or_insert_with(Vec::new);
    for b in w.chunks_exact(QK) {
        let min = b.iter().copied().fold(f32::INFINITY, f32::min);
        let max = b.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let d = (max - min) / 15.0;
        let q = |x: f32| -> u8 {
            if d == 0.0 {
                8
            } else {
                // why: clamped to 0..=15 first, so the cast cannot truncate.
                #[allow(clippy::cast_possible_truncation)]
                let v = ((x - min) / d).round().clamp(0.0, 15.0) as u8;
                v
            }
        };
        nb.scales.push(d);
        offsets.push(8.0 * d + min);
        for pair in b.chunks_exact(2) {
            if let [a, c] = pair {
                nb.data.push(q(*a) | (q(*c) << 4));
            }
        }
    }
    Some(nb)
}

/// Quantises a row-major `[N, K]` weight to 8 bits in blocks of 32 (symmetric, as Q8_0 with
/// an `f32` scale), for embeddings of types that have no exact 8-bit form.
pub fn requantize_q8(w: &[f32], n: usize, k: usize) -> Option<NBits> {
    if !k.is_multiple_of(QK) || w.len() != n.checked_mul(k)? {
        return None;
    }
    let mut nb = NBits {
        bits: 8,
        n,
        k,
        data: Vec::with_capacity(w.len()),
        scales: Vec::with_capacity(w.len() / QK),
        offsets: None,
    };
    for b in w.chunks_exact(QK) {
        let amax = b.iter().fold(0f32, |a, x| a.max(x.abs()));
        let d = amax / 127.0;
        nb.scales.push(d);
        for x in b {
            let q = if d == 0.0 { 0.0 } else { (x / d).round() };
            // why: clamped to −127..=127 and shifted into 1..=255, so the cast cannot truncate.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let byte = (q.clamp(-127.0, 127.0) + 128.0) as u8;
            nb.data.push(byte);
        }
    }
    Some(nb)
}

impl NBits {
    /// Dequantises back to row-major `[N, K]` `f32` (what ONNX Runtime computes with).
    pub fn dequantize(&self) -> Vec<f32> {
        let per_block = QK.saturating_mul(usize::from(self.bits)) / 8;
        let default_zp = if self.bits == 4 { 8.0 } else { 128.0 };
        let mut out = Vec::with_capacity(self.n.saturating_mul(self.k));
        for (i, blob) in self.data.chunks_exact(per_block).enumerate() {
            let s = self.scales.get(i).copied().unwrap_or_default();
            let zp = default_zp;
            let o = self
                .offsets
                .as_ref()
                .and_then(|z| z.get(i).copied())
                .unwrap_or(0.0);
            if self.bits == 4 {
                for b in blob {
                    out.push((f32::from(b & 0xF) - zp) * s + o);
                    out.push((f32::from(b >> 4) - zp) * s + o);
                }
            } else {
                out.extend(blob.iter().map(|b| (f32::from(*b) - zp) * s + o));
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // why: test fixtures are f32 values written as JSON numbers
mod tests;

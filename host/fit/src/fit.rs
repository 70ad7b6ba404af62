//! The fitting loop: softmax regression or one hidden ReLU layer on embeddings, full-batch
//! Adam on cross-entropy (class-weighted when asked) plus L2 on the weights, early stopping on
//! the validation loss, the best weights kept.
//!
//! Written on plain slices, not `ndarray`: `ndarray`'s matrix product (matrixmultiply) picks
//! its kernel by the CPU's features at run time and may sum in another order on another
//! machine, and a re-trained model must reproduce the published sha256. Here every sum has one
//! fixed order (8 interleaved lanes, then a fixed tree), nothing runs on other threads, and
//! `exp`/`ln` are computed from IEEE basic operations ([`exp`], [`ln`]) rather than the
//! platform's libm, so the same inputs give bit-identical weights on any machine.

use crate::head::{Dense, Head};
use crate::split::SplitMix64;

/// Rows of embeddings and their classes.
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a> {
    /// Row-major `[rows][dim]`.
    pub x: &'a [f32],
    /// Width of a row.
    pub dim: usize,
    /// Class of each row.
    pub y: &'a [usize],
}

/// What the loop needs from the recipe.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Number of classes.
    pub classes: usize,
    /// Hidden width; 0 = softmax regression.
    pub hidden: usize,
    /// Most epochs.
    pub epochs: usize,
    /// Adam's step size.
    pub learning_rate: f32,
    /// L2 strength (weights only).
    pub l2: f32,
    /// Epochs without a better validation loss before stopping; 0 = never stop early.
    pub patience: usize,
    /// Weight the loss by inverse class frequency.
    pub class_weights: bool,
    /// Seed of the initial weights.
    pub seed: u64,
}

/// One epoch's figures, for progress.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Epoch {
    /// 1-based.
    pub epoch: usize,
    /// The most there can be.
    pub epochs: usize,
    /// The (weighted) training cross-entropy before this epoch's step.
    pub train_loss: f64,
    /// The validation cross-entropy after it.
    pub validation_loss: f64,
}

/// The result of a fit.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    /// The weights of the best validation loss.
    pub head: Head,
    /// Epochs run.
    pub epochs: usize,
    /// Their validation loss.
    pub validation_loss: f64,
}

/// A layer while training: weights transposed (`[outputs][inputs]`) so a unit is a dot product.
#[derive(Debug, Clone)]
struct Layer {
    inputs: usize,
    outputs: usize,
    wt: Vec<f32>,
    b: Vec<f32>,
}

impl Layer {
    fn init(inputs: usize, outputs: usize, bound: f64, rng: &mut SplitMix64) -> Self {
        let n = inputs.saturating_mul(outputs);
        let wt = (0..n)
            .map(|_| to_f32((rng.next_f64() * 2.0 - 1.0) * bound))
            .collect();
        Self {
            inputs,
            outputs,
            wt,
            b: vec![0.0; outputs],
        }
    }

    /// `out[n][o] = b[o] + x[n] · w[o]`, ReLU when `relu`.
    fn forward(&self, x: &[f32], relu: bool) -> Vec<f32> {
        let rows = x.len().checked_div(self.inputs).unwrap_or(0);
        let ni = self.inputs.max(1);
        let mut out = vec![0.0; rows.saturating_mul(self.outputs)];
        let act = |v: f32| if relu { v.max(0.0) } else { v };
        // Four rows at a time share each weight row's loads; every sum is the same as `dot`'s.
        let blocks = x.chunks_exact(ni.saturating_mul(4));
        let rest = blocks.remainder();
        let mut outs = out.chunks_exact_mut(self.outputs.max(1));
        for block in blocks {
            let mut r = block.chunks_exact(ni);
            let (Some(a), Some(b), Some(c), Some(d)) = (r.next(), r.next(), r.next(), r.next())
            else {
                break;
            };
            let (Some(oa), Some(ob), Some(oc), Some(od)) =
                (outs.next(), outs.next(), outs.next(), outs.next())
            else {
                break;
            };
            for (o, (w, bias)) in self.wt.chunks_exact(ni).zip(&self.b).enumerate() {
                let v = dot4([a, b, c, d], w);
                for (slot, v) in [oa.get_mut(o), ob.get_mut(o), oc.get_mut(o), od.get_mut(o)]
                    .into_iter()
                    .zip(v)
                {
                    if let Some(slot) = slot {
                        *slot = act(bias + v);
                    }
                }
            }
        }
        for (row, o) in rest.chunks_exact(ni).zip(outs) {
            for ((slot, w), bias) in o.iter_mut().zip(self.wt.chunks_exact(ni)).zip(&self.b) {
                *slot = act(bias + dot(row, w));
            }
        }
        out
    }

    fn dense(&self) -> Dense {
        let mut weight = vec![0.0; self.wt.len()];
        for (o, w) in self.wt.chunks_exact(self.inputs.max(1)).enumerate() {
            for (i, v) in w.iter().enumerate() {
                if let Some(slot) = weight.get_mut(i.saturating_mul(self.outputs).saturating_add(o))
                {
                    *slot = *v;
                }
            }
        }
        Dense {
            inputs: self.inputs,
            outputs: self.outputs,
            weight,
            bias: self.b.clone(),
        }
    }
}

/// Gradients of a layer, the same shape.
#[derive(Debug, Clone)]
struct Grad {
    wt: Vec<f32>,
    b: Vec<f32>,
}

/// Adam's moments of every parameter, in the order layers, weights, biases.
#[derive(Debug, Clone)]
struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
    b1t: f32,
    b2t: f32,
}

const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const EPSILON: f32 = 1e-8;

impl Adam {
    fn new(layers: &[Layer]) -> Self {
        let n = layers
            .iter()
            .map(|l| l.wt.len().saturating_add(l.b.len()))
            .sum();
        Self {
            m: vec![0.0; n],
            v: vec![0.0; n],
            b1t: 1.0,
            b2t: 1.0,
        }
    }

    fn step(&mut self, layers: &mut [Layer], grads: &[Grad], lr: f32) {
        self.b1t *= BETA1;
        self.b2t *= BETA2;
        let (c1, c2) = (1.0 - self.b1t, 1.0 - self.b2t);
        let params = layers
            .iter_mut()
            .flat_map(|l| l.wt.iter_mut().chain(l.b.iter_mut()));
        let grads = grads.iter().flat_map(|g| g.wt.iter().chain(&g.b));
        for (((p, g), m), v) in params.zip(grads).zip(&mut self.m).zip(&mut self.v) {
            *m = BETA1 * *m + (1.0 - BETA1) * g;
            *v = BETA2 * *v + (1.0 - BETA2) * g * g;
            *p -= lr * (*m / c1) / ((*v / c2).sqrt() + EPSILON);
        }
    }
}

/// Fits a head. `on_epoch` is called after every epoch; returning `false` stops the fit and
/// gives `None` (cancelled). The same rows, settings and seed give bit-identical weights.
pub fn fit(
    train: Rows<'_>,
    validation: Rows<'_>,
    s: &Settings,
    on_epoch: &mut dyn FnMut(&Epoch) -> bool,
) -> Option<Fitted> {
    let mut rng = SplitMix64::new(s.seed);
    let dim = train.dim;
    let mut layers = if s.hidden > 0 {
        vec![
            Layer::init(dim, s.hidden, (6.0 / dim.max(1) as f64).sqrt(), &mut rng),
            Layer::init(s.hidden, s.classes, xavier(s.hidden, s.classes), &mut rng),
        ]
    } else {
        vec![Layer::init(
            dim,
            s.classes,
            xavier(dim, s.classes),
            &mut rng,
        )]
    };
    let weights = row_weights(train.y, s.classes, s.class_weights);
    let mut adam = Adam::new(&layers);
    let mut best = (layers.clone(), f64::INFINITY);
    let mut since = 0usize;
    let mut epochs = 0usize;
    for epoch in 1..=s.epochs {
        epochs = epoch;
        let (train_loss, grads) = gradients(&layers, train, &weights, s.l2);
        adam.step(&mut layers, &grads, s.learning_rate);
        let validation_loss = loss(&layers, validation);
        if validation_loss < best.1 {
            best = (layers.clone(), validation_loss);
            since = 0;
        } else {
            since = since.saturating_add(1);
        }
        let report = Epoch {
            epoch,
            epochs: s.epochs,
            train_loss,
            validation_loss,
        };
        if !on_epoch(&report) {
            return None;
        }
        if s.patience > 0 && since >= s.patience {
            break;
        }
    }
    Some(Fitted {
        head: Head {
            layers: best.0.iter().map(Layer::dense).collect(),
        },
        epochs,
        validation_loss: best.1,
    })
}

fn xavier(inputs: usize, outputs: usize) -> f64 {
    (6.0 / inputs.saturating_add(outputs).max(1) as f64).sqrt()
}

/// Each row's weight in the loss: `n / (classes · n_class)` when weighting, else 1.
fn row_weights(y: &[usize], classes: usize, weighted: bool) -> Vec<f64> {
    if !weighted {
        return vec![1.0; y.len()];
    }
    let mut counts = vec![0usize; classes];
    for c in y {
        if let Some(n) = counts.get_mut(*c) {
            *n = n.saturating_add(1);
        }
    }
    let n = y.len() as f64;
    y.iter()
        .map(|c| {
            let nc = counts.get(*c).copied().unwrap_or(1).max(1) as f64;
            n / (classes.max(1) as f64 * nc)
        })
        .collect()
}

/// The outputs of every layer: `acts[k]` is the output of layer k (the input of k + 1).
fn forward(layers: &[Layer], x: &[f32]) -> Vec<Vec<f32>> {
    let mut acts: Vec<Vec<f32>> = Vec::with_capacity(layers.len());
    let last = layers.len().saturating_sub(1);
    for (k, layer) in layers.iter().enumerate() {
        let input = acts.last().map_or(x, Vec::as_slice);
        let out = layer.forward(input, k < last);
        acts.push(out);
    }
    acts
}

/// Mean (unweighted) cross-entropy of the rows.
fn loss(layers: &[Layer], rows: Rows<'_>) -> f64 {
    let acts = forward(layers, rows.x);
    let logits = acts.last().map_or(&[][..], Vec::as_slice);
    let classes = layers.last().map_or(1, |l| l.outputs).max(1);
    let (mut total, mut n) = (0.0f64, 0.0f64);
    for (z, y) in logits.chunks_exact(classes).zip(rows.y) {
        total -= log_softmax(z, *y);
        n += 1.0;
    }
    if n > 0.0 { total / n } else { 0.0 }
}

/// `ln p[y]` of the softmax of `z`.
pub fn log_softmax(z: &[f32], y: usize) -> f64 {
    let max = z.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
    let sum: f64 = z.iter().map(|v| exp(f64::from(v - max))).sum();
    f64::from(z.get(y).copied().unwrap_or(f32::NEG_INFINITY) - max) - ln(sum)
}

/// The (weighted) training loss and the gradients of every layer, L2 included.
fn gradients(layers: &[Layer], rows: Rows<'_>, weights: &[f64], l2: f32) -> (f64, Vec<Grad>) {
    let acts = forward(layers, rows.x);
    let classes = layers.last().map_or(1, |l| l.outputs).max(1);
    let total_weight: f64 = weights.iter().sum();
    let logits = acts.last().map_or(&[][..], Vec::as_slice);
    // d loss / d logits, row by row.
    let mut delta = Vec::with_capacity(logits.len());
    let mut total = 0.0f64;
    for ((z, y), w) in logits.chunks_exact(classes).zip(rows.y).zip(weights) {
        let max = z.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
        let e: Vec<f64> = z.iter().map(|v| exp(f64::from(v - max))).collect();
        let sum: f64 = e.iter().sum();
        total += w * -log_softmax(z, *y);
        let scale = w / total_weight;
        for (c, ec) in e.iter().enumerate() {
            let target = if c == *y { 1.0 } else { 0.0 };
            delta.push(to_f32(scale * (ec / sum - target)));
        }
    }
    let mut grads: Vec<Grad> = Vec::with_capacity(layers.len());
    for (k, layer) in layers.iter().enumerate().rev() {
        let input = match k.checked_sub(1) {
            Some(below) => acts.get(below).map_or(&[][..], Vec::as_slice),
            None => rows.x,
        };
        let (grad, back) = backward(layer, input, &delta, l2, k > 0);
        grads.push(grad);
        delta = back;
    }
    grads.reverse();
    let loss = if total_weight > 0.0 {
        total / total_weight
    } else {
        0.0
    };
    (loss, grads)
}

/// One layer's gradients from `delta` (d loss / d its outputs), and d loss / d its inputs
/// through the ReLU of the layer below (when `back`).
fn backward(layer: &Layer, input: &[f32], delta: &[f32], l2: f32, back: bool) -> (Grad, Vec<f32>) {
    let (ni, no) = (layer.inputs.max(1), layer.outputs.max(1));
    let mut g = Grad {
        wt: layer.wt.iter().map(|w| l2 * w).collect(),
        b: vec![0.0; layer.outputs],
    };
    weight_gradients(&mut g, input, delta, ni, no);
    let mut below = vec![0.0f32; if back { input.len() } else { 0 }];
    for ((out, x), d) in below
        .chunks_exact_mut(ni)
        .zip(input.chunks_exact(ni))
        .zip(delta.chunks_exact(no))
    {
        for (dv, w) in d.iter().zip(layer.wt.chunks_exact(ni)) {
            axpy(*dv, w, out);
        }
        // ReLU below: no gradient where the unit was off.
        for (oi, a) in out.iter_mut().zip(x) {
            if *a <= 0.0 {
                *oi = 0.0;
            }
        }
    }
    (g, below)
}

/// Adds `Σ_rows delta[row][o] · input[row]` to the weight gradients and `Σ delta` to the bias
/// gradients: four rows a step (the gradient row is read and written once for four), then
/// the rows left, always in the same order.
fn weight_gradients(g: &mut Grad, input: &[f32], delta: &[f32], ni: usize, no: usize) {
    let xs = input.chunks_exact(ni.saturating_mul(4));
    let ds = delta.chunks_exact(no.saturating_mul(4));
    let (x_rest, d_rest) = (xs.remainder(), ds.remainder());
    for (x4, d4) in xs.zip(ds) {
        let mut x = x4.chunks_exact(ni);
        let mut d = d4.chunks_exact(no);
        let (Some(x0), Some(x1), Some(x2), Some(x3)) = (x.next(), x.next(), x.next(), x.next())
        else {
            break;
        };
        let (Some(d0), Some(d1), Some(d2), Some(d3)) = (d.next(), d.next(), d.next(), d.next())
        else {
            break;
        };
        let rows = d0.iter().zip(d1).zip(d2).zip(d3);
        for ((gw, gb), (((a, b), c), e)) in g.wt.chunks_exact_mut(ni).zip(&mut g.b).zip(rows) {
            *gb += a;
            *gb += b;
            *gb += c;
            *gb += e;
            let xs = x0.iter().zip(x1).zip(x2).zip(x3);
            for (y, (((p, q), r), t)) in gw.iter_mut().zip(xs) {
                *y += (a * p + b * q) + (c * r + e * t);
            }
        }
    }
    for (x, d) in x_rest.chunks_exact(ni).zip(d_rest.chunks_exact(no)) {
        for ((gw, gb), dv) in g.wt.chunks_exact_mut(ni).zip(&mut g.b).zip(d) {
            *gb += dv;
            axpy(*dv, x, gw);
        }
    }
}

/// `y += a · x`.
fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

/// A dot product in a fixed order: 8 interleaved partial sums, added in a fixed tree, then
/// the tail. Fast (the lanes vectorise) and the same on every machine.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for ((s, xi), yi) in acc.iter_mut().zip(x).zip(y) {
            *s += xi * yi;
        }
    }
    let [a0, a1, a2, a3, a4, a5, a6, a7] = acc;
    let mut sum = ((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7));
    for (x, y) in ra.iter().zip(rb) {
        sum += x * y;
    }
    sum
}

/// [`dot`] of four rows with one weight row: the same sums, bit for bit, with the weight
/// loaded once.
fn dot4(rows: [&[f32]; 4], w: &[f32]) -> [f32; 4] {
    let mut acc = [[0.0f32; 8]; 4];
    let wc = w.chunks_exact(8);
    let wr = wc.remainder();
    let n = w.len().saturating_sub(wr.len());
    for (k, wk) in wc.enumerate() {
        let at = k.saturating_mul(8);
        for (lanes, row) in acc.iter_mut().zip(rows) {
            let Some(xk) = row.get(at..at.saturating_add(8)) else {
                continue;
            };
            for ((s, xi), wi) in lanes.iter_mut().zip(xk).zip(wk) {
                *s += xi * wi;
            }
        }
    }
    let mut out = [0.0f32; 4];
    for ((o, lanes), row) in out.iter_mut().zip(acc).zip(rows) {
        let [a0, a1, a2, a3, a4, a5, a6, a7] = lanes;
        let mut sum = ((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7));
        for (x, y) in row.get(n..).unwrap_or(&[]).iter().zip(wr) {
            sum += x * y;
        }
        *o = sum;
    }
    out
}

/// `f64 → f32`, rounding to nearest.
fn to_f32(x: f64) -> f32 {
    // why: narrowing a float is the intent (values are probabilities, gradients, weights).
    #[allow(clippy::cast_possible_truncation)]
    let y = x as f32;
    y
}

const LN2_HI: f64 = 6.931_471_803_691_238e-1;
const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
const LN2: f64 = std::f64::consts::LN_2;

/// `e^x` from IEEE basic operations only (same bits everywhere), relative error < 1e-15;
/// 0 below −700, ∞ above 709.
pub fn exp(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x < -700.0 {
        return 0.0;
    }
    if x > 709.0 {
        return f64::INFINITY;
    }
    let k = (x / LN2).round();
    let r = (x - k * LN2_HI) - k * LN2_LO;
    // Taylor to r^13/13! (|r| ≤ 0.347: the next term is below 5e-18).
    let mut p = 1.0;
    for n in (1..=13u32).rev() {
        p = 1.0 + p * r / f64::from(n);
    }
    // why: k is an integer in [-1010, 1023] (x is bounded above), so it fits an i64.
    #[allow(clippy::cast_possible_truncation)]
    let k = k as i64;
    p * f64::from_bits(u64::try_from(k.saturating_add(1023)).unwrap_or(0) << 52)
}

/// Natural logarithm from IEEE basic operations only, for normal positive numbers (NaN for
/// negative, −∞ for 0 and subnormals).
pub fn ln(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x < f64::MIN_POSITIVE {
        return f64::NEG_INFINITY;
    }
    if x.is_infinite() {
        return x;
    }
    let bits = x.to_bits();
    let e = i32::try_from((bits >> 52) & 0x7FF)
        .unwrap_or(1023)
        .saturating_sub(1023);
    let mut m = f64::from_bits((bits & 0x000F_FFFF_FFFF_FFFF) | 0x3FF0_0000_0000_0000);
    let mut e = f64::from(e);
    if m > std::f64::consts::SQRT_2 {
        m /= 2.0;
        e += 1.0;
    }
    // ln m = 2 atanh(s), s = (m − 1)/(m + 1), |s| ≤ 0.172.
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut p = 0.0;
    for n in (0..12u32).rev() {
        p = 1.0 / (2.0 * f64::from(n) + 1.0) + s2 * p;
    }
    2.0 * s * p + e * LN2
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)] // why: test data built from small counts and f64 samples
mod tests {
    use super::*;
    use crate::eval as metrics;

    fn settings(classes: usize) -> Settings {
        Settings {
            classes,
            hidden: 0,
            epochs: 300,
            learning_rate: 0.05,
            l2: 1e-4,
            patience: 30,
            class_weights: true,
            seed: 42,
        }
    }

    /// A standard normal sample (Box–Muller; tests only).
    fn normal(rng: &mut SplitMix64) -> f32 {
        let (u, v) = (rng.next_f64().max(1e-12), rng.next_f64());
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }

    /// `n[c]` rows of class c around centre c (a ±`sep` one-hot in `dim` dims) with noise.
    fn blobs(
        counts: &[usize],
        dim: usize,
        sep: f32,
        noise: f32,
        seed: u64,
    ) -> (Vec<f32>, Vec<usize>) {
        let mut rng = SplitMix64::new(seed);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for (c, n) in counts.iter().enumerate() {
            for _ in 0..*n {
                for d in 0..dim {
                    let centre = if d == c { sep } else { 0.0 };
                    x.push(centre + noise * normal(&mut rng));
                }
                y.push(c);
            }
        }
        (x, y)
    }

    fn accuracy(head: &Head, x: &[f32], y: &[usize], dim: usize) -> f64 {
        let rows = Rows { x, dim, y };
        let (m, _) = metrics::confusion(head, rows, head.classes());
        let total: u64 = m.iter().flatten().sum();
        let right: u64 = m.iter().enumerate().filter_map(|(i, r)| r.get(i)).sum();
        right as f64 / total as f64
    }

    #[test]
    fn a_separable_set_is_learnt_to_100_percent() {
        let (x, y) = blobs(&[60, 60, 60], 16, 2.0, 0.3, 1);
        let (vx, vy) = blobs(&[20, 20, 20], 16, 2.0, 0.3, 2);
        let train = Rows {
            x: &x,
            dim: 16,
            y: &y,
        };
        let validation = Rows {
            x: &vx,
            dim: 16,
            y: &vy,
        };
        let mut seen = 0;
        let f = fit(train, validation, &settings(3), &mut |e| {
            seen += 1;
            assert_eq!(e.epoch, seen);
            true
        })
        .unwrap();
        assert_eq!(f.epochs, seen);
        assert_eq!(accuracy(&f.head, &vx, &vy, 16), 1.0);
        assert_eq!(accuracy(&f.head, &x, &y, 16), 1.0);
        assert!(f.validation_loss < 0.1, "{}", f.validation_loss);
    }

    #[test]
    fn a_hidden_layer_learns_xor() {
        // Four corners, XOR labels, with a little noise: not linearly separable.
        let mut rng = SplitMix64::new(3);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for i in 0..200 {
            let (a, b) = (i % 2, (i / 2) % 2);
            x.push(a as f32 * 2.0 - 1.0 + 0.1 * normal(&mut rng));
            x.push(b as f32 * 2.0 - 1.0 + 0.1 * normal(&mut rng));
            y.push(a ^ b);
        }
        let (t, v) = (
            Rows {
                x: &x[..300],
                dim: 2,
                y: &y[..150],
            },
            Rows {
                x: &x[300..],
                dim: 2,
                y: &y[150..],
            },
        );
        let linear = fit(t, v, &settings(2), &mut |_| true).unwrap();
        assert!(
            accuracy(&linear.head, &x[300..], &y[150..], 2) < 0.8,
            "XOR is not linear"
        );
        let s = Settings {
            hidden: 16,
            ..settings(2)
        };
        let f = fit(t, v, &s, &mut |_| true).unwrap();
        assert_eq!(f.head.layers.len(), 2);
        assert_eq!((f.head.layers[0].inputs, f.head.layers[0].outputs), (2, 16));
        assert_eq!(accuracy(&f.head, &x[300..], &y[150..], 2), 1.0);
    }

    #[test]
    fn same_inputs_give_bit_identical_weights() {
        let (x, y) = blobs(&[40, 30], 24, 1.0, 0.8, 5);
        let (t, v) = (
            Rows {
                x: &x[..24 * 50],
                dim: 24,
                y: &y[..50],
            },
            Rows {
                x: &x[24 * 50..],
                dim: 24,
                y: &y[50..],
            },
        );
        for hidden in [0, 8] {
            let s = Settings {
                hidden,
                ..settings(2)
            };
            let a = fit(t, v, &s, &mut |_| true).unwrap();
            let b = fit(t, v, &s, &mut |_| true).unwrap();
            for (la, lb) in a.head.layers.iter().zip(&b.head.layers) {
                let bits = |w: &[f32]| w.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&la.weight), bits(&lb.weight));
                assert_eq!(bits(&la.bias), bits(&lb.bias));
            }
            assert_eq!(a, b);
            let other = fit(t, v, &Settings { seed: 7, ..s }, &mut |_| true).unwrap();
            assert_ne!(a.head, other.head, "the seed decides the initial weights");
        }
    }

    #[test]
    fn class_weights_raise_the_recall_of_a_rare_class() {
        // 1:10, overlapping: unweighted, the boundary moves into the rare class.
        let (x, y) = blobs(&[500, 50], 4, 1.0, 0.7, 11);
        let (vx, vy) = blobs(&[1000, 1000], 4, 1.0, 0.7, 12);
        let (t, v) = (
            Rows {
                x: &x,
                dim: 4,
                y: &y,
            },
            Rows {
                x: &x,
                dim: 4,
                y: &y,
            },
        );
        let recall = |weights: bool| {
            let s = Settings {
                class_weights: weights,
                patience: 0,
                epochs: 200,
                ..settings(2)
            };
            let f = fit(t, v, &s, &mut |_| true).unwrap();
            let (m, _) = metrics::confusion(
                &f.head,
                Rows {
                    x: &vx,
                    dim: 4,
                    y: &vy,
                },
                2,
            );
            m[1][1] as f64 / 1000.0
        };
        let (plain, weighted) = (recall(false), recall(true));
        assert!(
            weighted > plain + 0.15,
            "recall of the rare class: unweighted {plain}, weighted {weighted}"
        );
    }

    #[test]
    fn early_stopping_keeps_the_best_validation_loss() {
        // Noisy labels: validation loss turns up while training goes on.
        let (x, y) = blobs(&[30, 30], 64, 1.0, 1.0, 21);
        let (vx, vy) = blobs(&[100, 100], 64, 1.0, 1.0, 22);
        let (t, v) = (
            Rows {
                x: &x,
                dim: 64,
                y: &y,
            },
            Rows {
                x: &vx,
                dim: 64,
                y: &vy,
            },
        );
        let s = Settings {
            epochs: 2000,
            patience: 10,
            l2: 0.0,
            learning_rate: 0.02,
            ..settings(2)
        };
        let mut losses = Vec::new();
        let f = fit(t, v, &s, &mut |e| {
            losses.push(e.validation_loss);
            true
        })
        .unwrap();
        assert!(f.epochs < 2000, "stopped early");
        let best = losses.iter().copied().fold(f64::INFINITY, f64::min);
        assert_eq!(f.validation_loss, best);
        assert_eq!(losses.len(), f.epochs);
        assert!(
            losses[f.epochs - 1] > best,
            "the last epoch was not the best"
        );
        assert!(
            losses[0] > best,
            "it improved first: {:?}",
            &losses[..losses.len().min(40)]
        );
    }

    #[test]
    fn returning_false_cancels() {
        let (x, y) = blobs(&[10, 10], 4, 1.0, 0.1, 1);
        let t = Rows {
            x: &x,
            dim: 4,
            y: &y,
        };
        let mut n = 0;
        assert!(
            fit(t, t, &settings(2), &mut |_| {
                n += 1;
                n < 3
            })
            .is_none()
        );
        assert_eq!(n, 3);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let (x, y) = blobs(&[3, 3, 2], 5, 1.0, 0.5, 9);
        let rows = Rows {
            x: &x,
            dim: 5,
            y: &y,
        };
        let mut rng = SplitMix64::new(4);
        let layers = vec![
            Layer::init(5, 4, 0.8, &mut rng),
            Layer::init(4, 3, 0.8, &mut rng),
        ];
        let weights = row_weights(&y, 3, true);
        let l2 = 0.1f32;
        let full = |ls: &[Layer]| {
            let (data, _) = gradients(ls, rows, &weights, l2);
            let reg: f64 = ls
                .iter()
                .flat_map(|l| &l.wt)
                .map(|w| f64::from(*w) * f64::from(*w))
                .sum();
            data + 0.5 * f64::from(l2) * reg
        };
        let (_, grads) = gradients(&layers, rows, &weights, l2);
        let h = 1e-2f32;
        for (k, g) in grads.iter().enumerate() {
            for (which, len) in [(0, g.wt.len()), (1, g.b.len())] {
                for i in 0..len {
                    let bump = |d: f32| {
                        let mut ls = layers.clone();
                        let p = if which == 0 {
                            &mut ls[k].wt[i]
                        } else {
                            &mut ls[k].b[i]
                        };
                        *p += d;
                        full(&ls)
                    };
                    let numeric = (bump(h) - bump(-h)) / (2.0 * f64::from(h));
                    let analytic = f64::from(if which == 0 { g.wt[i] } else { g.b[i] });
                    assert!(
                        (numeric - analytic).abs() < 2e-3 + 0.02 * analytic.abs(),
                        "layer {k} {} {i}: numeric {numeric}, analytic {analytic}",
                        if which == 0 { "weight" } else { "bias" }
                    );
                }
            }
        }
    }

    #[test]
    fn the_blocked_forward_pass_sums_exactly_like_dot() {
        let mut rng = SplitMix64::new(8);
        // 7 rows (a block of four and three more) of width 21 (two lanes of 8 and a tail).
        let layer = Layer::init(21, 3, 1.0, &mut rng);
        let x: Vec<f32> = (0..7 * 21).map(|_| normal(&mut rng)).collect();
        let got = layer.forward(&x, false);
        let want: Vec<f32> = x
            .chunks(21)
            .flat_map(|row| {
                layer
                    .wt
                    .chunks(21)
                    .zip(&layer.b)
                    .map(|(w, b)| b + dot(row, w))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(
            got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        let relu = layer.forward(&x, true);
        assert!(relu.iter().zip(&want).all(|(r, w)| *r == w.max(0.0)));
    }

    /// Fit time on seeded, separable, L2-normalised 384-d rows (300 epochs, no early stop):
    /// `cargo test --release -p llmos --lib fit_speed -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check; run it in release"]
    fn fit_speed() {
        let dim = 384;
        for (n, classes, hidden) in [
            (1000, 2, 0),
            (10_000, 2, 0),
            (10_000, 6, 0),
            (10_000, 6, 64),
        ] {
            let mut rng = SplitMix64::new(1);
            let (mut x, mut y) = (Vec::with_capacity(n * dim), Vec::with_capacity(n));
            for i in 0..n {
                let c = i % classes;
                let mut row: Vec<f32> = (0..dim)
                    .map(|d| if d % classes == c { 0.15 } else { 0.0 } + 0.05 * normal(&mut rng))
                    .collect();
                let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
                row.iter_mut().for_each(|v| *v /= norm);
                x.extend(row);
                y.push(c);
            }
            let v = n / 5;
            let (val, t) = (
                Rows {
                    x: &x[..v * dim],
                    dim,
                    y: &y[..v],
                },
                Rows {
                    x: &x[v * dim..],
                    dim,
                    y: &y[v..],
                },
            );
            let s = Settings {
                hidden,
                epochs: 300,
                learning_rate: 0.01,
                patience: 0,
                ..settings(classes)
            };
            let start = std::time::Instant::now();
            let f = fit(t, val, &s, &mut |_| true).unwrap();
            let secs = start.elapsed().as_secs_f64();
            eprintln!(
                "{n} rows x {dim}, {classes} classes, hidden {hidden}: {} epochs in {secs:.2} s",
                f.epochs
            );
        }
    }

    #[test]
    fn exp_and_ln_agree_with_the_platform() {
        for i in -2000..=2000 {
            let x = f64::from(i) * 0.35;
            let (a, b) = (exp(x), x.exp());
            if x > -700.0 && x < 709.0 {
                assert!(((a - b) / b).abs() < 1e-14, "exp({x}) = {a}, std {b}");
            }
            let y = f64::from(i + 2001) * 0.731;
            assert!(
                (ln(y) - y.ln()).abs() < 1e-14 * y.ln().abs().max(1.0),
                "ln({y})"
            );
        }
        assert_eq!(exp(-800.0), 0.0);
        assert_eq!(ln(1.0), 0.0);
        assert!(ln(0.0).is_infinite() && ln(-1.0).is_nan());
    }
}

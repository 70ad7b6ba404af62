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

use super::head::{Dense, Head};
use super::recipe::Recipe;
use super::split::SplitMix64;

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

impl Settings {
    /// The settings of a recipe for `classes` classes.
    pub fn of(recipe: &Recipe, classes: usize) -> Self {
        Self {
            classes,
            hidden: recipe.hidden,
            epochs: recipe.epochs,
            learning_rate: recipe.learning_rate,
            l2: recipe.l2,
            patience: recipe.patience,
            class_weights: recipe.class_weights,
            seed: recipe.seed,
        }
    }
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
        let mut out = Vec::with_capacity(rows.saturating_mul(self.outputs));
        for row in x.chunks_exact(self.inputs.max(1)) {
            for (w, b) in self.wt.chunks_exact(self.inputs.max(1)).zip(&self.b) {
                let v = b + dot(row, w);
                out.push(if relu { v.max(0.0) } else { v });
            }
        }
        out
    }

    fn dense(&self) -> Dense {
        let mut weight = vec![0.0; self.wt.len()];
        for (o, w) in self.wt.chunks_exact(self.inputs.max(1)).enumerate() {
            for (i, v) in w.iter().enumerate() {
                if let Some(slot) = weight.get_mut(i.saturating_mul(self.outputs).saturating_add(o)) {
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
        let n = layers.iter().map(|l| l.wt.len().saturating_add(l.b.len())).sum();
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
pub fn fit(train: Rows<'_>, validation: Rows<'_>, s: &Settings, on_epoch: &mut dyn FnMut(&Epoch) -> bool) -> Option<Fitted> {
    let mut rng = SplitMix64::new(s.seed);
    let dim = train.dim;
    let mut layers = if s.hidden > 0 {
        vec![
            Layer::init(dim, s.hidden, (6.0 / dim.max(1) as f64).sqrt(), &mut rng),
            Layer::init(s.hidden, s.classes, xavier(s.hidden, s.classes), &mut rng),
        ]
    } else {
        vec![Layer::init(dim, s.classes, xavier(dim, s.classes), &mut rng)]
    };
    let weights = row_weights(train.y, s.classes, s.class_weights);
    let mut adam = Adam::new(&layers);
    let mut best = (layers.clone(), loss(&layers, validation));
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

/// The activations of every layer: `acts[0]` the input, `acts[k]` the output of layer k.
fn forward(layers: &[Layer], x: &[f32]) -> Vec<Vec<f32>> {
    let mut acts = vec![x.to_vec()];
    let last = layers.len().saturating_sub(1);
    for (k, layer) in layers.iter().enumerate() {
        let input = acts.last().map_or(&[][..], Vec::as_slice);
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
        let input = acts.get(k).map_or(&[][..], Vec::as_slice);
        let (grad, back) = backward(layer, input, &delta, l2, k > 0);
        grads.push(grad);
        delta = back;
    }
    grads.reverse();
    let loss = if total_weight > 0.0 { total / total_weight } else { 0.0 };
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
    let mut below = vec![0.0f32; if back { input.len() } else { 0 }];
    let mut below_rows = below.chunks_exact_mut(ni);
    for (x, d) in input.chunks_exact(ni).zip(delta.chunks_exact(no)) {
        let mut out = below_rows.next();
        for ((gw, gb), (dv, w)) in g
            .wt
            .chunks_exact_mut(ni)
            .zip(&mut g.b)
            .zip(d.iter().zip(layer.wt.chunks_exact(ni)))
        {
            *gb += dv;
            axpy(*dv, x, gw);
            if let Some(o) = out.as_deref_mut() {
                axpy(*dv, w, o);
            }
        }
        if let Some(o) = out {
            // ReLU below: no gradient where the unit was off.
            for (oi, a) in o.iter_mut().zip(x) {
                if *a <= 0.0 {
                    *oi = 0.0;
                }
            }
        }
    }
    (g, below)
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

/// `f64 → f32`, rounding to nearest.
fn to_f32(x: f64) -> f32 {
    // why: narrowing a float is the intent (values are probabilities, gradients, weights).
    #[allow(clippy::cast_possible_truncation)]
    let y = x as f32;
    y
}

const LN2_HI: f64 = 6.931_471_803_691_238_164_90e-1;
const LN2_LO: f64 = 1.908_214_929_270_587_700_02e-10;
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
    let e = i32::try_from((bits >> 52) & 0x7FF).unwrap_or(1023).saturating_sub(1023);
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

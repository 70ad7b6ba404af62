//! The learnt head: dense layers with ReLU between them, softmax after the last.

use serde::{Deserialize, Serialize};

/// One dense layer: `y = x · W + b`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dense {
    /// Width of the input.
    pub inputs: usize,
    /// Width of the output.
    pub outputs: usize,
    /// Row-major `[inputs][outputs]`: the weight from input `i` to output `o` is
    /// `weight[i * outputs + o]` (the layout of an ONNX `MatMul` initializer `[inputs, outputs]`).
    pub weight: Vec<f32>,
    /// `[outputs]`.
    pub bias: Vec<f32>,
}

/// A classifier head on pooled (and, for normalising bases, L2-normalised) embeddings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Head {
    /// Applied in order, ReLU between two layers, nothing after the last (its outputs are the
    /// logits). One layer: softmax regression; two: one hidden layer.
    pub layers: Vec<Dense>,
}

impl Dense {
    /// `x · W + b`, summed in input order (the same order every time).
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        let mut y = self.bias.clone();
        for (xi, row) in x.iter().zip(self.weight.chunks(self.outputs.max(1))) {
            for (yo, w) in y.iter_mut().zip(row) {
                *yo += xi * w;
            }
        }
        y
    }
}

impl Head {
    /// Number of classes (outputs of the last layer).
    pub fn classes(&self) -> usize {
        self.layers.last().map_or(0, |l| l.outputs)
    }

    /// Width of the input (the base model's embedding size).
    pub fn inputs(&self) -> usize {
        self.layers.first().map_or(0, |l| l.inputs)
    }

    /// Logits of one embedding.
    pub fn logits(&self, x: &[f32]) -> Vec<f32> {
        let mut h = x.to_vec();
        let last = self.layers.len().saturating_sub(1);
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h);
            if i < last {
                h.iter_mut().for_each(|v| *v = v.max(0.0));
            }
        }
        h
    }

    /// Class probabilities of one embedding (softmax of the logits).
    pub fn probabilities(&self, x: &[f32]) -> Vec<f32> {
        softmax(&self.logits(x))
    }
}

/// Softmax, shifted by the maximum (the same formula as the host's `core::text::softmax`).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|x| (x - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_layers_apply_relu_between_and_softmax_after() {
        let head = Head {
            layers: vec![
                Dense {
                    inputs: 2,
                    outputs: 2,
                    weight: vec![1.0, -1.0, 0.0, 1.0],
                    bias: vec![0.0, 0.0],
                },
                Dense {
                    inputs: 2,
                    outputs: 2,
                    weight: vec![1.0, 0.0, 0.0, 1.0],
                    bias: vec![0.5, 0.0],
                },
            ],
        };
        // hidden = relu([1, -1 + 2]) = [1, 1]; logits = [1.5, 1].
        assert_eq!(head.logits(&[1.0, 2.0]), vec![1.5, 1.0]);
        // hidden = relu([2, -2]) = [2, 0]; logits = [2.5, 0].
        assert_eq!(head.logits(&[2.0, 0.0]), vec![2.5, 0.0]);
        let p = head.probabilities(&[1.0, 2.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[0] > p[1]);
    }
}

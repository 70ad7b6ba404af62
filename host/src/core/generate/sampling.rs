//! Choosing the next token: penalties, temperature, top-k, top-p, min-p, a seeded draw.

use std::collections::HashMap;

/// How the next token is chosen (OpenAI's parameters plus `top_k`, `min_p`,
/// `repetition_penalty`). Temperature 0 is greedy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Divides the logits; 0 = always the most likely token.
    pub temperature: f32,
    /// Keep the `k` most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the most likely tokens whose probabilities sum to `top_p` (1 = all).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` × the most likely one (0 = none).
    pub min_p: f32,
    /// Divides positive (multiplies negative) logits of tokens already seen (1 = off).
    pub repetition_penalty: f32,
    /// Subtracted per earlier occurrence in the generated text.
    pub frequency_penalty: f32,
    /// Subtracted once from every token already generated.
    pub presence_penalty: f32,
    /// Same seed, same prompt, same parameters ⇒ same text.
    pub seed: Option<u64>,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            seed: None,
        }
    }
}

/// SplitMix64: small, fast, and the same numbers on every platform for a seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator seeded from the clock (no `seed` given).
    pub fn from_time() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Self(u64::try_from(nanos & u128::from(u64::MAX)).unwrap_or(0) ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / 9_007_199_254_740_992.0 // 2^53
    }
}

/// Tokens seen so far by one sequence, for the penalties.
#[derive(Debug, Default, Clone)]
pub(crate) struct History {
    /// Occurrences in the generated text.
    pub(crate) generated: HashMap<u32, u32>,
    /// Tokens of the prompt (repetition penalty only).
    pub(crate) prompt: std::collections::HashSet<u32>,
}

/// Index of the largest value (the first of equals).
pub(crate) fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    let mut top = f32::NEG_INFINITY;
    for (i, &x) in v.iter().enumerate() {
        if x > top {
            top = x;
            best = i;
        }
    }
    best
}

/// Log-softmax of `logits`, without allocating the whole vector: returns the log of the sum.
pub(crate) fn log_sum_exp(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|&x| (x - max).exp()).sum();
    max + sum.ln()
}

/// The `n` most likely ids, most likely first.
pub(crate) fn top_n(logits: &[f32], n: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    let by = |a: &usize, b: &usize| {
        let (x, y) = (logits.get(*a), logits.get(*b));
        y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal)
    };
    if n < idx.len() && n > 0 {
        idx.select_nth_unstable_by(n.saturating_sub(1), by);
        idx.truncate(n);
    }
    idx.sort_by(by);
    idx.truncate(n);
    idx
}

fn penalise(logits: &mut [f32], s: &Sampling, h: &History) {
    if s.repetition_penalty != 1.0 && s.repetition_penalty > 0.0 {
        for id in h.prompt.iter().chain(h.generated.keys()) {
            if let Some(l) = logits.get_mut(*id as usize) {
                *l = if *l > 0.0 {
                    *l / s.repetition_penalty
                } else {
                    *l * s.repetition_penalty
                };
            }
        }
    }
    if s.frequency_penalty != 0.0 || s.presence_penalty != 0.0 {
        for (id, &n) in &h.generated {
            if let Some(l) = logits.get_mut(*id as usize) {
                *l -= s.frequency_penalty * n as f32 + s.presence_penalty;
            }
        }
    }
}

/// Picks the next token from one row of logits.
pub(crate) fn sample(logits: &[f32], s: &Sampling, h: &History, rng: &mut Rng) -> u32 {
    let mut l = logits.to_vec();
    penalise(&mut l, s, h);
    if s.temperature <= 0.0 {
        return u32::try_from(argmax(&l)).unwrap_or(0);
    }
    let k = if s.top_k == 0 { l.len() } else { s.top_k };
    let ids = if k < l.len() || s.top_p < 1.0 || s.min_p > 0.0 {
        top_n(&l, k)
    } else {
        (0..l.len()).collect()
    };
    let max = ids
        .iter()
        .filter_map(|&i| l.get(i))
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    let mut probs: Vec<(usize, f64)> = ids
        .iter()
        .filter_map(|&i| Some((i, f64::from((l.get(i)? - max) / s.temperature).exp())))
        .collect();
    let total: f64 = probs.iter().map(|p| p.1).sum();
    if s.min_p > 0.0 {
        // The first entry is the most likely (sorted by top_n).
        let floor = probs.first().map_or(0.0, |p| p.1) * f64::from(s.min_p);
        probs.retain(|p| p.1 >= floor);
    }
    if s.top_p < 1.0 {
        let want = f64::from(s.top_p) * total;
        let mut acc = 0.0;
        let mut keep = 0usize;
        for p in &probs {
            acc += p.1;
            keep = keep.saturating_add(1);
            if acc >= want {
                break;
            }
        }
        probs.truncate(keep.max(1));
    }
    let total: f64 = probs.iter().map(|p| p.1).sum();
    let mut u = rng.next_f64() * total;
    for &(i, p) in &probs {
        if u < p {
            return u32::try_from(i).unwrap_or(0);
        }
        u -= p;
    }
    probs
        .last()
        .and_then(|p| u32::try_from(p.0).ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn greedy() -> Sampling {
        Sampling {
            temperature: 0.0,
            ..Sampling::default()
        }
    }

    #[test]
    fn temperature_zero_is_argmax_and_penalties_change_it() {
        let logits = [1.0, 3.0, 2.0];
        let mut h = History::default();
        let mut rng = Rng::new(1);
        assert_eq!(sample(&logits, &greedy(), &h, &mut rng), 1);
        h.generated.insert(1, 2);
        let s = Sampling {
            frequency_penalty: 1.0,
            ..greedy()
        };
        assert_eq!(sample(&logits, &s, &h, &mut rng), 2, "3 - 2×1 < 2");
        let s = Sampling {
            repetition_penalty: 2.0,
            ..greedy()
        };
        assert_eq!(sample(&logits, &s, &h, &mut rng), 2, "3 / 2 < 2");
    }

    #[test]
    fn same_seed_same_draws_and_filters_hold() {
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.3).collect();
        let s = Sampling {
            seed: Some(7),
            ..Sampling::default()
        };
        let h = History::default();
        let draw = |seed| {
            let mut rng = Rng::new(seed);
            (0..20)
                .map(|_| sample(&logits, &s, &h, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let k1 = Sampling {
            top_k: 1,
            ..Sampling::default()
        };
        let mut rng = Rng::new(3);
        let best = u32::try_from(argmax(&logits)).unwrap();
        for _ in 0..20 {
            assert_eq!(sample(&logits, &k1, &h, &mut rng), best);
        }
        let p = Sampling {
            top_p: 0.01,
            ..Sampling::default()
        };
        let m = Sampling {
            min_p: 0.99,
            ..Sampling::default()
        };
        for _ in 0..20 {
            let t = sample(&logits, &p, &h, &mut rng) as usize;
            assert!((logits[t] - 1.8).abs() < 1e-6, "top_p keeps only the best");
            let t = sample(&logits, &m, &h, &mut rng) as usize;
            assert!((logits[t] - 1.8).abs() < 1e-6, "min_p keeps only the best");
        }
    }

    #[test]
    fn top_n_is_sorted_and_lse_is_stable() {
        let l = [0.5, 9.0, -1.0, 3.0];
        assert_eq!(top_n(&l, 2), vec![1, 3]);
        let lse = log_sum_exp(&[1000.0, 1000.0]);
        assert!((lse - (1000.0 + 2f32.ln())).abs() < 1e-3);
    }
}

//! The seeded random source of training (SplitMix64) and the stratified train/validation split.

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and the same sequence everywhere.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        // 2^-53 · (a 53-bit integer): exact, no rounding.
        let bits = self.next_u64() >> 11;
        f64::from(u32::try_from(bits >> 21).unwrap_or(0)) * 2f64.powi(-32)
            + f64::from(u32::try_from(bits & 0x1F_FFFF).unwrap_or(0)) * 2f64.powi(-53)
    }

    /// Uniform in `0..n` (`n > 0`; 0 when `n == 0`), by rejection so there is no bias.
    pub fn below(&mut self, n: usize) -> usize {
        let Some(n) = u64::try_from(n).ok().filter(|n| *n > 0) else {
            return 0;
        };
        // The largest multiple of n: values below it are uniform modulo n.
        let zone = u64::MAX.wrapping_sub(u64::MAX.checked_rem(n).unwrap_or(0));
        loop {
            let r = self.next_u64();
            if r < zone {
                return r
                    .checked_rem(n)
                    .and_then(|v| usize::try_from(v).ok())
                    .unwrap_or(0);
            }
        }
    }

    /// Shuffles in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i.saturating_add(1));
            items.swap(i, j);
        }
    }
}

/// Row indexes of the two parts, each in increasing order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Rows trained on.
    pub train: Vec<usize>,
    /// Rows held out.
    pub validation: Vec<usize>,
}

/// Holds out `share` of each class (rounded, at least one, leaving at least one to train on),
/// chosen by a SplitMix64 seeded with `seed`. Classes are taken in index order, so the same
/// labels, share and seed give the same split. A class with fewer than two rows stays whole in
/// training (the dataset check refuses such data before).
pub fn stratified(labels: &[usize], classes: usize, share: f32, seed: u64) -> Split {
    let mut rng = SplitMix64::new(seed);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (row, class) in labels.iter().enumerate() {
        if let Some(rows) = by_class.get_mut(*class) {
            rows.push(row);
        }
    }
    let mut split = Split {
        train: Vec::with_capacity(labels.len()),
        validation: Vec::new(),
    };
    for mut rows in by_class {
        rng.shuffle(&mut rows);
        let n = rows.len();
        let want = (f64::from(share) * n as f64).round();
        // why: `want` is in [0, n] (share is checked to be in (0, 1)), so it fits a usize.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let held = (want as usize).clamp(1, n.saturating_sub(1));
        let held = if n < 2 { 0 } else { held };
        let (v, t) = rows.split_at(held.min(n));
        split.validation.extend_from_slice(v);
        split.train.extend_from_slice(t);
    }
    split.train.sort_unstable();
    split.validation.sort_unstable();
    split
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)] // why: test data built from small counts and f64 samples
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_reference_sequence() {
        // First outputs of the reference C implementation for seed 1234567.
        let mut r = SplitMix64::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
        assert_eq!(r.next_u64(), 9817491932198370423);
    }

    #[test]
    fn uniform_values_stay_in_range() {
        let mut r = SplitMix64::new(7);
        for _ in 0..10_000 {
            let x = r.next_f64();
            assert!((0.0..1.0).contains(&x));
            assert!(r.below(3) < 3);
        }
        assert_eq!(r.below(0), 0);
    }

    #[test]
    fn every_class_is_in_both_parts_with_its_share() {
        // 10 of class 0, 3 of class 1, 2 of class 2.
        let mut labels = vec![0; 10];
        labels.extend([1, 1, 1, 2, 2]);
        let s = stratified(&labels, 3, 0.2, 42);
        let count = |part: &[usize], c: usize| part.iter().filter(|i| labels[**i] == c).count();
        assert_eq!(count(&s.validation, 0), 2);
        assert_eq!(count(&s.validation, 1), 1, "at least one held out");
        assert_eq!(count(&s.validation, 2), 1);
        assert_eq!(count(&s.train, 2), 1, "at least one left to train on");
        let mut all: Vec<usize> = s.train.iter().chain(&s.validation).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..labels.len()).collect::<Vec<_>>(), "a partition");
    }

    #[test]
    fn the_split_is_decided_by_the_seed() {
        let labels: Vec<usize> = (0..200).map(|i| i % 2).collect();
        let a = stratified(&labels, 2, 0.25, 1);
        assert_eq!(a, stratified(&labels, 2, 0.25, 1));
        assert_ne!(a, stratified(&labels, 2, 0.25, 2));
        assert_eq!(a.validation.len(), 50);
    }
}

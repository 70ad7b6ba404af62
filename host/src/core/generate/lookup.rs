//! Prompt-lookup drafts for speculative decoding (docs/generation.md, "Speculative decoding").
//!
//! The draft of a sequence is what followed the most recent earlier occurrence of its last
//! `n` tokens (n from [`MAX_NGRAM`] down to `min_ngram`) in its own prompt and output. One
//! decode step then runs the next token and the draft together; the engine keeps the drafted
//! tokens its sampler would have picked anyway and drops the rest, so the output is the
//! sampler's, token for token.

/// Longest suffix looked up.
pub(crate) const MAX_NGRAM: usize = 3;

/// Up to `k` tokens that followed the most recent earlier occurrence of the last `n` tokens
/// of `tokens` (the longest `n` from [`MAX_NGRAM`] down to `min_ngram` that occurs); empty
/// when none does.
pub(crate) fn draft(tokens: &[u32], min_ngram: usize, k: usize) -> Vec<u32> {
    let len = tokens.len();
    if k == 0 {
        return Vec::new();
    }
    for n in (min_ngram.max(1)..=MAX_NGRAM).rev() {
        let Some(suffix) = tokens.get(len.saturating_sub(n)..).filter(|s| s.len() == n) else {
            continue;
        };
        // Start `i` of an earlier occurrence; what follows it is `tokens[i + n..]`, which
        // must hold at least one token that is not the suffix itself.
        let found = (0..len.saturating_sub(n))
            .rev()
            .find(|&i| tokens.get(i..i.saturating_add(n)) == Some(suffix));
        if let Some(i) = found {
            let from = i.saturating_add(n);
            let to = from.saturating_add(k).min(len);
            return tokens.get(from..to).map(<[u32]>::to_vec).unwrap_or_default();
        }
    }
    Vec::new()
}

/// Whether a sequence drafts at its next step: drafts that keep too few tokens cost more
/// than they save (a step of `k + 1` tokens costs well over one token's step), so after
/// they fail the sequence waits a number of steps, doubled on every further failure, before
/// it tries again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gate {
    /// Running mean of the drafted tokens kept per draft (halved weights).
    gain: f32,
    /// Steps to go before the next draft.
    wait: u32,
    /// The wait set at the last failure (0 after a success).
    backoff: u32,
}

/// Below this mean of kept tokens per draft, a draft step costs more than it saves.
const MIN_GAIN: f32 = 0.5;
/// First and longest wait after failing drafts, in steps.
const FIRST_WAIT: u32 = 4;
const LONGEST_WAIT: u32 = 64;

impl Default for Gate {
    fn default() -> Self {
        Self {
            gain: 1.0,
            wait: 0,
            backoff: 0,
        }
    }
}

impl Gate {
    /// Called once per step: whether this step may draft.
    pub(crate) fn ready(&mut self) -> bool {
        if self.wait > 0 {
            self.wait = self.wait.saturating_sub(1);
            return false;
        }
        true
    }

    /// After a draft of which `kept` tokens were kept.
    pub(crate) fn update(&mut self, kept: usize) {
        let kept = u16::try_from(kept).map_or(f32::from(u16::MAX), f32::from);
        self.gain = (self.gain + kept) / 2.0;
        if self.gain < MIN_GAIN {
            self.backoff = self.backoff.saturating_mul(2).clamp(FIRST_WAIT, LONGEST_WAIT);
            self.wait = self.backoff;
            // One more failure after the wait backs off again; one kept token resumes.
            self.gain = MIN_GAIN;
        } else {
            self.backoff = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_recent_match_drafts_what_followed_it() {
        // "a b c d | a b c" → the 3-gram "a b c" occurred at 0: draft "d a b".
        let t = [1, 2, 3, 4, 1, 2, 3];
        assert_eq!(draft(&t, 1, 3), vec![4, 1, 2]);
        assert_eq!(draft(&t, 1, 1), vec![4]);
        // The most recent occurrence wins: "x 9 | x 8 | x" drafts 8 (then x).
        assert_eq!(draft(&[7, 9, 7, 8, 7], 1, 2), vec![8, 7]);
        // The draft stops at the end of what is known.
        assert_eq!(draft(&[5, 6, 5], 1, 4), vec![6, 5]);
    }

    #[test]
    fn no_match_or_too_short_a_match_drafts_nothing() {
        assert!(draft(&[1, 2, 3, 4], 1, 3).is_empty());
        assert!(draft(&[], 1, 3).is_empty());
        assert!(draft(&[1], 1, 3).is_empty());
        // Only a 1-token match ("7"): refused when 2-grams are the minimum.
        assert!(draft(&[7, 1, 2, 7], 2, 3).is_empty());
        assert_eq!(draft(&[7, 1, 2, 7], 1, 3), vec![1, 2, 7]);
        assert!(draft(&[1, 2, 1, 2], 1, 0).is_empty());
    }

    #[test]
    fn a_longer_match_is_preferred_to_a_more_recent_shorter_one() {
        // Suffix "1 2": the 2-gram occurs at 0 (followed by 3); the 1-gram "2" occurs more
        // recently at 4 (followed by 9).
        assert_eq!(draft(&[1, 2, 3, 0, 2, 9, 1, 2], 1, 1), vec![3]);
    }

    #[test]
    fn failing_drafts_back_off_and_a_kept_one_resumes() {
        let mut g = Gate::default();
        assert!(g.ready());
        g.update(0); // mean 0.5: still drafting
        assert!(g.ready());
        g.update(0); // 0.25: waits 4 steps
        let waits = |g: &mut Gate| (0..100).take_while(|_| !g.ready()).count();
        assert_eq!(waits(&mut g), 4);
        g.update(0);
        assert_eq!(waits(&mut g), 8);
        for _ in 0..5 {
            g.update(0);
            let _ = waits(&mut g);
        }
        g.update(0);
        assert_eq!(waits(&mut g), 64, "the wait stops growing");
        g.update(2); // a draft that kept 2: drafting every step again
        assert!(g.ready() && g.ready());
        g.update(0);
        assert!(g.ready(), "one failure after a success does not stop it");
        g.update(0);
        assert_eq!(waits(&mut g), 4, "the back-off starts over");
    }
}

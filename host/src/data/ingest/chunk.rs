//! Chunking by the embedding model's tokens: windows of at most `size` tokens that overlap
//! by `overlap` tokens, ending (and starting) on word boundaries where a word allows it.

use crate::core::text::TokenSpan;

/// Cuts `text` (whose tokens are `spans`) into chunks of at most `size` tokens, consecutive
/// chunks sharing about `overlap` tokens (`overlap < size`). Chunks are trimmed; empty
/// ones are dropped.
pub fn chunk(text: &str, spans: &[TokenSpan], size: usize, overlap: usize) -> Vec<String> {
    let size = size.max(1);
    let overlap = overlap.min(size.saturating_sub(1));
    let n = spans.len();
    let mut out = Vec::new();
    let mut start = 0usize;
    while start < n {
        let mut end = start.saturating_add(size).min(n);
        if end < n {
            end = snap(spans, start, end);
        }
        let from = spans.get(start).map_or(0, |s| s.start);
        let to = spans.get(end.saturating_sub(1)).map_or(from, |s| s.end);
        if let Some(t) = text.get(from..to).map(str::trim)
            && !t.is_empty()
        {
            out.push(t.to_string());
        }
        if end >= n {
            break;
        }
        let next = end.saturating_sub(overlap).max(start.saturating_add(1));
        start = snap(spans, start, next);
    }
    out
}

/// Moves a cut at token `i` back to the start of its word, staying after `floor`; a word
/// that reaches back to `floor` is cut where it is.
fn snap(spans: &[TokenSpan], floor: usize, i: usize) -> usize {
    let mut s = i;
    while s > floor.saturating_add(1) && same_word(spans, s) {
        s = s.saturating_sub(1);
    }
    if same_word(spans, s) { i } else { s }
}

/// Whether token `i` continues the word of token `i - 1` (a cut before it splits a word).
fn same_word(spans: &[TokenSpan], i: usize) -> bool {
    let (Some(a), Some(b)) = (
        i.checked_sub(1).and_then(|p| spans.get(p)),
        spans.get(i),
    ) else {
        return false;
    };
    a.word.is_some() && a.word == b.word
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whitespace "tokenizer": each word is split into pieces of at most 3 bytes.
    fn spans(text: &str) -> Vec<TokenSpan> {
        let mut out = Vec::new();
        let mut pos = 0usize;
        for (word, w) in text.split(' ').enumerate() {
            let end = pos.saturating_add(w.len());
            let mut s = pos;
            while s < end {
                let e = s.saturating_add(3).min(end);
                out.push(TokenSpan { start: s, end: e, word: u32::try_from(word).ok() });
                s = e;
            }
            pos = end.saturating_add(1);
        }
        out
    }

    #[test]
    fn windows_overlap_and_keep_words_whole() {
        let text = "aa bb cc dd ee ff gg hh";
        let c = chunk(text, &spans(text), 3, 1);
        assert_eq!(c, ["aa bb cc", "cc dd ee", "ee ff gg", "gg hh"]);
        // Words of two tokens are never cut while they fit.
        let text = "abcdef gh ijklmn op";
        let c = chunk(text, &spans(text), 3, 0);
        assert_eq!(c, ["abcdef gh", "ijklmn op"]);
        // A word longer than a chunk is cut inside.
        let text = "abcdefghijkl";
        assert_eq!(chunk(text, &spans(text), 2, 0), ["abcdef", "ghijkl"]);
        // Every token is in some chunk, whatever the sizes.
        let text = "one two three four five six seven eight nine ten eleven twelve";
        for size in 2..8 {
            for overlap in 0..size {
                let c = chunk(text, &spans(text), size, overlap);
                for w in text.split(' ') {
                    assert!(c.iter().any(|x| x.contains(w)), "{size}/{overlap}: {w} in {c:?}");
                }
            }
        }
        assert!(chunk("", &[], 4, 1).is_empty());
    }
}

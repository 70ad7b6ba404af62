//! Incremental detokenising (only complete UTF-8 characters leave) and stop strings
//! (matched across token boundaries, never emitted).

use crate::core::text::{TextEncoder, TextError};

const REPLACEMENT: char = '\u{FFFD}';

/// Turns token ids into text one token at a time. A token that ends inside a character
/// (byte-level vocabularies split multi-byte characters) adds nothing until the character
/// is complete. Decoding a window of the last tokens (not single tokens) keeps the spaces
/// and merges that decoders apply between tokens.
#[derive(Debug, Default, Clone)]
pub struct Detokenizer {
    ids: Vec<u32>,
    prefix: usize,
    read: usize,
}

impl Detokenizer {
    /// Adds a token; returns the text it completes (possibly empty).
    pub fn push(&mut self, enc: &TextEncoder, id: u32) -> Result<String, TextError> {
        self.ids.push(id);
        self.take(enc, false)
    }

    /// Whatever is left at the end (an incomplete character comes out as U+FFFD).
    pub fn flush(&mut self, enc: &TextEncoder) -> Result<String, TextError> {
        self.take(enc, true)
    }

    fn take(&mut self, enc: &TextEncoder, last: bool) -> Result<String, TextError> {
        let window = self.ids.get(self.prefix..).unwrap_or_default();
        let done = self
            .ids
            .get(self.prefix..self.read)
            .unwrap_or_default();
        let before = enc.decode(done, true)?;
        let now = enc.decode(window, true)?;
        if now.len() <= before.len() || (!last && now.ends_with(REPLACEMENT)) {
            return Ok(String::new());
        }
        let Some(piece) = now.get(before.len()..) else {
            return Ok(String::new());
        };
        let piece = piece.to_string();
        self.prefix = self.read;
        self.read = self.ids.len();
        Ok(piece)
    }
}

/// Holds back text that may be the start of a stop string.
#[derive(Debug, Default, Clone)]
pub struct StopMatcher {
    stops: Vec<String>,
    pending: String,
}

impl StopMatcher {
    /// Matcher for these stop strings (empty strings are ignored).
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            pending: String::new(),
        }
    }

    /// Adds text; returns what may be emitted now and whether a stop string was found
    /// (then the text before it is returned and nothing after it ever is).
    pub fn push(&mut self, text: &str) -> (String, bool) {
        self.pending.push_str(text);
        let first = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min();
        if let Some(at) = first {
            let out = self.pending.get(..at).unwrap_or_default().to_string();
            self.pending.clear();
            return (out, true);
        }
        let keep = self.held_suffix();
        let cut = self.pending.len().saturating_sub(keep);
        let out = self.pending.get(..cut).unwrap_or_default().to_string();
        self.pending = self.pending.get(cut..).unwrap_or_default().to_string();
        (out, false)
    }

    /// The text held back, at the end of the generation.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }

    /// Length in bytes of the longest end of `pending` that starts some stop string.
    fn held_suffix(&self) -> usize {
        let p = &self.pending;
        p.char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let tail = p.get(i..).unwrap_or_default();
                self.stops.iter().any(|s| s.starts_with(tail))
            })
            .map_or(0, |i| p.len().saturating_sub(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_strings_match_across_pieces_and_are_never_emitted() {
        let mut m = StopMatcher::new(&["END".into(), "\n\n".into()]);
        assert_eq!(m.push("hello E"), ("hello ".into(), false));
        assert_eq!(m.push("N"), (String::new(), false));
        assert_eq!(m.push("Dless"), (String::new(), true));
        let mut m = StopMatcher::new(&["END".into()]);
        assert_eq!(m.push("an E"), ("an ".into(), false));
        assert_eq!(m.push("x"), ("Ex".into(), false), "a false start is released");
        assert_eq!(m.push("E"), (String::new(), false));
        assert_eq!(m.flush(), "E");
        let mut m = StopMatcher::new(&["é!".into()]);
        assert_eq!(m.push("café"), ("caf".into(), false));
        assert_eq!(m.push("!x"), (String::new(), true));
    }

    #[test]
    fn characters_are_never_split() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/tiny-llama/tokenizer.json"
        );
        let enc = TextEncoder::load(std::path::Path::new(path), Some(256)).unwrap();
        let text = "the café in 東京 and 中文 🎉 says hello";
        let ids = enc.ids(text, false).unwrap();
        assert!(ids.len() > text.chars().count() / 2, "multi-byte characters span tokens");
        let mut d = Detokenizer::default();
        let mut out = String::new();
        let mut empty = 0;
        for id in ids {
            let piece = d.push(&enc, id).unwrap();
            assert!(!piece.contains('\u{FFFD}'), "{piece:?} has half a character");
            empty += usize::from(piece.is_empty());
            out.push_str(&piece);
        }
        out.push_str(&d.flush(&enc).unwrap());
        assert_eq!(out, text);
        assert!(empty >= 5, "tokens inside a character add nothing ({empty})");
    }
}

//! Spans and their overlap-free merge.
//!
//! **On overlap a pattern span wins over a model span.** Pattern spans are validated
//! (Luhn, mod-97, address parsing) and have exact boundaries; a token-classification model
//! labels word pieces and, measured with `pii-ner`, reads the digit groups of a card number
//! or an IBAN as several `PHONE` fragments. Keeping the validated span whole and dropping
//! the fragments that touch it replaces the value once, with its right type.

/// Where a span came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A validated pattern ([`crate::patterns`]).
    Pattern,
    /// A named-entity model.
    Model,
}

/// A region of a text holding one entity. Offsets are bytes, `end` exclusive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// Start (bytes).
    pub start: usize,
    /// End (bytes, exclusive).
    pub end: usize,
    /// Entity type, e.g. `EMAIL`, `PERSON`.
    pub kind: String,
    /// Who found it.
    pub source: Source,
}

impl Span {
    fn overlaps(&self, other: &Span) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// Whether the span is non-empty and lies on character boundaries of `text`.
    pub fn fits(&self, text: &str) -> bool {
        self.start < self.end
            && self.end <= text.len()
            && text.is_char_boundary(self.start)
            && text.is_char_boundary(self.end)
    }
}

/// The entity type of a model label (its `B-`/`I-`/`S-`/`E-` prefix removed): the labels of
/// `pii-ner` (Rampart) and the CoNLL labels (`PER`, `LOC`, `ORG`) of other NER models map to
/// one vocabulary; any other label is kept as it is.
///
/// | type | labels |
/// |---|---|
/// | `PERSON` | `GIVEN_NAME`, `SURNAME`, `PER`, `PERSON` |
/// | `LOC` | `CITY`, `STATE`, `LOC`, `GPE` |
/// | `ADDRESS` | `BUILDING_NUMBER`, `STREET_NAME`, `SECONDARY_ADDRESS`, `ZIP_CODE` |
/// | `ORG` | `ORG` |
pub fn canonical_type(label: &str) -> &str {
    let bare = ["B-", "I-", "S-", "E-"]
        .iter()
        .find_map(|p| label.strip_prefix(p))
        .unwrap_or(label);
    match bare {
        "GIVEN_NAME" | "SURNAME" | "PER" | "PERSON" => "PERSON",
        "CITY" | "STATE" | "LOC" | "GPE" => "LOC",
        "BUILDING_NUMBER" | "STREET_NAME" | "SECONDARY_ADDRESS" | "ZIP_CODE" => "ADDRESS",
        other => other,
    }
}

/// Joins model spans of the same type separated only by spaces or tabs (a given name and a
/// surname become one `PERSON`; a building number and a street one `ADDRESS`). `spans` must
/// be sorted by start.
pub fn join_adjacent(text: &str, spans: Vec<Span>) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::with_capacity(spans.len());
    for s in spans {
        if let Some(last) = out.last_mut()
            && last.kind == s.kind
            && last.end <= s.start
            && text
                .get(last.end..s.start)
                .is_some_and(|gap| gap.chars().all(|c| c == ' ' || c == '\t'))
        {
            last.end = s.end;
            continue;
        }
        out.push(s);
    }
    out
}

/// Merges pattern spans and model spans into one list sorted by start, without overlaps:
/// every pattern span that fits `text` is kept (they do not overlap each other, see
/// [`crate::find_patterns`]); a model span is kept when it fits `text` and overlaps no kept
/// span (between two overlapping model spans the earlier, then the longer, wins).
pub fn merge(text: &str, patterns: Vec<Span>, model: Vec<Span>) -> Vec<Span> {
    let mut kept: Vec<Span> = Vec::with_capacity(patterns.len().saturating_add(model.len()));
    for p in patterns {
        if p.fits(text) && !kept.iter().any(|k| k.overlaps(&p)) {
            kept.push(p);
        }
    }
    let mut model = model;
    model.sort_by_key(|s| (s.start, std::cmp::Reverse(s.end)));
    for m in model {
        if m.fits(text) && !kept.iter().any(|k| k.overlaps(&m)) {
            kept.push(m);
        }
    }
    kept.sort_by_key(|s| s.start);
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(start: usize, end: usize, kind: &str, source: Source) -> Span {
        Span {
            start,
            end,
            kind: kind.into(),
            source,
        }
    }

    #[test]
    fn patterns_win_and_the_result_has_no_overlap() {
        let text = "card 4111 1111 1111 1111 of Ann Lee";
        let p = vec![span(5, 24, "CREDIT_CARD", Source::Pattern)];
        let m = vec![
            span(10, 19, "PHONE", Source::Model),  // inside the card
            span(28, 31, "PERSON", Source::Model), // Ann
            span(28, 35, "PERSON", Source::Model), // Ann Lee (overlaps Ann, same start, longer)
            span(30, 99, "PERSON", Source::Model), // out of range
        ];
        let out = merge(text, p, m);
        assert_eq!(
            out,
            [
                span(5, 24, "CREDIT_CARD", Source::Pattern),
                span(28, 35, "PERSON", Source::Model)
            ]
        );
        for w in out.windows(2) {
            assert!(w[0].end <= w[1].start);
        }
    }

    #[test]
    fn spans_off_character_boundaries_are_dropped() {
        let text = "é x";
        assert!(merge(text, vec![], vec![span(1, 3, "X", Source::Model)]).is_empty());
        assert_eq!(
            merge(text, vec![], vec![span(0, 2, "X", Source::Model)]).len(),
            1
        );
    }

    #[test]
    fn names_join_and_labels_map() {
        let text = "John Smith, Bob";
        let spans = [
            (0, 4, "B-GIVEN_NAME"),
            (5, 10, "SURNAME"),
            (12, 15, "GIVEN_NAME"),
        ]
        .map(|(s, e, l)| span(s, e, canonical_type(l), Source::Model));
        let joined = join_adjacent(text, spans.to_vec());
        assert_eq!(
            joined,
            [
                span(0, 10, "PERSON", Source::Model),
                span(12, 15, "PERSON", Source::Model)
            ]
        );
        assert_eq!(canonical_type("I-CITY"), "LOC");
        assert_eq!(canonical_type("ORG"), "ORG");
        assert_eq!(canonical_type("PASSPORT"), "PASSPORT");
    }
}

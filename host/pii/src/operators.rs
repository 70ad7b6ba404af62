//! What replaces an entity: the operators, and the replacement of spans in a text.

use crate::merge::Span;

/// How an entity is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operator {
    /// Removed: the entity's text is deleted.
    Redact,
    /// Every character becomes `*` (the length in characters is kept).
    Mask,
    /// Its type in angle brackets: `<EMAIL>`.
    Tag,
    /// A keyed hash of the value from the caller ([`Keyed::hash`]): equal values give equal
    /// hashes; one-way.
    Hash,
    /// A reversible token from the caller ([`Keyed::pseudonym`]), e.g. `<PERSON_7f3a9c2e>`.
    Pseudonymize,
}

impl Operator {
    /// Every operator, in the order of [`Operator::NAMES`].
    pub const ALL: [Operator; 5] = [
        Operator::Redact,
        Operator::Mask,
        Operator::Tag,
        Operator::Hash,
        Operator::Pseudonymize,
    ];
    /// The accepted names.
    pub const NAMES: [&'static str; 5] = ["redact", "mask", "tag", "hash", "pseudonymize"];

    /// The operator called `name` (exact, lower case).
    pub fn parse(name: &str) -> Option<Operator> {
        Self::NAMES
            .iter()
            .zip(Self::ALL)
            .find_map(|(n, op)| (*n == name).then_some(op))
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Operator::Redact => "redact",
            Operator::Mask => "mask",
            Operator::Tag => "tag",
            Operator::Hash => "hash",
            Operator::Pseudonymize => "pseudonymize",
        }
    }
}

/// The keyed operators, supplied by the caller: the crate holds no key and no storage.
pub trait Keyed {
    /// What can fail (e.g. the vault's store).
    type Error;
    /// A one-way keyed hash of `original`.
    fn hash(&mut self, kind: &str, original: &str) -> Result<String, Self::Error>;
    /// A stable, reversible token for `original` (see [`crate::tokens::format`]).
    fn pseudonym(&mut self, kind: &str, original: &str) -> Result<String, Self::Error>;
}

/// An entity and what replaced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaced {
    /// The entity (offsets into the original text).
    pub span: Span,
    /// The operator applied.
    pub operator: Operator,
    /// The text put in its place.
    pub replacement: String,
}

/// Replaces each span by what `replacement(span, original)` gives. Spans that overlap an
/// earlier span or do not fit the text are left out (after [`crate::merge`] there are none).
/// Returns the new text and the spans replaced with their replacements, in order.
pub fn replace_with<E>(
    text: &str,
    spans: &[Span],
    mut replacement: impl FnMut(&Span, &str) -> Result<String, E>,
) -> Result<(String, Vec<(Span, String)>), E> {
    let mut sorted: Vec<&Span> = spans.iter().filter(|s| s.fits(text)).collect();
    sorted.sort_by_key(|s| s.start);
    let mut out = String::with_capacity(text.len());
    let mut done = Vec::with_capacity(sorted.len());
    let mut pos = 0;
    for s in sorted {
        let (Some(before), Some(original)) = (text.get(pos..s.start), text.get(s.start..s.end))
        else {
            continue; // overlaps the span before it
        };
        let r = replacement(s, original)?;
        out.push_str(before);
        out.push_str(&r);
        done.push((s.clone(), r));
        pos = s.end;
    }
    out.push_str(text.get(pos..).unwrap_or_default());
    Ok((out, done))
}

/// Replaces each span with the operator `operator_of(type)` chooses.
pub fn apply<K: Keyed>(
    text: &str,
    spans: &[Span],
    operator_of: impl Fn(&str) -> Operator,
    keyed: &mut K,
) -> Result<(String, Vec<Replaced>), K::Error> {
    let (out, done) = replace_with(text, spans, |s, original| match operator_of(&s.kind) {
        Operator::Redact => Ok(String::new()),
        Operator::Mask => Ok("*".repeat(original.chars().count())),
        Operator::Tag => Ok(format!("<{}>", s.kind)),
        Operator::Hash => keyed.hash(&s.kind, original),
        Operator::Pseudonymize => keyed.pseudonym(&s.kind, original),
    })?;
    let replaced = done
        .into_iter()
        .map(|(span, replacement)| Replaced {
            operator: operator_of(&span.kind),
            span,
            replacement,
        })
        .collect();
    Ok((out, replaced))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::Source;

    struct Fixed;
    impl Keyed for Fixed {
        type Error = ();
        fn hash(&mut self, _: &str, original: &str) -> Result<String, ()> {
            Ok(format!("h{}", original.len()))
        }
        fn pseudonym(&mut self, kind: &str, _: &str) -> Result<String, ()> {
            Ok(crate::tokens::format(kind, "0123abcd"))
        }
    }

    #[test]
    fn each_operator() {
        let text = "Ann Lee, ann@x.org";
        let spans = [
            Span {
                start: 0,
                end: 7,
                kind: "PERSON".into(),
                source: Source::Model,
            },
            Span {
                start: 9,
                end: 18,
                kind: "EMAIL".into(),
                source: Source::Pattern,
            },
        ];
        let run = |a: Operator, b: Operator| {
            apply(
                text,
                &spans,
                |k| if k == "PERSON" { a } else { b },
                &mut Fixed,
            )
            .unwrap()
            .0
        };
        assert_eq!(run(Operator::Redact, Operator::Tag), ", <EMAIL>");
        assert_eq!(run(Operator::Mask, Operator::Hash), "*******, h9");
        assert_eq!(
            run(Operator::Pseudonymize, Operator::Mask),
            "<PERSON_0123abcd>, *********"
        );
        let (_, replaced) = apply(text, &spans, |_| Operator::Tag, &mut Fixed).unwrap();
        assert_eq!(replaced[1].replacement, "<EMAIL>");
        assert_eq!(replaced[1].operator, Operator::Tag);
    }

    #[test]
    fn names_round_trip() {
        for (n, op) in Operator::NAMES.iter().zip(Operator::ALL) {
            assert_eq!(Operator::parse(n), Some(op));
            assert_eq!(op.name(), *n);
        }
        assert_eq!(Operator::parse("Mask"), None);
    }
}

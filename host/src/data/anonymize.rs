//! Anonymisation: entities from the `pii-ner` model and the validated patterns of
//! `llmos-pii`, merged without overlaps (patterns win, see [`llmos_pii::merge`]), each
//! replaced by the operator its type is given (default `tag`). Shared by
//! `POST /v1/anonymize` and `llmos anonymize`.
//!
//! Offsets in [`Found`] are **characters** (Unicode scalar values) of the input text, as
//! `/v1/entities` reports them; inside, spans are bytes.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

use crate::core::engine::{Bounds, LoadError, Model, TaskError};
use crate::core::text::{TextError, Truncation};
use crate::data::vault::{self, Vault, VaultError};
use llmos_pii::{Operator, Source, Span, canonical_type, find_patterns, join_adjacent, merge};

/// The model that finds names, places, addresses and identifiers.
pub const NER_MODEL: &str = "pii-ner";

/// Types only the validated patterns find.
const PATTERN_ONLY: [&str; 3] = ["CREDIT_CARD", "IBAN", "IP"];

/// Every entity type the host detects: the patterns' (`EMAIL` and `PHONE` are found by the
/// model too) and `pii-ner`'s labels mapped by [`canonical_type`]. `ORG` is not here:
/// `pii-ner` has no organisation label.
pub const ENTITY_TYPES: [&str; 15] = [
    "PERSON",
    "LOC",
    "ADDRESS",
    "EMAIL",
    "PHONE",
    "CREDIT_CARD",
    "IBAN",
    "IP",
    "URL",
    "TAX_ID",
    "BANK_ACCOUNT",
    "ROUTING_NUMBER",
    "GOVERNMENT_ID",
    "PASSPORT",
    "DRIVERS_LICENSE",
];

/// Errors of anonymisation.
#[derive(Debug, thiserror::Error)]
pub enum AnonymizeError {
    /// An entity type that is not detected.
    #[error("unknown entity type {name:?} in `{field}`: accepted are {}", ENTITY_TYPES.join(", "))]
    UnknownType {
        /// The request field (`entities` or `operators`).
        field: &'static str,
        /// What was given.
        name: String,
    },
    /// An operator that does not exist.
    #[error("`operators.{kind}` is {name:?}: accepted operators are {}", Operator::NAMES.join(", "))]
    UnknownOperator {
        /// The entity type it was given for.
        kind: String,
        /// What was given.
        name: String,
    },
    /// More pieces than the model takes in one request.
    #[error(
        "the texts make {pieces} pieces of at most {chars} characters for {NER_MODEL}, which takes at most {max} per request: send less text per request (about {} characters)",
        max.saturating_mul(*chars)
    )]
    TooMuchText {
        /// Pieces the texts were cut into.
        pieces: usize,
        /// Characters per piece at most.
        chars: usize,
        /// The model's limit of inputs per request.
        max: usize,
    },
    /// The vault failed, or the scope is not accepted.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The model failed.
    #[error(transparent)]
    Task(#[from] TaskError),
    /// The model could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// What to detect and how to replace it, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Operator per entity type; a type not listed is tagged.
    pub operators: BTreeMap<String, Operator>,
    /// Vault scope of pseudonyms and hashes.
    pub scope: String,
    /// Types to detect.
    pub entities: Vec<String>,
    /// Report each entity's original text.
    pub include_text: bool,
    /// The model drops the request when it is not done by then (the HTTP request timeout).
    pub deadline: Option<Instant>,
}

fn known_type(field: &'static str, name: &str) -> Result<String, AnonymizeError> {
    if ENTITY_TYPES.contains(&name) {
        Ok(name.to_string())
    } else {
        Err(AnonymizeError::UnknownType {
            field,
            name: name.to_string(),
        })
    }
}

impl Options {
    /// Checks names: operators (type → operator name), scope (default `default`), entity
    /// types to detect (default all).
    pub fn new(
        operators: &BTreeMap<String, String>,
        scope: Option<&str>,
        entities: Option<&[String]>,
        include_text: bool,
    ) -> Result<Self, AnonymizeError> {
        let mut ops = BTreeMap::new();
        for (kind, name) in operators {
            let op = Operator::parse(name).ok_or_else(|| AnonymizeError::UnknownOperator {
                kind: kind.clone(),
                name: name.clone(),
            })?;
            ops.insert(known_type("operators", kind)?, op);
        }
        let scope = scope.unwrap_or("default").to_string();
        vault::check_scope(&scope)?;
        let entities = match entities {
            None => ENTITY_TYPES.iter().map(|t| t.to_string()).collect(),
            Some(list) => list
                .iter()
                .map(|t| known_type("entities", t))
                .collect::<Result<_, _>>()?,
        };
        Ok(Self {
            operators: ops,
            scope,
            entities,
            include_text,
            deadline: None,
        })
    }

    /// Whether any type to detect needs the model (all but cards, IBANs and IPs).
    pub fn needs_model(&self) -> bool {
        self.entities
            .iter()
            .any(|t| !PATTERN_ONLY.contains(&t.as_str()))
    }

    fn operator(&self, kind: &str) -> Operator {
        self.operators.get(kind).copied().unwrap_or(Operator::Tag)
    }
}

/// An entity found and replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Found {
    /// Entity type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Start in characters of the input.
    pub start: usize,
    /// End (exclusive) in characters.
    pub end: usize,
    /// The original text (only when asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The operator applied.
    pub operator: &'static str,
    /// What replaced it.
    pub replacement: String,
    /// `pattern` or `model`.
    pub source: &'static str,
}

/// One anonymised text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Anonymized {
    /// The text with every entity replaced.
    pub text: String,
    /// The entities, in order.
    pub entities: Vec<Found>,
}

/// Splits `text` into pieces of at most `max` characters, cut after a line or sentence end
/// when one is in the second half of a piece, else at a space; returns (byte offset, piece).
/// A BERT tokenizer makes at most one token per character, so a piece of `max` characters
/// fits a model of `max + 2` tokens.
fn pieces(text: &str, max: usize) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let rest = text.get(start..).unwrap_or_default();
        let limit = rest.char_indices().nth(max).map_or(rest.len(), |(i, _)| i);
        if limit == rest.len() {
            out.push((start, rest));
            break;
        }
        let window = rest.get(..limit).unwrap_or(rest);
        let half = window.len() / 2;
        let sentence = window
            .rmatch_indices(['\n', '.', '!', '?'])
            .find(|(i, _)| *i >= half)
            .map(|(i, s)| i.saturating_add(s.len()));
        let cut = sentence
            .or_else(|| window.rfind(char::is_whitespace).filter(|i| *i > 0))
            .unwrap_or(limit);
        out.push((start, rest.get(..cut).unwrap_or(rest)));
        start = start.saturating_add(cut);
    }
    out
}

/// The model's spans of each text (byte offsets into the text, mapped types, only `types`).
fn model_spans(
    model: &Model,
    texts: &[String],
    types: &[String],
    deadline: Option<Instant>,
) -> Result<Vec<Vec<Span>>, AnonymizeError> {
    let max = model
        .info()
        .max_sequence_length
        .unwrap_or(512)
        .saturating_sub(2)
        .max(16);
    let mut owner = Vec::new();
    let mut inputs = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        for (offset, piece) in pieces(t, max) {
            owner.push((i, offset));
            inputs.push(piece.to_string());
        }
    }
    let mut out: Vec<Vec<Span>> = vec![Vec::new(); texts.len()];
    if inputs.is_empty() {
        return Ok(out);
    }
    let bounds = Bounds {
        deadline,
        ..Bounds::default()
    };
    let found = model
        .entities_within(inputs, Truncation::Error, bounds)
        .and_then(|p| p.wait())
        .map_err(|e| match e {
            TaskError::Text(TextError::TooManyInputs { count, max: limit }) => {
                AnonymizeError::TooMuchText {
                    pieces: count,
                    chars: max,
                    max: limit,
                }
            }
            e => e.into(),
        })?;
    for ((i, offset), entities) in owner.into_iter().zip(found.entities) {
        let Some(spans) = out.get_mut(i) else { continue };
        for e in entities {
            let kind = canonical_type(&e.label);
            if types.iter().any(|t| t == kind) {
                spans.push(Span {
                    start: e.start_byte.saturating_add(offset),
                    end: e.end_byte.saturating_add(offset),
                    kind: kind.to_string(),
                    source: Source::Model,
                });
            }
        }
    }
    Ok(texts
        .iter()
        .zip(out)
        .map(|(t, mut s)| {
            s.sort_by_key(|s| s.start);
            join_adjacent(t, s)
        })
        .collect())
}

/// The entities of each text: the model's (when `model` is given) and the patterns',
/// merged without overlaps; byte offsets.
pub fn detect(
    model: Option<&Model>,
    texts: &[String],
    types: &[String],
    deadline: Option<Instant>,
) -> Result<Vec<Vec<Span>>, AnonymizeError> {
    let from_model = match model {
        Some(m) => model_spans(m, texts, types, deadline)?,
        None => vec![Vec::new(); texts.len()],
    };
    Ok(texts
        .iter()
        .zip(from_model)
        .map(|(t, m)| merge(t, find_patterns(t, types), m))
        .collect())
}

/// Character offsets of sorted byte spans.
fn char_offsets(text: &str, spans: &[Span]) -> Vec<(usize, usize)> {
    let mut chars = 0usize;
    let mut at = 0usize;
    let mut count_to = |byte: usize| {
        chars = chars.saturating_add(text.get(at..byte).map_or(0, |s| s.chars().count()));
        at = byte.max(at);
        chars
    };
    spans
        .iter()
        .map(|s| (count_to(s.start), count_to(s.end)))
        .collect()
}

/// Detects and replaces the entities of `texts`. `model` is needed when
/// [`Options::needs_model`]; new pseudonyms are written to the vault durably before this
/// returns. Blocks on the model: call it off the async executor.
pub fn anonymize(
    model: Option<&Model>,
    vault: &Vault,
    texts: &[String],
    options: &Options,
) -> Result<Vec<Anonymized>, AnonymizeError> {
    let spans = detect(model, texts, &options.entities, options.deadline)?;
    let mut session = vault.session(&options.scope)?;
    let mut out = Vec::with_capacity(texts.len());
    for (text, spans) in texts.iter().zip(spans) {
        let (replaced, done) =
            llmos_pii::apply(text, &spans, |k| options.operator(k), &mut session)?;
        let done_spans: Vec<Span> = done.iter().map(|r| r.span.clone()).collect();
        let offsets = char_offsets(text, &done_spans);
        let entities = done
            .into_iter()
            .zip(offsets)
            .map(|(r, (start, end))| Found {
                text: options
                    .include_text
                    .then(|| text.get(r.span.start..r.span.end).unwrap_or_default().to_string()),
                kind: r.span.kind,
                start,
                end,
                operator: r.operator.name(),
                replacement: r.replacement,
                source: match r.span.source {
                    Source::Pattern => "pattern",
                    Source::Model => "model",
                },
            })
            .collect();
        out.push(Anonymized {
            text: replaced,
            entities,
        });
    }
    session.commit()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Store;
    use crate::security::seal::Sealer;

    #[test]
    fn pieces_cover_the_text_and_respect_the_limit() {
        let text = "Ann Lee lives here. ".repeat(40) + &"x".repeat(700) + " é tail";
        let p = pieces(&text, 100);
        let joined: String = p.iter().map(|(_, s)| *s).collect();
        assert_eq!(joined, text);
        for (off, s) in &p {
            assert!(s.chars().count() <= 100);
            assert_eq!(&text[*off..*off + s.len()], *s);
        }
        // Cut after a sentence end where there is one.
        assert!(p[0].1.ends_with("here."), "{:?}", p[0].1);
        assert!(pieces("", 10).is_empty());
    }

    #[test]
    fn options_name_what_is_accepted() {
        let ops = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        let e = Options::new(&ops("EMAIL", "blur"), None, None, false).unwrap_err();
        assert!(e.to_string().contains("redact, mask, tag, hash, pseudonymize"), "{e}");
        let e = Options::new(&ops("ORG", "mask"), None, None, false).unwrap_err();
        assert!(e.to_string().contains("PERSON, LOC"), "{e}");
        let e = Options::new(&BTreeMap::new(), Some("a/b"), None, false).unwrap_err();
        assert!(e.to_string().contains("invalid scope"), "{e}");
        let o = Options::new(&ops("EMAIL", "mask"), None, Some(&["IBAN".into()]), false).unwrap();
        assert_eq!(o.scope, "default");
        assert!(!o.needs_model());
    }

    #[test]
    fn patterns_only_with_char_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), Sealer::from_key([5; 32])).unwrap();
        let vault = Vault::new(store);
        let types = ["EMAIL".to_string(), "IBAN".to_string()];
        let ops = BTreeMap::from([("EMAIL".to_string(), "mask".to_string())]);
        let o = Options::new(&ops, None, Some(&types), true).unwrap();
        let text = "Zoë: zoe@example.org, IBAN DE89 3704 0044 0532 0130 00".to_string();
        let out = anonymize(None, &vault, &[text], &o).unwrap();
        assert_eq!(out[0].text, "Zoë: ***************, IBAN <IBAN>");
        let e = &out[0].entities;
        assert_eq!((e[0].start, e[0].end), (5, 20));
        assert_eq!(e[0].text.as_deref(), Some("zoe@example.org"));
        assert_eq!((e[1].kind.as_str(), e[1].start), ("IBAN", 27));
    }
}

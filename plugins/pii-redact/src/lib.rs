//! `pii-redact`: a preprocessor that replaces personal data with a tag or a mask.
//! Detection, merging and replacement are the `llmos-pii` crate the host uses too.
//!
//! Candidates are found with simple patterns and then *validated*, so that an order number
//! is not taken for a card and a version string not for an address: card numbers must pass
//! the Luhn check, IBANs the ISO 13616 mod-97 check, IPv4/IPv6 addresses must parse.
//! When the operator granted `inference:<ner_model>`, the model's entities (names, places,
//! organisations) are redacted as well.

wit_bindgen::generate!({
    world: "preprocessor",
    path: "../../wit/llmos-plugin@0.1.0",
});

use llmos::plugin::{config, inference, log};
use llmos_pii::{Source, Span, canonical_type, find_patterns, join_adjacent, merge, replace_with};

struct PiiRedact;

fn list(key: &str) -> Vec<String> {
    config::get(key)
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Entities of the model, or `None` when the model cannot be used (not granted, unknown,
/// busy) and `require` is off.
fn ner_spans(
    text: &str,
    model: &str,
    labels: &[String],
    require: bool,
) -> Result<Option<Vec<Span>>, Error> {
    match inference::entities(model, text) {
        Ok(entities) => Ok(Some(
            entities
                .into_iter()
                .filter_map(|e| {
                    let label = e.label.trim_start_matches("B-").trim_start_matches("I-");
                    let kind = canonical_type(label);
                    let span = Span {
                        start: e.start as usize,
                        end: e.end as usize,
                        kind: kind.to_string(),
                        source: Source::Model,
                    };
                    // A label is asked for by its own name or by its type (`PERSON` covers
                    // `GIVEN_NAME` and `SURNAME`, `PER` too).
                    let asked = labels
                        .iter()
                        .any(|l| l == label || canonical_type(l) == kind);
                    (asked && span.fits(text)).then_some(span)
                })
                .collect(),
        )),
        Err(e) if require => Err(e),
        Err(e) => {
            log::log(
                log::Level::Debug,
                &format!("NER model {model} not used ({e:?}); patterns only"),
            );
            Ok(None)
        }
    }
}

fn redact(text: &str, spans: Vec<Span>, replacement: &str) -> String {
    let replaced = replace_with(text, &spans, |s, _| {
        Ok::<_, std::convert::Infallible>(replacement.replace("{kind}", &s.kind))
    });
    match replaced {
        Ok((out, _)) => out,
        Err(never) => match never {},
    }
}

impl Guest for PiiRedact {
    fn preprocess(request: Request) -> Result<Vec<String>, Error> {
        let replacement = config::get("replacement").unwrap_or_else(|| "[{kind}]".into());
        let kinds = list("kinds");
        let model = config::get("ner_model").unwrap_or_else(|| "pii-ner".into());
        let labels = list("ner_labels");
        let require = config::get("require_ner").as_deref() == Some("true");
        let mut use_ner = !labels.is_empty();
        let mut out = Vec::with_capacity(request.inputs.len());
        for text in &request.inputs {
            let patterns = find_patterns(text, &kinds);
            let mut found = Vec::new();
            if use_ner {
                match ner_spans(text, &model, &labels, require)? {
                    Some(mut spans) => {
                        spans.sort_by_key(|s| s.start);
                        found = join_adjacent(text, spans);
                    }
                    // Denied or unknown does not change within a request: stop asking.
                    None => use_ner = false,
                }
            }
            out.push(redact(text, merge(text, patterns, found), &replacement));
        }
        Ok(out)
    }
}

export!(PiiRedact);

//! `pii-redact`: a preprocessor that replaces personal data with a tag or a mask.
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

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use llmos::plugin::{config, inference, log};
use regex_lite::Regex;

struct PiiRedact;

/// A span of the text to replace.
#[derive(Debug, Clone)]
struct Span {
    start: usize,
    end: usize,
    kind: String,
}

struct Detector {
    kind: &'static str,
    re: Regex,
    valid: fn(&str) -> bool,
}

fn detectors() -> &'static [Detector] {
    static D: OnceLock<Vec<Detector>> = OnceLock::new();
    D.get_or_init(|| {
        let d = |kind, re: &str, valid| Detector {
            kind,
            re: Regex::new(re).expect("built-in pattern"),
            valid,
        };
        vec![
            d(
                "EMAIL",
                r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
                valid_email,
            ),
            d("IBAN", r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}\b", valid_iban),
            d("CREDIT_CARD", r"\b(?:[0-9][ -]?){12,18}[0-9]\b", valid_card),
            d("IP", r"\b(?:[0-9]{1,3}\.){3}[0-9]{1,3}\b", |s| {
                s.parse::<Ipv4Addr>().is_ok()
            }),
            d("IP", r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}", |s| {
                s.parse::<Ipv6Addr>().is_ok()
            }),
            d(
                "PHONE",
                r"\+[0-9]{1,3}[ .-]?(?:\([0-9]{1,4}\)[ .-]?)?[0-9][0-9 .-]{5,14}[0-9]\b|\(?\b[0-9]{3}\)?[ .-]?[0-9]{3}[ .-][0-9]{4}\b",
                valid_phone,
            ),
        ]
    })
}

fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && domain
            .split('.')
            .all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'))
}

/// Luhn check on 13–19 digits (separators ignored).
fn valid_card(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if !i.is_multiple_of(2) {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// ISO 13616: move the first four characters to the end, letters to 10..35, mod 97 == 1.
fn valid_iban(s: &str) -> bool {
    let compact: Vec<char> = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let mut rem: u32 = 0;
    for c in compact[4..].iter().chain(&compact[..4]) {
        let v = match c.to_digit(36) {
            Some(v) => v,
            None => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

fn valid_phone(s: &str) -> bool {
    let n = s.chars().filter(char::is_ascii_digit).count();
    (7..=15).contains(&n)
}

fn list(key: &str) -> Vec<String> {
    config::get(key)
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Finds pattern spans; earlier detectors win overlaps.
fn pattern_spans(text: &str, kinds: &[String]) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::new();
    for d in detectors() {
        if !kinds.iter().any(|k| k == d.kind) {
            continue;
        }
        for m in d.re.find_iter(text) {
            let overlaps = spans.iter().any(|s| m.start() < s.end && s.start < m.end());
            if !overlaps && (d.valid)(m.as_str()) {
                spans.push(Span {
                    start: m.start(),
                    end: m.end(),
                    kind: d.kind.to_string(),
                });
            }
        }
    }
    spans
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
                    let (start, end) = (e.start as usize, e.end as usize);
                    let ok = labels.iter().any(|l| l == label)
                        && start < end
                        && end <= text.len()
                        && text.is_char_boundary(start)
                        && text.is_char_boundary(end);
                    ok.then(|| Span {
                        start,
                        end,
                        kind: label.to_string(),
                    })
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

fn redact(text: &str, mut spans: Vec<Span>, replacement: &str) -> String {
    spans.sort_by_key(|s| (s.start, std::cmp::Reverse(s.end)));
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    for s in spans {
        if s.start < pos {
            // Overlaps a span already replaced: extend the replaced region.
            pos = pos.max(s.end);
            continue;
        }
        out.push_str(&text[pos..s.start]);
        out.push_str(&replacement.replace("{kind}", &s.kind));
        pos = s.end;
    }
    out.push_str(&text[pos..]);
    out
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
            let mut spans = pattern_spans(text, &kinds);
            if use_ner {
                match ner_spans(text, &model, &labels, require)? {
                    Some(found) => spans.extend(found),
                    // Denied or unknown does not change within a request: stop asking.
                    None => use_ner = false,
                }
            }
            out.push(redact(text, spans, &replacement));
        }
        Ok(out)
    }
}

export!(PiiRedact);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums() {
        assert!(valid_card("4111 1111 1111 1111"));
        assert!(!valid_card("4111 1111 1111 1112"));
        assert!(valid_iban("DE89 3704 0044 0532 0130 00"));
        assert!(!valid_iban("DE88 3704 0044 0532 0130 00"));
    }
}

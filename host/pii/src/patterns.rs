//! Validated patterns. Candidates are found with simple regular expressions and then
//! *validated*, so that an order number is not taken for a card and a version string not for
//! an address: card numbers must pass the Luhn check, IBANs the ISO 13616 mod-97 check,
//! IPv4/IPv6 addresses must parse, phone numbers must have 7 to 15 digits.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use regex_lite::Regex;

use crate::merge::{Source, Span};

/// The entity types the patterns find, in the order they are tried (an earlier type wins
/// a region claimed by two patterns: an e-mail address is not also read as a phone).
pub const PATTERN_TYPES: [&str; 5] = ["EMAIL", "IBAN", "CREDIT_CARD", "IP", "PHONE"];

/// A validator: whether a candidate is a real value.
type Check = fn(&str) -> bool;

struct Detector {
    kind: &'static str,
    re: Regex,
    valid: Check,
}

const PHONE: &str = r"\+[0-9]{1,3}[ .-]?(?:\([0-9]{1,4}\)[ .-]?)?[0-9][0-9 .-]{5,14}[0-9]\b|\(?\b[0-9]{3}\)?[ .-]?[0-9]{3}[ .-][0-9]{4}\b";

fn detectors() -> &'static [Detector] {
    static D: OnceLock<Vec<Detector>> = OnceLock::new();
    D.get_or_init(|| {
        let specs: [(&'static str, &str, Check); 6] = [
            (
                "EMAIL",
                r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
                valid_email,
            ),
            (
                "IBAN",
                r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}\b",
                valid_iban,
            ),
            ("CREDIT_CARD", r"\b(?:[0-9][ -]?){12,18}[0-9]\b", valid_card),
            ("IP", r"\b(?:[0-9]{1,3}\.){3}[0-9]{1,3}\b", |s| {
                s.parse::<Ipv4Addr>().is_ok()
            }),
            ("IP", r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}", |s| {
                s.parse::<Ipv6Addr>().is_ok()
            }),
            ("PHONE", PHONE, valid_phone),
        ];
        // The expressions are constants; a test checks that every one compiles.
        specs
            .into_iter()
            .filter_map(|(kind, re, valid)| {
                Regex::new(re).ok().map(|re| Detector { kind, re, valid })
            })
            .collect()
    })
}

/// Whether `s` is a plausible e-mail address (local part 1–64 characters without leading,
/// trailing or doubled dots; domain labels not empty and not starting or ending with `-`).
pub fn valid_email(s: &str) -> bool {
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
pub fn valid_card(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| match (i % 2 == 1, d.saturating_mul(2)) {
            (true, x) if x > 9 => x.saturating_sub(9),
            (true, x) => x,
            (false, _) => d,
        })
        .fold(0u32, u32::saturating_add);
    sum.is_multiple_of(10)
}

/// ISO 13616: move the first four characters to the end, letters to 10..35, mod 97 == 1.
pub fn valid_iban(s: &str) -> bool {
    let compact: Vec<char> = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let Some((head, tail)) = compact.split_at_checked(4) else {
        return false;
    };
    let mut rem: u32 = 0;
    for c in tail.iter().chain(head) {
        let Some(v) = c.to_digit(36) else {
            return false;
        };
        // rem < 97 and v < 36: at most 96 * 100 + 35, no overflow.
        let shift = if v >= 10 { 100 } else { 10 };
        rem = rem.saturating_mul(shift).saturating_add(v) % 97;
    }
    rem == 1
}

/// 7 to 15 digits (E.164 allows at most 15).
pub fn valid_phone(s: &str) -> bool {
    let n = s.chars().filter(char::is_ascii_digit).count();
    (7..=15).contains(&n)
}

/// Whether `start..end` continues a run of dotted numbers: `1.2.3.4` inside the version
/// `10.1.2.3.4` is not an address.
fn in_dotted_run(text: &str, start: usize, end: usize) -> bool {
    let before = text.get(..start).unwrap_or_default();
    let after = text.get(end..).unwrap_or_default();
    let digit_dot_before = before
        .strip_suffix('.')
        .is_some_and(|b| b.ends_with(|c: char| c.is_ascii_digit()));
    let dot_digit_after = after
        .strip_prefix('.')
        .is_some_and(|a| a.starts_with(|c: char| c.is_ascii_digit()));
    digit_dot_before || dot_digit_after
}

/// Pattern spans of the types in `kinds` (any of [`PATTERN_TYPES`]), sorted by start and
/// without overlaps: earlier detectors win (see [`PATTERN_TYPES`]); a candidate that fails
/// its validation claims nothing.
pub fn find_patterns<S: AsRef<str>>(text: &str, kinds: &[S]) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::new();
    for d in detectors() {
        if !kinds.iter().any(|k| k.as_ref() == d.kind) {
            continue;
        }
        for m in d.re.find_iter(text) {
            let overlaps = spans.iter().any(|s| m.start() < s.end && s.start < m.end());
            let dotted = d.kind == "IP" && in_dotted_run(text, m.start(), m.end());
            if !overlaps && !dotted && (d.valid)(m.as_str()) {
                spans.push(Span {
                    start: m.start(),
                    end: m.end(),
                    kind: d.kind.to_string(),
                    source: Source::Pattern,
                });
            }
        }
    }
    spans.sort_by_key(|s| s.start);
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(String, &str)> {
        find_patterns(text, &PATTERN_TYPES)
            .into_iter()
            .map(|s| (s.kind.clone(), &text[s.start..s.end]))
            .collect()
    }

    #[test]
    fn every_expression_compiles() {
        assert_eq!(detectors().len(), 6);
    }

    #[test]
    fn checksums() {
        assert!(valid_card("4111 1111 1111 1111"));
        assert!(!valid_card("4111 1111 1111 1112"));
        assert!(valid_card("5500-0000-0000-0004"));
        assert!(!valid_card("1234"));
        assert!(valid_iban("DE89 3704 0044 0532 0130 00"));
        assert!(valid_iban("GB82WEST12345698765432"));
        assert!(!valid_iban("DE88 3704 0044 0532 0130 00"));
        assert!(!valid_iban("DE89 3704 0044 0532 0130 0!"));
    }

    #[test]
    fn valid_values_are_found_and_look_alikes_are_not() {
        let text = "Mail jane.doe@example.com or call +49 30 1234567. Card 4111 1111 1111 1111, \
                    not 4111 1111 1111 1112. IBAN DE89 3704 0044 0532 0130 00, not DE88 3704 0044 0532 0130 00. \
                    Hosts 192.168.1.20 and 2001:db8::1, not 999.1.1.1 or 10.2.3.4.5. Order 2024-01-15, v1.2.3.";
        assert_eq!(
            found(text),
            [
                ("EMAIL".to_string(), "jane.doe@example.com"),
                ("PHONE".into(), "+49 30 1234567"),
                ("CREDIT_CARD".into(), "4111 1111 1111 1111"),
                ("IBAN".into(), "DE89 3704 0044 0532 0130 00"),
                ("IP".into(), "192.168.1.20"),
                ("IP".into(), "2001:db8::1"),
            ]
        );
    }

    #[test]
    fn only_the_asked_types() {
        let text = "a@b.org 192.168.0.1";
        let s = find_patterns(text, &["IP"]);
        assert_eq!(s.len(), 1);
        assert_eq!(&text[s[0].start..s[0].end], "192.168.0.1");
    }
}

//! Pseudonym tokens: `<TYPE_hex>`, e.g. `<PERSON_7f3a9c2e>`. The hex part is 8 to 64
//! lower-case hex digits chosen by the caller (the host derives it from a keyed hash).

/// The token for an entity type and a hex digest.
pub fn format(kind: &str, hex: &str) -> String {
    format!("<{kind}_{hex}>")
}

/// A token found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found<'a> {
    /// Start (bytes) of `<`.
    pub start: usize,
    /// End (bytes, exclusive) after `>`.
    pub end: usize,
    /// The entity type.
    pub kind: &'a str,
    /// The whole token, `<` and `>` included.
    pub token: &'a str,
}

/// The longest token: `<`, a type of at most 40 characters, `_`, 64 hex digits, `>`.
const MAX_TOKEN: usize = 107;

fn is_type(kind: &str) -> bool {
    kind.len() <= 40
        && kind.starts_with(|c: char| c.is_ascii_uppercase())
        && kind
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn is_hex(hex: &str) -> bool {
    (8..=64).contains(&hex.len()) && hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'))
}

/// Every well-formed token of `text`, in order.
pub fn find(text: &str) -> Vec<Found<'_>> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(rel) = text.get(from..).and_then(|t| t.find('<')) {
        let start = from.saturating_add(rel);
        let rest = text.get(start..).unwrap_or_default();
        let close = rest
            .char_indices()
            .take(MAX_TOKEN)
            .skip(1)
            .find(|(_, c)| *c == '>' || *c == '<');
        let Some((at, '>')) = close else {
            from = start.saturating_add(1);
            continue;
        };
        let end = start.saturating_add(at).saturating_add(1);
        let token = text.get(start..end).unwrap_or_default();
        let inner = token
            .get(1..token.len().saturating_sub(1))
            .unwrap_or_default();
        match inner.rsplit_once('_') {
            Some((kind, hex)) if is_type(kind) && is_hex(hex) => {
                out.push(Found {
                    start,
                    end,
                    kind,
                    token,
                });
                from = end;
            }
            _ => from = start.saturating_add(1),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_well_formed_tokens_only() {
        let text = "<PERSON_0123abcd> met <<EMAIL_ffffffff00000000>, not <PERSON>, <x_12345678>, \
                    <PERSON_0123ABCD>, <PERSON_123> or <CREDIT_CARD_deadbeef";
        let f = find(text);
        let tokens: Vec<&str> = f.iter().map(|t| t.token).collect();
        assert_eq!(tokens, ["<PERSON_0123abcd>", "<EMAIL_ffffffff00000000>"]);
        assert_eq!(f[1].kind, "EMAIL");
        assert_eq!(&text[f[1].start..f[1].end], f[1].token);
        assert_eq!(
            find(&format("CREDIT_CARD", "00aa11bb"))[0].kind,
            "CREDIT_CARD"
        );
    }
}

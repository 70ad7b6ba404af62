//! A `tokenizer.json` (the Hugging Face `tokenizers` format) rebuilt from a GGUF file's
//! vocabulary, so an imported model tokenizes exactly as llama.cpp does with the same file.
//!
//! Supported: `tokenizer.ggml.model = "gpt2"` (byte-level BPE) with the pre-tokenizers of
//! llama.cpp named by `tokenizer.ggml.pre` ([`PRE_TOKENIZERS`]). Each of llama.cpp's splitting
//! regexes becomes a `Split` (behaviour `Isolated`: matches and the text between them are both
//! pieces, as llama.cpp's `unicode_regex_split` does), followed by the byte-level mapping.
//! SentencePiece vocabularies (`model = "llama"`) need the token scores, which [`GgufVocab`]
//! does not carry; they are refused with an error naming what is accepted.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::vocab::GgufVocab;

/// Token types of `tokenizer.ggml.token_type` (llama.cpp's `llama_token_type`).
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

/// The tokenizer models accepted (`tokenizer.ggml.model`).
pub const MODELS: &[&str] = &["gpt2"];

/// GPT-2's splitting regex as llama.cpp writes it.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// Llama 3's (`llama-bpe`): numbers in groups of up to three.
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 2's: like Llama 3's, one digit at a time.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// `tokenizer.ggml.pre` values accepted, each with llama.cpp's regexes (applied in order, each
/// splitting the pieces of the previous one) and whether llama.cpp ignores merges for a piece
/// that is already a token (`ignore_merges`).
pub const PRE_TOKENIZERS: &[(&str, &[&str], bool)] = &[
    (
        "default",
        &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"],
        false,
    ),
    ("gpt2", &[GPT2], false),
    ("gpt-2", &[GPT2], false),
    ("smollm", &[r"\p{N}", GPT2], false),
    ("starcoder", &[r"\p{N}", GPT2], false),
    ("llama-bpe", &[LLAMA3], true),
    ("llama3", &[LLAMA3], true),
    ("qwen2", &[QWEN2], false),
];

/// Why a GGUF vocabulary could not become a tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerBuildError {
    /// `tokenizer.ggml.model` is not one this builder knows.
    #[error(
        "tokenizer.ggml.model `{0}` is not supported; accepted: {accepted}",
        accepted = MODELS.join(", ")
    )]
    Model(String),
    /// `tokenizer.ggml.pre` is not one this builder knows.
    #[error(
        "tokenizer.ggml.pre `{0}` is not supported; accepted: {accepted}",
        accepted = pre_names().join(", ")
    )]
    Pre(String),
    /// The vocabulary is inconsistent (lengths, ids, merges, duplicates).
    #[error("invalid GGUF tokenizer vocabulary: {0}")]
    Invalid(String),
    /// The `tokenizers` crate refused what was built (a bug here, or a vocabulary it cannot load).
    #[error("the tokenizer built from the GGUF vocabulary does not load: {0}")]
    Load(String),
}

fn pre_names() -> Vec<&'static str> {
    PRE_TOKENIZERS.iter().map(|(name, _, _)| *name).collect()
}

/// Builds the `tokenizer.json` text for `v`; it is checked to load with the `tokenizers` crate
/// before it is returned. The output is deterministic, so its sha256 is stable.
pub fn build_tokenizer(v: &GgufVocab) -> Result<String, TokenizerBuildError> {
    if v.model != "gpt2" {
        return Err(TokenizerBuildError::Model(v.model.clone()));
    }
    let pre_name = v.pre.as_deref().unwrap_or("default");
    let (_, regexes, ignore_merges) = PRE_TOKENIZERS
        .iter()
        .find(|(name, _, _)| *name == pre_name)
        .ok_or_else(|| TokenizerBuildError::Pre(pre_name.to_owned()))?;
    check_lengths(v)?;
    let ids = vocab_map(&v.tokens)?;
    let merges = merges(&v.merges, &ids)?;
    // Built in id order: deterministic whether serde_json keeps insertion order or sorts.
    let vocab: serde_json::Map<String, Value> = (v.tokens.iter().enumerate())
        .map(|(id, token)| (token.clone(), json!(id)))
        .collect();
    let json = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens(v)?,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer(regexes),
        "post_processor": post_processor(v, pre_name)?,
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": ignore_merges, "vocab": vocab, "merges": merges,
        },
    });
    let text = serde_json::to_string(&json).map_err(|e| TokenizerBuildError::Load(e.to_string()))?;
    text.parse::<tokenizers::Tokenizer>()
        .map_err(|e| TokenizerBuildError::Load(e.to_string()))?;
    Ok(text)
}

fn check_lengths(v: &GgufVocab) -> Result<(), TokenizerBuildError> {
    if v.tokens.is_empty() {
        return Err(TokenizerBuildError::Invalid(
            "tokenizer.ggml.tokens is empty".into(),
        ));
    }
    if !v.token_types.is_empty() && v.token_types.len() != v.tokens.len() {
        return Err(TokenizerBuildError::Invalid(format!(
            "tokenizer.ggml.token_type has {} entries for {} tokens",
            v.token_types.len(),
            v.tokens.len()
        )));
    }
    if v.merges.is_empty() {
        return Err(TokenizerBuildError::Invalid(
            "tokenizer.ggml.merges is empty; a BPE vocabulary needs its merges".into(),
        ));
    }
    Ok(())
}

/// Token → id; a token that appears twice is an error naming both ids.
fn vocab_map(tokens: &[String]) -> Result<HashMap<&str, usize>, TokenizerBuildError> {
    let mut map = HashMap::with_capacity(tokens.len());
    for (id, token) in tokens.iter().enumerate() {
        if let Some(first) = map.insert(token.as_str(), id) {
            return Err(TokenizerBuildError::Invalid(format!(
                "token {token:?} appears twice, at ids {first} and {id}"
            )));
        }
    }
    Ok(map)
}

/// `"a b"` → `["a", "b"]`, both sides and their concatenation being tokens.
fn merges(merges: &[String], vocab: &HashMap<&str, usize>) -> Result<Vec<Value>, TokenizerBuildError> {
    merges
        .iter()
        .enumerate()
        .map(|(i, merge)| {
            let bad = |why: &str| {
                TokenizerBuildError::Invalid(format!("merge {i} ({merge:?}) {why}"))
            };
            let (left, right) = merge
                .split_once(' ')
                .ok_or_else(|| bad("is not two tokens separated by a space"))?;
            for side in [left, right, &format!("{left}{right}")] {
                if !vocab.contains_key(side) {
                    return Err(bad(&format!("makes or names {side:?}, which is not a token")));
                }
            }
            Ok(json!([left, right]))
        })
        .collect()
}

/// Control tokens (special: never split, skipped by `decode(skip_special_tokens)`) and
/// user-defined ones (matched whole in the text, decoded as text).
fn added_tokens(v: &GgufVocab) -> Result<Vec<Value>, TokenizerBuildError> {
    let mut added = Vec::new();
    for (id, (token, kind)) in v.tokens.iter().zip(&v.token_types).enumerate() {
        if *kind != CONTROL && *kind != USER_DEFINED {
            continue;
        }
        if token.is_empty() {
            return Err(TokenizerBuildError::Invalid(format!(
                "token {id} (type {kind}) is empty"
            )));
        }
        added.push(json!({
            "id": id, "content": token, "single_word": false, "lstrip": false, "rstrip": false,
            "normalized": false, "special": *kind == CONTROL,
        }));
    }
    Ok(added)
}

fn pre_tokenizer(regexes: &[&str]) -> Value {
    let mut steps: Vec<Value> = regexes
        .iter()
        .map(|regex| {
            json!({"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false})
        })
        .collect();
    steps.push(json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}));
    json!({"type": "Sequence", "pretokenizers": steps})
}

/// Prepends the BOS token when the GGUF asks for it (`tokenizer.ggml.add_bos_token`; absent:
/// llama.cpp's default, true only for the Llama 3 pre-tokenizer).
fn post_processor(v: &GgufVocab, pre: &str) -> Result<Value, TokenizerBuildError> {
    let add_bos = v
        .add_bos_token
        .unwrap_or(matches!(pre, "llama-bpe" | "llama3"));
    if !add_bos {
        return Ok(Value::Null);
    }
    let id = v.bos_token_id.ok_or_else(|| {
        TokenizerBuildError::Invalid(
            "tokenizer.ggml.add_bos_token is true but tokenizer.ggml.bos_token_id is absent".into(),
        )
    })?;
    let token = usize::try_from(id)
        .ok()
        .and_then(|i| v.tokens.get(i))
        .ok_or_else(|| {
            TokenizerBuildError::Invalid(format!(
                "tokenizer.ggml.bos_token_id {id} is not below the {} tokens",
                v.tokens.len()
            ))
        })?;
    let bos = json!({"SpecialToken": {"id": token, "type_id": 0}});
    Ok(json!({
        "type": "TemplateProcessing",
        "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [bos, {"Sequence": {"id": "A", "type_id": 0}}, bos, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {token.as_str(): {"id": token, "ids": [id], "tokens": [token]}},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte-level vocabulary small enough to write by hand: the 256 byte symbols, a few
    /// merges, and ChatML-like control tokens.
    fn tiny(pre: &str) -> GgufVocab {
        let mut tokens = vec!["<|endoftext|>".to_owned(), "<|im_start|>".to_owned()];
        let mut types = vec![CONTROL, CONTROL];
        tokens.extend(byte_symbols());
        types.resize(tokens.len(), 1);
        for t in ["he", "ll", "hell", "hello", "Ġw", "Ġwo", "Ġwor", "ld", "Ġworld", "<tool>"] {
            tokens.push(t.into());
            types.push(if t == "<tool>" { USER_DEFINED } else { 1 });
        }
        let merges = ["h e", "l l", "he ll", "hell o", "Ġ w", "Ġw o", "Ġwo r", "l d", "Ġwor ld"];
        GgufVocab {
            model: "gpt2".into(),
            pre: Some(pre.into()),
            tokens,
            token_types: types,
            merges: merges.iter().map(|m| (*m).to_owned()).collect(),
            bos_token_id: Some(1),
            ..GgufVocab::default()
        }
    }

    /// GPT-2's byte → printable character table: printable bytes stand for themselves, the
    /// others for 256, 257, … in byte order.
    fn byte_symbols() -> Vec<String> {
        let printable = |b: &u32| (33..=126).contains(b) || (161..=172).contains(b) || *b >= 174;
        let mut others = (256u32..).zip((0u32..=255).filter(|b| !printable(b)));
        (0u32..=255)
            .map(|b| {
                let c = if printable(&b) { b } else { others.next().unwrap().0 };
                char::from_u32(c).unwrap().to_string()
            })
            .collect()
    }

    fn load(v: &GgufVocab) -> tokenizers::Tokenizer {
        build_tokenizer(v).unwrap().parse().unwrap()
    }

    fn ids(t: &tokenizers::Tokenizer, text: &str) -> Vec<String> {
        let enc = t.encode(text, true).unwrap();
        enc.get_tokens().to_vec()
    }

    #[test]
    fn merges_specials_and_round_trip() {
        let t = load(&tiny("gpt2"));
        assert_eq!(ids(&t, "hello world"), ["hello", "Ġworld"]);
        assert_eq!(ids(&t, "<|im_start|>hello<tool>"), ["<|im_start|>", "hello", "<tool>"]);
        for text in ["hello world", "  tabs\t\tand é 中文 🦀\n", "<|im_start|>x<tool>"] {
            let enc = t.encode(text, true).unwrap();
            assert_eq!(t.decode(enc.get_ids(), false).unwrap(), text);
        }
        let special = t.encode("<|im_start|>hello", true).unwrap();
        assert_eq!(t.decode(special.get_ids(), true).unwrap(), "hello");
    }

    #[test]
    fn pre_tokenizers_split_digits_as_llama_cpp() {
        let digits = |pre: &str| ids(&load(&tiny(pre)), "1234567");
        assert_eq!(digits("smollm"), ["1", "2", "3", "4", "5", "6", "7"]);
        assert_eq!(digits("qwen2"), ["1", "2", "3", "4", "5", "6", "7"]);
        // llama3 adds BOS by default (no merges for digits here, so they stay single).
        assert_eq!(digits("llama-bpe"), ["<|im_start|>", "1", "2", "3", "4", "5", "6", "7"]);
        assert_eq!(digits("gpt2").len(), 7);
    }

    #[test]
    fn bos_is_added_when_asked() {
        let mut v = tiny("smollm");
        v.add_bos_token = Some(true);
        assert_eq!(ids(&load(&v), "hello"), ["<|im_start|>", "hello"]);
        v.add_bos_token = Some(false);
        assert_eq!(ids(&load(&v), "hello"), ["hello"]);
    }

    #[test]
    fn output_is_deterministic() {
        let v = tiny("smollm");
        assert_eq!(build_tokenizer(&v).unwrap(), build_tokenizer(&v).unwrap());
    }

    #[test]
    fn refusals_name_the_value_and_the_accepted_ones() {
        let mut v = tiny("smollm");
        v.pre = Some("klingon".into());
        let e = build_tokenizer(&v).unwrap_err().to_string();
        assert!(e.contains("`klingon`") && e.contains("smollm") && e.contains("llama-bpe"), "{e}");
        v.model = "llama".into();
        let e = build_tokenizer(&v).unwrap_err().to_string();
        assert!(e.contains("`llama`") && e.contains("accepted: gpt2"), "{e}");
    }

    #[test]
    fn inconsistent_vocabularies_are_refused() {
        let mut v = tiny("smollm");
        v.merges.push("he zz".into());
        let e = build_tokenizer(&v).unwrap_err().to_string();
        assert!(e.contains("\"zz\", which is not a token"), "{e}");
        let mut v = tiny("smollm");
        v.tokens.push("hello".into());
        v.token_types.push(1);
        let e = build_tokenizer(&v).unwrap_err().to_string();
        assert!(e.contains("appears twice"), "{e}");
        let mut v = tiny("smollm");
        v.token_types.pop();
        assert!(build_tokenizer(&v).unwrap_err().to_string().contains("token_type"));
        let mut v = tiny("smollm");
        v.add_bos_token = Some(true);
        v.bos_token_id = Some(99_999);
        assert!(build_tokenizer(&v).unwrap_err().to_string().contains("99999"));
    }
}

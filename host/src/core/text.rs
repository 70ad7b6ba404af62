//! Text in, tensors out, and back: tokenisation with honest limits, pooling, softmax and
//! BIO entity merging. Pure functions, no ONNX Runtime, so they are tested directly.

use std::path::Path;

use serde::Serialize;
use tokenizers::{Encoding, Token, Tokenizer, TruncationParams};

/// What to do with a text longer than the model's maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Truncation {
    /// Refuse the request, naming the text and the limit (the default, like OpenAI and TEI).
    #[default]
    Error,
    /// Cut the text at the model's maximum.
    Truncate,
}

/// A text that cannot be processed.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum TextError {
    /// Nothing to do.
    #[error("input is empty: give at least one non-empty text")]
    NoInput,
    /// One text is empty.
    #[error("input[{index}] is an empty string: every text must contain at least one character")]
    EmptyText {
        /// Position in the request.
        index: usize,
    },
    /// One text is over the limit and the policy is `error`.
    #[error(
        "input[{index}] has {tokens} tokens, more than the model's maximum of {max}; \
         shorten it or ask for truncation (truncate=true / --truncate)"
    )]
    TooLong {
        /// Position in the request.
        index: usize,
        /// Its token count (special tokens included).
        tokens: usize,
        /// The model's maximum.
        max: usize,
    },
    /// More inputs in one request than allowed.
    #[error(
        "the request has {count} inputs; the limit is {max} per request \
         ([models.overrides.NAME] max_request_inputs): split it into several requests"
    )]
    TooManyInputs {
        /// Inputs given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// More tokens in one request than allowed.
    #[error(
        "the request has {tokens} tokens in all; the limit is {max} per request \
         ([models.overrides.NAME] max_request_tokens): split it into several requests"
    )]
    TooManyTokens {
        /// Tokens in the request.
        tokens: usize,
        /// The limit.
        max: usize,
    },
    /// A token id outside the vocabulary.
    #[error("input[{index}] has token id {id}, outside the model's vocabulary of {vocab} ids")]
    BadTokenId {
        /// Position in the request.
        index: usize,
        /// The id.
        id: u32,
        /// Vocabulary size.
        vocab: usize,
    },
    /// The tokenizer failed.
    #[error("tokenizer failed: {0}")]
    Tokenizer(String),
}

/// What a text task is given: texts, or token ids from `/v1/tokenize` (fed as they are,
/// special tokens included).
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Texts.
    Texts(Vec<String>),
    /// Token ids, one list per input.
    TokenIds(Vec<Vec<u32>>),
}

impl Input {
    /// Number of inputs.
    pub fn len(&self) -> usize {
        match self {
            Self::Texts(t) => t.len(),
            Self::TokenIds(t) => t.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One token of a text: its byte range in the text and the index of the word it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenSpan {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
    /// The word (pre-tokenizer piece) the token is part of.
    pub word: Option<u32>,
}

/// A tokenizer configured for llmos: no fixed padding, truncation at the model's real limit.
#[derive(Debug, Clone)]
pub struct TextEncoder {
    tok: Tokenizer,
    plain: Tokenizer,
    max_len: usize,
    pad_id: i64,
}

/// A padded batch, ready to become `input_ids` / `attention_mask` / `token_type_ids`.
#[derive(Debug, Clone)]
pub struct TokenBatch {
    /// Rows.
    pub batch: usize,
    /// Columns (longest row).
    pub seq: usize,
    /// Row-major ids.
    pub ids: Vec<i64>,
    /// Row-major mask (1 = real token).
    pub mask: Vec<i64>,
    /// Row-major type ids.
    pub type_ids: Vec<i64>,
    /// Real tokens (special tokens included), for usage counts.
    pub tokens: usize,
}

impl TextEncoder {
    /// The tokenizer itself (its vocabulary, for structured output's token table).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.plain
    }

    /// Loads `tokenizer.json`; `max_len` overrides whatever truncation the file has.
    pub fn load(path: &Path, max_len: Option<usize>) -> Result<Self, TextError> {
        let mut tok = Tokenizer::from_file(path)
            .map_err(|e| TextError::Tokenizer(format!("{}: {e}", path.display())))?;
        let max_len = max_len
            .or_else(|| tok.get_truncation().map(|t| t.max_length))
            .unwrap_or(512);
        let pad_id = tok.get_padding().map_or(0, |p| p.pad_id) as i64;
        tok.with_padding(None);
        let mut plain = tok.clone();
        plain
            .with_truncation(None)
            .map_err(|e| TextError::Tokenizer(e.to_string()))?;
        tok.with_truncation(Some(TruncationParams {
            max_length: max_len,
            ..Default::default()
        }))
        .map_err(|e| TextError::Tokenizer(e.to_string()))?;
        Ok(Self {
            tok,
            plain,
            max_len,
            pad_id,
        })
    }

    /// The model's maximum sequence length.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Tokenises texts; `offsets` also computes character offsets (slower).
    pub fn encode(
        &self,
        texts: &[String],
        policy: Truncation,
        offsets: bool,
    ) -> Result<Vec<Encoding>, TextError> {
        if texts.is_empty() {
            return Err(TextError::NoInput);
        }
        if let Some(index) = texts.iter().position(|t| t.is_empty()) {
            return Err(TextError::EmptyText { index });
        }
        // One text after another on this (inference) thread: the tokenizer's own parallel
        // batch mode wakes a rayon pool that competes with ONNX Runtime's threads for the
        // same cores (measured: ~1 ms per single-text request on 2 cores).
        let encs = texts
            .iter()
            .map(|t| {
                if offsets {
                    self.tok.encode_char_offsets(t.as_str(), true)
                } else {
                    self.tok.encode_fast(t.as_str(), true)
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TextError::Tokenizer(e.to_string()))?;
        if policy == Truncation::Error
            && let Some(index) = encs.iter().position(|e| !e.get_overflowing().is_empty())
        {
            {
                let tokens = texts
                    .get(index)
                    .and_then(|t| self.plain.encode_fast(t.as_str(), true).ok())
                    .map_or(self.max_len.saturating_add(1), |e| e.len());
                return Err(TextError::TooLong {
                    index,
                    tokens,
                    max: self.max_len,
                });
            }
        }
        Ok(encs)
    }

    /// Tokenises an [`Input`]; token ids are checked against the vocabulary and the limit.
    pub fn encode_input(
        &self,
        input: &Input,
        policy: Truncation,
    ) -> Result<Vec<Encoding>, TextError> {
        let ids = match input {
            Input::Texts(t) => return self.encode(t, policy, false),
            Input::TokenIds(ids) => ids,
        };
        if ids.is_empty() {
            return Err(TextError::NoInput);
        }
        let vocab = self.plain.get_vocab_size(true);
        ids.iter()
            .enumerate()
            .map(|(index, row)| {
                if row.is_empty() {
                    return Err(TextError::EmptyText { index });
                }
                if let Some(&id) = row.iter().find(|&&id| id as usize >= vocab) {
                    return Err(TextError::BadTokenId { index, id, vocab });
                }
                let row = match (row.len() > self.max_len, policy) {
                    (true, Truncation::Error) => {
                        return Err(TextError::TooLong {
                            index,
                            tokens: row.len(),
                            max: self.max_len,
                        });
                    }
                    // Longer rows are cut at the limit; shorter ones are kept whole.
                    _ => row.get(..self.max_len).unwrap_or(row),
                };
                let tokens = row
                    .iter()
                    .map(|&id| Token::new(id, String::new(), (0, 0)))
                    .collect();
                Ok(Encoding::from_tokens(tokens, 0))
            })
            .collect()
    }

    /// Token ids of one text, without truncation (for `/v1/tokenize`).
    pub fn ids(&self, text: &str, special: bool) -> Result<Vec<u32>, TextError> {
        self.plain
            .encode_fast(text, special)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| TextError::Tokenizer(e.to_string()))
    }

    /// The tokens of one text without special tokens and without truncation, as byte
    /// offsets into `text` with each token's word index (for chunking a long text by the
    /// model's own tokens), and how many special tokens the model adds to every text.
    pub fn spans(&self, text: &str) -> Result<(Vec<TokenSpan>, usize), TextError> {
        let tok = |t: &str, special: bool| {
            self.plain
                .encode(t, special)
                .map_err(|e| TextError::Tokenizer(e.to_string()))
        };
        let enc = tok(text, false)?;
        let added = tok("a", true)?.len().saturating_sub(tok("a", false)?.len());
        let spans = enc
            .get_offsets()
            .iter()
            .zip(enc.get_word_ids())
            .map(|(&(start, end), &word)| TokenSpan { start, end, word })
            .collect();
        Ok((spans, added))
    }

    /// Text of token ids.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, TextError> {
        self.plain
            .decode(ids, skip_special)
            .map_err(|e| TextError::Tokenizer(e.to_string()))
    }

    /// Pads encodings to the longest one.
    pub fn pad(&self, encs: &[Encoding]) -> TokenBatch {
        let batch = encs.len();
        let seq = encs.iter().map(Encoding::len).max().unwrap_or(0);
        let cells = batch.saturating_mul(seq);
        let mut ids = vec![self.pad_id; cells];
        let mut mask = vec![0i64; cells];
        let mut type_ids = vec![0i64; cells];
        let mut tokens = 0usize;
        // One row of `seq` cells per encoding (no rows at all when `seq` is 0).
        let rows = ids
            .chunks_mut(seq.max(1))
            .zip(type_ids.chunks_mut(seq.max(1)))
            .zip(mask.chunks_mut(seq.max(1)));
        for (((ids, type_ids), mask), e) in rows.zip(encs) {
            let cells = ids.iter_mut().zip(type_ids).zip(mask);
            let values = e
                .get_ids()
                .iter()
                .zip(e.get_type_ids())
                .zip(e.get_attention_mask());
            for (((id, ty), m), ((&id_v, &ty_v), &m_v)) in cells.zip(values) {
                *id = i64::from(id_v);
                *ty = i64::from(ty_v);
                *m = i64::from(m_v);
            }
            tokens = tokens.saturating_add(e.len());
        }
        TokenBatch {
            batch,
            seq,
            ids,
            mask,
            type_ids,
            tokens,
        }
    }
}

/// Mean (or CLS) pooling of `hidden` `[batch, seq, dim]` over `mask`, optionally L2-normalised.
pub fn pool(
    hidden: &[f32],
    mask: &[i64],
    batch: usize,
    seq: usize,
    cls: bool,
    normalize: bool,
) -> Vec<Vec<f32>> {
    let dim = hidden
        .len()
        .checked_div(batch.saturating_mul(seq).max(1))
        .unwrap_or(0);
    // Token vectors, `seq` per text; a short `hidden` or `mask` yields zeros, never a panic.
    let rows: Vec<&[f32]> = hidden.chunks_exact(dim.max(1)).collect();
    (0..batch)
        .map(|b| {
            let first = b.saturating_mul(seq);
            let span = first..first.saturating_add(seq);
            let tokens = rows.get(span.clone()).unwrap_or_default();
            let masks = mask.get(span).unwrap_or_default();
            let mut v = vec![0f32; dim];
            if cls {
                if let Some(row) = tokens.first() {
                    v.iter_mut().zip(*row).for_each(|(acc, x)| *acc = *x);
                }
            } else {
                let mut n = 0f32;
                for (row, &m) in tokens.iter().zip(masks) {
                    if m == 0 {
                        continue;
                    }
                    n += 1.0;
                    for (acc, x) in v.iter_mut().zip(*row) {
                        *acc += x;
                    }
                }
                let n = n.max(1e-9);
                v.iter_mut().for_each(|x| *x /= n);
            }
            if normalize {
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                v.iter_mut().for_each(|x| *x /= norm);
            }
            v
        })
        .collect()
}

/// Numerically stable softmax.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|x| (x - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|x| x / sum).collect()
}

/// One label with its probability.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelScore {
    /// Label.
    pub label: String,
    /// Probability.
    pub score: f32,
}

/// Softmax over one row of logits, labels sorted by score (highest first).
pub fn label_scores(logits: &[f32], labels: &[String]) -> Vec<LabelScore> {
    let mut out: Vec<LabelScore> = softmax(logits)
        .into_iter()
        .zip(labels)
        .map(|(score, label)| LabelScore {
            label: label.clone(),
            score,
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out
}

/// An entity found in a text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entity {
    /// Entity type (the label without its `B-`/`I-` prefix).
    pub label: String,
    /// Start, in characters (Unicode scalar values) of the original text.
    pub start: usize,
    /// End (exclusive), in characters.
    pub end: usize,
    /// The entity's text.
    pub text: String,
    /// Mean probability of its tokens.
    pub score: f32,
    /// Start in bytes (for Rust and WebAssembly callers).
    #[serde(skip)]
    pub start_byte: usize,
    /// End in bytes.
    #[serde(skip)]
    pub end_byte: usize,
}

/// Merges per-token predictions into entity spans.
///
/// `logits` is `[seq, labels]` for the encoding's tokens (at least `enc.len()` rows).
/// Word-pieces of one word take the first piece's label; `B-X` starts an entity, `I-X`
/// continues an entity of type X (or starts one after anything else); `O` closes. A `B-X`
/// that touches the preceding X (no character between them) continues it.
/// `enc` must carry character offsets ([`TextEncoder::encode`] with `offsets`).
pub fn merge_entities(
    text: &str,
    enc: &Encoding,
    logits: &[f32],
    labels: &[String],
) -> Vec<Entity> {
    let n = labels.len();
    let offsets = enc.get_offsets();
    let words = enc.get_word_ids();
    let special = enc.get_special_tokens_mask();
    // Byte index of every char boundary, so char offsets map to byte offsets.
    let boundaries: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .collect();
    let mut out: Vec<Entity> = Vec::new();
    let mut current: Option<(String, usize, usize, Vec<f32>)> = None;
    let mut prev_word: Option<u32> = None;
    let close = |cur: &mut Option<(String, usize, usize, Vec<f32>)>, out: &mut Vec<Entity>| {
        if let Some((label, start, end, scores)) = cur.take()
            && let (Some(&sb), Some(&eb)) = (boundaries.get(start), boundaries.get(end))
            && let Some(span) = text.get(sb..eb)
        {
            out.push(Entity {
                label,
                start,
                end,
                text: span.to_string(),
                score: scores.iter().sum::<f32>() / scores.len() as f32,
                start_byte: sb,
                end_byte: eb,
            });
        }
    };
    let tokens = offsets.iter().zip(words).zip(special).enumerate();
    for (i, ((&(start, end), &word), &special)) in tokens {
        let row = i
            .checked_mul(n)
            .and_then(|a| a.checked_add(n).and_then(|b| logits.get(a..b)));
        let Some(row) = row.filter(|_| special != 1 && word.is_some()) else {
            continue;
        };
        let end = end.min(boundaries.len().saturating_sub(1));
        if word == prev_word {
            // A later piece of the same word: extend whatever entity the word is in.
            if let Some(cur) = current.as_mut() {
                cur.2 = end;
            }
            continue;
        }
        prev_word = word;
        let probs = softmax(row);
        let (best, score) = probs
            .iter()
            .copied()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or((0, 0.0));
        let label = labels.get(best).map_or("O", String::as_str);
        if label == "O" {
            close(&mut current, &mut out);
            continue;
        }
        let (begins, kind) = match label.split_once('-') {
            Some(("B", k)) | Some(("S", k)) => (true, k),
            Some(("I", k)) | Some(("E", k)) => (false, k),
            _ => (false, label),
        };
        match current.as_mut() {
            // `I-X` continues an X; so does `B-X` touching the previous X with no gap
            // (e-mail addresses and URLs are split into several "words" at punctuation).
            Some(cur) if cur.0 == kind && (!begins || cur.2 == start) => {
                cur.2 = end;
                cur.3.push(score);
            }
            _ => {
                close(&mut current, &mut out);
                current = Some((kind.to_string(), start, end, vec![score]));
            }
        }
    }
    close(&mut current, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_pooling_ignores_padding_and_normalises() {
        // batch 2, seq 2, dim 2; second row's second token is padding.
        let hidden = [1.0, 0.0, 3.0, 0.0, 0.0, 2.0, 100.0, 100.0];
        let mask = [1, 1, 1, 0];
        let v = pool(&hidden, &mask, 2, 2, false, false);
        assert_eq!(v, vec![vec![2.0, 0.0], vec![0.0, 2.0]]);
        let v = pool(&hidden, &mask, 2, 2, false, true);
        assert_eq!(v, vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
        let v = pool(&hidden, &mask, 2, 2, true, false);
        assert_eq!(v[1], vec![0.0, 2.0]);
    }

    #[test]
    fn softmax_sums_to_one_and_sorts() {
        let labels = vec!["a".to_string(), "b".to_string()];
        let s = label_scores(&[0.0, 2.0], &labels);
        assert_eq!(s[0].label, "b");
        assert!((s[0].score + s[1].score - 1.0).abs() < 1e-6);
        assert!(
            softmax(&[1000.0, 1000.0])
                .iter()
                .all(|x| (x - 0.5).abs() < 1e-6)
        );
    }
}

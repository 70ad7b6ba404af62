//! The tokenizer part of a GGUF file's metadata (`tokenizer.ggml.*`, `tokenizer.chat_template`).

use serde::{Deserialize, Serialize};

/// What a GGUF file says about its tokenizer. Filled from the file's metadata by the reader;
/// deserialisable so tests can load one from JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GgufVocab {
    /// `tokenizer.ggml.model`, e.g. `gpt2` (byte-level BPE) or `llama` (SentencePiece).
    pub model: String,
    /// `tokenizer.ggml.pre`: the pre-tokenizer's name, e.g. `smollm`, `llama-bpe`.
    #[serde(default)]
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`, indexed by id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type`: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    #[serde(default)]
    pub token_types: Vec<i32>,
    /// `tokenizer.ggml.merges`, each `"left right"`.
    #[serde(default)]
    pub merges: Vec<String>,
    /// `tokenizer.ggml.bos_token_id`.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    #[serde(default)]
    pub eos_token_id: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id`.
    #[serde(default)]
    pub unknown_token_id: Option<u32>,
    /// `tokenizer.ggml.padding_token_id`.
    #[serde(default)]
    pub padding_token_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`.
    #[serde(default)]
    pub add_bos_token: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix`.
    #[serde(default)]
    pub add_space_prefix: Option<bool>,
    /// `tokenizer.chat_template` (Jinja).
    #[serde(default)]
    pub chat_template: Option<String>,
}

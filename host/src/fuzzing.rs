//! Entry points of the fuzz targets in `fuzz/` (libFuzzer via `cargo fuzz`), kept in the
//! library so that the ordinary test suite replays every committed corpus and regression
//! input through exactly the code the fuzzers ran (`tests/all/fuzz_replay.rs`).
//!
//! Each function takes arbitrary bytes and must return without panicking, whatever they
//! are; errors are the expected outcome for most inputs and are discarded.

use std::path::Path;

use crate::core::text::{Input, TextEncoder, Truncation};

/// The targets, by the name of their folder under `fuzz/corpus/`.
pub const TARGETS: &[&str] = &[
    "model_manifest",
    "plugin_manifest",
    "config",
    "tokenizer_input",
    "openai_request",
    "kserve_json",
    "kserve_binary",
    "gguf_header",
];

/// Runs one target's entry point on `data`; `tokenizer` is needed by `tokenizer_input`.
/// Returns false for an unknown target name.
pub fn run(target: &str, data: &[u8], tokenizer: &TextEncoder) -> bool {
    match target {
        "model_manifest" => model_manifest(data),
        "plugin_manifest" => plugin_manifest(data),
        "config" => config(data),
        "tokenizer_input" => tokenizer_input(tokenizer, data),
        "openai_request" => openai_request(data),
        "kserve_json" => kserve_json(data),
        "kserve_binary" => kserve_binary(data),
        "gguf_header" => gguf_header(data),
        _ => return false,
    }
    true
}

/// A `/v1` POST body, parsed strictly and read into the route's request type as the
/// handlers do. Byte 0 picks the route (embeddings, classify, entities, tokenize,
/// detokenize, completions, chat completions); the rest is the body.
pub fn openai_request(data: &[u8]) {
    if let Some((&route, body)) = data.split_first() {
        let _ = crate::api::openai::parse_for_fuzzing(route, body);
    }
}

/// A KServe v2 inference body in JSON (no binary extension header).
pub fn kserve_json(data: &[u8]) {
    let _ = crate::api::kserve::parse_for_fuzzing(None, data);
}

/// A KServe v2 inference body with Triton's binary extension: the JSON part's length
/// (`Inference-Header-Content-Length`) comes first, as a little-endian u16 when byte 0 is
/// even (lengths that fall inside the body) or a u64 when it is odd (any length at all).
pub fn kserve_binary(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let split = if mode % 2 == 0 {
        rest.split_first_chunk::<2>()
            .map(|(n, body)| (u64::from(u16::from_le_bytes(*n)), body))
    } else {
        rest.split_first_chunk::<8>()
            .map(|(n, body)| (u64::from_le_bytes(*n), body))
    };
    if let Some((header_length, body)) = split {
        let _ = crate::api::kserve::parse_for_fuzzing(Some(header_length), body);
    }
}

/// A model manifest (`models/*.toml`, `$LLMOS_HOME/manifests/*.toml`).
pub fn model_manifest(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::core::manifest::Manifest::parse(text, "fuzz", Some(Path::new("/base")));
    }
}

/// A plugin manifest (`manifest.toml` beside a component).
pub fn plugin_manifest(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(m) = crate::plugins::manifest::Manifest::parse(text)
    {
        let _ = m.requested();
    }
}

/// `llmos.toml`.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::Config::parse(text);
    }
}

/// The tokenizer input path of the text routes: texts as users send them, under both
/// truncation policies, with and without offsets; token ids as `/v1/tokenize` clients send
/// them back (any u32, any length), and `/v1/detokenize`.
///
/// Layout: byte 0 chooses the mode, the rest is the text (lossy UTF-8) or little-endian
/// u32 ids.
pub fn tokenizer_input(tok: &TextEncoder, data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest).into_owned();
    let (words, _) = rest.as_chunks::<4>();
    let ids: Vec<u32> = words.iter().map(|&c| u32::from_le_bytes(c)).collect();
    let policy = if mode & 1 == 0 {
        Truncation::Error
    } else {
        Truncation::Truncate
    };
    match mode % 6 {
        0 | 1 => {
            if let Ok(encs) = tok.encode(std::slice::from_ref(&text), policy, mode & 2 != 0) {
                let _ = tok.pad(&encs);
            }
        }
        2 | 3 => {
            let input = Input::TokenIds(vec![ids]);
            if let Ok(encs) = tok.encode_input(&input, policy) {
                let _ = tok.pad(&encs);
            }
        }
        4 => {
            let _ = tok.ids(&text, mode & 8 != 0);
        }
        _ => {
            let _ = tok.decode(&ids, mode & 8 != 0);
        }
    }
}

/// A GGUF file's header, metadata and tensor descriptions (what `llmos models import` reads
/// from a file a user downloaded), then what the importer derives from them: the tokenizer
/// metadata, the llama hyper-parameters and a `tokenizer.json` built from the vocabulary.
pub fn gguf_header(data: &[u8]) {
    let Ok(f) = crate::core::gguf::GgufFile::parse(data, "fuzz.gguf") else {
        return;
    };
    let _ = crate::core::gguf::import::LlamaParams::of(&f);
    if let Ok(v) = f.vocab() {
        let _ = crate::core::gguf::tokenizer::build_tokenizer(&v);
    }
}

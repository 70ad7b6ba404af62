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
];

/// Runs one target's entry point on `data`; `tokenizer` is needed by `tokenizer_input`.
/// Returns false for an unknown target name.
pub fn run(target: &str, data: &[u8], tokenizer: &TextEncoder) -> bool {
    match target {
        "model_manifest" => model_manifest(data),
        "plugin_manifest" => plugin_manifest(data),
        "config" => config(data),
        "tokenizer_input" => tokenizer_input(tokenizer, data),
        _ => return false,
    }
    true
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

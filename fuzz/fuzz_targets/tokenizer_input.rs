#![no_main]

use std::sync::OnceLock;

use llmos::core::text::TextEncoder;

/// A BERT WordPiece tokenizer (the test fixture's; `LLMOS_FUZZ_TOKENIZER` picks another,
/// e.g. MiniLM's `tokenizer.json` from a pulled model).
fn tokenizer() -> &'static TextEncoder {
    static TOK: OnceLock<TextEncoder> = OnceLock::new();
    TOK.get_or_init(|| {
        let path = std::env::var("LLMOS_FUZZ_TOKENIZER").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/tiny-ner/tokenizer.json").into()
        });
        TextEncoder::load(std::path::Path::new(&path), Some(128)).expect("fuzz tokenizer loads")
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| llmos::fuzzing::tokenizer_input(tokenizer(), data));

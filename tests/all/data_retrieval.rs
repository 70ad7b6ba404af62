//! Retrieval quality, for real: the labelled question set of `bench/retrieval/` embedded by
//! `llmos embed -m minilm` (the real binary and model) and searched with
//! `llmos::data::search::VectorIndex`. Catches a regression in the embeddings (pooling,
//! normalisation, truncation) or in the index's ranking that the random-vector unit tests
//! cannot see. The figures themselves are in BENCHMARKS.md ("Search").

#[path = "../../bench/retrieval/eval.rs"]
mod eval;

use std::io::Write;
use std::process::Stdio;

use llmos::data::search::Precision;

use crate::support::{Home, repo, text};

/// Embeds `texts` with `llmos embed -m minilm`, given on stdin as a JSON array.
fn embed(home: &Home, texts: Vec<String>) -> Vec<Vec<f32>> {
    let mut child = home
        .cmd(&["embed", "-m", "minilm"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = serde_json::to_vec(&texts).unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "llmos embed failed:\n{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let vectors: Vec<Vec<f32>> = serde_json::from_value(v["embeddings"].clone()).unwrap();
    assert_eq!(vectors.len(), texts.len());
    vectors
}

#[test]
fn minilm_and_the_index_find_the_labelled_passages() {
    let home = Home::new();
    let (passages, questions) = eval::load(&repo().join("bench/retrieval"));
    assert!(passages.len() >= 150 && questions.len() >= 50);
    let pv = embed(&home, passages.iter().map(|p| p.text.clone()).collect());
    let qv = embed(
        &home,
        questions.iter().map(|q| q.question.clone()).collect(),
    );

    let exact = eval::evaluate(&passages, &questions, &pv, &qv, Precision::F32);
    eprintln!(
        "f32: recall@1 {:.3}, recall@5 {:.3}, recall@10 {:.3}, MRR@10 {:.3}; missed in the top 5: {:?}",
        exact.recall_at_1, exact.recall_at_5, exact.recall_at_10, exact.mrr_at_10, exact.misses
    );
    assert!(exact.recall_at_1 <= exact.recall_at_5 && exact.recall_at_5 <= exact.recall_at_10);
    // Measured: recall@5 0.988, MRR@10 0.970 (BENCHMARKS.md). The model and the index are
    // deterministic, so a drop below these bounds is a regression, not noise.
    assert!(
        exact.recall_at_5 >= 0.95 && exact.mrr_at_10 >= 0.90,
        "f32: {exact:?}"
    );
    let int8 = eval::evaluate(&passages, &questions, &pv, &qv, Precision::Int8);
    assert!(
        (int8.recall_at_5 - exact.recall_at_5).abs() <= 0.03,
        "int8 {int8:?} vs f32 {exact:?}"
    );
}

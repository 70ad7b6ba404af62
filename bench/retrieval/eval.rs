//! Retrieval-quality evaluation over `bench/retrieval/` (passages + labelled questions),
//! shared by the search benchmark (`cargo bench -p llmos --bench search -- --retrieval`) and
//! the test `tests/all/data_retrieval.rs` (both include this file with `#[path]`).
//! Embeddings come from the caller, so the same scoring serves the in-process model and the
//! `llmos embed` command.

use std::path::Path;

use llmos::data::search::{Precision, VectorIndex};

/// One passage of the corpus.
#[derive(serde::Deserialize)]
pub(crate) struct Passage {
    pub(crate) id: String,
    pub(crate) topic: String,
    pub(crate) text: String,
}

/// One question and the ids of the passages that answer it.
#[derive(serde::Deserialize)]
pub(crate) struct Question {
    pub(crate) question: String,
    pub(crate) relevant: Vec<String>,
}

/// Reads `passages.jsonl` and `questions.jsonl` from `dir`.
pub(crate) fn load(dir: &Path) -> (Vec<Passage>, Vec<Question>) {
    fn lines<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
        std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", path.display()))
            })
            .collect()
    }
    (
        lines(&dir.join("passages.jsonl")),
        lines(&dir.join("questions.jsonl")),
    )
}

/// Scores over all questions (means).
#[derive(Debug, Clone)]
pub(crate) struct Scores {
    /// Share of relevant passages found in the top 1, 5 and 10.
    pub(crate) recall_at_1: f64,
    pub(crate) recall_at_5: f64,
    pub(crate) recall_at_10: f64,
    /// Mean reciprocal rank of the first relevant passage within the top 10 (0 when absent).
    pub(crate) mrr_at_10: f64,
    /// Questions with no relevant passage in the top 5: (question, the top hit's id).
    pub(crate) misses: Vec<(String, String)>,
}

/// Builds an index of `passage_vectors` at `precision`, searches each of `question_vectors`
/// and scores the rankings against the labels.
pub(crate) fn evaluate(
    passages: &[Passage],
    questions: &[Question],
    passage_vectors: &[Vec<f32>],
    question_vectors: &[Vec<f32>],
    precision: Precision,
) -> Scores {
    assert_eq!(passages.len(), passage_vectors.len());
    assert_eq!(questions.len(), question_vectors.len());
    let dims = passage_vectors.first().map_or(0, Vec::len);
    let mut index = VectorIndex::new(dims, precision);
    for (p, v) in passages.iter().zip(passage_vectors) {
        let mut meta = serde_json::Map::new();
        meta.insert("topic".into(), p.topic.clone().into());
        index
            .upsert(&p.id, v, meta)
            .expect("a model vector is accepted");
    }
    let (mut r1, mut r5, mut r10, mut mrr) = (0.0, 0.0, 0.0, 0.0);
    let mut misses = Vec::new();
    for (q, v) in questions.iter().zip(question_vectors) {
        let hits: Vec<String> = index
            .search(v, 10, None)
            .expect("a model vector is a valid query")
            .into_iter()
            .map(|h| h.key)
            .collect();
        let found = |k: usize| {
            let n = q
                .relevant
                .iter()
                .filter(|r| hits.iter().take(k).any(|h| h == *r))
                .count();
            n as f64 / q.relevant.len() as f64
        };
        r1 += found(1);
        r5 += found(5);
        r10 += found(10);
        if let Some(rank) = hits.iter().position(|h| q.relevant.contains(h)) {
            mrr += 1.0 / (rank + 1) as f64;
        }
        if found(5) == 0.0 {
            misses.push((
                q.question.clone(),
                hits.first().cloned().unwrap_or_default(),
            ));
        }
    }
    let n = questions.len().max(1) as f64;
    Scores {
        recall_at_1: r1 / n,
        recall_at_5: r5 / n,
        recall_at_10: r10 / n,
        mrr_at_10: mrr / n,
        misses,
    }
}

//! Zero-shot classification with an embedding model: no training, labels given per request.
//!
//! Each label gets a prototype: the mean of the L2-normalised embeddings of its texts (its
//! description, or else its name in a sentence, plus each example), normalised again. An input's scores are
//! `softmax(cosine(input, prototype) × TEMPERATURE)` (20) over the labels, highest first, in the
//! same [`Classes`] shape a trained classifier answers with. Embeddings go through the model's
//! normal batched [`Model::embed_input`] path; label texts are cut at the model's maximum
//! length. Prototypes are kept per (loaded model, labels) in a small LRU, so a client that
//! sends the same labels with every request embeds them once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crate::core::engine::{Classes, Model, TaskError};
use crate::core::text::{Input, Truncation, label_scores};

/// Fewest labels a request may give.
pub const MIN_LABELS: usize = 2;
/// Most labels a request may give.
pub const MAX_LABELS: usize = 64;
/// Most examples per label.
pub const MAX_EXAMPLES: usize = 32;
/// The factor on cosines before the softmax. Chosen by calibration with
/// `bench/classify/zero_shot.py --explore` (minilm, TREC and SMS spam): see
/// docs/classification.md, "Zero-shot".
pub const TEMPERATURE: f32 = 20.0;
/// How a label without a description is embedded: its name in a sentence (measured better
/// than the bare name on both sets, see docs/classification.md).
pub const TEMPLATE: &str = "This text is about {name}.";
/// Prototype sets kept (least recently used dropped first).
const CACHE_ENTRIES: usize = 32;

/// One label of a zero-shot request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSpec {
    /// The label's name, returned in the scores.
    pub name: String,
    /// What the label means; embedded instead of the name when given.
    pub description: Option<String>,
    /// Example texts of the label.
    pub examples: Vec<String>,
}

impl LabelSpec {
    /// The texts whose embeddings make the prototype: the description, or else the name in
    /// [`TEMPLATE`], then the examples.
    fn texts(&self) -> impl Iterator<Item = String> {
        let head = match &self.description {
            Some(d) => d.clone(),
            None => TEMPLATE.replace("{name}", &self.name),
        };
        std::iter::once(head).chain(self.examples.iter().cloned())
    }
}

/// The label prototypes of one model and label set.
#[derive(Debug)]
pub struct Prototypes {
    names: Vec<String>,
    vectors: Vec<Vec<f32>>,
}

struct Entry {
    model: Weak<Model>,
    labels: Vec<LabelSpec>,
    protos: Arc<Prototypes>,
}

fn cache() -> &'static Mutex<VecDeque<Entry>> {
    static CACHE: OnceLock<Mutex<VecDeque<Entry>>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

fn cached(m: &Arc<Model>, labels: &[LabelSpec]) -> Option<Arc<Prototypes>> {
    let mut c = cache().lock().unwrap_or_else(|e| e.into_inner());
    c.retain(|e| e.model.strong_count() > 0);
    let at = c.iter().position(|e| {
        e.labels == labels && e.model.upgrade().is_some_and(|x| Arc::ptr_eq(&x, m))
    })?;
    let hit = c.remove(at)?;
    let protos = hit.protos.clone();
    c.push_back(hit);
    Some(protos)
}

fn remember(m: &Arc<Model>, labels: &[LabelSpec], protos: Arc<Prototypes>) {
    let mut c = cache().lock().unwrap_or_else(|e| e.into_inner());
    while c.len() >= CACHE_ENTRIES {
        c.pop_front();
    }
    c.push_back(Entry {
        model: Arc::downgrade(m),
        labels: labels.to_vec(),
        protos,
    });
}

/// The L2-normalised vector (unchanged when it is all zeros).
fn normalised(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// The normalised mean of normalised vectors.
fn mean(vectors: &[Vec<f32>]) -> Vec<f32> {
    let dims = vectors.first().map_or(0, Vec::len);
    let mut sum = vec![0.0f32; dims];
    for v in vectors {
        let v = normalised(v.clone());
        sum.iter_mut().zip(&v).for_each(|(s, x)| *s += x);
    }
    normalised(sum)
}

/// The prototypes of `labels` for `m`, embedded in one batched call (or from the cache).
pub async fn prototypes(
    m: &Arc<Model>,
    labels: &[LabelSpec],
) -> Result<Arc<Prototypes>, TaskError> {
    if let Some(p) = cached(m, labels) {
        return Ok(p);
    }
    let texts: Vec<String> = labels
        .iter()
        .flat_map(LabelSpec::texts)
        .collect();
    let out = m.embed(texts, Truncation::Truncate)?.recv().await?;
    let mut rest = out.vectors.as_slice();
    let mut vectors = Vec::with_capacity(labels.len());
    for l in labels {
        let n = l.texts().count();
        let (own, tail) = rest.split_at_checked(n).ok_or_else(|| TaskError::Runtime {
            model: m.name().to_string(),
            message: format!("{} embeddings for more label texts", out.vectors.len()),
        })?;
        vectors.push(mean(own));
        rest = tail;
    }
    let protos = Arc::new(Prototypes {
        names: labels.iter().map(|l| l.name.clone()).collect(),
        vectors,
    });
    remember(m, labels, protos.clone());
    Ok(protos)
}

/// Label scores of embedded inputs against prototypes, highest first.
pub fn scores(vectors: &[Vec<f32>], protos: &Prototypes) -> Vec<Vec<crate::core::text::LabelScore>> {
    vectors
        .iter()
        .map(|v| {
            let v = normalised(v.clone());
            let logits: Vec<f32> = protos
                .vectors
                .iter()
                .map(|p| p.iter().zip(&v).map(|(a, b)| a * b).sum::<f32>() * TEMPERATURE)
                .collect();
            label_scores(&logits, &protos.names)
        })
        .collect()
}

/// Classifies `input` with embedding model `m` against `labels`. `usage` counts the inputs'
/// tokens (label texts are not counted, whether embedded now or cached).
pub async fn classify(
    m: &Arc<Model>,
    labels: &[LabelSpec],
    input: Input,
    policy: Truncation,
) -> Result<Classes, TaskError> {
    let protos = prototypes(m, labels).await?;
    let out = m.embed_input(input, policy)?.recv().await?;
    Ok(Classes {
        scores: scores(&out.vectors, &protos),
        tokens: out.tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protos(names: &[&str], vectors: Vec<Vec<f32>>) -> Prototypes {
        Prototypes {
            names: names.iter().map(|s| s.to_string()).collect(),
            vectors,
        }
    }

    #[test]
    fn the_nearest_prototype_wins_and_scores_are_a_softmax_of_scaled_cosines() {
        let p = protos(&["x", "y"], vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
        let s = scores(&[vec![0.0, 2.0], vec![3.0, 1.0]], &p);
        assert_eq!(s[0][0].label, "y");
        assert_eq!(s[1][0].label, "x");
        // cosines 0.9487 and 0.3162: softmax of their difference × T.
        let d = (3.0f32 / 10f32.sqrt() - 1.0 / 10f32.sqrt()) * TEMPERATURE;
        let want = 1.0 / (1.0 + (-d).exp());
        assert!((s[1][0].score - want).abs() < 1e-5, "{} vs {want}", s[1][0].score);
        assert!((s[1][0].score + s[1][1].score - 1.0).abs() < 1e-6);
    }

    #[test]
    fn a_prototype_is_the_normalised_mean_of_normalised_texts() {
        // Lengths do not weigh: [10, 0] and [0, 1] average to the diagonal.
        let m = mean(&[vec![10.0, 0.0], vec![0.0, 1.0]]);
        let h = 0.5f32.sqrt();
        assert!((m[0] - h).abs() < 1e-6 && (m[1] - h).abs() < 1e-6, "{m:?}");
        assert_eq!(normalised(vec![0.0, 0.0]), vec![0.0, 0.0]);
    }

    #[test]
    fn a_label_embeds_its_description_else_its_name_then_its_examples() {
        let l = LabelSpec {
            name: "spam".into(),
            description: None,
            examples: vec!["win now".into()],
        };
        assert_eq!(
            l.texts().collect::<Vec<_>>(),
            ["This text is about spam.", "win now"]
        );
        let d = LabelSpec {
            description: Some("ads".into()),
            ..l
        };
        assert_eq!(d.texts().collect::<Vec<_>>(), ["ads", "win now"]);
    }
}

//! Figures of a head on the validation split: accuracy, per-class precision/recall/F1/support,
//! macro-F1, the confusion matrix and the validation loss.

use super::recipe::{ClassMetrics, Metrics};
pub use llmos_fit::eval::{argmax, confusion};

/// Accuracy, per-class figures and macro-F1 of a confusion matrix. `train_rows`, `dropped_rows`
/// and `epochs` are 0: the caller fills them in.
pub fn from_confusion(confusion: Vec<Vec<u64>>, labels: &[String], validation_loss: f64) -> Metrics {
    let total: u64 = confusion.iter().flatten().sum();
    let right: u64 = confusion
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.get(i))
        .sum();
    let mut classes = Vec::with_capacity(labels.len());
    for (c, label) in labels.iter().enumerate() {
        let tp = confusion.get(c).and_then(|r| r.get(c)).copied().unwrap_or(0);
        let support: u64 = confusion.get(c).map_or(0, |r| r.iter().sum());
        let predicted: u64 = confusion.iter().filter_map(|r| r.get(c)).sum();
        let precision = ratio(tp, predicted);
        let recall = ratio(tp, support);
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        classes.push(ClassMetrics {
            label: label.clone(),
            precision,
            recall,
            f1,
            support: usize::try_from(support).unwrap_or(usize::MAX),
        });
    }
    let macro_f1 = if classes.is_empty() {
        0.0
    } else {
        classes.iter().map(|c| c.f1).sum::<f64>() / classes.len() as f64
    };
    Metrics {
        accuracy: ratio(right, total),
        macro_f1,
        validation_loss,
        train_rows: 0,
        validation_rows: usize::try_from(total).unwrap_or(usize::MAX),
        dropped_rows: 0,
        epochs: 0,
        classes,
        confusion,
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)] // why: test data built from small counts and f64 samples
mod tests {
    use super::*;

    #[test]
    fn figures_of_a_hand_computed_confusion() {
        // true \ predicted: a b c
        let confusion = vec![vec![5, 1, 0], vec![2, 3, 1], vec![0, 0, 4]];
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let m = from_confusion(confusion.clone(), &labels, 0.5);
        assert_eq!(m.validation_rows, 16);
        assert_eq!(m.accuracy, 12.0 / 16.0);
        // a: tp 5, predicted 7, support 6.
        assert_eq!(m.classes[0].precision, 5.0 / 7.0);
        assert_eq!(m.classes[0].recall, 5.0 / 6.0);
        assert!((m.classes[0].f1 - 10.0 / 13.0).abs() < 1e-12);
        // b: tp 3, predicted 4, support 6 → F1 = 2·0.75·0.5/1.25 = 0.6.
        assert_eq!(m.classes[1].precision, 0.75);
        assert_eq!(m.classes[1].recall, 0.5);
        assert!((m.classes[1].f1 - 0.6).abs() < 1e-12);
        // c: tp 4, predicted 5, support 4 → F1 = 2·0.8·1/1.8.
        assert_eq!(m.classes[2].recall, 1.0);
        assert!((m.classes[2].f1 - 1.6 / 1.8).abs() < 1e-12);
        assert_eq!(m.classes.iter().map(|c| c.support).collect::<Vec<_>>(), vec![6, 6, 4]);
        let macro_f1 = (10.0 / 13.0 + 0.6 + 1.6 / 1.8) / 3.0;
        assert!((m.macro_f1 - macro_f1).abs() < 1e-12);
        assert_eq!(m.confusion, confusion);
        assert_eq!(m.validation_loss, 0.5);
    }

    #[test]
    fn a_class_never_predicted_has_zero_precision_and_f1() {
        let labels: Vec<String> = ["x", "y"].map(String::from).to_vec();
        let m = from_confusion(vec![vec![3, 0], vec![2, 0]], &labels, 0.0);
        assert_eq!(m.classes[1].precision, 0.0);
        assert_eq!(m.classes[1].f1, 0.0);
        assert_eq!(m.accuracy, 0.6);
    }

    #[test]
    fn confusion_counts_the_heads_predictions() {
        use llmos_fit::fit::Rows;
        use llmos_fit::head::{Dense, Head};
        // logits = x: the prediction is the larger coordinate.
        let head = Head {
            layers: vec![Dense {
                inputs: 2,
                outputs: 2,
                weight: vec![1.0, 0.0, 0.0, 1.0],
                bias: vec![0.0, 0.0],
            }],
        };
        let x = [2.0, 0.0, 0.0, 2.0, 3.0, 1.0];
        let rows = Rows { x: &x, dim: 2, y: &[0, 1, 1] };
        let (m, loss) = confusion(&head, rows, 2);
        assert_eq!(m, vec![vec![1, 0], vec![1, 1]]);
        // −ln softmax: two rows at margin 2 right, one at margin 2 wrong.
        let right = (1.0f64 + (-2.0f64).exp()).ln();
        let wrong = 2.0 + right;
        assert!((loss - (2.0 * right + wrong) / 3.0).abs() < 1e-6, "{loss}");
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1, "first on ties");
    }
}

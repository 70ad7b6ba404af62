//! A head's answers on labelled rows: the predicted class and the confusion matrix.

use crate::fit::{Rows, log_softmax};
use crate::head::Head;

/// The index of the largest value (the first on ties).
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if values.get(best).is_some_and(|b| v > b) {
            best = i;
        }
    }
    best
}

/// `confusion[true][predicted]` of `head` on `rows`, and the mean cross-entropy.
pub fn confusion(head: &Head, rows: Rows<'_>, classes: usize) -> (Vec<Vec<u64>>, f64) {
    let mut m = vec![vec![0u64; classes]; classes];
    let (mut total, mut n) = (0.0f64, 0.0f64);
    for (x, y) in rows.x.chunks_exact(rows.dim.max(1)).zip(rows.y) {
        let logits = head.logits(x);
        if let Some(cell) = m.get_mut(*y).and_then(|r| r.get_mut(argmax(&logits))) {
            *cell = cell.saturating_add(1);
        }
        total -= log_softmax(&logits, *y);
        n += 1.0;
    }
    (m, if n > 0.0 { total / n } else { 0.0 })
}

//! Re-laying out the KV cache when the running batch changes membership.
//!
//! Between membership changes the batch cache is the previous step's `present.*` values,
//! fed back as `past_key_values.*` untouched. When sequences join or leave, each staying
//! row is cut out of the batch tensors (without its left padding) and the rows are laid
//! out again, left-padded to the longest.

/// One sequence's cache: per cache tensor (graph input order), `[kv_heads, len, head_dim]`.
#[derive(Debug, Clone, Default)]
pub(crate) struct RowCache {
    /// Positions held.
    pub(crate) len: usize,
    /// One buffer per cache tensor.
    pub(crate) data: Vec<Vec<f32>>,
}

/// Cache geometry read from the graph.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    /// KV heads.
    pub(crate) heads: usize,
    /// Head size.
    pub(crate) head_dim: usize,
}

/// Cuts row `row` (left padding `pad`) out of a batch tensor `[B, heads, past, head_dim]`.
pub(crate) fn cut_row(t: &[f32], g: Geometry, past: usize, row: usize, pad: usize) -> Vec<f32> {
    let line = past.saturating_mul(g.head_dim);
    if line == 0 {
        return Vec::new();
    }
    let from = pad.saturating_mul(g.head_dim);
    t.chunks_exact(line)
        .skip(row.saturating_mul(g.heads))
        .take(g.heads)
        .flat_map(|c| c.get(from..).unwrap_or_default().iter().copied())
        .collect()
}

/// Lays rows out as batch tensors `[rows, heads, past, head_dim]`, left-padded with zeros
/// to the longest row; returns the tensors and `past`.
pub(crate) fn join_rows(rows: &[&RowCache], tensors: usize, g: Geometry) -> (Vec<Vec<f32>>, usize) {
    let past = rows.iter().map(|r| r.len).max().unwrap_or(0);
    let line = past.saturating_mul(g.head_dim);
    let size = line
        .saturating_mul(g.heads)
        .saturating_mul(rows.len());
    let mut out = Vec::with_capacity(tensors);
    for t in 0..tensors {
        let mut buf = vec![0f32; size];
        if line > 0 {
            let mut dst = buf.chunks_exact_mut(line);
            for r in rows {
                let src_line = r.len.saturating_mul(g.head_dim);
                let offset = line.saturating_sub(src_line);
                let src = r.data.get(t).map_or(&[][..], Vec::as_slice);
                let mut src_lines = src.chunks_exact(src_line.max(1));
                for _ in 0..g.heads {
                    let (Some(d), s) = (dst.next(), src_lines.next()) else {
                        break;
                    };
                    if let (Some(d), Some(s)) = (d.get_mut(offset..), s)
                        && src_line > 0
                    {
                        d.copy_from_slice(s);
                    }
                }
            }
        }
        out.push(buf);
    }
    (out, past)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_survive_a_join_and_a_cut() {
        let g = Geometry {
            heads: 2,
            head_dim: 3,
        };
        let a = RowCache {
            len: 1,
            data: vec![vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]],
        };
        let b = RowCache {
            len: 2,
            data: vec![(10..22).map(|x| x as f32).collect()],
        };
        let (t, past) = join_rows(&[&a, &b], 1, g);
        assert_eq!(past, 2);
        assert_eq!(
            t[0],
            vec![
                0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 0.0, 0.0, 0.0, 4.0, 5.0, 6.0, // a, padded
                10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0, 18.0, 19.0, 20.0, 21.0
            ]
        );
        assert_eq!(cut_row(&t[0], g, past, 0, 1), a.data[0]);
        assert_eq!(cut_row(&t[0], g, past, 1, 0), b.data[0]);
    }
}

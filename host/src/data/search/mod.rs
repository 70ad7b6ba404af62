//! In-memory vector search over one collection: an exact scan written for the CPU, with
//! metadata filters checked before scoring.
//!
//! [`VectorIndex`] keeps every vector L2-normalised in one contiguous row-major matrix (rows
//! padded with zeros to a multiple of [`LANES`]), so a score is a plain dot product (cosine).
//! The inner loop works on fixed-size blocks of [`LANES`] values ([`slice::as_chunks`]), which
//! the compiler turns into SIMD without `unsafe`; large indexes are split by rows across the
//! available cores (`std::thread::scope`); each part keeps its best `top_k` in a bounded
//! min-heap and the parts are merged. [`Precision::Int8`] stores each row as `i8` with one
//! scale per row (a quarter of the memory, see `BENCHMARKS.md` for its recall and speed).
//!
//! Results are deterministic: equal scores are ordered by key.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::ops::Range;
use std::sync::OnceLock;

use serde_json::{Map, Value};

mod filter;

pub use filter::{Filter, MAX_FILTER_FIELDS, MAX_IN_VALUES};

/// Values per block of the inner loop (rows are padded to a multiple of it).
pub const LANES: usize = 16;
/// The largest `top_k` a search accepts.
pub const MAX_TOP_K: usize = 1000;
/// Matrix cells (rows × padded dimensions) from which a search is split across threads:
/// below it, starting threads costs more than it saves.
const PARALLEL_CELLS: usize = 1 << 18;

/// Errors of the index: each names what was wrong and what is accepted.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SearchError {
    /// A vector or query with the wrong number of dimensions.
    #[error("{what} has {got} dimensions; this index holds {expected}-dimensional vectors")]
    Dimensions {
        /// `vector` or `query`.
        what: &'static str,
        /// The index's dimensions.
        expected: usize,
        /// What was given.
        got: usize,
    },
    /// A NaN or infinite component.
    #[error(
        "{what} has a non-finite value (NaN or infinity) at position {index}; only finite numbers are accepted"
    )]
    NotFinite {
        /// `vector` or `query`.
        what: &'static str,
        /// The position of the first bad value.
        index: usize,
    },
    /// An all-zero vector has no direction to compare.
    #[error("{what} is all zeros; it has no direction to compare (cosine needs a non-zero vector)")]
    ZeroVector {
        /// `vector` or `query`.
        what: &'static str,
    },
    /// `top_k` outside 1..=[`MAX_TOP_K`].
    #[error("top_k must be between 1 and {MAX_TOP_K}, got {0}")]
    TopK(usize),
    /// An empty key.
    #[error("a vector's key must not be empty")]
    EmptyKey,
    /// A filter that does not parse.
    #[error("filter: {0}")]
    Filter(String),
    /// An unknown precision name.
    #[error("unknown precision `{0}`; accepted: f32, int8")]
    Precision(String),
}

/// How the rows are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats: exact scores (the default).
    #[default]
    F32,
    /// 8-bit integers with one `f32` scale per row (and per query): a quarter of the memory
    /// and memory traffic, scores within about 1% of exact.
    Int8,
}

impl std::str::FromStr for Precision {
    type Err = SearchError;

    /// `f32` or `int8`.
    fn from_str(s: &str) -> Result<Self, SearchError> {
        match s {
            "f32" => Ok(Precision::F32),
            "int8" => Ok(Precision::Int8),
            other => Err(SearchError::Precision(other.to_owned())),
        }
    }
}

/// One result: the vector's key and its cosine similarity to the query.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Hit {
    /// The key given to [`VectorIndex::upsert`].
    pub key: String,
    /// Cosine similarity, in [-1, 1].
    pub score: f32,
}

/// Normalised rows in one contiguous matrix, `stride` values per row.
#[derive(Debug, Clone)]
enum Rows {
    F32(Vec<f32>),
    Int8 { values: Vec<i8>, scales: Vec<f32> },
}

/// An exact in-memory vector index with metadata (see the module documentation).
#[derive(Debug, Clone)]
pub struct VectorIndex {
    dims: usize,
    stride: usize,
    rows: Rows,
    keys: Vec<String>,
    metadata: Vec<Map<String, Value>>,
    slots: HashMap<String, usize>,
    threads: usize,
}

impl VectorIndex {
    /// An empty index of `dims`-dimensional vectors stored at `precision`; searches use every
    /// available core (see [`VectorIndex::with_threads`]).
    pub fn new(dims: usize, precision: Precision) -> Self {
        let rows = match precision {
            Precision::F32 => Rows::F32(Vec::new()),
            Precision::Int8 => Rows::Int8 {
                values: Vec::new(),
                scales: Vec::new(),
            },
        };
        Self {
            dims,
            stride: dims.div_ceil(LANES).saturating_mul(LANES),
            rows,
            keys: Vec::new(),
            metadata: Vec::new(),
            slots: HashMap::new(),
            threads: available_cores(),
        }
    }

    /// Uses at most `threads` threads per search (at least one).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Reserves room for `additional` more vectors (one allocation for a bulk load).
    pub fn reserve(&mut self, additional: usize) {
        let cells = additional.saturating_mul(self.stride);
        match &mut self.rows {
            Rows::F32(v) => v.reserve(cells),
            Rows::Int8 { values, scales } => {
                values.reserve(cells);
                scales.reserve(additional);
            }
        }
        self.keys.reserve(additional);
        self.metadata.reserve(additional);
        self.slots.reserve(additional);
    }

    /// Gives back room reserved and not used.
    pub fn shrink_to_fit(&mut self) {
        match &mut self.rows {
            Rows::F32(v) => v.shrink_to_fit(),
            Rows::Int8 { values, scales } => {
                values.shrink_to_fit();
                scales.shrink_to_fit();
            }
        }
        self.keys.shrink_to_fit();
        self.metadata.shrink_to_fit();
        self.slots.shrink_to_fit();
    }

    /// The dimensions of the vectors.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// How rows are stored.
    pub fn precision(&self) -> Precision {
        match self.rows {
            Rows::F32(_) => Precision::F32,
            Rows::Int8 { .. } => Precision::Int8,
        }
    }

    /// The number of vectors.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the index holds no vector.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Bytes held by the vectors (the matrix and, for int8, the row scales); keys and
    /// metadata not included.
    pub fn vector_bytes(&self) -> usize {
        match &self.rows {
            Rows::F32(m) => m.len().saturating_mul(4),
            Rows::Int8 { values, scales } => values.len().saturating_add(scales.len().saturating_mul(4)),
        }
    }

    /// Whether `key` is in the index.
    pub fn contains(&self, key: &str) -> bool {
        self.slots.contains_key(key)
    }

    /// The metadata stored with `key`.
    pub fn metadata(&self, key: &str) -> Option<&Map<String, Value>> {
        self.slots.get(key).and_then(|&s| self.metadata.get(s))
    }

    /// Inserts `vector` under `key`, or replaces the vector and metadata already there. The
    /// vector is L2-normalised; it must have [`VectorIndex::dims`] finite values, not all 0.
    pub fn upsert(
        &mut self,
        key: &str,
        vector: &[f32],
        metadata: Map<String, Value>,
    ) -> Result<(), SearchError> {
        if key.is_empty() {
            return Err(SearchError::EmptyKey);
        }
        let unit = unit_vector(vector, self.dims, "vector")?;
        match self.slots.get(key).copied() {
            Some(slot) => {
                self.rows.write(slot, self.stride, &unit);
                if let Some(m) = self.metadata.get_mut(slot) {
                    *m = metadata;
                }
            }
            None => {
                self.rows.push(self.stride, &unit);
                self.slots.insert(key.to_owned(), self.keys.len());
                self.keys.push(key.to_owned());
                self.metadata.push(metadata);
            }
        }
        Ok(())
    }

    /// Removes `key` in O(1) (the last row moves into its place); returns whether it was there.
    pub fn remove(&mut self, key: &str) -> bool {
        let Some(slot) = self.slots.remove(key) else {
            return false;
        };
        self.rows.swap_remove(slot, self.keys.len(), self.stride);
        self.keys.swap_remove(slot);
        self.metadata.swap_remove(slot);
        if let Some(moved) = self.keys.get(slot)
            && let Some(s) = self.slots.get_mut(moved)
        {
            *s = slot;
        }
        true
    }

    /// Removes every key for which `pred` holds (e.g. the chunks of one document); returns how
    /// many were removed.
    pub fn remove_where(&mut self, pred: impl Fn(&str) -> bool) -> usize {
        let doomed: Vec<String> = self.keys.iter().filter(|k| pred(k)).cloned().collect();
        for k in &doomed {
            self.remove(k);
        }
        doomed.len()
    }

    /// The `top_k` vectors most similar to `query` (cosine, best first; equal scores by key)
    /// among those whose metadata matches `filter`. `top_k` must be 1..=[`MAX_TOP_K`]; the
    /// query must have [`VectorIndex::dims`] finite values, not all 0.
    pub fn search(
        &self,
        query: &[f32],
        top_k: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<Hit>, SearchError> {
        if top_k == 0 || top_k > MAX_TOP_K {
            return Err(SearchError::TopK(top_k));
        }
        let mut q = unit_vector(query, self.dims, "query")?;
        q.resize(self.stride, 0.0);
        let filter = filter.filter(|f| !f.is_empty());
        let mut best = TopK::new(top_k);
        for part in self.scan_all(&q, filter, top_k) {
            for Reverse(c) in part.heap {
                best.offer(c.score, || c.key);
            }
        }
        let mut hits: Vec<Candidate<'_>> = best.heap.into_iter().map(|Reverse(c)| c).collect();
        hits.sort_by(|a, b| b.cmp(a));
        Ok(hits
            .into_iter()
            .map(|c| Hit {
                key: c.key.to_owned(),
                score: c.score,
            })
            .collect())
    }

    /// Scans every row: on this thread alone for a small index, else split into one range
    /// per thread (the last range on this thread). One top-k per range.
    fn scan_all<'a>(&'a self, q: &[f32], filter: Option<&Filter>, k: usize) -> Vec<TopK<'a>> {
        let n = self.len();
        let threads = if n.saturating_mul(self.stride) >= PARALLEL_CELLS {
            self.threads.min(n).max(1)
        } else {
            1
        };
        if threads == 1 {
            return vec![self.scan(0..n, q, filter, k)];
        }
        let per = n.div_ceil(threads);
        let mut ranges = (0..threads).map(|i| {
            let start = i.saturating_mul(per).min(n);
            start..start.saturating_add(per).min(n)
        });
        let mine = ranges.next_back();
        std::thread::scope(|s| {
            let handles: Vec<_> = ranges
                .map(|r| s.spawn(move || self.scan(r, q, filter, k)))
                .collect();
            let mut parts: Vec<TopK<'a>> = mine.map(|r| self.scan(r, q, filter, k)).into_iter().collect();
            parts.extend(
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))),
            );
            parts
        })
    }

    /// Scores rows `range` against the padded unit `query`; the best `k` that pass `filter`.
    fn scan<'a>(
        &'a self,
        range: Range<usize>,
        query: &[f32],
        filter: Option<&Filter>,
        k: usize,
    ) -> TopK<'a> {
        let mut top = TopK::new(k);
        if self.stride == 0 {
            return top; // 0 dimensions: no vector can be stored (chunks of 0 would panic)
        }
        let passes = |row: usize| {
            filter.is_none_or(|f| self.metadata.get(row).is_some_and(|m| f.matches(m)))
        };
        let key = |row: usize| self.keys.get(row).map_or("", String::as_str);
        let cells = range.start.saturating_mul(self.stride)..range.end.saturating_mul(self.stride);
        match &self.rows {
            Rows::F32(matrix) => {
                let block = matrix.get(cells).unwrap_or_default();
                for (row, v) in range.zip(block.chunks_exact(self.stride)) {
                    if passes(row) {
                        top.offer(dot_f32(v, query), || key(row));
                    }
                }
            }
            Rows::Int8 { values, scales } => {
                let (q, q_scale) = quantize(query);
                let block = values.get(cells).unwrap_or_default();
                let row_scales = scales.get(range.clone()).unwrap_or_default();
                for ((row, v), s) in range.zip(block.chunks_exact(self.stride)).zip(row_scales) {
                    if passes(row) {
                        let score = dot_i8(v, &q) as f32 * s * q_scale;
                        top.offer(score, || key(row));
                    }
                }
            }
        }
        top
    }
}

impl Rows {
    /// Appends a row (`unit` padded with zeros to `stride`).
    fn push(&mut self, stride: usize, unit: &[f32]) {
        match self {
            Rows::F32(m) => {
                let end = m.len().saturating_add(stride);
                m.extend_from_slice(unit);
                m.resize(end, 0.0);
            }
            Rows::Int8 { values, scales } => {
                let (q, scale) = quantize(unit);
                let end = values.len().saturating_add(stride);
                values.extend_from_slice(&q);
                values.resize(end, 0);
                scales.push(scale);
            }
        }
    }

    /// Overwrites row `slot` with `unit` (the padding stays zero).
    fn write(&mut self, slot: usize, stride: usize, unit: &[f32]) {
        let start = slot.saturating_mul(stride);
        let cells = start..start.saturating_add(unit.len());
        match self {
            Rows::F32(m) => {
                if let Some(row) = m.get_mut(cells) {
                    row.copy_from_slice(unit);
                }
            }
            Rows::Int8 { values, scales } => {
                let (q, scale) = quantize(unit);
                if let (Some(row), Some(s)) = (values.get_mut(cells), scales.get_mut(slot)) {
                    row.copy_from_slice(&q);
                    *s = scale;
                }
            }
        }
    }

    /// Moves the last of `len` rows into `slot` and drops the last row.
    fn swap_remove(&mut self, slot: usize, len: usize, stride: usize) {
        let last = len.saturating_sub(1);
        let last_start = last.saturating_mul(stride);
        let last_cells = last_start..last_start.saturating_add(stride);
        let to = slot.saturating_mul(stride);
        match self {
            Rows::F32(m) => {
                if slot < last && last_cells.end <= m.len() {
                    m.copy_within(last_cells, to);
                }
                m.truncate(last_start);
            }
            Rows::Int8 { values, scales } => {
                if slot < last && last_cells.end <= values.len() {
                    values.copy_within(last_cells, to);
                }
                values.truncate(last_start);
                if slot < scales.len() {
                    scales.swap_remove(slot);
                }
            }
        }
    }
}

/// The cores a search may use (cached: asking the OS each time costs a few syscalls).
fn available_cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// `v` checked (length `dims`, finite, not all zero) and scaled to length 1.
fn unit_vector(v: &[f32], dims: usize, what: &'static str) -> Result<Vec<f32>, SearchError> {
    if v.len() != dims {
        return Err(SearchError::Dimensions {
            what,
            expected: dims,
            got: v.len(),
        });
    }
    if let Some(index) = v.iter().position(|x| !x.is_finite()) {
        return Err(SearchError::NotFinite { what, index });
    }
    // Scaled by the largest magnitude first, so the sum of squares cannot overflow.
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    if max == 0.0 {
        return Err(SearchError::ZeroVector { what });
    }
    let scaled: Vec<f32> = v.iter().map(|x| x / max).collect();
    let norm = scaled.iter().map(|x| x * x).sum::<f32>().sqrt();
    Ok(scaled.into_iter().map(|x| x / norm).collect())
}

/// Symmetric 8-bit quantisation: `v ≈ q * scale`, `q` in [-127, 127].
fn quantize(v: &[f32]) -> (Vec<i8>, f32) {
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    (v.iter().map(|x| to_i8(x / scale)).collect(), scale)
}

/// Rounds to the nearest `i8` in [-127, 127].
// why: the value is rounded and clamped to [-127, 127] first, so the cast is exact (and a NaN,
// which the callers never pass, would become 0).
#[allow(clippy::cast_possible_truncation)]
fn to_i8(x: f32) -> i8 {
    x.round().clamp(-127.0, 127.0) as i8
}

/// Dot product of two equally long slices whose length is a multiple of [`LANES`].
fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    for (x, y) in a.as_chunks::<LANES>().0.iter().zip(b.as_chunks::<LANES>().0) {
        for ((s, p), q) in acc.iter_mut().zip(x).zip(y) {
            *s += p * q;
        }
    }
    acc.iter().sum()
}

/// Integer dot product of two equally long `i8` slices (length a multiple of [`LANES`]).
/// Values are in [-127, 127], so each product fits an `i16` and rows up to 133,000
/// dimensions cannot overflow the `i32` sums.
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    let mut acc = [0i32; LANES];
    for (x, y) in a.as_chunks::<LANES>().0.iter().zip(b.as_chunks::<LANES>().0) {
        for ((s, &p), &q) in acc.iter_mut().zip(x).zip(y) {
            *s = s.wrapping_add(i32::from(i16::from(p).wrapping_mul(i16::from(q))));
        }
    }
    acc.iter().fold(0, |t, &s| t.wrapping_add(s))
}

/// A scored row: ordered by score, then by key (the smaller key ranks higher).
#[derive(Debug, Clone, Copy)]
struct Candidate<'a> {
    score: f32,
    key: &'a str,
}

impl PartialEq for Candidate<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Candidate<'_> {}
impl PartialOrd for Candidate<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.key.cmp(self.key))
    }
}

/// The best `k` candidates seen so far: a min-heap of at most `k` entries.
struct TopK<'a> {
    k: usize,
    heap: BinaryHeap<Reverse<Candidate<'a>>>,
}

impl<'a> TopK<'a> {
    fn new(k: usize) -> Self {
        Self {
            k,
            heap: BinaryHeap::with_capacity(k.saturating_add(1)),
        }
    }

    /// Keeps `score` (its key fetched only if it may enter) when it beats the worst kept.
    fn offer(&mut self, score: f32, key: impl FnOnce() -> &'a str) {
        if self.heap.len() < self.k {
            self.heap.push(Reverse(Candidate { score, key: key() }));
        } else if let Some(mut worst) = self.heap.peek_mut()
            && score >= worst.0.score
        {
            let c = Candidate { score, key: key() };
            if c > worst.0 {
                *worst = Reverse(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// splitmix64: reproducible pseudo-random numbers without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        /// Uniform in [-1, 1).
        fn unit(&mut self) -> f32 {
            (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        }
        fn vector(&mut self, dims: usize) -> Vec<f32> {
            (0..dims).map(|_| self.unit()).collect()
        }
    }

    fn meta(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    /// Top-k by cosine computed the slow way, in f64, over (key, vector) pairs.
    fn brute_force(items: &[(String, Vec<f32>)], q: &[f32], k: usize) -> Vec<(String, f64)> {
        let norm = |v: &[f32]| v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
        let mut all: Vec<(String, f64)> = items
            .iter()
            .map(|(key, v)| {
                let dot: f64 = v.iter().zip(q).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
                (key.clone(), dot / norm(v) / norm(q))
            })
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(k);
        all
    }

    fn filled(precision: Precision, n: usize, dims: usize, seed: u64) -> (VectorIndex, Vec<(String, Vec<f32>)>) {
        let mut rng = Rng(seed);
        let mut index = VectorIndex::new(dims, precision);
        let mut items = Vec::new();
        for i in 0..n {
            let v = rng.vector(dims);
            let key = format!("doc-{i}");
            index.upsert(&key, &v, meta(json!({"i": i, "even": i % 2 == 0}))).unwrap();
            items.push((key, v));
        }
        (index, items)
    }

    fn keys(hits: &[Hit]) -> Vec<&str> {
        hits.iter().map(|h| h.key.as_str()).collect()
    }

    #[test]
    fn exact_top_k_equals_brute_force() {
        // 40 dimensions: not a multiple of the lane width, so the padding is exercised.
        let (index, items) = filled(Precision::F32, 700, 40, 1);
        let mut rng = Rng(99);
        for _ in 0..20 {
            let q = rng.vector(40);
            let hits = index.search(&q, 10, None).unwrap();
            let want = brute_force(&items, &q, 10);
            assert_eq!(keys(&hits), want.iter().map(|w| w.0.as_str()).collect::<Vec<_>>());
            for (h, w) in hits.iter().zip(&want) {
                assert!((f64::from(h.score) - w.1).abs() < 1e-5, "{h:?} vs {w:?}");
            }
        }
    }

    #[test]
    fn threaded_scan_equals_single_thread_and_brute_force() {
        // 20,000 × 16 cells pass the threshold, so the rows are split (3 parts: uneven).
        let (index, items) = filled(Precision::F32, 20_000, 16, 2);
        assert!(index.len() * index.stride >= PARALLEL_CELLS);
        let threaded = index.clone().with_threads(3);
        let single = index.with_threads(1);
        // 16 dimensions need no padding, so a raw query can go to the scan.
        assert_eq!(threaded.scan_all(&[0.25; 16], None, 5).len(), 3, "3 ranges");
        assert_eq!(single.scan_all(&[0.25; 16], None, 5).len(), 1);
        let mut rng = Rng(7);
        for _ in 0..5 {
            let q = rng.vector(16);
            let a = threaded.search(&q, 25, None).unwrap();
            assert_eq!(a, single.search(&q, 25, None).unwrap());
            let want = brute_force(&items, &q, 25);
            assert_eq!(keys(&a), want.iter().map(|w| w.0.as_str()).collect::<Vec<_>>());
            let even = Filter::parse(&json!({"even": true})).unwrap();
            let f = threaded.search(&q, 25, Some(&even)).unwrap();
            assert_eq!(f, single.search(&q, 25, Some(&even)).unwrap());
            assert_eq!(f.len(), 25);
        }
    }

    #[test]
    fn int8_scores_are_close_and_recall_is_high() {
        let (index, items) = filled(Precision::Int8, 2000, 384, 3);
        assert_eq!(index.precision(), Precision::Int8);
        let mut rng = Rng(11);
        let (mut found, mut total) = (0, 0);
        for _ in 0..20 {
            let q = rng.vector(384);
            let hits = index.search(&q, 10, None).unwrap();
            let want = brute_force(&items, &q, 10);
            let exact: HashMap<String, f64> = brute_force(&items, &q, items.len()).into_iter().collect();
            for h in &hits {
                let truth = exact[&h.key];
                assert!((f64::from(h.score) - truth).abs() < 0.01, "{h:?} vs {truth}");
            }
            found += want.iter().filter(|w| hits.iter().any(|h| h.key == w.0)).count();
            total += want.len();
        }
        // Random uniform vectors are the hard case (scores bunch together); still ≥ 90%.
        assert!(found * 10 >= total * 9, "int8 recall@10 {found}/{total}");
    }

    #[test]
    fn upsert_replaces_and_remove_keeps_the_rest_findable() {
        for precision in [Precision::F32, Precision::Int8] {
            let (mut index, mut items) = filled(precision, 50, 20, 4);
            // Replacing keeps the count and moves the key to its new vector.
            let new = Rng(5).vector(20);
            index.upsert("doc-3", &new, meta(json!({"v": 2}))).unwrap();
            assert_eq!(index.len(), 50);
            assert_eq!(index.metadata("doc-3"), Some(&meta(json!({"v": 2}))));
            assert_eq!(index.search(&new, 1, None).unwrap()[0].key, "doc-3");
            items[3].1 = new.clone();
            // Removing from the middle, the end and the start (swap-remove moves rows).
            for k in ["doc-10", "doc-49", "doc-0"] {
                assert!(index.remove(k));
                assert!(!index.remove(k), "{k} removed twice");
                items.retain(|i| i.0 != k);
            }
            assert_eq!(index.len(), 47);
            assert!(!index.contains("doc-10") && index.contains("doc-48"));
            for (key, v) in &items {
                let top = &index.search(v, 1, None).unwrap()[0];
                assert_eq!(&top.key, key, "{precision:?}");
                assert!(top.score > 0.99, "{top:?}");
            }
            // remove_where: the chunks of one "document".
            assert_eq!(index.remove_where(|k| k.starts_with("doc-1")), 10); // 1, 11..=19
            assert_eq!(index.len(), 37);
            assert!(index.keys.iter().all(|k| !k.starts_with("doc-1")));
            for (key, v) in items.iter().filter(|i| !i.0.starts_with("doc-1")) {
                assert_eq!(&index.search(v, 1, None).unwrap()[0].key, key);
            }
            // Down to nothing and back.
            let all: Vec<String> = index.keys.clone();
            for k in &all {
                assert!(index.remove(k));
            }
            assert!(index.is_empty());
            assert_eq!(index.search(&new, 5, None).unwrap(), vec![]);
            index.upsert("again", &new, Map::new()).unwrap();
            assert_eq!(keys(&index.search(&new, 5, None).unwrap()), vec!["again"]);
        }
    }

    #[test]
    fn an_index_can_be_shared_between_threads() {
        // The collections layer keeps one index per collection behind a lock and searches
        // it from blocking threads.
        fn shared<T: Send + Sync>() {}
        shared::<VectorIndex>();
        shared::<Filter>();
    }

    #[test]
    fn precision_names_and_memory() {
        assert_eq!("int8".parse::<Precision>(), Ok(Precision::Int8));
        assert_eq!("f32".parse::<Precision>(), Ok(Precision::F32));
        assert_eq!(
            "f16".parse::<Precision>().unwrap_err().to_string(),
            "unknown precision `f16`; accepted: f32, int8"
        );
        assert_eq!(serde_json::to_value(Precision::Int8).unwrap(), json!("int8"));
        // 20 dimensions are padded to 32: 32 × 4 bytes per f32 row, 32 + 4 per int8 row.
        assert_eq!(filled(Precision::F32, 10, 20, 1).0.vector_bytes(), 10 * 32 * 4);
        assert_eq!(filled(Precision::Int8, 10, 20, 1).0.vector_bytes(), 10 * (32 + 4));
    }

    #[test]
    fn results_are_sorted_and_ties_ordered_by_key() {
        let mut index = VectorIndex::new(3, Precision::F32);
        for k in ["c", "a", "b"] {
            index.upsert(k, &[1.0, 0.0, 0.0], Map::new()).unwrap();
        }
        index.upsert("z", &[0.0, 1.0, 0.0], Map::new()).unwrap();
        index.upsert("y", &[1.0, 1.0, 0.0], Map::new()).unwrap();
        let hits = index.search(&[2.0, 0.0, 0.0], 1000, None).unwrap();
        assert_eq!(keys(&hits), vec!["a", "b", "c", "y", "z"]);
        assert!((hits[3].score - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert_eq!(hits[4].score, 0.0);
        assert_eq!(keys(&index.search(&[1.0, 0.0, 0.0], 2, None).unwrap()), vec!["a", "b"]);
    }

    #[test]
    fn filters_are_applied_before_scoring() {
        let mut index = VectorIndex::new(2, Precision::F32);
        let rows = [
            ("a", [1.0, 0.0], json!({"lang": "en", "year": 2019, "tags": ["x", "y"], "ok": true})),
            ("b", [0.9, 0.1], json!({"lang": "fr", "year": 2021.0, "tags": "z", "ok": false})),
            ("c", [0.5, 0.5], json!({"lang": "en", "year": 2023, "date": "2024-05-01"})),
            ("d", [0.0, 1.0], json!({"lang": "de", "year": "2020", "date": "2023-12-31"})),
        ];
        for (k, v, m) in rows {
            index.upsert(k, &v, meta(m)).unwrap();
        }
        let q = [1.0, 0.0];
        let find = |f: Value| keys(&index.search(&q, 10, Some(&Filter::parse(&f).unwrap())).unwrap())
            .into_iter().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(find(json!({"lang": "en"})), ["a", "c"]);
        assert_eq!(find(json!({"year": 2021})), ["b"], "2021 equals 2021.0");
        assert_eq!(find(json!({"ok": false})), ["b"]);
        assert_eq!(find(json!({"tags": "y"})), ["a"], "an array field matches any element");
        assert_eq!(find(json!({"lang": {"in": ["fr", "de"]}})), ["b", "d"]);
        assert_eq!(find(json!({"year": {"gte": 2021}})), ["b", "c"], "the string \"2020\" is not a number");
        assert_eq!(find(json!({"year": {"gt": 2019, "lt": 2023}})), ["b"]);
        assert_eq!(find(json!({"year": {"lte": 2019}})), ["a"]);
        assert_eq!(find(json!({"date": {"gte": "2024-01-01"}})), ["c"]);
        assert_eq!(find(json!({"date": {"lt": "2024"}})), ["d"]);
        assert_eq!(find(json!({"lang": "en", "year": {"gt": 2020}})), ["c"], "AND");
        assert_eq!(find(json!({"missing": "x"})), Vec::<String>::new());
        assert_eq!(find(json!({})), ["a", "b", "c", "d"]);
        // Filtering comes before top-k: the best vector ("a") is excluded, and k rows that
        // pass are still found.
        let f = Filter::parse(&json!({"lang": {"in": ["fr", "de", "en"]}, "ok": {"in": [false]}})).unwrap();
        assert_eq!(keys(&index.search(&q, 1, Some(&f)).unwrap()), ["b"]);
        let not_a = Filter::parse(&json!({"year": {"gt": 2019}})).unwrap();
        assert_eq!(keys(&index.search(&q, 2, Some(&not_a)).unwrap()), ["b", "c"]);
    }

    #[test]
    fn bad_vectors_queries_and_top_k_are_refused() {
        let mut index = VectorIndex::new(3, Precision::F32);
        let m = Map::new;
        assert_eq!(
            index.upsert("a", &[1.0, 2.0], m()).unwrap_err().to_string(),
            "vector has 2 dimensions; this index holds 3-dimensional vectors"
        );
        assert_eq!(
            index.upsert("a", &[1.0, f32::NAN, 0.0], m()),
            Err(SearchError::NotFinite { what: "vector", index: 1 })
        );
        assert_eq!(
            index.upsert("a", &[1.0, 0.0, f32::INFINITY], m()),
            Err(SearchError::NotFinite { what: "vector", index: 2 })
        );
        assert!(index.upsert("a", &[0.0; 3], m()).unwrap_err().to_string().contains("all zeros"));
        assert_eq!(index.upsert("", &[1.0; 3], m()), Err(SearchError::EmptyKey));
        assert!(index.is_empty(), "nothing half-written");
        // Huge but finite values are fine (normalised without overflow).
        index.upsert("big", &[f32::MAX, f32::MAX, 0.0], m()).unwrap();
        let hit = &index.search(&[1.0, 1.0, 0.0], 1, None).unwrap()[0];
        assert!((hit.score - 1.0).abs() < 1e-6, "{hit:?}");
        for k in [0, 1001] {
            assert_eq!(
                index.search(&[1.0; 3], k, None).unwrap_err().to_string(),
                format!("top_k must be between 1 and 1000, got {k}")
            );
        }
        assert_eq!(index.search(&[1.0; 3], 1000, None).unwrap().len(), 1);
        assert!(matches!(
            index.search(&[1.0; 4], 1, None),
            Err(SearchError::Dimensions { what: "query", expected: 3, got: 4 })
        ));
        assert!(index.search(&[f32::NEG_INFINITY, 0.0, 0.0], 1, None).unwrap_err().to_string().contains("query has a non-finite value"));
        assert!(matches!(index.search(&[0.0; 3], 1, None), Err(SearchError::ZeroVector { what: "query" })));
        // An index of 0 dimensions accepts nothing and answers with an error, not a panic.
        let mut empty = VectorIndex::new(0, Precision::Int8);
        assert!(matches!(empty.upsert("a", &[], m()), Err(SearchError::ZeroVector { .. })));
        assert!(matches!(empty.search(&[], 1, None), Err(SearchError::ZeroVector { .. })));
    }
}

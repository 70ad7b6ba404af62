//! The interim exact search of a collection: every vector in one row-major `f32` matrix,
//! metadata filters checked before scoring, scores are dot products of L2-normalised
//! vectors (cosine). `data/search.rs`'s `VectorIndex` takes its place behind
//! [`super::Collections::search`].

use std::cmp::Ordering;

use serde::Serialize;
use serde_json::{Map, Value};

use super::{ChunkRecord, DataError};

/// What filters accept, for error messages.
const FILTER_RULE: &str = "a JSON object of metadata field → value (equality), or → an object of \
     operators eq, in (a list), gt, gte, lt, lte (numbers or strings)";

/// One condition on a metadata field.
#[derive(Debug, Clone, PartialEq)]
enum Cond {
    Eq(Value),
    In(Vec<Value>),
    Gt(Value),
    Gte(Value),
    Lt(Value),
    Lte(Value),
}

/// A metadata filter: every condition must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter(Vec<(String, Cond)>);

impl Filter {
    /// Parses `{"field": value}` (equality) and `{"field": {"gte": 1, "lt": 5}}`,
    /// `{"field": {"in": [..]}}`; `null` is no filter.
    pub fn parse(v: &Value) -> Result<Self, DataError> {
        let bad = |m: String| DataError::BadQuery(format!("filter: {m}; accepted: {FILTER_RULE}"));
        let obj = match v {
            Value::Null => return Ok(Self::default()),
            Value::Object(o) => o,
            other => return Err(bad(format!("got {other}"))),
        };
        let mut conds = Vec::new();
        for (field, want) in obj {
            let Value::Object(ops) = want else {
                conds.push((field.clone(), Cond::Eq(want.clone())));
                continue;
            };
            if ops.is_empty() {
                return Err(bad(format!("field {field:?} has an empty operator object")));
            }
            for (op, arg) in ops {
                let c = match (op.as_str(), arg) {
                    ("eq", a) => Cond::Eq(a.clone()),
                    ("in", Value::Array(a)) => Cond::In(a.clone()),
                    ("in", a) => return Err(bad(format!("{field}.in must be a list, got {a}"))),
                    ("gt" | "gte" | "lt" | "lte", a) if !(a.is_number() || a.is_string()) => {
                        return Err(bad(format!("{field}.{op} must be a number or a string, got {a}")));
                    }
                    ("gt", a) => Cond::Gt(a.clone()),
                    ("gte", a) => Cond::Gte(a.clone()),
                    ("lt", a) => Cond::Lt(a.clone()),
                    ("lte", a) => Cond::Lte(a.clone()),
                    (other, _) => return Err(bad(format!("unknown operator {other:?} on {field:?}"))),
                };
                conds.push((field.clone(), c));
            }
        }
        Ok(Self(conds))
    }

    /// Whether `meta` passes.
    pub fn matches(&self, meta: &Map<String, Value>) -> bool {
        self.0.iter().all(|(field, c)| {
            let Some(v) = meta.get(field) else {
                return false;
            };
            match c {
                Cond::Eq(w) => same(v, w),
                Cond::In(ws) => ws.iter().any(|w| same(v, w)),
                Cond::Gt(w) => order(v, w) == Some(Ordering::Greater),
                Cond::Gte(w) => matches!(order(v, w), Some(Ordering::Greater | Ordering::Equal)),
                Cond::Lt(w) => order(v, w) == Some(Ordering::Less),
                Cond::Lte(w) => matches!(order(v, w), Some(Ordering::Less | Ordering::Equal)),
            }
        })
    }
}

/// Equal, with numbers compared by value (`1` equals `1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Numbers by value, strings by bytes; anything else (or a mix) is unordered.
fn order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// A search result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    /// Cosine similarity.
    pub score: f32,
    /// The document id.
    pub document: String,
    /// The chunk id (`document:seq`).
    pub chunk: String,
    /// The chunk's text.
    pub text: String,
    /// The chunk's metadata.
    pub metadata: Map<String, Value>,
}

/// A collection's chunks opened into memory: one contiguous matrix and the rows' details.
#[derive(Debug, Default)]
pub struct Loaded {
    dims: usize,
    matrix: Vec<f32>,
    rows: Vec<ChunkRecord>,
}

impl Loaded {
    /// Loads chunks (their embeddings must all have one size).
    pub fn from_chunks(chunks: Vec<ChunkRecord>) -> Result<Self, DataError> {
        let mut out = Self::default();
        for mut c in chunks {
            let v = c.vector().ok_or_else(|| {
                DataError::BadQuery(format!("chunk {} has a malformed embedding", c.id()))
            })?;
            if out.rows.is_empty() {
                out.dims = v.len();
            } else if v.len() != out.dims {
                return Err(DataError::BadQuery(format!(
                    "chunk {} has {} dimensions, the others {}",
                    c.id(),
                    v.len(),
                    out.dims
                )));
            }
            out.matrix.extend_from_slice(&v);
            c.embedding = String::new(); // kept once, in the matrix
            out.rows.push(c);
        }
        Ok(out)
    }
}

/// The `top_k` best rows of `l` for `query` that pass `filter`, best first.
pub(super) fn search(l: &Loaded, query: &[f32], top_k: usize, filter: &Filter) -> Result<Vec<Hit>, DataError> {
    if l.rows.is_empty() || top_k == 0 {
        return Ok(Vec::new());
    }
    if query.len() != l.dims {
        return Err(DataError::BadQuery(format!(
            "the query vector has {} dimensions; this collection's model makes {}",
            query.len(),
            l.dims
        )));
    }
    let mut scored: Vec<(f32, usize)> = l
        .matrix
        .chunks_exact(l.dims)
        .zip(&l.rows)
        .enumerate()
        .filter(|(_, (_, r))| filter.matches(&r.metadata))
        .map(|(i, (row, _))| (row.iter().zip(query).map(|(a, b)| a * b).sum(), i))
        .collect();
    let best = |a: &(f32, usize), b: &(f32, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    if scored.len() > top_k {
        scored.select_nth_unstable_by(top_k, best);
        scored.truncate(top_k);
    }
    scored.sort_by(best);
    Ok(scored
        .into_iter()
        .filter_map(|(score, i)| {
            let r = l.rows.get(i)?;
            Some(Hit {
                score,
                document: r.document.clone(),
                chunk: r.id(),
                text: r.text.clone(),
                metadata: r.metadata.clone(),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_check_equality_lists_and_ranges() {
        let m = json!({"year": 2021, "lang": "en", "tag": "b"});
        let m = m.as_object().unwrap();
        let pass = |f: Value| Filter::parse(&f).unwrap().matches(m);
        assert!(pass(json!({"lang": "en", "year": 2021.0})));
        assert!(!pass(json!({"lang": "de"})));
        assert!(pass(json!({"tag": {"in": ["a", "b"]}})));
        assert!(pass(json!({"year": {"gte": 2021, "lt": 2022}})));
        assert!(!pass(json!({"year": {"gt": 2021}})));
        assert!(pass(json!({"lang": {"gt": "de"}})));
        assert!(!pass(json!({"year": {"gt": "2000"}})), "no order between a number and a string");
        assert!(!pass(json!({"missing": 1})));
        for bad in [json!([1]), json!({"year": {"near": 1}}), json!({"year": {"in": 1}}), json!({"y": {"gt": [1]}})] {
            let e = Filter::parse(&bad).unwrap_err().to_string();
            assert!(e.contains("accepted: "), "{e}");
        }
    }
}

//! Vector search (`llmos::data::search::VectorIndex`), in one run:
//! - **scan**: 100,000 × 384 random-but-clustered unit vectors, ~100 queries each timed alone
//!   (median, p95), f32 and int8, all cores and one, without and with metadata filters; the
//!   recall@10 of int8 against the exact f32 ranking;
//! - **load**: the same vectors written as sealed chunk records (`Chunks` tree, JSON with a
//!   base64 little-endian f32 embedding, as in docs/data.md) with `Store::put_many`, then read
//!   back with `Store::values`, decoded and indexed, each step timed;
//! - `--retrieval`: recall@k and MRR of `minilm` + the index on `bench/retrieval/`.
//!
//! `cargo bench -p llmos --bench search -- [--rows N] [--dims D] [--queries Q] [--threads T]
//! [--no-load] [--retrieval]`

#[path = "../../bench/retrieval/eval.rs"]
mod eval;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use llmos::data::search::{Filter, Hit, Precision, VectorIndex};
use llmos::data::{Store, Tree};
use llmos::security::seal::Sealer;
use serde_json::{Map, Value, json};

struct Args {
    rows: usize,
    dims: usize,
    queries: usize,
    threads: usize,
    load: bool,
    retrieval: bool,
}

fn args() -> Args {
    let mut a = Args {
        rows: 100_000,
        dims: 384,
        queries: 100,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        load: true,
        retrieval: false,
    };
    let mut it = std::env::args().skip(1);
    let num = |v: Option<String>, flag: &str| -> usize {
        v.and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{flag} needs a number"))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--rows" => a.rows = num(it.next(), "--rows"),
            "--dims" => a.dims = num(it.next(), "--dims"),
            "--queries" => a.queries = num(it.next(), "--queries"),
            "--threads" => a.threads = num(it.next(), "--threads"),
            "--no-load" => a.load = false,
            "--retrieval" => a.retrieval = true,
            _ => {} // cargo bench passes --bench
        }
    }
    a
}

/// splitmix64 with Box-Muller normals: reproducible data without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `n` unit vectors around 256 random centres (each is its centre plus as much noise again).
struct Data {
    vectors: Vec<Vec<f32>>,
    queries: Vec<Vec<f32>>,
}

fn clustered(n: usize, dims: usize, queries: usize) -> Data {
    let mut rng = Rng(2026);
    let centres: Vec<Vec<f32>> = (0..256)
        .map(|_| (0..dims).map(|_| rng.normal()).collect())
        .collect();
    let near = |rng: &mut Rng| {
        let c = &centres[rng.below(centres.len())];
        let v: Vec<f32> = c.iter().map(|x| x + rng.normal()).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / norm).collect::<Vec<f32>>()
    };
    Data {
        vectors: (0..n).map(|_| near(&mut rng)).collect(),
        queries: (0..queries).map(|_| near(&mut rng)).collect(),
    }
}

/// Metadata of row `i`: `group` 0..10 (a number) and `lang` (one of four strings).
fn metadata(i: usize) -> Map<String, Value> {
    let langs = ["en", "fr", "de", "es"];
    json!({"group": i % 10, "lang": langs[i % 4]})
        .as_object()
        .unwrap()
        .clone()
}

fn key(i: usize) -> String {
    format!("doc-{i:06}:0")
}

fn build(data: &Data, precision: Precision, threads: usize) -> VectorIndex {
    let mut index = VectorIndex::new(data.vectors[0].len(), precision).with_threads(threads);
    index.reserve(data.vectors.len());
    for (i, v) in data.vectors.iter().enumerate() {
        index.upsert(&key(i), v, metadata(i)).unwrap();
    }
    index
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Median, p95 (nearest rank) and minimum in milliseconds.
fn stats(mut t: Vec<Duration>) -> (f64, f64, f64) {
    t.sort();
    let at = |q: f64| ms(t[((t.len() as f64 * q).ceil() as usize).clamp(1, t.len()) - 1]);
    (at(0.5), at(0.95), ms(t[0]))
}

/// Times each query alone (after 3 warm-up queries): (median, p95, minimum) and the results.
fn time_queries(
    index: &VectorIndex,
    queries: &[Vec<f32>],
    filter: Option<&Filter>,
) -> ((f64, f64, f64), Vec<Vec<Hit>>) {
    for q in queries.iter().take(3) {
        index.search(q, 10, filter).unwrap();
    }
    let mut times = Vec::new();
    let mut results = Vec::new();
    for q in queries {
        let t = Instant::now();
        let hits = index.search(q, 10, filter).unwrap();
        times.push(t.elapsed());
        results.push(hits);
    }
    (stats(times), results)
}

/// Mean share of `exact`'s top-10 keys that `approx` also returned.
fn recall(exact: &[Vec<Hit>], approx: &[Vec<Hit>]) -> f64 {
    let per: Vec<f64> = exact
        .iter()
        .zip(approx)
        .map(|(e, a)| {
            let found = e
                .iter()
                .filter(|h| a.iter().any(|x| x.key == h.key))
                .count();
            found as f64 / e.len().max(1) as f64
        })
        .collect();
    per.iter().sum::<f64>() / per.len().max(1) as f64
}

/// One row of the scan table: index, threads, filter label, filter, exact reference.
struct Case<'a>(
    &'a VectorIndex,
    usize,
    &'a str,
    Option<&'a Filter>,
    &'a [Vec<Hit>],
);

fn scan(a: &Args, data: &Data) {
    let t = Instant::now();
    let f32_index = build(data, Precision::F32, a.threads);
    let built_f32 = t.elapsed();
    let t = Instant::now();
    let int8_index = build(data, Precision::Int8, a.threads);
    let built_int8 = t.elapsed();
    println!(
        "index build from decoded vectors: f32 {:.0} ms, int8 {:.0} ms",
        ms(built_f32),
        ms(built_int8)
    );
    let ten = Filter::parse(&json!({"group": 3})).unwrap();
    let half = Filter::parse(&json!({"group": {"lt": 5}})).unwrap();
    let two = Filter::parse(&json!({"lang": {"in": ["en", "de"]}, "group": {"gte": 2}})).unwrap();
    let (_, exact) = time_queries(&f32_index, &data.queries, None);
    let (_, exact_ten) = time_queries(&f32_index, &data.queries, Some(&ten));
    println!(
        "\n| precision | threads | filter (rows passing) | median | p95 | min | recall@10 vs exact f32 |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|");
    let all = a.threads;
    let (f, i) = (&f32_index, &int8_index);
    let (l10, l50, l40) = (
        "`{\"group\": 3}` (10%)",
        "`{\"group\": {\"lt\": 5}}` (50%)",
        "`lang in [en, de]` and `group ≥ 2` (40%)",
    );
    let cases = [
        Case(f, all, "none", None, &exact),
        Case(f, 1, "none", None, &exact),
        Case(i, all, "none", None, &exact),
        Case(i, 1, "none", None, &exact),
        Case(f, all, l10, Some(&ten), &exact_ten),
        Case(i, all, l10, Some(&ten), &exact_ten),
        Case(f, all, l50, Some(&half), &[]),
        Case(i, all, l50, Some(&half), &[]),
        Case(f, all, l40, Some(&two), &[]),
        Case(i, all, l40, Some(&two), &[]),
    ];
    for Case(index, threads, label, filter, reference) in cases {
        let index = index.clone().with_threads(threads);
        let ((median, p95, min), got) = time_queries(&index, &data.queries, filter);
        let r = if reference.is_empty() {
            "-".to_string()
        } else {
            format!("{:.3}", recall(reference, &got))
        };
        println!(
            "| {:?} | {threads} | {label} | {median:.2} ms | {p95:.2} ms | {min:.2} ms | {r} |",
            index.precision()
        );
    }
}

/// A chunk record as docs/data.md writes it (the fields the index needs are read back).
#[derive(serde::Deserialize)]
struct ChunkIn {
    embedding: String,
    #[serde(default)]
    metadata: Map<String, Value>,
}

fn chunk_record(i: usize, v: &[f32], rng: &mut Rng) -> Vec<u8> {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let words = [
        "data", "search", "vector", "store", "model", "query", "chunk", "sealed",
    ];
    let text: Vec<&str> = (0..60).map(|_| words[rng.below(words.len())]).collect();
    serde_json::to_vec(&json!({
        "v": 1,
        "document": format!("doc-{i:06}"),
        "seq": 0,
        "text": text.join(" "),
        "metadata": metadata(i),
        "hash": hex::encode([i as u8; 32]),
        "embedding": base64::engine::general_purpose::STANDARD.encode(bytes),
    }))
    .unwrap()
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn load(a: &Args, data: &Data) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let store = Store::open(&tmp.path().join("db"), Sealer::from_key([7; 32]))?;
    let mut rng = Rng(5);
    let t = Instant::now();
    for (b, batch) in data.vectors.chunks(1000).enumerate() {
        let recs: Vec<(Vec<u8>, Vec<u8>)> = batch
            .iter()
            .enumerate()
            .map(|(j, v)| {
                let i = b * 1000 + j;
                (
                    format!("coll\0{}", key(i)).into_bytes(),
                    chunk_record(i, v, &mut rng),
                )
            })
            .collect();
        let writes: Vec<(Tree, &[u8], &[u8])> = recs
            .iter()
            .map(|(k, v)| (Tree::Chunks, k.as_slice(), v.as_slice()))
            .collect();
        store.put_many(&writes)?;
    }
    let written = t.elapsed();
    store.flush()?;
    let disk = dir_size(tmp.path());

    let t = Instant::now();
    let entries = store.values(Tree::Chunks, b"coll\0")?;
    let read = t.elapsed();
    let plain: usize = entries.iter().map(|(_, v)| v.len()).sum();
    let t = Instant::now();
    let decoded: Vec<(String, Vec<f32>, Map<String, Value>)> = entries
        .iter()
        .map(|(k, v)| {
            let rec: ChunkIn = serde_json::from_slice(v).unwrap();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(rec.embedding)
                .unwrap();
            let vector = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            let key = String::from_utf8_lossy(&k[5..]).into_owned();
            (key, vector, rec.metadata)
        })
        .collect();
    let decode = t.elapsed();
    let t = Instant::now();
    let mut index = VectorIndex::new(a.dims, Precision::F32).with_threads(a.threads);
    index.reserve(decoded.len());
    for (k, v, m) in decoded {
        index.upsert(&k, &v, m).unwrap();
    }
    let indexed = t.elapsed();
    assert_eq!(index.len(), data.vectors.len());
    let hits = index.search(&data.vectors[42], 1, None)?;
    assert_eq!(
        hits[0].key,
        key(42),
        "the loaded index finds a stored vector"
    );
    println!(
        "\nload of {} chunk records ({:.0} MB of opened JSON, {:.0} MB on disk):",
        entries.len(),
        plain as f64 / 1e6,
        disk as f64 / 1e6
    );
    println!("| step | time |\n|---|---:|");
    println!(
        "| write: `Store::put_many`, batches of 1,000 (seal + one flush each) | {:.0} ms |",
        ms(written)
    );
    println!(
        "| read: `Store::values(Tree::Chunks, b\"coll\\0\")` (scan + open) | {:.0} ms |",
        ms(read)
    );
    println!(
        "| decode: JSON + base64 + little-endian f32 | {:.0} ms |",
        ms(decode)
    );
    println!(
        "| index: `VectorIndex::upsert` (normalise, copy) | {:.0} ms |",
        ms(indexed)
    );
    println!(
        "| **load total** (read + decode + index) | **{:.0} ms** |",
        ms(read + decode + indexed)
    );
    Ok(())
}

fn retrieval() -> anyhow::Result<()> {
    use llmos::config::{Config, Paths};
    use llmos::core::Core;
    use llmos::core::text::Truncation;
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let (passages, questions) = eval::load(&repo.join("bench/retrieval"));
    let mut config = Config::default();
    config.apply_env()?;
    let shared = Path::new(env!("CARGO_TARGET_TMPDIR")).join("models");
    if config.models.dir.is_none() && shared.join("minilm").is_dir() {
        config.models.dir = Some(shared); // the models the tests pulled
    }
    let paths = Paths::resolve(Paths::default_home(), &config);
    let core = Core::new(config, paths)?;
    let model = core.model("minilm")?;
    let embed = |texts: Vec<String>| -> anyhow::Result<Vec<Vec<f32>>> {
        let mut out = Vec::new();
        for batch in texts.chunks(32) {
            out.extend(
                model
                    .embed(batch.to_vec(), Truncation::Error)?
                    .wait()?
                    .vectors,
            );
        }
        Ok(out)
    };
    let t = Instant::now();
    let pv = embed(passages.iter().map(|p| p.text.clone()).collect())?;
    let qv = embed(questions.iter().map(|q| q.question.clone()).collect())?;
    println!(
        "embedded {} passages and {} questions with minilm in {:.1} s",
        passages.len(),
        questions.len(),
        t.elapsed().as_secs_f64()
    );
    println!(
        "\n| precision | recall@1 | recall@5 | recall@10 | MRR@10 |\n|---|---:|---:|---:|---:|"
    );
    let mut misses = Vec::new();
    for precision in [Precision::F32, Precision::Int8] {
        let s = eval::evaluate(&passages, &questions, &pv, &qv, precision);
        println!(
            "| {precision:?} | {:.3} | {:.3} | {:.3} | {:.3} |",
            s.recall_at_1, s.recall_at_5, s.recall_at_10, s.mrr_at_10
        );
        if precision == Precision::F32 {
            misses = s.misses;
        }
    }
    println!("\nquestions without a relevant passage in the top 5 (f32):");
    for (q, top) in misses {
        println!("- {q} (top hit: {top})");
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let a = args();
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {} cores; search threads: {}; load average before: {}",
        std::thread::available_parallelism().map_or(0, |p| p.get()),
        a.threads,
        loadavg
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    if a.retrieval {
        return retrieval();
    }
    let t = Instant::now();
    let data = clustered(a.rows, a.dims, a.queries);
    println!(
        "data: {} × {} clustered unit vectors (256 centres), {} queries; generated in {:.1} s",
        a.rows,
        a.dims,
        a.queries,
        t.elapsed().as_secs_f64()
    );
    scan(&a, &data);
    if a.load {
        load(&a, &data)?;
    }
    Ok(())
}

//! The shared store (docs/scale-out.md; BENCHMARKS.md, "Shared store"), two tools in one:
//!
//! - `batch`: a batch of `--rows` sealed 200-byte puts (`Store::put_many`, one `Backend::batch`)
//!   on sled and, with `--url`, on PostgreSQL, mean of `--rounds`; and on PostgreSQL the same
//!   rows sent as one statement per row in one transaction (what the backend did before it
//!   sent multi-row statements) against one `UNNEST` statement, on a raw connection.
//! - `fill`: writes a collection `bench` of `--chunks` chunks (seeded random unit vectors of
//!   `--dims`, a short synthetic text each, 10 chunks per document) through
//!   `Collections::write`, the path ingest stores its batches by, without running the model;
//!   into the sled store of `--home` or the PostgreSQL store at `--url`, sealed with the
//!   master key `LLMOS_MASTER_KEY` (64 hex digits). `bench/scale/load.sh` then times a fresh
//!   `llmos serve` until the collection is loaded and reads its resident memory.
//! - `append`: adds `--chunks` chunks (new documents, 10 chunks each) to the collection
//!   `bench` written by `fill`, as an ingest through another replica would (a running replica
//!   on the same store then follows them: `bench/scale/follow.sh`); `delete --doc ID` deletes
//!   one document of it (`doc-0` … from `fill`: 10 chunks).
//! - `load`: loads the collection `bench` written by `fill` into memory, in this process, by
//!   one of two paths, and prints the time and the resident memory (`VmRSS`, peak `VmHWM`)
//!   before and after: `--path stream` (default) is what a replica does now
//!   (`Collections::load_all`: the scan streamed into the index), `--path list` what it did
//!   before (every chunk record read into one list by `Collections::all_chunks`, then
//!   indexed). One path per process, so that neither inherits the other's heap.
//!
//! ```sh
//! cargo bench -p llmos --bench shared_store -- batch [--url postgres://…] [--rows 1000] [--rounds 20]
//! LLMOS_MASTER_KEY=… cargo bench -p llmos --bench shared_store -- fill (--home DIR | --url URL) [--chunks 100000] [--dims 384]
//! LLMOS_MASTER_KEY=… cargo bench -p llmos --bench shared_store -- load (--home DIR | --url URL) [--path stream|list]
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use llmos::data::collections::{
    Batch, ChunkRecord, CollectionRecord, Collections, DocumentRecord, Loaded, encode_vector,
};
use llmos::data::{Store, Tree};
use llmos::security::seal::Sealer;
use serde_json::Map;

struct Args {
    mode: String,
    url: Option<String>,
    home: Option<PathBuf>,
    rows: usize,
    rounds: usize,
    chunks: usize,
    dims: usize,
    path: String,
    doc: String,
}

fn args() -> Args {
    let mut a = Args {
        mode: String::new(),
        url: None,
        home: None,
        rows: 1000,
        rounds: 20,
        chunks: 100_000,
        dims: 384,
        path: "stream".into(),
        doc: String::new(),
    };
    let mut it = std::env::args().skip(1);
    let num = |v: Option<String>, flag: &str| -> usize {
        v.and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{flag} needs a number"))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "batch" | "fill" | "load" | "append" | "delete" => a.mode = arg,
            "--doc" => a.doc = it.next().unwrap_or_default(),
            "--path" => a.path = it.next().unwrap_or_default(),
            "--url" => a.url = it.next(),
            "--home" => a.home = it.next().map(PathBuf::from),
            "--rows" => a.rows = num(it.next(), "--rows"),
            "--rounds" => a.rounds = num(it.next(), "--rounds"),
            "--chunks" => a.chunks = num(it.next(), "--chunks"),
            "--dims" => a.dims = num(it.next(), "--dims"),
            _ => {} // cargo bench passes --bench
        }
    }
    a
}

/// splitmix64: a seeded generator, so every run writes the same data.
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
}

fn master() -> Sealer {
    let hex = std::env::var("LLMOS_MASTER_KEY").unwrap_or_else(|_| "42".repeat(32));
    let raw: [u8; 32] = (0..32)
        .map(|i| {
            u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).expect("LLMOS_MASTER_KEY: 64 hex digits")
        })
        .collect::<Vec<u8>>()
        .try_into()
        .unwrap();
    Sealer::from_key(raw)
}

fn open(a: &Args) -> Store {
    match (&a.url, &a.home) {
        (Some(u), _) => Store::open_url_with_key(u, master()).expect("open the PostgreSQL store"),
        (None, Some(h)) => Store::open(&h.join("store"), master()).expect("open the sled store"),
        (None, None) => panic!("fill needs --home DIR (sled) or --url postgres://… (PostgreSQL)"),
    }
}

fn mean_batch(store: &Store, rows: usize, rounds: usize) -> Duration {
    let value = vec![7u8; 200];
    let mut total = Duration::ZERO;
    for r in 0..=rounds {
        let keys: Vec<Vec<u8>> = (0..rows)
            .map(|i| format!("bench-{r}-{i}").into_bytes())
            .collect();
        let writes: Vec<(Tree, &[u8], &[u8])> = keys
            .iter()
            .map(|k| (Tree::PluginKv, k.as_slice(), value.as_slice()))
            .collect();
        let t = Instant::now();
        store.put_many(&writes).unwrap();
        if r > 0 {
            total += t.elapsed(); // round 0 warms up
        }
    }
    total / rounds as u32
}

fn batch(a: &Args) {
    let dir = tempfile::tempdir().unwrap();
    let sled = Store::open(&dir.path().join("store"), master()).unwrap();
    println!(
        "Store::put_many of {} puts (sealed, 200 B), mean of {}: sled {:?}",
        a.rows,
        a.rounds,
        mean_batch(&sled, a.rows, a.rounds)
    );
    let Some(url) = &a.url else {
        println!("(no --url: PostgreSQL not measured)");
        return;
    };
    let pg = Store::open_url_with_key(url, master()).unwrap();
    println!(
        "Store::put_many of {} puts on PostgreSQL: {:?}",
        a.rows,
        mean_batch(&pg, a.rows, a.rounds)
    );
    // The statements alone, on a raw connection: one per row against one multi-row UNNEST.
    let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let value = vec![7u8; 240];
    let one = c
        .prepare(
            "INSERT INTO llmos_kv (tree, key, value) VALUES ($1, $2, $3) \
             ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value",
        )
        .unwrap();
    let many = c
        .prepare(
            "INSERT INTO llmos_kv (tree, key, value) SELECT * FROM UNNEST($1::text[], $2::bytea[], $3::bytea[]) \
             ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value",
        )
        .unwrap();
    let (mut per_row, mut unnest) = (Duration::ZERO, Duration::ZERO);
    for r in 0..=a.rounds {
        let keys: Vec<Vec<u8>> = (0..a.rows)
            .map(|i| format!("raw-{r}-{i}").into_bytes())
            .collect();
        let t = Instant::now();
        let mut tx = c.transaction().unwrap();
        for k in &keys {
            tx.execute(&one, &[&"bench", k, &value]).unwrap();
        }
        tx.commit().unwrap();
        if r > 0 {
            per_row += t.elapsed();
        }
        let keys: Vec<Vec<u8>> = (0..a.rows)
            .map(|i| format!("raw2-{r}-{i}").into_bytes())
            .collect();
        let trees = vec!["bench"; a.rows];
        let values = vec![value.clone(); a.rows];
        let t = Instant::now();
        let mut tx = c.transaction().unwrap();
        tx.execute(&many, &[&trees, &keys, &values]).unwrap();
        tx.commit().unwrap();
        if r > 0 {
            unnest += t.elapsed();
        }
    }
    println!(
        "raw, {} rows in one transaction, mean of {}: one statement per row {:?}, one UNNEST statement {:?}",
        a.rows,
        a.rounds,
        per_row / a.rounds as u32,
        unnest / a.rounds as u32
    );
    c.batch_execute("DELETE FROM llmos_kv WHERE tree = 'bench'")
        .unwrap();
}

fn fill(a: &Args) {
    let store = open(a);
    let colls = Collections::new(store);
    let name = "bench";
    if colls.get(name).unwrap().is_some() {
        colls.delete(name).unwrap();
    }
    colls
        .save(&CollectionRecord {
            v: 1,
            name: name.into(),
            model: "minilm".into(),
            chunk_tokens: 128,
            overlap_tokens: 16,
            preprocessors: Vec::new(),
            documents: 0,
            chunks: 0,
            created_ms: 0,
            updated_ms: 0,
        })
        .unwrap();
    let mut rng = Rng(12);
    let words = [
        "heron", "reed", "river", "bread", "oven", "wren", "hedge", "kettle", "tea", "stone",
    ];
    let per_doc = 10u32;
    let t = Instant::now();
    let mut batch = Batch::default();
    for i in 0..a.chunks {
        let doc = format!("doc-{}", i / per_doc as usize);
        let seq = (i % per_doc as usize) as u32;
        let mut v: Vec<f32> = (0..a.dims).map(|_| rng.unit()).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
        v.iter_mut().for_each(|x| *x /= norm);
        let text: Vec<&str> = (0..24).map(|_| words[(rng.next() % 10) as usize]).collect();
        let text = format!("{i}: {}", text.join(" "));
        batch.chunks.push(ChunkRecord {
            v: 1,
            document: doc.clone(),
            seq,
            hash: colls.fingerprint("chunk", text.as_bytes()),
            text,
            metadata: Map::new(),
            embedding: encode_vector(&v),
        });
        if seq + 1 == per_doc || i + 1 == a.chunks {
            batch.documents.push(DocumentRecord {
                v: 1,
                id: doc.clone(),
                metadata: Map::new(),
                source: None,
                hash: colls.fingerprint("document", doc.as_bytes()),
                chunks: seq + 1,
                duplicates: 0,
                created_ms: 0,
            });
        }
        // Ingest stores batches of whole documents (about 256 chunks: api/data.rs JOB_CHUNKS).
        if batch.chunks.len() >= 250 && !batch.documents.is_empty() && seq + 1 == per_doc {
            colls.write(name, &batch).unwrap();
            batch = Batch::default();
        }
    }
    if !batch.chunks.is_empty() {
        colls.write(name, &batch).unwrap();
    }
    colls.store().flush().unwrap();
    println!(
        "wrote {} chunks of {} dims into {} in {:?}",
        a.chunks,
        a.dims,
        a.url.as_deref().map_or_else(
            || a.home.as_ref().unwrap().display().to_string(),
            llmos::data::postgres::redact
        ),
        t.elapsed()
    );
}

/// `VmRSS` and `VmHWM` of this process, MiB.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |field: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (kib("VmRSS:") / 1024, kib("VmHWM:") / 1024)
}

fn append(a: &Args) {
    let colls = Collections::new(open(a));
    let tag = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut rng = Rng(tag as u64);
    let mut batch = Batch::default();
    for i in 0..a.chunks {
        let doc = format!("extra-{tag}-{}", i / 10);
        let seq = (i % 10) as u32;
        let mut v: Vec<f32> = (0..a.dims).map(|_| rng.unit()).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
        v.iter_mut().for_each(|x| *x /= norm);
        let text = format!("appended {i}");
        batch.chunks.push(ChunkRecord {
            v: 1,
            document: doc.clone(),
            seq,
            hash: colls.fingerprint("chunk", text.as_bytes()),
            text,
            metadata: Map::new(),
            embedding: encode_vector(&v),
        });
        if seq == 9 || i + 1 == a.chunks {
            batch.documents.push(DocumentRecord {
                v: 1,
                id: doc.clone(),
                metadata: Map::new(),
                source: None,
                hash: colls.fingerprint("document", doc.as_bytes()),
                chunks: seq + 1,
                duplicates: 0,
                created_ms: 0,
            });
        }
    }
    let t = Instant::now();
    colls.write("bench", &batch).unwrap();
    println!("appended {} chunks to bench in {:?}", a.chunks, t.elapsed());
}

fn load(a: &Args) {
    let store = open(a);
    let colls = Collections::new(store);
    let before = memory();
    let t = Instant::now();
    let (n, held) = match a.path.as_str() {
        "stream" => {
            assert_eq!(
                colls.load_all().unwrap(),
                1,
                "one collection `bench` (run fill first)"
            );
            (colls.memory("bench").chunks, None)
        }
        "list" => {
            // As before: room for 1024, grown by doubling, filled from the whole list.
            let mut l = Loaded::default();
            l.add(colls.all_chunks("bench").unwrap()).unwrap();
            (l.len(), Some(l))
        }
        other => panic!("--path stream or list, not {other:?}"),
    };
    let took = t.elapsed();
    let after = memory();
    println!(
        "{} path: {n} chunks loaded in {took:?}; RSS {} MiB before, {} MiB after (+{} MiB, {} bytes per chunk), peak {} MiB",
        a.path,
        before.0,
        after.0,
        after.0.saturating_sub(before.0),
        (after.0.saturating_sub(before.0) << 20) / (n.max(1) as u64),
        after.1
    );
    drop(held);
}

fn main() {
    let a = args();
    match a.mode.as_str() {
        "batch" => batch(&a),
        "fill" => fill(&a),
        "load" => load(&a),
        "append" => append(&a),
        "delete" => {
            let colls = Collections::new(open(&a));
            let t = Instant::now();
            let d = colls.delete_document("bench", &a.doc).unwrap();
            println!(
                "deleted {} ({} chunks) in {:?}",
                d.id,
                d.chunks,
                t.elapsed()
            );
        }
        _ => panic!(
            "usage: shared_store (batch [--url URL] | fill (--home DIR | --url URL) | load (--home DIR | --url URL)) [options]"
        ),
    }
}

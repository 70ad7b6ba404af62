//! Embedding throughput at batch 1, 8 and 32, in one run:
//! - `llmos`: the public task path (tokenise + run on the model's inference thread + pool);
//! - `raw-ort`: `Session::run` alone on the same, pre-tokenised, token ids;
//! - `python`: Python onnxruntime + tokenizers (bench/python_baseline.py), same threads.
//!
//! Every implementation makes whole passes over bench/sentences.txt for at least
//! `--seconds`, so each sees the same sentence mix. Run with `bench/run.sh` (which sets up
//! the Python side), or: `cargo bench --bench embed -- [--python PY] [--threads N] [--seconds S]`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use llmos::config::{Config, Paths};
use llmos::core::Core;
use llmos::core::text::Truncation;
use ort::session::Session;

const BATCHES: [usize; 3] = [1, 8, 32];

struct Args {
    python: Option<String>,
    threads: usize,
    seconds: f64,
}

fn args() -> Args {
    let mut a = Args {
        python: None,
        threads: 2,
        seconds: 4.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--python" => a.python = it.next(),
            "--threads" => a.threads = it.next().and_then(|v| v.parse().ok()).expect("--threads N"),
            "--seconds" => a.seconds = it.next().and_then(|v| v.parse().ok()).expect("--seconds S"),
            _ => {} // cargo bench passes --bench
        }
    }
    a
}

/// Runs `step(pos)` over consecutive batches until `seconds` passed and a pass ended.
fn measure(n: usize, batch: usize, seconds: f64, mut step: impl FnMut(usize)) -> f64 {
    step(0); // warm-up
    let deadline = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let (mut pos, mut done) = (0, 0);
    loop {
        step(pos);
        done += batch;
        pos = (pos + batch) % n;
        if pos == 0 && start.elapsed() >= deadline {
            break;
        }
    }
    done as f64 / start.elapsed().as_secs_f64()
}

fn main() -> anyhow::Result<()> {
    let a = args();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let sentences: Vec<String> = std::fs::read_to_string(repo.join("bench/sentences.txt"))?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    let n = sentences.len();
    assert!(
        BATCHES.iter().all(|&b| n.is_multiple_of(b)),
        "sentence count must divide by every batch size"
    );

    let mut config = Config::default();
    config.apply_env()?;
    config.runtime.intra_threads = a.threads;
    // Like with like: one session with `threads` threads, as the raw and Python runs have.
    config
        .models
        .overrides
        .entry("minilm".into())
        .or_default()
        .workers = Some(1);
    let paths = Paths::resolve(Paths::default_home(), &config);
    let core = Core::new(config.clone(), paths.clone())?;
    let model = core.model("minilm")?;
    let dir = core.store.verified_dir("minilm")?;
    let encoder = model.encoder.clone().expect("minilm has a tokenizer");

    let rt = llmos::core::runtime::init(&config.runtime, &paths.cache)?;
    let mut raw = Session::builder(&rt.env)?
        .with_intra_threads(a.threads)
        .map_err(ort::Error::<()>::from)?
        .commit_from_file(dir.join("model.onnx"))?;

    println!(
        "machine: {} cores; threads: {}; sentences: {n} (bench/sentences.txt); min seconds per cell: {}",
        std::thread::available_parallelism().map_or(0, |p| p.get()),
        a.threads,
        a.seconds
    );
    let mut rows = Vec::new();
    for &b in &BATCHES {
        let chunk = |pos: usize| sentences[pos..pos + b].to_vec();
        let llmos = measure(n, b, a.seconds, |pos| {
            model
                .embed(chunk(pos), Truncation::Truncate)
                .unwrap()
                .wait()
                .unwrap();
        });
        // The same token ids, tokenised up front: only tensor creation + run + read-back.
        let batches: Vec<_> = (0..n / b)
            .map(|i| {
                encoder.pad(
                    &encoder
                        .encode(&chunk(i * b), Truncation::Truncate, false)
                        .unwrap(),
                )
            })
            .collect();
        let raw_ort = measure(n, b, a.seconds, |pos| {
            let t = &batches[pos / b];
            let shape = vec![t.batch as i64, t.seq as i64];
            let inputs = ort::inputs![
                "input_ids" => ort::value::Tensor::from_array((shape.clone(), t.ids.clone())).unwrap(),
                "attention_mask" => ort::value::Tensor::from_array((shape.clone(), t.mask.clone())).unwrap(),
                "token_type_ids" => ort::value::Tensor::from_array((shape, t.type_ids.clone())).unwrap(),
            ];
            let out = raw.run(inputs).unwrap();
            let (_, data) = out[0].try_extract_tensor::<f32>().unwrap();
            std::hint::black_box(data.len());
        });
        rows.push((b, llmos, raw_ort));
    }

    let mut python = std::collections::BTreeMap::new();
    if let Some(py) = &a.python {
        let out = Command::new(py)
            .arg(repo.join("bench/python_baseline.py"))
            .args(["--model", &dir.join("model.onnx").display().to_string()])
            .args([
                "--tokenizer",
                &dir.join("tokenizer.json").display().to_string(),
            ])
            .args([
                "--sentences",
                &repo.join("bench/sentences.txt").display().to_string(),
            ])
            .args([
                "--threads",
                &a.threads.to_string(),
                "--batch-sizes",
                "1,8,32",
            ])
            .args(["--seconds", &a.seconds.to_string()])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "python baseline failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let v: serde_json::Value = serde_json::from_str(line)?;
            python.insert(
                v["batch"].as_u64().unwrap() as usize,
                v["sentences_per_s"].as_f64().unwrap(),
            );
        }
    }

    println!(
        "\n| batch | llmos (sent/s) | raw ORT (sent/s) | python (sent/s) | llmos / raw | llmos / python |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for (b, l, r) in rows {
        let p = python.get(&b).copied();
        println!(
            "| {b} | {l:.1} | {r:.1} | {} | {:.3} | {} |",
            p.map_or("-".into(), |p| format!("{p:.1}")),
            l / r,
            p.map_or("-".into(), |p| format!("{:.3}", l / p)),
        );
    }
    Ok(())
}

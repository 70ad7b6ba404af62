//! The classifier export (docs/classification.md, contract part b): minilm's graph with
//! pooling, L2 normalisation and a head appended gives, through ONNX Runtime, the same
//! probabilities as the plain encoder + `core::text::pool` + `Head::probabilities` in process,
//! and loads as a `task = "classify"` model that `/v1/classify` serves.

use std::path::{Path, PathBuf};
use std::time::Instant;

use llmos::core::manifest::Pooling;
use llmos::core::onnx::{classifier::classifier_model, decode, encode};
use llmos::core::text::{self, TextEncoder, Truncation};
use llmos::core::train::{Dense, Head};
use ort::session::Session;
use ort::value::Tensor;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::support::{Home, call, shared_models, text as out_text};

/// Texts of different lengths: the batch is padded, so the mask matters.
const TEXTS: [&str; 4] = [
    "hi",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Refunds take five to seven business days once we receive the parcel.",
    "ok then",
];

fn minilm() -> PathBuf {
    Home::new(); // fetches minilm into the shared models
    shared_models().join("minilm")
}

fn cache() -> PathBuf {
    std::env::var_os("LLMOS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| dirs::cache_dir().unwrap().join("llmos"))
}

fn session(bytes: &[u8]) -> Session {
    let rt = llmos::core::runtime::init(&Default::default(), &cache()).unwrap();
    Session::builder(&rt.env)
        .unwrap()
        .commit_from_memory(bytes)
        .unwrap()
}

/// SplitMix64 in [-1, 1).
fn weights(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn dense(seed: u64, inputs: usize, outputs: usize, scale: f32) -> Dense {
    Dense {
        inputs,
        outputs,
        weight: weights(seed, inputs * outputs)
            .into_iter()
            .map(|w| w * scale)
            .collect(),
        bias: weights(seed + 1, outputs),
    }
}

fn labels() -> Vec<String> {
    ["billing", "shipping", "other"].map(String::from).to_vec()
}

struct Batch {
    b: usize,
    s: usize,
    ids: Vec<i64>,
    mask: Vec<i64>,
    types: Vec<i64>,
}

fn batch(dir: &Path) -> Batch {
    let enc = TextEncoder::load(&dir.join("tokenizer.json"), Some(256)).unwrap();
    let texts: Vec<String> = TEXTS.map(String::from).to_vec();
    let tb = enc.pad(&enc.encode(&texts, Truncation::Error, false).unwrap());
    assert!(tb.mask.contains(&0), "the batch is padded");
    Batch {
        b: tb.batch,
        s: tb.seq,
        ids: tb.ids,
        mask: tb.mask,
        types: tb.type_ids,
    }
}

/// Runs a text model the way `core/worker.rs` feeds it; returns the named outputs.
fn run(session: &mut Session, x: &Batch, wanted: &[&str]) -> Vec<(Vec<i64>, Vec<f32>)> {
    let t = |v: &Vec<i64>| {
        Tensor::from_array(([x.b, x.s], v.clone()))
            .unwrap()
            .into_dyn()
    };
    let inputs: Vec<(String, ort::value::DynValue)> = vec![
        ("input_ids".into(), t(&x.ids)),
        ("attention_mask".into(), t(&x.mask)),
        ("token_type_ids".into(), t(&x.types)),
    ];
    let out = session.run(inputs).unwrap();
    wanted
        .iter()
        .map(|w| {
            let (shape, data) = out[*w].try_extract_tensor::<f32>().unwrap();
            (shape.to_vec(), data.to_vec())
        })
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Exported probabilities equal the in-process ones (≤ 1e-5) for one- and two-layer heads,
/// mean and CLS pooling, with and without normalisation; softmax(logits) = probabilities.
#[test]
fn exported_classifier_matches_the_in_process_head() {
    let dir = minilm();
    let encoder = std::fs::read(dir.join("model.onnx")).unwrap();
    let x = batch(&dir);
    let (shape, hidden) = run(&mut session(&encoder), &x, &["last_hidden_state"]).remove(0);
    assert_eq!(shape, [x.b as i64, x.s as i64, 384]);
    let cases = [
        (
            "one layer, mean",
            Head {
                layers: vec![dense(7, 384, 3, 4.0)],
            },
            Pooling::Mean,
            true,
        ),
        (
            "two layers, mean",
            Head {
                layers: vec![dense(11, 384, 16, 2.0), dense(13, 16, 3, 1.0)],
            },
            Pooling::Mean,
            true,
        ),
        (
            "one layer, cls, raw",
            Head {
                layers: vec![dense(17, 384, 3, 0.5)],
            },
            Pooling::Cls,
            false,
        ),
    ];
    for (what, head, pooling, normalize) in cases {
        let cls = pooling == Pooling::Cls;
        let pooled = text::pool(&hidden, &x.mask, x.b, x.s, cls, normalize);
        let want: Vec<f32> = pooled.iter().flat_map(|v| head.probabilities(v)).collect();
        let started = Instant::now();
        let bytes = classifier_model(&encoder, &head, &labels(), pooling, normalize).unwrap();
        let took = started.elapsed();
        eprintln!(
            "{what}: exported {} bytes (encoder {}) in {took:?}",
            bytes.len(),
            encoder.len()
        );
        let mut outs = run(&mut session(&bytes), &x, &["logits", "probabilities"]);
        let (pshape, probs) = outs.pop().unwrap();
        let (lshape, logits) = outs.pop().unwrap();
        assert_eq!(lshape, [x.b as i64, 3]);
        assert_eq!(pshape, [x.b as i64, 3]);
        let d = max_diff(&probs, &want);
        eprintln!("{what}: max |Δp| = {d:e}");
        assert!(d <= 1e-5, "{what}: max |Δp| = {d}\n{probs:?}\n{want:?}");
        let soft: Vec<f32> = logits.chunks(3).flat_map(text::softmax).collect();
        assert!(
            max_diff(&soft, &probs) <= 1e-6,
            "{what}: softmax(logits) ≠ probabilities"
        );
        // Not a constant: the texts get different distributions.
        assert!(
            max_diff(&probs[..3], &probs[3..6]) > 1e-3,
            "{what}: {probs:?}"
        );
    }
}

/// The fetched encoders decode and encode back to the same bytes (the unit test in
/// `core/onnx/read.rs` does the same but skips models this binary has not fetched yet).
#[test]
fn fetched_models_decode_and_encode_to_the_same_bytes() {
    minilm();
    for name in ["minilm", "pii-ner", "tiny-classifier", "tiny-ner"] {
        let bytes = std::fs::read(shared_models().join(name).join("model.onnx")).unwrap();
        assert!(
            encode(&decode(&bytes).unwrap()) == bytes,
            "{name} changed on decode → encode"
        );
    }
}

/// The exported file, installed by a manifest with minilm's tokenizer, is a `classify` model:
/// `/v1/classify` answers with its labels and the probabilities computed in process.
#[test]
fn exported_classifier_is_served_by_v1_classify() {
    let dir = minilm();
    let encoder = std::fs::read(dir.join("model.onnx")).unwrap();
    let head = Head {
        layers: vec![dense(23, 384, 8, 3.0), dense(29, 8, 3, 2.0)],
    };
    let bytes = classifier_model(&encoder, &head, &labels(), Pooling::Mean, true).unwrap();
    let home = Home::isolated();
    let src = home.dir.path().join("export");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("model.onnx"), &bytes).unwrap();
    let sha = |p: &Path| hex::encode(Sha256::digest(std::fs::read(p).unwrap()));
    let mut m = String::from(
        "name = \"exported\"\ntask = \"classify\"\nlicense = \"Apache-2.0\"\n\
         max_sequence_length = 256\ntokenizer = \"tokenizer.json\"\n\
         labels = [\"billing\", \"shipping\", \"other\"]\n",
    );
    for (file, role, path) in [
        ("model.onnx", "model", src.join("model.onnx")),
        ("tokenizer.json", "tokenizer", dir.join("tokenizer.json")),
    ] {
        m.push_str(&format!(
            "\n[[files]]\nname = {file:?}\nrole = {role:?}\nsha256 = {:?}\nsource = {{ kind = \"local\", path = {:?} }}\n",
            sha(&path),
            path.display().to_string()
        ));
    }
    std::fs::write(home.manifests().join("exported.toml"), m).unwrap();
    let out = home.cmd(&["models", "pull", "exported"]).output().unwrap();
    assert!(out.status.success(), "{}", out_text(&out));

    // In process: the plain encoder, pool, the head.
    let x = batch(&dir);
    let (_, hidden) = run(&mut session(&encoder), &x, &["last_hidden_state"]).remove(0);
    let pooled = text::pool(&hidden, &x.mask, x.b, x.s, false, true);

    let s = home.serve(&["--models", "exported"]);
    let (code, body) = call(
        &s,
        "POST",
        "/v1/classify",
        None,
        Some(json!({"model": "exported", "input": TEXTS})),
    );
    assert_eq!(code, 200, "{body}");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), TEXTS.len());
    for (row, v) in data.iter().zip(&pooled) {
        let want = head.probabilities(v);
        let scores = row["scores"].as_array().unwrap();
        assert_eq!(scores.len(), 3, "{row}");
        for sc in scores {
            let label = sc["label"].as_str().unwrap();
            let i = labels().iter().position(|l| l == label).unwrap();
            let got = sc["score"].as_f64().unwrap() as f32;
            assert!(
                (got - want[i]).abs() <= 1e-5,
                "{label}: {got} vs {}",
                want[i]
            );
        }
        assert_eq!(row["label"], scores[0]["label"], "{row}");
    }
}

/// minilm without its `attention_mask` input, and a head wider than minilm's 384, are refused
/// with errors that name what is wrong.
#[test]
fn encoder_without_attention_mask_is_refused() {
    let dir = minilm();
    let mut model = decode(&std::fs::read(dir.join("model.onnx")).unwrap()).unwrap();
    let g = model.graph.as_mut().unwrap();
    g.input
        .retain(|i| i.name.as_deref() != Some("attention_mask"));
    let head = Head {
        layers: vec![dense(1, 384, 3, 1.0)],
    };
    let e = classifier_model(&encode(&model), &head, &labels(), Pooling::Mean, true).unwrap_err();
    assert!(
        e.to_string()
            .contains("no `attention_mask` input (its inputs: input_ids, token_type_ids)"),
        "{e}"
    );
    let wide = Head {
        layers: vec![dense(1, 768, 3, 1.0)],
    };
    let encoder = std::fs::read(dir.join("model.onnx")).unwrap();
    let e = classifier_model(&encoder, &wide, &labels(), Pooling::Mean, true).unwrap_err();
    assert!(
        e.to_string().contains("the head takes 768 inputs but the encoder's hidden size (last dimension of `last_hidden_state`) is 384"),
        "{e}"
    );
}

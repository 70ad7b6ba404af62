//! `llmos models import FILE.gguf --name NAME [--out DIR]`: a llama-architecture GGUF becomes
//! an ONNX causal LM with its tokenizer and generation config, and a manifest that names the
//! GGUF as the source of every file (docs/generation.md §2).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::core::fetch;
use crate::core::gguf::import::{Precision, import_to_dir};
use crate::core::gguf::{GgufFile, Value as GgufValue};
use crate::core::manifest::Manifest;
use crate::core::store::ModelStore;

/// What `import` writes and where.
pub(super) struct ImportArgs<'a> {
    pub(super) file: &'a Path,
    pub(super) name: &'a str,
    pub(super) out: Option<&'a Path>,
    pub(super) fp32: bool,
    pub(super) int8_activations: bool,
}

/// The manifest of an imported model.
fn manifest_toml(name: &str, gguf: &Path, gguf_sha: &str, license: &str, files: &[(String, String)], int8: bool) -> String {
    let role = |f: &str| match f {
        "model.onnx" => "model",
        "tokenizer.json" => "tokenizer",
        _ => "config",
    };
    let file_name = gguf.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let mut t = format!(
        "name = {name:?}\ntask = \"generate\"\ndescription = {:?}\nlicense = {license:?}\ntokenizer = \"tokenizer.json\"\n",
        if int8 {
            format!("imported from {file_name}; computes with int8 activations (MatMulNBits accuracy_level 4: faster, approximate)")
        } else {
            format!("imported from {file_name}")
        }
    );
    let activations = if int8 { ", activations = \"int8\"" } else { "" };
    let path = gguf.display().to_string();
    for (f, sha) in files {
        t.push_str(&format!(
            "\n[[files]]\nname = {f:?}\nrole = \"{}\"\nsha256 = \"{sha}\"\nsource = {{ kind = \"gguf\", path = {path:?}, gguf_sha256 = \"{gguf_sha}\"{activations} }}\n",
            role(f)
        ));
    }
    t
}

pub(super) fn run(store: &ModelStore, manifest_dir: Option<&Path>, a: &ImportArgs<'_>) -> Result<Value> {
    let placeholder = manifest_toml(a.name, a.file, &"0".repeat(64), "unknown", &[("model.onnx".into(), "0".repeat(64)), ("tokenizer.json".into(), "0".repeat(64)), ("generation.json".into(), "0".repeat(64))], a.int8_activations);
    Manifest::parse(&placeholder, "the new model", None)?;
    let gguf = a.file.canonicalize().with_context(|| format!("cannot read {}", a.file.display()))?;
    let (dir, manifest_path) = match (a.out, manifest_dir) {
        (Some(out), _) => (out.to_path_buf(), out.join("manifest.toml")),
        (None, Some(m)) => {
            if store.manifest(a.name).is_ok() {
                bail!("a model named {:?} exists already; choose another --name, or remove it first (`llmos models rm {}` and its manifest)", a.name, a.name);
            }
            (store.model_dir(a.name), m.join(format!("{}.toml", a.name)))
        }
        (None, None) => bail!("no manifest folder is configured; pass --out DIR"),
    };
    let started = Instant::now();
    let precision = match (a.fp32, a.int8_activations) {
        (true, _) => Precision::Float32,
        (false, true) => Precision::Int8Activations,
        (false, false) => Precision::Quantized,
    };
    let files = import_to_dir(&gguf, &dir, precision)?;
    let seconds = started.elapsed().as_secs_f64();
    let sha = fetch::sha256_file(&gguf)?;
    let license = GgufFile::open(&gguf)?
        .get("general.license")
        .and_then(GgufValue::as_str)
        .map_or_else(|| "NOASSERTION".to_string(), |l| l.to_string());
    let text = manifest_toml(a.name, &gguf, &sha, &license, &files, a.int8_activations);
    Manifest::parse(&text, &manifest_path.display().to_string(), None)?;
    if let Some(parent) = manifest_path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let tmp = manifest_path.with_extension("toml.part");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &manifest_path).with_context(|| format!("cannot write {}", manifest_path.display()))?;
    let files: Vec<Value> = files.iter().map(|(n, s)| json!({"name": n, "sha256": s})).collect();
    Ok(json!({
        "name": a.name, "dir": dir, "manifest": PathBuf::from(&manifest_path), "files": files,
        "gguf_sha256": sha, "seconds": seconds,
        "activations": if a.int8_activations { "int8" } else { "f32" },
    }))
}

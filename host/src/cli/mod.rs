//! Command line: parses flags, builds the configuration, calls the same functions the
//! HTTP API calls, prints JSON. Errors print their whole chain and exit non-zero.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

pub mod anonymize;
pub mod author;
pub mod audit;
pub mod data;
pub mod generate;
mod import;
pub mod mcp;
pub mod plugin;
mod remote;
pub mod plugin_test;
pub mod sign;
pub mod store;
pub mod tools;
pub mod train;

use crate::config::{Config, Paths};
use crate::core::engine::{Core, LoadError};
use crate::core::fetch::Fetcher;
use crate::core::providers::{self, ProviderKind};
use crate::core::runtime;
use crate::core::store::{FileState, ModelStore};
use crate::core::tensor::{DType, NamedTensor, TensorData};
use crate::core::text::Truncation;

/// llmos: ONNX models and sandboxed WebAssembly plugins behind one local HTTP endpoint.
#[derive(Debug, Parser)]
#[command(name = "llmos", version, about)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Flags every subcommand accepts.
#[derive(Debug, Args)]
struct Global {
    /// Data location (config, store, plugins, models).
    #[arg(long, env = "LLMOS_HOME", global = true)]
    home: Option<PathBuf>,
    /// Config file [default: $LLMOS_HOME/llmos.toml].
    #[arg(
        long = "config",
        id = "config_file",
        env = "LLMOS_CONFIG",
        global = true
    )]
    config: Option<PathBuf>,
    /// Execution-provider preference for every model loaded by this command,
    /// e.g. `tensorrt,cuda,cpu` (overrides manifests and config).
    #[arg(long, global = true, value_parser = parse_providers)]
    providers: Option<ProviderList>,
    /// Refuse to load a model whose first provider is unavailable.
    #[arg(long, global = true)]
    strict: bool,
    /// Intra-op threads per model session (0 = the cores shared among a model's workers).
    #[arg(long, global = true)]
    intra_threads: Option<usize>,
}

/// A parsed `--providers` value.
#[derive(Debug, Clone)]
struct ProviderList(Vec<ProviderKind>);

fn parse_providers(s: &str) -> Result<ProviderList, String> {
    providers::parse_preference(s).map(ProviderList)
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the HTTP server with the configured models loaded.
    Serve {
        /// Address to listen on [default: 127.0.0.1:8080].
        #[arg(long, env = "LLMOS_LISTEN")]
        listen: Option<String>,
        /// Also serve KServe v2 gRPC (tritonclient.grpc) on this address, e.g. 127.0.0.1:8081
        /// [default: `[server] grpc_listen`; off unless set].
        #[arg(long, env = "LLMOS_GRPC_LISTEN")]
        grpc_listen: Option<String>,
        /// Models to load at start (comma-separated) [default: the built-in models].
        #[arg(long, value_delimiter = ',')]
        models: Option<Vec<String>>,
        /// A folder holding model manifests (`*.toml`) next to their files (KServe's
        /// `/mnt/models`): its models are verified (sha256), registered and loaded, and
        /// served from the folder. Repeatable. Then the built-in defaults load only if
        /// --models or `[models] load` names them.
        #[arg(long, env = "LLMOS_MODEL_DIR", value_delimiter = ',')]
        model_dir: Vec<PathBuf>,
    },
    /// Manage models: list, info, pull, verify, rm.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Manage the ONNX Runtime library.
    #[command(subcommand)]
    Runtime(RuntimeCommand),
    /// Embed texts (arguments, or stdin: a JSON array of strings or one text per line).
    Embed(TextArgs),
    /// Find entities (personal data) in texts.
    Ner(TextArgs),
    /// Classify texts with a classification model, or zero-shot with an embed model and
    /// --label (repeatable).
    Classify(ClassifyArgs),
    /// Generate text from a prompt with a generation model, streamed to stdout.
    Generate(generate::GenerateArgs),
    /// Chat with a generation model (one line per turn; /reset, /exit).
    Chat(generate::ChatArgs),
    /// Replace personal data in a text (pii-ner entities and validated patterns).
    Anonymize(anonymize::AnonymizeArgs),
    /// Put back the originals of a scope's pseudonym tokens in a text.
    Deanonymize(anonymize::DeanonymizeArgs),
    /// Manage API keys (only a hash is stored; the secret is shown once).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Train models: `llmos train classifier` (docs/classification.md).
    #[command(subcommand)]
    Train(train::TrainCommand),
    /// Manage WebAssembly plugins: install, grant, revoke, enable, disable, remove, …
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Maintain the data store: rotate-master, rekey COLLECTION, check.
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// The audit log: tail, verify the hash chain, archive old segments.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Collections: create, ingest files, list, remove, export, search.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Tools for models: list the installed tools, call one (docs/tools.md).
    #[command(subcommand)]
    Tools(tools::ToolsCommand),
    /// Remote MCP servers whose tools llmos offers: add, list, remove, secret.
    #[command(subcommand)]
    Mcp(mcp::McpCommand),
    /// Run texts through a model's plugin pipeline and the model, without HTTP.
    Run {
        /// Model name.
        #[arg(long, short)]
        model: String,
        /// Input text (repeatable; else stdin).
        #[arg(long = "text", short)]
        texts: Vec<String>,
        /// Route whose pipeline applies [default: the model's pipeline].
        #[arg(long, default_value = "cli")]
        route: String,
        /// Cut texts longer than the model's maximum instead of refusing them.
        #[arg(long)]
        truncate: bool,
    },
    /// Run raw tensors: JSON `{"inputs":[{"name","shape","dtype","data"}],"outputs":[..]}`.
    Infer {
        /// Model name.
        #[arg(long, short)]
        model: String,
        /// The request JSON (else stdin).
        json: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// List known models and whether they are pulled.
    List,
    /// Show a model's manifest, licence, tensors and the provider that serves it.
    Info {
        /// Model name.
        name: String,
    },
    /// Download and verify model files.
    Pull {
        /// Model names.
        names: Vec<String>,
        /// Every built-in model.
        #[arg(long)]
        all: bool,
        /// Fetch again even when a verified copy exists.
        #[arg(long)]
        force: bool,
    },
    /// Check every file's sha256 (all pulled models, or the named ones).
    Verify {
        /// Model names.
        names: Vec<String>,
    },
    /// Import a llama-architecture GGUF file as an ONNX causal LM (model.onnx, tokenizer.json,
    /// generation.json) and register it with a manifest.
    Import {
        /// The .gguf file.
        file: PathBuf,
        /// Name of the new model (a-z, 0-9, '.', '_', '-').
        #[arg(long)]
        name: String,
        /// Write the model's files and its manifest.toml into this folder instead of the store.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Store every weight as f32 (about 4x larger; to measure the quantisation error).
        #[arg(long, hide = true)]
        fp32: bool,
        /// Compute with int8 activations: every MatMulNBits gets accuracy_level = 4 and a tied
        /// 8-bit embedding becomes an 8-bit MatMulNBits lm head. Faster on the CPU, but no longer
        /// exact (logits move by up to about 1.5); recorded in generation.json and the manifest.
        /// Default: the exact import.
        #[arg(long, conflicts_with = "fp32")]
        int8_activations: bool,
    },
    /// Delete a model's files.
    Rm {
        /// Model name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key and print its secret once.
    Create {
        /// Scope (repeatable): models:<name>, models:*, admin, data:<collection>,
        /// data:<collection>:write, data:*, data:*:write, pii:anonymize[:<vault-scope>],
        /// pii:deanonymize[:<vault-scope>].
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// A label for listings.
        #[arg(long, default_value = "")]
        name: String,
        /// Expiry: 30d, 12h, 90m, or Unix seconds.
        #[arg(long)]
        expires: Option<String>,
        /// The tenant its generation requests run for (default: the key's id).
        #[arg(long)]
        tenant: Option<String>,
        /// Most generation streams the tenant may have queued or running at once.
        #[arg(long)]
        max_streams: Option<usize>,
        /// Most tokens (prompt + max_tokens) of the tenant's requests waiting to start.
        #[arg(long)]
        max_queued_tokens: Option<usize>,
        /// Priority class: high, normal or low (weights the tenant's share of generation).
        #[arg(long, default_value = "normal", value_parser = crate::core::generate::tenant::Priority::parse)]
        priority: crate::core::generate::tenant::Priority,
    },
    /// List keys (ids, scopes, expiry; never secrets).
    List,
    /// Revoke a key by id.
    Revoke {
        /// The key id (the part after `llmos_`).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum RuntimeCommand {
    /// Download onnxruntime==1.31.1 from the Python package index and verify it.
    Install {
        /// Replace an existing copy.
        #[arg(long)]
        force: bool,
    },
    /// Show which library would be loaded, and the providers it offers.
    Info,
}

#[derive(Debug, Args)]
struct TextArgs {
    /// Model name [default: minilm for embed, pii-ner for ner].
    #[arg(long, short)]
    model: Option<String>,
    /// Cut texts longer than the model's maximum instead of refusing them.
    #[arg(long)]
    truncate: bool,
    /// Texts (else stdin).
    texts: Vec<String>,
}

#[derive(Debug, Args)]
struct ClassifyArgs {
    #[command(flatten)]
    text: TextArgs,
    /// Zero-shot with an embed model: a label, `NAME` or `NAME=DESCRIPTION` (2-64 of them).
    #[arg(long = "label", value_name = "NAME[=DESCRIPTION]")]
    labels: Vec<String>,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LLMOS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,llmos=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The configuration after file, environment and flags.
fn settings(g: &Global) -> Result<(Config, Paths)> {
    let home = g.home.clone().unwrap_or_else(Paths::default_home);
    let file = g.config.clone().unwrap_or_else(|| home.join("llmos.toml"));
    let mut config = Config::load(&file)?;
    config.apply_env()?;
    crate::data::store::use_url(config.store.url.clone());
    if let Some(n) = g.intra_threads {
        config.runtime.intra_threads = n;
    }
    let paths = Paths::resolve(home, &config);
    if g.providers.is_some() || g.strict {
        // CLI overrides apply to every model this command may load.
        let store = ModelStore::open(&paths.models, &paths.manifest_dirs(&config))?;
        for m in store.manifests() {
            let o = config.models.overrides.entry(m.name.clone()).or_default();
            if let Some(p) = &g.providers {
                o.providers = Some(p.0.clone());
            }
            if g.strict {
                o.strict = Some(true);
            }
        }
    }
    Ok((config, paths))
}

fn core(g: &Global) -> Result<Core> {
    let (config, paths) = settings(g)?;
    Ok(Core::new(config, paths)?)
}

fn print(v: &Value) {
    // `{:#}` is serde_json's pretty printer, without a `Result` to unwrap.
    println!("{v:#}");
}

fn run(cli: Cli) -> Result<()> {
    let g = &cli.global;
    if !matches!(cli.command, Command::Serve { .. }) {
        // What a command changes is audited as done by `cli`.
        crate::security::audit::set_process_actor("cli");
    }
    match cli.command {
        Command::Serve {
            listen,
            grpc_listen,
            models,
            model_dir,
        } => {
            let core = Arc::new(core(g)?);
            let listen = listen.unwrap_or_else(|| core.config().server.listen.clone());
            let mut from_dirs = Vec::new();
            for dir in &model_dir {
                let names = core
                    .store
                    .add_dir(dir)
                    .with_context(|| format!("--model-dir {}", dir.display()))?;
                from_dirs.extend(names);
            }
            // With a model folder, the built-in defaults are not loaded unless asked for.
            let mut names = models
                .or_else(|| core.config().models.load.clone())
                .unwrap_or_else(|| {
                    if from_dirs.is_empty() {
                        ModelStore::defaults()
                    } else {
                        Vec::new()
                    }
                });
            for name in from_dirs {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            for name in &names {
                load(&core, name)?;
            }
            let grpc = grpc_listen.or_else(|| core.config().server.grpc_listen.clone());
            crate::api::serve_with_grpc(core, &listen, grpc.as_deref())
        }
        Command::Models(cmd) => models(g, cmd),
        Command::Runtime(cmd) => runtime_cmd(g, cmd),
        Command::Embed(a) => {
            let core = core(g)?;
            let model = load(&core, a.model.as_deref().unwrap_or("minilm"))?;
            let out = model
                .embed(read_texts(a.texts)?, policy(a.truncate))?
                .wait()?;
            print(&json!({"model": model.name(), "embeddings": out.vectors, "tokens": out.tokens}));
            Ok(())
        }
        Command::Ner(a) => {
            let core = core(g)?;
            let model = load(&core, a.model.as_deref().unwrap_or("pii-ner"))?;
            let texts = read_texts(a.texts)?;
            let out = model.entities(texts.clone(), policy(a.truncate))?.wait()?;
            let results: Vec<Value> = texts
                .iter()
                .zip(out.entities)
                .map(|(t, e)| json!({"text": t, "entities": e}))
                .collect();
            print(&json!({"model": model.name(), "results": results, "tokens": out.tokens}));
            Ok(())
        }
        Command::Classify(ClassifyArgs { text: a, labels }) => {
            let core = core(g)?;
            let Some(name) = a.model.as_deref() else {
                bail!(
                    "classify needs --model NAME (a model whose task is classify, or an embed model with --label; see `llmos models list`)"
                );
            };
            let model = load(&core, name)?;
            let texts = read_texts(a.texts)?;
            let out = if labels.is_empty() {
                model.classify(texts.clone(), policy(a.truncate))?.wait()?
            } else {
                zero_shot(&model, &labels, texts.clone(), policy(a.truncate))?
            };
            let results: Vec<Value> = texts
                .iter()
                .zip(out.scores)
                .map(|(t, s)| json!({"text": t, "label": s.first().map(|t| &t.label), "scores": s}))
                .collect();
            print(&json!({"model": model.name(), "results": results, "tokens": out.tokens}));
            Ok(())
        }
        Command::Generate(a) => {
            let core = core(g)?;
            let model = load(&core, &a.model())?;
            generate::generate(&model, a)
        }
        Command::Chat(a) => {
            let core = core(g)?;
            let model = load(&core, &a.model())?;
            generate::chat(&model, a)
        }
        Command::Anonymize(a) => {
            let core = core(g)?;
            let home = core.paths().home.clone();
            print(&anonymize::run_anonymize(&core, &home, a)?);
            Ok(())
        }
        Command::Deanonymize(a) => {
            let (_, paths) = settings(g)?;
            print(&anonymize::run_deanonymize(&paths.home, a)?);
            Ok(())
        }
        Command::Keys(cmd) => {
            let (_, paths) = settings(g)?;
            keys_cmd(cmd, &paths.home)
        }
        Command::Audit(cmd) => {
            let (config, paths) = settings(g)?;
            audit::run(cmd, &config, &paths)
        }
        Command::Plugin(plugin::PluginCommand::Test(a)) => {
            let (config, paths) = settings(g)?;
            plugin_test::run(&a, config, paths)
        }
        Command::Plugin(cmd) => {
            let (config, paths) = settings(g)?;
            plugin::run_with(
                cmd,
                &paths.home,
                crate::plugins::HostSettings::from(&config.plugins),
            )
        }
        Command::Store(cmd) => store::run(cmd, &settings(g)?.1.home),
        Command::Mcp(cmd) => {
            let (config, paths) = settings(g)?;
            mcp::run(cmd, &paths.home, &config.mcp)
        }
        Command::Train(train::TrainCommand::Classifier(a)) => {
            let (config, paths) = settings(g)?;
            let dirs = paths.manifest_dirs(&config);
            let core = Core::new(config, paths.clone())?;
            let out = train::classifier(&core, &paths.home, dirs.first().map(PathBuf::as_path), &a)?;
            print(&out);
            Ok(())
        }
        Command::Data(cmd) => data::run_with(cmd, core(g)?),
        Command::Tools(cmd) => tools::run(cmd, core(g)?),
        Command::Run {
            model,
            texts,
            route,
            truncate,
        } => {
            let core = Arc::new(core(g)?);
            let gateway = crate::plugins::gateway::Gateway::open(core, None)?;
            let texts = read_texts(texts)?;
            let out = gateway.run_blocking(&model, &route, None, texts, policy(truncate))?;
            print(&out);
            if let Some(d) = out.get("denied") {
                bail!(
                    "denied by plugin {} ({} policy): {}",
                    d["plugin"],
                    d["stage"],
                    d["reason"]
                );
            }
            Ok(())
        }
        Command::Infer { model, json } => {
            let core = core(g)?;
            let text = match json {
                Some(j) => j,
                None => read_stdin()?,
            };
            let (inputs, outputs) = parse_infer(&text)?;
            let model = load(&core, &model)?;
            let out = model.infer(inputs, outputs)?.wait()?;
            print(
                &json!({"model": model.name(), "outputs": out.iter().map(tensor_json).collect::<Vec<_>>()}),
            );
            Ok(())
        }
    }
}

/// `llmos keys …`: over the admin socket while a server runs (it holds the store), else on
/// the store; the output is the same.
fn keys_cmd(cmd: KeysCommand, home: &std::path::Path) -> Result<()> {
    let Some(cmd) = remote::keys(cmd, home)? else {
        return Ok(());
    };
    let store = match crate::data::Store::open_home(home) {
        Ok(s) => s,
        Err(e) if remote::store_locked(&e) => {
            // A server that started meanwhile gets it; else say who holds the store.
            return match remote::keys(cmd, home)? {
                None => Ok(()),
                Some(_) => Err(remote::held(home, e.into())),
            };
        }
        Err(e) => return Err(e.into()),
    };
    let keys = crate::security::keys::Keys::new(store.clone());
    let audit = crate::security::AuditLog::new(store);
    match cmd {
        KeysCommand::Create {
            scopes,
            name,
            expires,
            tenant,
            max_streams,
            max_queued_tokens,
            priority,
        } => {
            let now = crate::security::audit::now_ms();
            let expires = expires
                .map(|e| crate::security::keys::parse_expiry(&e, now))
                .transpose()?;
            let tenancy = crate::security::keys::Tenancy {
                tenant,
                max_streams,
                max_queued_tokens,
                priority,
            };
            let (rec, secret) = keys.create_with(&name, &scopes, expires, tenancy)?;
            let _ = audit.record(
                "key-created",
                &rec.id,
                None,
                format!("scopes {:?}", rec.scopes),
            );
            print_key_created(&rec.public(), &secret);
        }
        KeysCommand::List => print_keys(keys.list()?.iter().map(|k| k.public()).collect()),
        KeysCommand::Revoke { id } => {
            let rec = keys.revoke(&id)?;
            let _ = audit.record("key-revoked", &rec.id, None, "revoked with the CLI");
            print_key_revoked(&rec.id);
        }
    }
    Ok(())
}

fn print_key_created(key: &Value, secret: &str) {
    print(&json!({"key": key, "secret": secret}));
    eprintln!(
        "Store the secret now: it is shown once. Clients send `Authorization: Bearer <secret>`."
    );
}

fn print_keys(keys: Vec<Value>) {
    print(&json!({ "keys": keys }));
}

fn print_key_revoked(id: &str) {
    eprintln!("revoked {id}");
}

fn policy(truncate: bool) -> Truncation {
    if truncate {
        Truncation::Truncate
    } else {
        Truncation::Error
    }
}

fn load(core: &Core, name: &str) -> Result<Arc<crate::core::Model>, LoadError> {
    core.model(name)
}

fn read_stdin() -> Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("reading stdin")?;
    Ok(s)
}

/// Texts from arguments, or stdin (a JSON array of strings, else one text per line).
fn read_texts(args: Vec<String>) -> Result<Vec<String>> {
    if !args.is_empty() {
        return Ok(args);
    }
    let s = read_stdin()?;
    let t = s.trim_start();
    if t.starts_with('[') {
        return serde_json::from_str(t)
            .context("stdin starts with '[' but is not a JSON array of strings");
    }
    Ok(s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect())
}

fn tensor_json(t: &NamedTensor) -> Value {
    json!({"name": t.name, "shape": t.shape, "dtype": t.data.dtype(), "data": t.data})
}

/// Parses `{"inputs":[{"name","shape","dtype","data"}], "outputs":["name"]}`.
fn parse_infer(text: &str) -> Result<(Vec<NamedTensor>, Option<Vec<String>>)> {
    let v: Value = serde_json::from_str(text).context("infer request is not valid JSON")?;
    let inputs = v
        .get("inputs")
        .and_then(Value::as_array)
        .context("infer request needs \"inputs\": a list of {name, shape, dtype, data}")?;
    let mut out = Vec::new();
    for (i, t) in inputs.iter().enumerate() {
        let name = t
            .get("name")
            .and_then(Value::as_str)
            .with_context(|| format!("inputs[{i}].name must be a string"))?;
        let shape: Vec<usize> = serde_json::from_value(
            t.get("shape").cloned().unwrap_or(Value::Null),
        )
        .with_context(|| format!("inputs[{i}].shape must be a list of non-negative integers"))?;
        let dtype_s = t
            .get("dtype")
            .and_then(Value::as_str)
            .with_context(|| format!("inputs[{i}].dtype must be one of {}", DType::ACCEPTED))?;
        let dtype = DType::parse(dtype_s).with_context(|| {
            format!(
                "inputs[{i}].dtype {dtype_s:?} is not accepted: use one of {}",
                DType::ACCEPTED
            )
        })?;
        let data = flatten(
            t.get("data")
                .with_context(|| format!("inputs[{i}].data is missing"))?,
        );
        out.push(NamedTensor {
            name: name.into(),
            shape,
            data: json_data(dtype, &data).with_context(|| format!("inputs[{i}].data"))?,
        });
    }
    let outputs = match v.get("outputs") {
        None | Some(Value::Null) => None,
        Some(o) => Some(
            serde_json::from_value(o.clone())
                .context("\"outputs\" must be a list of output names")?,
        ),
    };
    Ok((out, outputs))
}

fn flatten(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items.iter().flat_map(flatten).collect(),
        other => vec![other.clone()],
    }
}

/// Converts JSON scalars to typed data, naming the first element that does not fit.
pub fn json_data(dtype: DType, items: &[Value]) -> Result<TensorData> {
    fn each<T>(items: &[Value], what: &str, f: impl Fn(&Value) -> Option<T>) -> Result<Vec<T>> {
        items
            .iter()
            .enumerate()
            .map(|(i, x)| f(x).with_context(|| format!("element {i} ({x}) is not {what}")))
            .collect()
    }
    Ok(match dtype {
        // why: FP32 input given as JSON numbers is rounded to the nearest f32.
        #[allow(clippy::cast_possible_truncation)]
        DType::F32 => TensorData::F32(each(items, "a number", |x| x.as_f64().map(|f| f as f32))?),
        DType::F16 => TensorData::F16(each(items, "a number", |x| {
            x.as_f64().map(half::f16::from_f64)
        })?),
        DType::I64 => TensorData::I64(each(items, "an integer", Value::as_i64)?),
        DType::I32 => TensorData::I32(each(items, "a 32-bit integer", |x| {
            x.as_i64().and_then(|i| i32::try_from(i).ok())
        })?),
        DType::Bool => TensorData::Bool(each(items, "true or false", Value::as_bool)?),
    })
}

fn models(g: &Global, cmd: ModelsCommand) -> Result<()> {
    let (config, paths) = settings(g)?;
    let store = ModelStore::open(&paths.models, &paths.manifest_dirs(&config))?;
    match cmd {
        ModelsCommand::List => {
            let rows: Vec<Value> = store
                .manifests()
                .map(|m| {
                    let state = store.check(&m.name, false).map(|c| {
                        if c.iter().all(|f| f.state == FileState::Ok) { "pulled" } else { "not pulled" }
                    });
                    json!({"name": m.name, "task": m.task, "license": m.license, "status": state.unwrap_or("error"), "description": m.description})
                })
                .collect();
            print(&json!({"models": rows, "dir": paths.models}));
        }
        ModelsCommand::Info { name } => {
            let m = store.manifest(&name)?.clone();
            let files = store.check(&name, true)?;
            let mut info = json!({
                "name": m.name, "task": m.task, "description": m.description, "license": m.license,
                "attribution": m.attribution, "homepage": m.homepage, "files": files, "dir": store.model_dir(&name),
                "providers_preferred": config.models.overrides.get(&name).and_then(|o| o.providers.clone()).unwrap_or(m.providers.clone()),
                "labels": m.labels, "metrics": m.metrics, "training": m.training,
            });
            if files.iter().all(|f| f.state == FileState::Ok) {
                let core = core(g)?;
                let (key, value) = match core.model(&name) {
                    Ok(model) => ("loaded", serde_json::to_value(model.info())?),
                    Err(e) => ("load_error", json!(format!("{e:#}"))),
                };
                if let Some(o) = info.as_object_mut() {
                    o.insert(key.into(), value);
                }
            }
            print(&info);
        }
        ModelsCommand::Pull { names, all, force } => {
            let names = if all { ModelStore::defaults() } else { names };
            if names.is_empty() {
                bail!(
                    "name a model to pull, or use --all for the built-in models ({})",
                    ModelStore::defaults().join(", ")
                );
            }
            let fetcher = Fetcher::new(&paths.cache, true)?;
            let mut trainer = None;
            for name in &names {
                if store.manifest(name)?.training.is_some() {
                    let core = match trainer.take() {
                        Some(c) => c,
                        None => core(g)?,
                    };
                    pull_trained(&core, &paths, &config, name, &fetcher, force)?;
                    trainer = Some(core);
                    continue;
                }
                let written = store.pull(name, &fetcher, force)?;
                eprintln!(
                    "{name}: {} (in {})",
                    if written == 0 {
                        "up to date, verified".to_string()
                    } else {
                        format!("{written} file(s) fetched and verified")
                    },
                    store.model_dir(name).display()
                );
            }
        }
        ModelsCommand::Verify { names } => {
            let names: Vec<String> = if names.is_empty() {
                store
                    .manifests()
                    .map(|m| m.name.clone())
                    .filter(|n| store.model_dir(n).exists())
                    .collect()
            } else {
                names
            };
            let mut bad = 0usize;
            let mut rows = Vec::new();
            for name in &names {
                let files = store.check(name, true)?;
                bad = bad.saturating_add(files.iter().filter(|f| f.state != FileState::Ok).count());
                rows.push(json!({"name": name, "files": files}));
            }
            print(&json!({"models": rows}));
            if bad > 0 {
                bail!(
                    "{bad} file(s) missing or corrupt; run `llmos models pull NAME --force` to fetch them again"
                );
            }
        }
        ModelsCommand::Import {
            file,
            name,
            out,
            fp32,
            int8_activations,
        } => {
            let dirs = paths.manifest_dirs(&config);
            let args = import::ImportArgs {
                file: &file,
                name: &name,
                out: out.as_deref(),
                fp32,
                int8_activations,
            };
            print(&import::run(&store, dirs.first().map(PathBuf::as_path), &args)?);
        }
        ModelsCommand::Rm { name } => {
            let removed = store.remove(&name)?;
            eprintln!(
                "{name}: {}",
                if removed {
                    "removed"
                } else {
                    "nothing to remove"
                }
            );
        }
    }
    Ok(())
}

/// Zero-shot scores of `texts` against `--label`s on an embed model (the same prototypes and
/// scores as `/v1/classify` with `labels`).
fn zero_shot(
    model: &Arc<crate::core::engine::Model>,
    labels: &[String],
    texts: Vec<String>,
    truncation: Truncation,
) -> Result<crate::core::engine::Classes> {
    use crate::core::zero_shot;
    if model.manifest.task != crate::core::manifest::Task::Embed {
        bail!(
            "--label is for embed models (zero-shot); {} is a {} model: classify without --label",
            model.name(),
            model.manifest.task.as_str()
        );
    }
    let spec: Vec<Value> = labels
        .iter()
        .map(|l| match l.split_once('=') {
            Some((name, d)) => json!({"name": name.trim(), "description": d.trim()}),
            None => json!(l.trim()),
        })
        .collect();
    let specs = crate::api::zero_shot::parse_labels(&Value::Array(spec))
        .map_err(|e| anyhow::anyhow!("--label: {}", e.message))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .context("cannot start a runtime")?;
    let protos = rt.block_on(zero_shot::prototypes(model, &specs))?;
    let out = model.embed(texts, truncation)?.wait()?;
    Ok(crate::core::engine::Classes {
        scores: zero_shot::scores(&out.vectors, &protos),
        tokens: out.tokens,
    })
}

/// Pulls a model whose files are trained (docs/classification.md): trains it from its
/// `[training]` recipe unless its files are there and verified. When the digests differ from
/// the manifest's (another CPU can round the base model's embeddings differently), the model
/// is kept and a manifest with this machine's digests and figures is written into the
/// manifest folder, which says so.
fn pull_trained(
    core: &Core,
    paths: &Paths,
    config: &Config,
    name: &str,
    fetcher: &Fetcher,
    force: bool,
) -> Result<()> {
    let m = core.store.manifest(name)?;
    if !force && core.store.verified_dir(name).is_ok() {
        eprintln!("{name}: up to date, verified (in {})", core.store.model_dir(name).display());
        return Ok(());
    }
    let data_store = crate::data::Store::open_home(&paths.home).ok();
    eprintln!("{name}: training from its recipe (base {})", m.training.as_ref().map_or("?", |t| t.base.as_str()));
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let built = crate::data::train::retrain(core, data_store.as_ref(), &m, fetcher, &train::progress_line, &cancel);
    eprintln!();
    let built = built?;
    let same = m.files.iter().all(|f| {
        built.manifest.files.iter().any(|b| b.name == f.name && b.sha256 == f.sha256)
    });
    if same {
        eprintln!(
            "{name}: trained, every file matches the manifest's sha256 (validation accuracy {:.4}, macro-F1 {:.4}; in {})",
            built.trained.metrics.accuracy,
            built.trained.metrics.macro_f1,
            core.store.model_dir(name).display()
        );
        return Ok(());
    }
    let Some(dir) = paths.manifest_dirs(config).into_iter().next() else {
        bail!("{name}: the trained files differ from the manifest's sha256 and no manifest folder is configured to record this machine's");
    };
    let path = crate::data::train::register(core, &dir, &built)?;
    eprintln!(
        "warning: {name}: the trained files differ from the shipped manifest's sha256 (the base model's embeddings round differently on this machine); \
         this machine's digests and figures are recorded in {} (validation accuracy {:.4}, macro-F1 {:.4})",
        path.display(),
        built.trained.metrics.accuracy,
        built.trained.metrics.macro_f1
    );
    Ok(())
}

fn runtime_cmd(g: &Global, cmd: RuntimeCommand) -> Result<()> {
    let (config, paths) = settings(g)?;
    match cmd {
        RuntimeCommand::Install { force } => {
            let fetcher = Fetcher::new(&paths.cache, true)?;
            let path = runtime::install(&fetcher, &paths.cache, force)?;
            eprintln!(
                "ONNX Runtime {} installed and verified: {}",
                runtime::ORT_VERSION,
                path.display()
            );
        }
        RuntimeCommand::Info => {
            let rt = runtime::init(&config.runtime, &paths.cache)?;
            let providers: Vec<Value> = ProviderKind::ALL
                .iter()
                .map(|k| json!({"provider": k, "in_library": k.in_library().unwrap_or(false), "compiled_in": k.compiled_in()}))
                .collect();
            print(
                &json!({"path": rt.path, "source": rt.source, "version": runtime::ORT_VERSION, "providers": providers}),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        // Catches clashing argument ids between global flags and subcommands.
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}

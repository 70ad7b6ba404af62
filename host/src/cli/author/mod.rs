//! Plugin authoring: `llmos plugin new | build | wit` (docs/plugin-authors.md, part a).
//!
//! None of these commands opens the store, so they work while `llmos serve` runs. The
//! project templates (`plugins/templates/<lang>/common/**` overlaid by
//! `plugins/templates/<lang>/<world>/**`), the Rust guest SDK (`plugins/sdk`) and the WIT
//! package are embedded in the binary; `plugin new` renders the placeholders `{{name}}`,
//! `{{name_snake}}`, `{{name_camel}}`, `{{world}}` and `{{wit_version}}` (and, for Rust,
//! `{{sdk_path}}`) in file contents and names.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use include_dir::{Dir, DirEntry, include_dir};
use sha2::{Digest, Sha256};

use crate::plugins::Manifest;

pub mod dev;
mod js;
mod project;
mod python;
mod rust;
mod toolchain;

use project::new_project;

/// The version of the WIT package the Rust SDK, the `tool` templates and `plugin wit` target.
pub const WIT_VERSION: &str = "0.1.1";

/// The version of the WIT package that the Python and JavaScript templates of the worlds of
/// 0.1.0 (preprocessor, policy, integration) still target: their stubs and types are
/// generated from it, and what they build links on every host since 0.1.0.
pub const WIT_VERSION_0_1_0: &str = "0.1.0";

static TEMPLATES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/../plugins/templates");
static WIT: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/../wit/llmos-plugin@0.1.1");
static WIT_0_1_0: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/../wit/llmos-plugin@0.1.0");

/// Authoring subcommands of `llmos plugin` (flattened into it).
#[derive(Debug, clap::Subcommand)]
pub enum AuthorCommand {
    /// Write a new plugin project (manifest, source, example input, the WIT) into ./NAME.
    New {
        /// The plugin's name: 1-64 characters a-z, 0-9 and '-', starting with a letter.
        name: String,
        /// What the plugin does.
        #[arg(long, value_enum)]
        world: WorldArg,
        /// The language of the project.
        #[arg(long, value_enum)]
        lang: Lang,
        /// Where to write it [default: ./NAME]; must be absent or empty.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Build the project in DIR into DIR/dist/NAME.wasm (language detected from its files).
    Build {
        /// The project [default: the current folder].
        dir: Option<PathBuf>,
        /// Build without optimisations (faster to build, slower to run).
        #[arg(long)]
        debug: bool,
    },
    /// Print the WIT package llmos:plugin (every file, with `// file:` headers), or write it.
    Wit {
        /// Write the files into this folder instead of printing them.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// A plugin world, as `--world` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WorldArg {
    /// Transforms a request's inputs.
    Preprocessor,
    /// Allows, denies or modifies requests and responses.
    Policy,
    /// Acts on events after the response was sent.
    Integration,
    /// Offers tools that models (the chat tool loop) and MCP clients call (WIT 0.1.1).
    Tool,
}

impl WorldArg {
    /// The world's name in the WIT and in manifest.toml.
    pub fn name(self) -> &'static str {
        match self {
            WorldArg::Preprocessor => "preprocessor",
            WorldArg::Policy => "policy",
            WorldArg::Integration => "integration",
            WorldArg::Tool => "tool",
        }
    }

    /// The WIT package a `lang` project of this world targets (its folder and version):
    /// 0.1.1 for Rust (the SDK) and for tools, 0.1.0 for the Python and JavaScript templates
    /// of the older worlds.
    fn wit(self, lang: Lang) -> (&'static Dir<'static>, &'static str) {
        if lang == Lang::Rust || self == WorldArg::Tool {
            (&WIT, WIT_VERSION)
        } else {
            (&WIT_0_1_0, WIT_VERSION_0_1_0)
        }
    }
}

impl std::fmt::Display for WorldArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A project language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust with the `llmos-plugin` SDK (cargo, target wasm32-wasip2).
    Rust,
    /// Python with componentize-py.
    Python,
    /// JavaScript with jco componentize.
    Js,
    /// TypeScript: type-checked and compiled by tsc, then built like JavaScript.
    Ts,
}

impl Lang {
    /// The template folder's name.
    pub fn name(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
            Lang::Ts => "ts",
        }
    }

    /// The language of the project in `dir`, from the file that marks it (a `tsconfig.json`
    /// beside `package.json` makes it TypeScript).
    pub fn detect(dir: &Path) -> anyhow::Result<Lang> {
        if dir.join("tsconfig.json").is_file() && dir.join("package.json").is_file() {
            return Ok(Lang::Ts);
        }
        for (file, lang) in [
            ("Cargo.toml", Lang::Rust),
            ("app.py", Lang::Python),
            ("package.json", Lang::Js),
        ] {
            if dir.join(file).is_file() {
                return Ok(lang);
            }
        }
        bail!(
            "{}: cannot tell the project's language: expected Cargo.toml (Rust), app.py (Python), \
             package.json (JavaScript) or package.json and tsconfig.json (TypeScript) next to \
             manifest.toml",
            dir.display()
        )
    }
}

/// Runs an authoring command; `home` is the data location (where `new` writes the Rust SDK).
pub fn run(cmd: AuthorCommand, home: &Path) -> anyhow::Result<()> {
    match cmd {
        AuthorCommand::New {
            name,
            world,
            lang,
            dir,
        } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            new_project(&name, world, lang, &dir, home)?;
            print_next(&name, world, lang, &dir);
            Ok(())
        }
        AuthorCommand::Build { dir, debug } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from("."));
            let out = build(&dir, !debug)?;
            let bytes = std::fs::read(&out).with_context(|| format!("reading {}", out.display()))?;
            println!("built {}", out.display());
            println!("  size    {} bytes", bytes.len());
            println!("  sha256  {}", hex::encode(Sha256::digest(&bytes)));
            Ok(())
        }
        AuthorCommand::Wit { out: Some(out) } => {
            for (path, text) in wit_files() {
                let to = out.join(&path);
                write_file(&to, text.as_bytes())?;
                println!("wrote {}", to.display());
            }
            Ok(())
        }
        AuthorCommand::Wit { out: None } => {
            let mut stdout = std::io::stdout().lock();
            for (path, text) in wit_files() {
                writeln!(stdout, "// file: {}\n{text}", path.display())?;
            }
            Ok(())
        }
    }
}

fn print_next(name: &str, world: WorldArg, lang: Lang, dir: &Path) {
    println!(
        "created {} {world} plugin {name} in {}",
        lang.name(),
        dir.display()
    );
    println!("next:");
    println!("  cd {}", dir.display());
    println!("  llmos plugin build");
    println!("  llmos plugin install dist/{name}.wasm --manifest manifest.toml");
    if world == WorldArg::Tool {
        println!("  llmos tools call {name} \"$(cat example.txt)\"");
    } else {
        println!("  llmos plugin test {name} --input \"$(cat example.txt)\"");
    }
}

/// The WIT package's files (relative path, text), sorted by path.
pub fn wit_files() -> BTreeMap<PathBuf, &'static str> {
    let mut out = BTreeMap::new();
    collect(&WIT, WIT.path(), &mut out);
    out.into_iter()
        .filter_map(|(p, b)| Some((p, std::str::from_utf8(b).ok()?)))
        .collect()
}

/// Every file under `dir` as (path relative to `root`, contents).
fn collect(
    dir: &'static Dir<'static>,
    root: &Path,
    out: &mut BTreeMap<PathBuf, &'static [u8]>,
) {
    for e in dir.entries() {
        match e {
            DirEntry::Dir(d) => collect(d, root, out),
            DirEntry::File(f) => {
                if let Ok(rel) = f.path().strip_prefix(root) {
                    out.insert(rel.to_path_buf(), f.contents());
                }
            }
        }
    }
}

/// Builds the project in `dir` into `dir/dist/<name>.wasm` and returns that path.
pub fn build(dir: &Path, release: bool) -> anyhow::Result<PathBuf> {
    let path = dir.join("manifest.toml");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{}: no plugin project here (a project has manifest.toml at its root; \
             `llmos plugin new NAME --world W --lang L` writes one)",
            path.display()
        )
    })?;
    let manifest = Manifest::parse(&text).with_context(|| format!("{}", path.display()))?;
    let lang = Lang::detect(dir)?;
    let out = dir.join("dist").join(format!("{}.wasm", manifest.name));
    std::fs::create_dir_all(dir.join("dist"))
        .with_context(|| format!("creating {}", dir.join("dist").display()))?;
    match lang {
        Lang::Rust => {
            rust::check_toolchain(dir)?;
            rust::build(dir, &manifest, &out, release)?;
        }
        Lang::Python => {
            python::check_toolchain(dir)?;
            python::build(dir, &manifest, &out, release)?;
        }
        Lang::Js => {
            js::check_toolchain(dir)?;
            js::build(dir, &manifest, &out, release)?;
        }
        Lang::Ts => {
            js::check_toolchain(dir)?;
            js::build_ts(dir, &manifest, &out, release)?;
        }
    }
    check_component(&out)?;
    Ok(out)
}

/// A WebAssembly component starts with `\0asm`, version 0x0d, layer 1 (a core module: layer 0).
fn check_component(path: &Path) -> anyhow::Result<()> {
    let mut head = [0u8; 8];
    let mut f = std::fs::File::open(path)
        .with_context(|| format!("the build wrote no {}", path.display()))?;
    std::io::Read::read_exact(&mut f, &mut head)
        .with_context(|| format!("{}: not a WebAssembly file", path.display()))?;
    match head {
        [0, b'a', b's', b'm', _, _, 1, 0] => Ok(()),
        [0, b'a', b's', b'm', ..] => bail!(
            "{}: a core WebAssembly module, not a component (build for wasm32-wasip2)",
            path.display()
        ),
        _ => bail!("{}: not a WebAssembly file", path.display()),
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder (never half-written).
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let tmp = path.with_extension(format!("llmos-tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

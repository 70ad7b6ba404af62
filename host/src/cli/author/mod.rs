//! Plugin authoring: `llmos plugin new | build` (docs/plugin-authors.md).
//!
//! Stand-in for part a's module, kept to what the Python and JavaScript back ends need on
//! this branch (same names and signatures as the contract; the lead merges part a's file):
//! the templates (`plugins/templates/<lang>/common/**` overlaid by
//! `plugins/templates/<lang>/<world>/**`) and the WIT are embedded in the binary, and
//! `plugin new` renders `{{name}}`, `{{name_snake}}`, `{{name_camel}}`, `{{world}}` and
//! `{{wit_version}}` in file contents and names. Neither command opens the store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use include_dir::{Dir, DirEntry, include_dir};
use sha2::{Digest, Sha256};

use crate::plugins::{Manifest, World};

mod js;
mod python;
mod toolchain;

/// The version of the WIT package the templates target.
pub const WIT_VERSION: &str = "0.1.0";

static TEMPLATES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/../plugins/templates");
static WIT: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/../wit/llmos-plugin@0.1.0");

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
}

impl From<WorldArg> for World {
    fn from(w: WorldArg) -> Self {
        match w {
            WorldArg::Preprocessor => World::Preprocessor,
            WorldArg::Policy => World::Policy,
            WorldArg::Integration => World::Integration,
        }
    }
}

/// A project language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Python with componentize-py.
    Python,
    /// JavaScript with jco componentize.
    Js,
}

impl Lang {
    /// The template folder's name.
    pub fn name(self) -> &'static str {
        match self {
            Lang::Python => "python",
            Lang::Js => "js",
        }
    }

    /// The language of the project in `dir`, from the file that marks it.
    pub fn detect(dir: &Path) -> anyhow::Result<Lang> {
        for (file, lang) in [("app.py", Lang::Python), ("package.json", Lang::Js)] {
            if dir.join(file).is_file() {
                return Ok(lang);
            }
        }
        bail!(
            "{}: cannot tell the project's language: expected app.py (Python) or package.json \
             (JavaScript) next to manifest.toml",
            dir.display()
        )
    }
}

/// Runs an authoring command.
pub fn run(cmd: AuthorCommand) -> anyhow::Result<()> {
    match cmd {
        AuthorCommand::New {
            name,
            world,
            lang,
            dir,
        } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            new_project(&name, world.into(), lang, &dir)?;
            println!("created {} plugin {name} in {}", lang.name(), dir.display());
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
    }
}

/// Every file under `dir` as (path relative to `root`, contents).
fn collect(dir: &'static Dir<'static>, root: &Path, out: &mut BTreeMap<PathBuf, &'static [u8]>) {
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

fn camel(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Writes the project: the template (common, then the world's files over it) and `wit/`.
fn new_project(name: &str, world: World, lang: Lang, dir: &Path) -> anyhow::Result<()> {
    Manifest::parse(&format!("name = {name:?}\nversion = \"0.1.0\"\nworld = \"{world}\"\n"))
        .with_context(|| format!("plugin name {name:?}"))?;
    if dir.read_dir().is_ok_and(|mut d| d.next().is_some()) {
        bail!("{}: not empty; give --dir PATH to a new or empty folder", dir.display());
    }
    let vars = [
        ("{{name}}", name.to_string()),
        ("{{name_snake}}", name.replace('-', "_")),
        ("{{name_camel}}", camel(name)),
        ("{{world}}", world.name().to_string()),
        ("{{wit_version}}", WIT_VERSION.to_string()),
    ];
    let mut files = BTreeMap::new();
    for part in ["common", world.name()] {
        let rel = Path::new(lang.name()).join(part);
        if let Some(d) = TEMPLATES.get_dir(&rel) {
            collect(d, &rel, &mut files);
        }
    }
    for (path, bytes) in files {
        let mut path = path.to_string_lossy().into_owned();
        let mut text = String::from_utf8_lossy(bytes).into_owned();
        for (k, v) in &vars {
            path = path.replace(k, v);
            text = text.replace(k, v);
        }
        write(&dir.join(path), text.as_bytes())?;
    }
    let mut wit = BTreeMap::new();
    collect(&WIT, WIT.path(), &mut wit);
    for (path, bytes) in wit {
        write(&dir.join("wit").join(path), bytes)?;
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
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
    let out = dir.join("dist").join(format!("{}.wasm", manifest.name));
    std::fs::create_dir_all(dir.join("dist"))
        .with_context(|| format!("creating {}", dir.join("dist").display()))?;
    match Lang::detect(dir)? {
        Lang::Python => {
            python::check_toolchain(dir)?;
            python::build(dir, &manifest, &out, release)?;
        }
        Lang::Js => {
            js::check_toolchain(dir)?;
            js::build(dir, &manifest, &out, release)?;
        }
    }
    Ok(out)
}

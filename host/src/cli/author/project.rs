//! `llmos plugin new`: renders a language's template for a world into a new project folder,
//! staged beside it and renamed into place (an interrupted `new` leaves no half project).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};

use super::{Lang, TEMPLATES, WorldArg, collect, write_file};

/// The placeholders of the templates.
pub(super) struct Vars(BTreeMap<&'static str, String>);

impl Vars {
    /// The values for plugin `name` of `world` in `lang`; `extra` adds language-specific ones.
    pub(super) fn new(
        name: &str,
        world: WorldArg,
        lang: Lang,
        extra: &[(&'static str, String)],
    ) -> Self {
        let mut v = BTreeMap::from([
            ("name", name.to_string()),
            ("name_snake", name.replace('-', "_")),
            ("name_camel", camel(name)),
            ("world", world.name().to_string()),
            ("wit_version", world.wit(lang).1.to_string()),
        ]);
        v.extend(extra.iter().cloned());
        Self(v)
    }

    /// `text` with every known `{{key}}` replaced (one pass: values are never re-read);
    /// unknown keys stay as they are.
    pub(super) fn render(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            let (before, from) = rest.split_at(start);
            out.push_str(before);
            let value = from.strip_prefix("{{").and_then(|after| {
                let end = after.find("}}")?;
                let key = after.get(..end)?;
                Some((self.0.get(key)?, after.get(end.checked_add(2)?..)?))
            });
            match value {
                Some((v, after)) => {
                    out.push_str(v);
                    rest = after;
                }
                None => {
                    out.push_str("{{");
                    rest = from.get(2..).unwrap_or_default();
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// `shout-loud` → `ShoutLoud`.
fn camel(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut c = part.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The template files of `lang` for `world`: `common/**` overlaid by `<world>/**`. A
/// TypeScript project starts from the JavaScript template's `types/` (the declarations jco
/// generates from the WIT, shared by both).
fn template_files(lang: Lang, world: WorldArg) -> anyhow::Result<BTreeMap<PathBuf, &'static [u8]>> {
    let lang_dir = lang.name();
    let mut files = BTreeMap::new();
    if lang == Lang::Ts {
        for types in ["js/common/types".to_string(), format!("js/{world}/types")] {
            if let Some(d) = TEMPLATES.get_dir(&types) {
                // Relative to the language folder's common/ or <world>/: `types/...`.
                if let Some(base) = d.path().parent() {
                    collect(d, base, &mut files);
                }
            }
        }
    }
    if let Some(common) = TEMPLATES.get_dir(format!("{lang_dir}/common")) {
        collect(common, common.path(), &mut files);
    }
    let specific = TEMPLATES
        .get_dir(format!("{lang_dir}/{world}"))
        .ok_or_else(|| anyhow!("this llmos has no {lang_dir} template for the {world} world"))?;
    collect(specific, specific.path(), &mut files);
    Ok(files)
}

/// Refuses a name that is not a valid plugin name (or, for Rust, a package name cargo refuses).
fn check_name(name: &str, lang: Lang) -> anyhow::Result<()> {
    if !crate::plugins::manifest::valid_plugin_name(name) {
        bail!(
            "plugin name {name:?}: expected 1-64 characters a-z, 0-9 and '-', starting with a \
             letter (e.g. shout-loud)"
        );
    }
    if lang == Lang::Rust && super::rust::reserved(name) {
        bail!(
            "plugin name {name:?}: cargo refuses it as a package name (a Rust keyword or a \
             standard crate): choose another name"
        );
    }
    Ok(())
}

/// Refuses a `dir` that exists and is not an empty folder.
fn check_free(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let mut entries = std::fs::read_dir(dir).with_context(|| {
        format!(
            "{}: exists and is not a folder: give another --dir",
            dir.display()
        )
    })?;
    if entries.next().is_some() {
        bail!(
            "{}: the folder exists and is not empty: give another --dir or remove it",
            dir.display()
        );
    }
    Ok(())
}

/// Writes a new project for plugin `name` into `dir`; `home` is the data location (the Rust
/// SDK goes to `home/sdk/rust/`).
pub(super) fn new_project(
    name: &str,
    world: WorldArg,
    lang: Lang,
    dir: &Path,
    home: &Path,
) -> anyhow::Result<()> {
    check_name(name, lang)?;
    check_free(dir)?;
    let extra = match lang {
        Lang::Rust => vec![("sdk_path", super::rust::install_sdk(home)?)],
        Lang::Python | Lang::Js | Lang::Ts => Vec::new(),
    };
    let vars = Vars::new(name, world, lang, &extra);
    let mut files: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
    for (path, bytes) in template_files(lang, world)? {
        let path = PathBuf::from(vars.render(&path.to_string_lossy()));
        let bytes = match std::str::from_utf8(bytes) {
            Ok(text) => vars.render(text).into_bytes(),
            Err(_) => bytes.to_vec(),
        };
        files.insert(path, bytes);
    }
    let (wit_dir, _) = world.wit(lang);
    let mut wit = BTreeMap::new();
    collect(wit_dir, wit_dir.path(), &mut wit);
    for (path, bytes) in wit {
        files.insert(Path::new("wit").join(path), bytes.to_vec());
    }
    stage_and_move(dir, &files)
}

/// Writes `files` into a staging folder beside `dir`, then renames it to `dir`.
fn stage_and_move(dir: &Path, files: &BTreeMap<PathBuf, Vec<u8>>) -> anyhow::Result<()> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let base = dir
        .file_name()
        .ok_or_else(|| anyhow!("{}: not a folder name", dir.display()))?;
    let staging = parent.join(format!(
        ".{}.llmos-new-{}",
        base.to_string_lossy(),
        std::process::id()
    ));
    let written = files
        .iter()
        .try_for_each(|(path, bytes)| write_file(&staging.join(path), bytes))
        .and_then(|()| {
            if dir.exists() {
                std::fs::remove_dir(dir).with_context(|| format!("replacing {}", dir.display()))?;
            }
            std::fs::rename(&staging, dir).with_context(|| format!("creating {}", dir.display()))
        });
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_render_once_and_unknown_ones_stay() {
        let v = Vars::new(
            "shout-loud",
            WorldArg::Policy,
            Lang::Python,
            &[("sdk_path", "/x/{{name}}".into())],
        );
        assert_eq!(
            v.render("{{name}} {{name_snake}} {{name_camel}} {{world}} {{wit_version}}"),
            "shout-loud shout_loud ShoutLoud policy 0.1.0"
        );
        assert_eq!(v.render("{{sdk_path}}"), "/x/{{name}}");
        assert_eq!(v.render("{{other}} {{ {{name"), "{{other}} {{ {{name");
        assert_eq!(camel("a1-b--c"), "A1BC");
        let v = Vars::new("t", WorldArg::Policy, Lang::Rust, &[]);
        assert_eq!(v.render("{{wit_version}}"), "0.1.1");
        let v = Vars::new("t", WorldArg::Tool, Lang::Js, &[]);
        assert_eq!(v.render("{{world}} {{wit_version}}"), "tool 0.1.1");
    }

    #[test]
    fn every_world_of_rust_has_a_template_with_a_manifest_and_an_example() {
        for world in ALL {
            let files = template_files(Lang::Rust, world).unwrap();
            for f in [
                "manifest.toml",
                "example.txt",
                "Cargo.toml",
                "src/lib.rs",
                "README.md",
                ".gitignore",
            ] {
                assert!(files.contains_key(Path::new(f)), "{world}: {f} missing");
            }
        }
    }

    const ALL: [WorldArg; 4] = [
        WorldArg::Preprocessor,
        WorldArg::Policy,
        WorldArg::Integration,
        WorldArg::Tool,
    ];

    #[test]
    fn typescript_templates_have_the_javascript_types_of_their_world() {
        for world in ALL {
            let files = template_files(Lang::Ts, world).unwrap();
            for f in ["app.ts", "tsconfig.json", "package.json", "package-lock.json", "manifest.toml"] {
                assert!(files.contains_key(Path::new(f)), "{world}: {f} missing");
            }
            assert!(!files.contains_key(Path::new("app.js")), "{world}");
            let world_types = PathBuf::from(format!("types/{world}.d.ts"));
            assert!(files.contains_key(&world_types), "{world}: {world_types:?} missing");
            let kv = std::str::from_utf8(files[Path::new("types/interfaces/llmos-plugin-kv.d.ts")]).unwrap();
            let app = std::str::from_utf8(files[Path::new("app.ts")]).unwrap();
            let version = if world == WorldArg::Tool { "0.1.1" } else { "0.1.0" };
            assert!(kv.contains(&format!("llmos:plugin/kv@{version}")), "{world}: {kv}");
            assert!(app.contains(&format!("llmos:plugin/{world}@{version}")), "{world}: {app}");
        }
    }

    #[test]
    fn every_language_has_a_tool_template() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js, Lang::Ts] {
            let files = template_files(lang, WorldArg::Tool).unwrap();
            for f in ["manifest.toml", "example.txt", "README.md"] {
                assert!(files.contains_key(Path::new(f)), "{lang:?}: {f} missing");
            }
            let text = std::str::from_utf8(files[Path::new("manifest.toml")]).unwrap();
            let text = Vars::new("my-tool", WorldArg::Tool, lang, &[]).render(text);
            assert!(text.contains("world = \"tool\""), "{text}");
        }
    }

    /// The manifests of the worlds this host's manifest parser knows (`tool` once the host
    /// serves WIT 0.1.1's tool world) parse as written.
    #[test]
    fn rendered_manifests_parse() {
        for world in ALL {
            let files = template_files(Lang::Rust, world).unwrap();
            let text = std::str::from_utf8(files[Path::new("manifest.toml")]).unwrap();
            let text = Vars::new("my-plugin", world, Lang::Rust, &[]).render(text);
            match crate::plugins::Manifest::parse(&text) {
                Ok(m) => assert_eq!((m.name.as_str(), m.world.name()), ("my-plugin", world.name())),
                Err(e) if world == WorldArg::Tool => {
                    assert!(e.to_string().contains("tool"), "{e}");
                }
                Err(e) => panic!("{world}: {e}"),
            }
        }
    }
}

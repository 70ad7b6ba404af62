//! `llmos plugin dev [DIR]`: the dev loop. Builds the project, installs it under its own
//! name (the dev slot) after the operator confirms the capabilities it requests and the
//! limits it raises, then watches the project's files and, on a change, rebuilds and upgrades
//! the plugin in place — through the running server's admin socket while `llmos serve` runs,
//! so the next request uses the new version without a restart.
//!
//! Without a server, each install opens the store for that install only (as `plugin install`
//! does) and closes it again, so a `llmos serve` started meanwhile gets the next reload.
//! Nothing marks a dev install in the store: it is an ordinary install or upgrade.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::cli::plugin::print_report;
use crate::cli::remote::{self, Server};
use crate::plugins::registry::{self, InstallReport, InstallRequest, PluginRecord};
use crate::plugins::{HostSettings, Manifest, PluginHost};

/// `llmos plugin dev`'s arguments.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// The project [default: the current folder].
    pub dir: Option<PathBuf>,
    /// Grant the capabilities the manifest requests and approve its raised limits without
    /// asking (for scripts).
    #[arg(long)]
    pub yes: bool,
    /// Build and install once, then exit (no watching).
    #[arg(long)]
    pub once: bool,
    /// Build without optimisations (faster to build, slower to run).
    #[arg(long)]
    pub debug: bool,
    /// How often to look at the project's files for changes, milliseconds (10-60000).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub interval_ms: u64,
}

/// Held while an install or upgrade is under way: Ctrl-C waits for it, so the store is never
/// left half-written.
static GATE: Mutex<()> = Mutex::new(());

/// Folders never watched at the project's root (build outputs, VCS).
const SKIP_AT_ROOT: &[&str] = &["target", "dist", ".git"];
/// Folders never watched at any depth (dependencies, caches).
const SKIP_ANYWHERE: &[&str] = &["node_modules", "__pycache__"];

/// Runs the dev loop (or one round with `--once`).
pub fn run(args: &DevArgs, home: &Path, settings: HostSettings) -> Result<()> {
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    read_manifest(&dir)?;
    let mut dev = Dev {
        dir,
        home: home.to_path_buf(),
        settings,
        yes: args.yes,
        release: !args.debug,
        served: None,
    };
    if args.once {
        return dev.round(true);
    }
    stop_on_signal()?;
    let mut seen = snapshot(&dev.dir);
    let mut installed = report_error(dev.round(true));
    println!(
        "watching {} for changes (every {} ms); Ctrl-C to stop",
        dev.dir.display(),
        args.interval_ms
    );
    loop {
        std::thread::sleep(Duration::from_millis(args.interval_ms));
        let now = snapshot(&dev.dir);
        if now == seen {
            continue;
        }
        seen = now;
        installed = report_error(dev.round(!installed)) || installed;
    }
}

/// Prints a round's error (the compiler's own output is already on stderr); whether it
/// installed.
fn report_error(r: Result<()>) -> bool {
    match r {
        Ok(()) => true,
        Err(e) => {
            eprintln!("error: {e:#}");
            println!("watching for changes; the installed version, if any, keeps serving");
            false
        }
    }
}

/// The dev loop's settings and what it learnt.
struct Dev {
    dir: PathBuf,
    home: PathBuf,
    settings: HostSettings,
    yes: bool,
    release: bool,
    /// Whether the last install went to a running server (`None`: none yet).
    served: Option<bool>,
}

impl Dev {
    /// Build, confirm, install or upgrade. `first`: print the whole install report.
    fn round(&mut self, first: bool) -> Result<()> {
        let start = Instant::now();
        let wasm = super::build(&self.dir, self.release).context("the build failed")?;
        let built = start.elapsed();
        let manifest = read_manifest(&self.dir)?;
        let name = manifest.name.clone();
        let old = Target::open(self)?.record(&name)?;
        let bytes = std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;
        let sha = hex::encode(Sha256::digest(&bytes));
        if let Some(o) = &old
            && o.sha256 == sha
            && o.manifest == manifest
        {
            println!(
                "unchanged {name} {} sha256 {} (built in {:.1} s)",
                manifest.version,
                short(&sha),
                built.as_secs_f64()
            );
            return Ok(());
        }
        let Some(consent) = consent(&manifest, old.as_ref(), self.yes)? else {
            bail!(
                "{name} {} not installed: its raised limits were not approved (answer y, or \
                 pass --yes; or lower them in manifest.toml's [limits])",
                manifest.version
            );
        };
        let req = InstallRequest {
            component: wasm,
            manifest: Some(self.dir.join("manifest.toml")),
            grants: consent.grants,
            approve_limits: consent.approve_limits,
            ..InstallRequest::default()
        };
        let upgrade = old.as_ref().map(|_| name.as_str());
        let report = {
            let _gate = GATE.lock().unwrap_or_else(PoisonError::into_inner);
            Target::open(self)?.install(upgrade, req, &self.settings)?
        };
        if first {
            print_report(if upgrade.is_some() { "upgraded" } else { "installed" }, &report);
            println!("  built in {:.1} s", built.as_secs_f64());
        } else {
            print_reload(&report, built);
        }
        Ok(())
    }

    /// Says where installs go when that changes (first round, server started or stopped).
    fn note_target(&mut self, server: bool) {
        if self.served == Some(server) {
            return;
        }
        self.served = Some(server);
        if server {
            println!(
                "installing through the running server ({})",
                crate::api::local::socket_path(&self.home).display()
            );
        } else {
            println!(
                "no server running: installing into the store at {} directly; `llmos serve` \
                 serves it, and later reloads go to the server",
                self.home.display()
            );
        }
    }
}

/// One reload, one line (and what changed in the capabilities, if anything).
fn print_reload(r: &InstallReport, built: Duration) {
    let m = &r.record.manifest;
    println!(
        "reloaded {} {} sha256 {} (built in {:.1} s)",
        m.name,
        m.version,
        short(&r.record.sha256),
        built.as_secs_f64()
    );
    if !r.added.is_empty() || !r.removed.is_empty() {
        println!("  effective {}", r.record.effective());
    }
    if !r.added.is_empty() && !r.ungranted.is_empty() {
        println!("  not granted (calls will be denied): {}", r.ungranted);
        for c in r.ungranted.iter() {
            println!("    llmos plugin grant {} {c}", m.name);
        }
    }
}

/// The first 12 hex digits of a sha256.
fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// Where an install goes: the running server, else the store opened for this one step.
enum Target {
    Server(Box<Server>),
    Local(PluginHost),
}

impl Target {
    fn open(dev: &mut Dev) -> Result<Self> {
        if let Some(s) = Server::connect(&dev.home)? {
            dev.note_target(true);
            return Ok(Self::Server(Box::new(s)));
        }
        match PluginHost::open(&dev.home, dev.settings.clone(), None) {
            Ok(h) => {
                dev.note_target(false);
                Ok(Self::Local(h))
            }
            Err(e) if remote::is_locked(&e) => Err(remote::held(&dev.home, e.into())),
            Err(e) => Err(e.into()),
        }
    }

    /// The installed plugin `name`, if any.
    fn record(&mut self, name: &str) -> Result<Option<PluginRecord>> {
        let all = match self {
            Self::Server(s) => {
                let v: serde_json::Value = s.get("/admin/plugins")?;
                serde_json::from_value::<Vec<PluginRecord>>(
                    v.get("plugins").cloned().unwrap_or_default(),
                )
                .context("the server's plugin list is not what this llmos expects")?
            }
            Self::Local(h) => registry::list(h.store())?,
        };
        Ok(all.into_iter().find(|r| r.manifest.name == name))
    }

    /// Installs (`upgrade: None`) or upgrades the plugin.
    fn install(
        &mut self,
        upgrade: Option<&str>,
        req: InstallRequest,
        settings: &HostSettings,
    ) -> Result<InstallReport> {
        match self {
            Self::Server(s) => {
                let manifest = req.manifest.unwrap_or_default();
                remote::install(
                    s,
                    upgrade,
                    req.component,
                    manifest,
                    req.grants,
                    req.approve_limits,
                    settings,
                )
            }
            Self::Local(h) => Ok(match upgrade {
                Some(name) => registry::upgrade(h, name, &req)?,
                None => registry::install(h, &req)?,
            }),
        }
    }
}

/// What the operator agreed to.
#[derive(Debug, PartialEq, Eq)]
struct Consent {
    grants: Vec<String>,
    approve_limits: bool,
}

/// Asks for the capabilities the manifest requests that the installed version did not (all
/// of them on a first install) and for raised limits not approved before. `None`: the limits
/// were refused (the registry would refuse the install).
fn consent(manifest: &Manifest, old: Option<&PluginRecord>, yes: bool) -> Result<Option<Consent>> {
    let mut answer = |q: &str| ask(q, yes, &mut std::io::stdin().lock());
    consent_with(manifest, old, &mut answer)
}

fn consent_with(
    manifest: &Manifest,
    old: Option<&PluginRecord>,
    answer: &mut dyn FnMut(&str) -> Result<bool>,
) -> Result<Option<Consent>> {
    let name = &manifest.name;
    let requested = manifest.requested()?;
    let new = match old {
        Some(o) => requested.difference(&o.manifest.requested()?),
        None => requested,
    };
    let mut grants = Vec::new();
    if !new.is_empty() {
        let what = if old.is_some() { "now also requests" } else { "requests" };
        println!("{name} {what} {new}");
        if answer(&format!("grant {new} to {name}?"))? {
            grants = new.iter().map(ToString::to_string).collect();
        } else {
            println!("  not granted: calls that need {new} will be denied");
        }
    }
    let raised = manifest.limits.raised();
    let approved_before = |l: &crate::plugins::limits::RaisedLimit| {
        old.is_some_and(|o| {
            o.manifest
                .limits
                .raised()
                .iter()
                .any(|p| p.name == l.name && p.asked >= l.asked)
        })
    };
    let unapproved: Vec<String> = raised
        .iter()
        .filter(|l| !approved_before(l))
        .map(ToString::to_string)
        .collect();
    if !unapproved.is_empty() {
        println!("{name} raises limits above the defaults: {}", unapproved.join(", "));
        if !answer("approve these limits?")? {
            return Ok(None);
        }
    }
    Ok(Some(Consent {
        grants,
        approve_limits: !raised.is_empty(),
    }))
}

/// Asks `question` on the terminal; `--yes` answers yes, end of input answers no.
fn ask(question: &str, yes: bool, input: &mut dyn std::io::BufRead) -> Result<bool> {
    let mut out = std::io::stdout().lock();
    if yes {
        writeln!(out, "{question} [y/N] y (--yes)")?;
        return Ok(true);
    }
    write!(out, "{question} [y/N] ")?;
    out.flush()?;
    drop(out);
    let mut line = String::new();
    if input.read_line(&mut line).context("reading the answer")? == 0 {
        println!("(no answer: taken as no; --yes answers yes)");
        return Ok(false);
    }
    if !std::io::stdin().is_terminal() {
        // A terminal echoes the answer; a pipe does not.
        println!("{}", line.trim_end());
    }
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// The project's manifest (`DIR/manifest.toml`).
fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join("manifest.toml");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{}: no plugin project here (a project has manifest.toml at its root; \
             `llmos plugin new NAME --world W --lang L` writes one)",
            path.display()
        )
    })?;
    Manifest::parse(&text).with_context(|| format!("{}", path.display()))
}

/// Every watched file's modification time and size.
type Snapshot = BTreeMap<PathBuf, (Option<SystemTime>, u64)>;

/// The project's source files (not build outputs, dependencies or caches; links not
/// followed).
fn snapshot(dir: &Path) -> Snapshot {
    let mut out = Snapshot::new();
    walk(dir, true, &mut out);
    out
}

fn walk(dir: &Path, root: bool, out: &mut Snapshot) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(meta) = e.path().symlink_metadata() else {
            continue;
        };
        let name = e.file_name();
        let name = name.to_string_lossy();
        if meta.is_dir() {
            let skipped = SKIP_ANYWHERE.contains(&name.as_ref())
                || (root && SKIP_AT_ROOT.contains(&name.as_ref()));
            if !skipped {
                walk(&e.path(), false, out);
            }
        } else {
            out.insert(e.path(), (meta.modified().ok(), meta.len()));
        }
    }
}

/// Ctrl-C (or SIGTERM) ends the loop with status 0, once no install is under way.
fn stop_on_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (mut int, mut term) = {
        let _in = rt.enter();
        (
            signal(SignalKind::interrupt()).context("cannot catch Ctrl-C")?,
            signal(SignalKind::terminate()).context("cannot catch SIGTERM")?,
        )
    };
    std::thread::Builder::new()
        .name("dev-signals".into())
        .spawn(move || {
            rt.block_on(async {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            });
            let _gate = GATE.lock().unwrap_or_else(PoisonError::into_inner);
            println!("stopped");
            std::process::exit(0);
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(caps: &str, limits: &str) -> Manifest {
        Manifest::parse(&format!(
            "name = \"d\"\nversion = \"0.1.0\"\nworld = \"policy\"\ncapabilities = [{caps}]\n{limits}"
        ))
        .unwrap()
    }

    fn record(m: Manifest) -> PluginRecord {
        PluginRecord {
            sha256: String::new(),
            size: 0,
            granted: Default::default(),
            enabled: true,
            config: Default::default(),
            installed_at_ms: 0,
            manifest: m,
            limits: Default::default(),
            denied_imports: Vec::new(),
            signature: None,
            tools: Vec::new(),
        }
    }

    /// Runs `consent_with` answering `answers` in turn; the questions asked and the outcome.
    fn run(m: &Manifest, old: Option<&PluginRecord>, answers: &[bool]) -> (Vec<String>, Option<Consent>) {
        let mut asked = Vec::new();
        let mut answers = answers.iter();
        let out = consent_with(m, old, &mut |q| {
            asked.push(q.to_string());
            Ok(*answers.next().expect("an unexpected question"))
        })
        .unwrap();
        (asked, out)
    }

    #[test]
    fn a_first_install_asks_for_every_requested_capability() {
        let m = manifest("\"kv\", \"secret:token\"", "");
        let (asked, c) = run(&m, None, &[true]);
        assert_eq!(asked, ["grant kv secret:token to d?"]);
        assert_eq!(c.unwrap().grants, ["kv", "secret:token"]);
        let (_, c) = run(&m, None, &[false]);
        assert_eq!(c.unwrap(), Consent { grants: vec![], approve_limits: false });
        let (asked, _) = run(&manifest("", ""), None, &[]);
        assert!(asked.is_empty(), "nothing requested, nothing asked");
    }

    #[test]
    fn an_upgrade_asks_for_the_new_capabilities_only() {
        let old = record(manifest("\"kv\"", ""));
        let (asked, c) = run(&manifest("\"kv\", \"secret:token\"", ""), Some(&old), &[true]);
        assert_eq!(asked, ["grant secret:token to d?"]);
        assert_eq!(c.unwrap().grants, ["secret:token"]);
        let (asked, c) = run(&manifest("\"kv\"", ""), Some(&old), &[]);
        assert!(asked.is_empty());
        assert!(c.unwrap().grants.is_empty());
    }

    #[test]
    fn raised_limits_are_asked_once_and_a_no_refuses_the_install() {
        let m = manifest("", "[limits]\ntimeout_ms = 5000\n");
        let (asked, c) = run(&m, None, &[false]);
        assert_eq!(asked.len(), 1);
        assert!(asked[0].contains("approve"), "{asked:?}");
        assert_eq!(c, None);
        let (_, c) = run(&m, None, &[true]);
        assert!(c.unwrap().approve_limits);
        // Approved before: the same or a lower limit is not asked again; a higher one is.
        let old = record(m.clone());
        let (asked, c) = run(&m, Some(&old), &[]);
        assert!(asked.is_empty());
        assert!(c.unwrap().approve_limits);
        let higher = manifest("", "[limits]\ntimeout_ms = 9000\n");
        let (asked, _) = run(&higher, Some(&old), &[true]);
        assert_eq!(asked.len(), 1);
    }

    #[test]
    fn answers_are_yes_only_when_said() {
        for (input, want) in [("y\n", true), ("YES\n", true), ("n\n", false), ("\n", false), ("", false), ("maybe\n", false)] {
            let got = ask("q?", false, &mut std::io::Cursor::new(input)).unwrap();
            assert_eq!(got, want, "{input:?}");
        }
        assert!(ask("q?", true, &mut std::io::Cursor::new("")).unwrap());
    }

    #[test]
    fn the_snapshot_sees_sources_and_skips_outputs() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        for f in ["manifest.toml", "src/lib.rs", "target/x", "dist/d.wasm", "node_modules/m/i.js", "src/__pycache__/a.pyc", ".git/HEAD", "src/dist/keep.rs"] {
            let f = p.join(f);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, "1").unwrap();
        }
        let s = snapshot(p);
        let mut names: Vec<String> = s
            .keys()
            .map(|k| k.strip_prefix(p).unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["manifest.toml", "src/dist/keep.rs", "src/lib.rs"]);
        std::fs::write(p.join("dist/d.wasm"), "22").unwrap();
        assert_eq!(snapshot(p), s, "outputs do not trigger a rebuild");
        std::fs::write(p.join("src/lib.rs"), "22").unwrap();
        assert_ne!(snapshot(p), s, "a source edit does");
    }
}

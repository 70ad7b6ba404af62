//! `llmos plugin …`: thin wrappers over [`crate::plugins::registry`], which the HTTP admin
//! API shares.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::remote;
use crate::data::store::Usage;
use crate::plugins::registry::{self, InstallReport, InstallRequest, PluginRecord};
use crate::plugins::{HostSettings, PluginHost};
use crate::security::{AuditRecord, CapabilitySet};

/// Manage WebAssembly plugins.
#[derive(Debug, clap::Subcommand)]
pub enum PluginCommand {
    /// Validate and install a component with its manifest.
    Install(InstallArgs),
    /// Replace an installed plugin by a new version; new capabilities must be granted again.
    Upgrade {
        /// The installed plugin.
        name: String,
        #[command(flatten)]
        args: InstallArgs,
        /// Accept a version that is not signed by the publisher of the installed one (a
        /// plugin signed by a trusted publisher is pinned to it).
        #[arg(long)]
        allow_publisher_change: bool,
    },
    /// List installed plugins.
    List,
    /// Show a plugin's manifest, capabilities, config and limits.
    Info {
        /// The plugin.
        name: String,
    },
    /// Grant capabilities (kv, inference:<model>, secret:<name>, http:[<scheme>://]<host|ip|cidr>[:<port>]).
    Grant {
        /// The plugin.
        name: String,
        /// Capabilities.
        #[arg(required = true)]
        caps: Vec<String>,
    },
    /// Revoke capabilities.
    Revoke {
        /// The plugin.
        name: String,
        /// Capabilities.
        #[arg(required = true)]
        caps: Vec<String>,
    },
    /// Allow calls to a plugin.
    Enable {
        /// The plugin.
        name: String,
    },
    /// Refuse calls to a plugin (it stays installed).
    Disable {
        /// The plugin.
        name: String,
    },
    /// Set or unset config values.
    Configure {
        /// The plugin.
        name: String,
        /// `KEY=VALUE` to set; list items are separated by `;`.
        values: Vec<String>,
        /// Keys to unset (back to the default).
        #[arg(long = "unset", value_name = "KEY")]
        unset: Vec<String>,
    },
    /// Override a plugin's per-call limits (omitted options go back to the manifest's).
    Limits {
        /// The plugin.
        name: String,
        #[command(flatten)]
        limits: LimitsArgs,
    },
    /// Store a secret for a plugin (read from stdin unless --value is given).
    Secret {
        /// The plugin.
        name: String,
        /// The secret's name (the plugin reads it with `secret:<name>` granted).
        secret: String,
        /// The value (prefer stdin: values on a command line end up in shell history).
        #[arg(long)]
        value: Option<String>,
    },
    /// Remove a plugin with its data and secrets.
    Remove {
        /// The plugin.
        name: String,
    },
    /// Show the audit log (denials, grants, installs).
    Audit,
    /// Authoring: `new`, `build`, `wit` (they need no store, so they also run while serving).
    #[command(flatten)]
    Author(super::author::AuthorCommand),
    /// Make a signing key: writes the private key (PKCS#8 PEM, 0600), prints the public key.
    Keygen(super::sign::KeygenArgs),
    /// Sign a component and its manifest with a private key (writes COMPONENT.wasm.sig).
    Sign(super::sign::SignArgs),
    /// Trusted publishers: the public keys whose signatures install and upgrade accept.
    #[command(subcommand)]
    Publisher(super::sign::PublisherCommand),
    /// Run one call of an installed plugin and show what it did (result, logs, host calls,
    /// capabilities used or denied, time and memory).
    Test(super::plugin_test::TestArgs),
    /// The dev loop: build, install (asking before granting), then rebuild and reload on
    /// every change while `llmos serve` runs (through its admin socket).
    Dev(super::author::dev::DevArgs),
}

/// A component to install or upgrade to, and what to do with it.
#[derive(Debug, Clone, clap::Args)]
pub struct InstallArgs {
    /// The component (`.wasm`, built for wasm32-wasip2).
    pub path: PathBuf,
    /// The manifest (default: manifest.toml next to the component, else <name>.toml).
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Grant a capability now (repeatable), e.g. `--grant inference:pii-ner`.
    #[arg(long = "grant", value_name = "CAP")]
    pub grants: Vec<String>,
    /// Refuse unless the component's sha256 is this (hex).
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,
    /// Set a config value (repeatable); list items are separated by `;`.
    /// (`--set`, not `--config`: that is the global config-file flag.)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub values: Vec<String>,
    /// Approve the manifest's limits above the host's defaults (refused without it).
    #[arg(long)]
    pub approve_limits: bool,
    /// The signature file (`llmos plugin sign`) [default: COMPONENT.wasm.sig if it exists].
    #[arg(long, value_name = "FILE")]
    pub signature: Option<PathBuf>,
}

impl InstallArgs {
    /// The registry's request.
    fn request(self) -> anyhow::Result<InstallRequest> {
        Ok(InstallRequest {
            config: parse_kv(&self.values)?,
            component: self.path,
            manifest: self.manifest,
            grants: self.grants,
            sha256: self.sha256,
            approve_limits: self.approve_limits,
            signature: self.signature,
        })
    }
}

/// Operator overrides of a plugin's limits and quotas (omitted: the manifest's).
#[derive(Debug, Clone, clap::Args)]
pub struct LimitsArgs {
    /// Time budget per call, milliseconds.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Memory of all linear memories together, MiB.
    #[arg(long)]
    memory_mib: Option<u64>,
    /// Bytes a call may return.
    #[arg(long)]
    max_output_bytes: Option<u64>,
    /// Host calls per call.
    #[arg(long)]
    max_host_calls: Option<u64>,
    /// Inference calls per call (quota).
    #[arg(long)]
    max_inference_calls: Option<u64>,
    /// Tokens all inference calls of one call may use (quota).
    #[arg(long)]
    max_inference_tokens: Option<u64>,
    /// Bytes of kv data (keys and sealed values) the plugin may keep.
    #[arg(long)]
    kv_max_bytes: Option<u64>,
    /// kv keys the plugin may keep.
    #[arg(long)]
    kv_max_keys: Option<u64>,
    /// Largest kv value, bytes (at most 1 MiB).
    #[arg(long)]
    kv_max_value_bytes: Option<u64>,
}

impl From<LimitsArgs> for crate::plugins::limits::LimitsRequest {
    fn from(a: LimitsArgs) -> Self {
        Self {
            timeout_ms: a.timeout_ms,
            memory_mib: a.memory_mib,
            max_output_bytes: a.max_output_bytes,
            max_host_calls: a.max_host_calls,
            max_inference_calls: a.max_inference_calls,
            max_inference_tokens: a.max_inference_tokens,
            kv_max_bytes: a.kv_max_bytes,
            kv_max_keys: a.kv_max_keys,
            kv_max_value_bytes: a.kv_max_value_bytes,
        }
    }
}

pub(super) fn parse_kv(items: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|i| {
            i.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .with_context(|| format!("config {i:?}: expected KEY=VALUE"))
        })
        .collect()
}

pub(super) fn print_report(verb: &str, r: &InstallReport) {
    let m = &r.record.manifest;
    match &r.previous_version {
        Some(prev) => println!("{verb} {} {prev} -> {} ({})", m.name, m.version, m.world),
        None => println!("{verb} {} {} ({})", m.name, m.version, m.world),
    }
    println!("  sha256    {}", r.record.sha256);
    if r.previous_version.is_some() {
        println!("  new capabilities      {}", r.added);
        println!("  dropped capabilities  {}", r.removed);
    }
    println!("  effective {}", r.record.effective());
    for l in &r.raised_limits {
        println!("  raised limit (approved) {l}");
    }
    if !r.ungranted.is_empty() {
        println!("  not granted (calls will be denied): {}", r.ungranted);
        for c in r.ungranted.iter() {
            println!("    llmos plugin grant {} {c}", m.name);
        }
    }
    if !r.unrequested.is_empty() {
        println!(
            "  warning: granted but not requested (never effective): {}",
            r.unrequested
        );
    }
    print_denied_imports(&r.record);
    println!("  signature {}", registry::signature_line(&r.record));
    if let Some(c) = &r.signer_change {
        println!("  signer changed: {c}");
    }
}

/// Host interfaces imported without a matching request (whole-world toolchains).
fn print_denied_imports(r: &PluginRecord) {
    for d in &r.denied_imports {
        println!("  denied import {d}");
    }
}

pub(super) fn print_info(r: &PluginRecord) {
    let m = &r.manifest;
    println!(
        "{} {} ({}){}",
        m.name,
        m.version,
        m.world,
        if r.enabled { "" } else { " [disabled]" }
    );
    if !m.description.is_empty() {
        println!("  {}", m.description);
    }
    println!("  sha256     {}", r.sha256);
    println!("  size       {} bytes", r.size);
    println!("  signature  {}", registry::signature_line(r));
    println!("  requested  {}", m.capabilities.join(" "));
    println!("  granted    {}", r.granted);
    println!("  effective  {}", r.effective());
    print_denied_imports(r);
    let l = r.limits();
    println!(
        "  limits     {} ms, {} MiB, {} output bytes, {} host calls",
        l.timeout_ms, l.memory_mib, l.max_output_bytes, l.max_host_calls
    );
    println!(
        "  host-wide  {} wasi handles, {} KiB per http fields object",
        crate::plugins::limits::MAX_RESOURCES,
        crate::plugins::limits::MAX_HTTP_FIELDS_BYTES >> 10
    );
    let raised = m.limits.raised();
    if !raised.is_empty() {
        let raised: Vec<String> = raised.iter().map(ToString::to_string).collect();
        println!("  raised     {} (approved at install)", raised.join(", "));
    }
    println!(
        "  quotas     {} inference calls and {} inference tokens per call; kv {} bytes, {} keys, values up to {} bytes",
        l.max_inference_calls,
        l.max_inference_tokens,
        l.kv_max_bytes,
        l.kv_max_keys,
        l.kv_max_value_bytes
    );
    for (k, f) in &m.config {
        let v = r.config.get(k).or(f.default.as_ref());
        println!(
            "  config {k} ({:?}{}) = {:?}  {}",
            f.kind,
            if f.required { ", required" } else { "" },
            v.map(String::as_str).unwrap_or(""),
            f.description
        );
    }
}

/// `llmos plugin list`.
pub(super) fn print_list(all: &[PluginRecord]) {
    if all.is_empty() {
        println!("no plugins installed (llmos plugin install FILE.wasm)");
    }
    for r in all {
        let m = &r.manifest;
        println!(
            "{:<20} {:<9} {:<13} {:<8} {}",
            m.name,
            m.version,
            m.world.name(),
            if r.enabled { "enabled" } else { "disabled" },
            r.effective()
        );
    }
}

/// `llmos plugin info`: the record and its kv usage.
pub(super) fn print_info_usage(r: &PluginRecord, u: Usage) {
    print_info(r);
    let l = r.limits();
    println!(
        "  kv usage   {} of {} bytes, {} of {} keys",
        u.bytes, l.kv_max_bytes, u.keys, l.kv_max_keys
    );
}

/// `llmos plugin grant`: the effective set, and a warning for grants not requested.
pub(super) fn print_grant(name: &str, r: &PluginRecord, unrequested: &CapabilitySet) {
    println!("{name}: effective {}", r.effective());
    if !unrequested.is_empty() {
        println!(
            "warning: {name}'s manifest does not request {unrequested}; the grant is kept but has no effect"
        );
    }
}

/// `llmos plugin audit`.
pub(super) fn print_audit(records: Vec<AuditRecord>) {
    for r in records {
        println!(
            "{} {:<10} {:<20} {:<28} {}",
            r.time,
            r.what,
            r.target,
            r.capability.unwrap_or_default(),
            r.detail
        );
    }
}

/// A secret's value: `--value`, else stdin without its final newline.
pub(super) fn secret_value(value: Option<String>) -> anyhow::Result<String> {
    match value {
        Some(v) => Ok(v),
        None => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            Ok(s.trim_end_matches(['\n', '\r']).to_string())
        }
    }
}

/// `KEY=VALUE` items to set and keys to unset; an error when both are empty.
pub(super) fn config_changes(
    values: &[String],
    unset: Vec<String>,
) -> anyhow::Result<BTreeMap<String, Option<String>>> {
    let mut changes: BTreeMap<String, Option<String>> = parse_kv(values)?
        .into_iter()
        .map(|(k, v)| (k, Some(v)))
        .collect();
    for k in unset {
        changes.insert(k, None);
    }
    if changes.is_empty() {
        bail!("nothing to change: give KEY=VALUE or --unset KEY");
    }
    Ok(changes)
}

/// Runs a `llmos plugin` subcommand against the data location `home`.
pub fn run(cmd: PluginCommand, home: &Path) -> anyhow::Result<()> {
    run_with(cmd, home, HostSettings::default())
}

/// Like [`run`], with the host settings of `[plugins]` in `llmos.toml`. While `llmos serve`
/// holds the store, the command goes to it over its admin socket (`cli/remote.rs`) and
/// prints the same output.
pub fn run_with(cmd: PluginCommand, home: &Path, settings: HostSettings) -> anyhow::Result<()> {
    // Authoring commands need no store: they work whether or not a server runs; keys and
    // signatures are files.
    let cmd = match cmd {
        PluginCommand::Author(a) => return super::author::run(a, home),
        PluginCommand::Keygen(a) => return super::sign::keygen(&a),
        PluginCommand::Sign(a) => return super::sign::sign(&a),
        PluginCommand::Dev(a) => return super::author::dev::run(&a, home, settings),
        other => other,
    };
    let cmd = match remote::plugin(cmd, home, &settings)? {
        remote::Forward::Done => return Ok(()),
        remote::Forward::Local(cmd) => cmd,
    };
    let host = match PluginHost::open(home, settings.clone(), None) {
        Ok(h) => h,
        // A server that started meanwhile, or one without its socket.
        Err(e) if remote::is_locked(&e) => {
            return remote::plugin_after_lock(cmd, home, &settings, e);
        }
        Err(e) => return Err(e.into()),
    };
    run_local(cmd, &host, home)
}

/// Runs a subcommand on a plugin host this process opened.
fn run_local(cmd: PluginCommand, host: &PluginHost, home: &Path) -> anyhow::Result<()> {
    match cmd {
        PluginCommand::Install(args) => {
            print_report("installed", &registry::install(host, &args.request()?)?);
        }
        PluginCommand::Upgrade {
            name,
            args,
            allow_publisher_change,
        } => {
            let req = args.request()?;
            let report = registry::upgrade_with(host, &name, &req, allow_publisher_change)?;
            print_report("upgraded", &report);
        }
        PluginCommand::List => print_list(&registry::list(host.store())?),
        PluginCommand::Info { name } => {
            let r = registry::info(host.store(), &name)?;
            let u = crate::plugins::state::kv_usage(host.store(), &name)?;
            print_info_usage(&r, u);
        }
        PluginCommand::Grant { name, caps } => {
            let (r, unrequested) = registry::grant(host, &name, &caps)?;
            print_grant(&name, &r, &unrequested);
        }
        PluginCommand::Revoke { name, caps } => {
            let r = registry::revoke(host, &name, &caps)?;
            println!("{name}: effective {}", r.effective());
        }
        PluginCommand::Enable { name } => {
            registry::set_enabled(host, &name, true)?;
            println!("{name} enabled");
        }
        PluginCommand::Disable { name } => {
            registry::set_enabled(host, &name, false)?;
            println!("{name} disabled");
        }
        PluginCommand::Configure {
            name,
            values,
            unset,
        } => {
            let changes = config_changes(&values, unset)?;
            print_info(&registry::configure(host, &name, &changes)?);
        }
        PluginCommand::Limits { name, limits } => {
            print_info(&registry::set_limits(host, &name, limits.into())?);
        }
        PluginCommand::Secret {
            name,
            secret,
            value,
        } => {
            registry::set_secret(host, &name, &secret, &secret_value(value)?)?;
            println!("secret {secret} stored for {name} (readable with secret:{secret} granted)");
        }
        PluginCommand::Remove { name } => {
            let r = registry::remove(host, &name)?;
            println!("removed {} {}", name, r.manifest.version);
        }
        PluginCommand::Author(a) => super::author::run(a, home)?,
        PluginCommand::Keygen(a) => super::sign::keygen(&a)?,
        PluginCommand::Sign(a) => super::sign::sign(&a)?,
        PluginCommand::Publisher(c) => super::sign::publisher(host, c)?,
        PluginCommand::Test(a) => super::plugin_test::run_on(host, &a)?,
        // `run_with` runs it before opening the store (the loop opens it per install).
        PluginCommand::Dev(_) => bail!("llmos plugin dev cannot run on an open store"),
        PluginCommand::Audit => print_audit(host.audit().records()?),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    /// The main CLI's global flags, which every subcommand inherits: ids must not clash.
    #[derive(Debug, Parser)]
    struct Cli {
        #[arg(long, global = true)]
        home: Option<PathBuf>,
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[arg(long, global = true)]
        providers: Option<String>,
        #[arg(long, global = true)]
        strict: bool,
        #[command(subcommand)]
        cmd: PluginCommand,
    }

    #[test]
    fn parses_next_to_the_global_flags() {
        Cli::command().debug_assert();
        let c = Cli::try_parse_from([
            "llmos",
            "install",
            "x.wasm",
            "--set",
            "url=http://h/",
            "--grant",
            "kv",
            "--grant",
            "http:h",
            "--config",
            "llmos.toml",
        ])
        .unwrap();
        assert_eq!(c.config.as_deref(), Some(Path::new("llmos.toml")));
        match c.cmd {
            PluginCommand::Install(a) => {
                assert_eq!(a.values, ["url=http://h/"]);
                assert_eq!(a.grants, ["kv", "http:h"]);
            }
            other => panic!("{other:?}"),
        }
    }
}

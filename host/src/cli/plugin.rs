//! `llmos plugin …`: thin wrappers over [`crate::plugins::registry`], which the HTTP admin
//! API shares.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::plugins::registry::{self, InstallReport, InstallRequest, PluginRecord};
use crate::plugins::{HostSettings, PluginHost};

/// Manage WebAssembly plugins.
#[derive(Debug, clap::Subcommand)]
pub enum PluginCommand {
    /// Validate and install a component with its manifest.
    Install {
        /// The component (`.wasm`, built for wasm32-wasip2).
        path: PathBuf,
        /// The manifest (default: manifest.toml next to the component, else <name>.toml).
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Grant a capability now (repeatable), e.g. `--grant inference:pii-ner`.
        #[arg(long = "grant", value_name = "CAP")]
        grants: Vec<String>,
        /// Refuse unless the component's sha256 is this (hex).
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
        /// Set a config value (repeatable); list items are separated by `;`.
        /// (`--set`, not `--config`: that is the global config-file flag.)
        #[arg(long = "set", value_name = "KEY=VALUE")]
        values: Vec<String>,
        /// Approve the manifest's limits above the host's defaults (refused without it).
        #[arg(long)]
        approve_limits: bool,
    },
    /// Replace an installed plugin by a new version; new capabilities must be granted again.
    Upgrade {
        /// The installed plugin.
        name: String,
        /// The new component.
        path: PathBuf,
        /// The new manifest.
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Grant a capability now (repeatable).
        #[arg(long = "grant", value_name = "CAP")]
        grants: Vec<String>,
        /// Refuse unless the component's sha256 is this (hex).
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
        /// Set a config value (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        values: Vec<String>,
        /// Approve the new manifest's limits above the host's defaults (refused without it).
        #[arg(long)]
        approve_limits: bool,
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
    /// Plugin authoring: `new`, `build` (cli/author).
    #[command(flatten)]
    Author(super::author::AuthorCommand),
}

fn parse_kv(items: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|i| {
            i.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .with_context(|| format!("config {i:?}: expected KEY=VALUE"))
        })
        .collect()
}

fn print_report(verb: &str, r: &InstallReport) {
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
}

/// Host interfaces imported without a matching request (whole-world toolchains).
fn print_denied_imports(r: &PluginRecord) {
    for d in &r.denied_imports {
        println!("  denied import {d}");
    }
}

fn print_info(r: &PluginRecord) {
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

/// Runs a `llmos plugin` subcommand against the data location `home`.
pub fn run(cmd: PluginCommand, home: &Path) -> anyhow::Result<()> {
    run_with(cmd, home, HostSettings::default())
}

/// Like [`run`], with the host settings of `[plugins]` in `llmos.toml`.
pub fn run_with(cmd: PluginCommand, home: &Path, settings: HostSettings) -> anyhow::Result<()> {
    let host = PluginHost::open(home, settings, None)?;
    match cmd {
        PluginCommand::Install {
            path,
            manifest,
            grants,
            sha256,
            values,
            approve_limits,
        } => {
            let req = InstallRequest {
                component: path,
                manifest,
                grants,
                sha256,
                config: parse_kv(&values)?,
                approve_limits,
            };
            print_report("installed", &registry::install(&host, &req)?);
        }
        PluginCommand::Upgrade {
            name,
            path,
            manifest,
            grants,
            sha256,
            values,
            approve_limits,
        } => {
            let req = InstallRequest {
                component: path,
                manifest,
                grants,
                sha256,
                config: parse_kv(&values)?,
                approve_limits,
            };
            print_report("upgraded", &registry::upgrade(&host, &name, &req)?);
        }
        PluginCommand::List => {
            let all = registry::list(host.store())?;
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
        PluginCommand::Info { name } => {
            let r = registry::info(host.store(), &name)?;
            print_info(&r);
            let (u, l) = (
                crate::plugins::state::kv_usage(host.store(), &name)?,
                r.limits(),
            );
            println!(
                "  kv usage   {} of {} bytes, {} of {} keys",
                u.bytes, l.kv_max_bytes, u.keys, l.kv_max_keys
            );
        }
        PluginCommand::Grant { name, caps } => {
            let (r, unrequested) = registry::grant(&host, &name, &caps)?;
            println!("{name}: effective {}", r.effective());
            if !unrequested.is_empty() {
                println!(
                    "warning: {name}'s manifest does not request {unrequested}; the grant is kept but has no effect"
                );
            }
        }
        PluginCommand::Revoke { name, caps } => {
            let r = registry::revoke(&host, &name, &caps)?;
            println!("{name}: effective {}", r.effective());
        }
        PluginCommand::Enable { name } => {
            registry::set_enabled(&host, &name, true)?;
            println!("{name} enabled");
        }
        PluginCommand::Disable { name } => {
            registry::set_enabled(&host, &name, false)?;
            println!("{name} disabled");
        }
        PluginCommand::Configure {
            name,
            values,
            unset,
        } => {
            let mut changes: BTreeMap<String, Option<String>> = parse_kv(&values)?
                .into_iter()
                .map(|(k, v)| (k, Some(v)))
                .collect();
            for k in unset {
                changes.insert(k, None);
            }
            if changes.is_empty() {
                bail!("nothing to change: give KEY=VALUE or --unset KEY");
            }
            print_info(&registry::configure(&host, &name, &changes)?);
        }
        PluginCommand::Limits {
            name,
            timeout_ms,
            memory_mib,
            max_output_bytes,
            max_host_calls,
            max_inference_calls,
            max_inference_tokens,
            kv_max_bytes,
            kv_max_keys,
            kv_max_value_bytes,
        } => {
            let o = crate::plugins::limits::LimitsRequest {
                timeout_ms,
                memory_mib,
                max_output_bytes,
                max_host_calls,
                max_inference_calls,
                max_inference_tokens,
                kv_max_bytes,
                kv_max_keys,
                kv_max_value_bytes,
            };
            print_info(&registry::set_limits(&host, &name, o)?);
        }
        PluginCommand::Secret {
            name,
            secret,
            value,
        } => {
            let value = match value {
                Some(v) => v,
                None => {
                    let mut s = String::new();
                    std::io::stdin().read_to_string(&mut s)?;
                    s.trim_end_matches(['\n', '\r']).to_string()
                }
            };
            registry::set_secret(&host, &name, &secret, &value)?;
            println!("secret {secret} stored for {name} (readable with secret:{secret} granted)");
        }
        PluginCommand::Remove { name } => {
            let r = registry::remove(&host, &name)?;
            println!("removed {} {}", name, r.manifest.version);
        }
        PluginCommand::Author(cmd) => super::author::run(cmd)?,
        PluginCommand::Audit => {
            for r in host.audit().records()? {
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
            PluginCommand::Install { values, grants, .. } => {
                assert_eq!(values, ["url=http://h/"]);
                assert_eq!(grants, ["kv", "http:h"]);
            }
            other => panic!("{other:?}"),
        }
    }
}

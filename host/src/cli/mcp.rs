//! `llmos mcp …`: the remote MCP servers whose tools join the catalogue (docs/tools.md §5).
//! Sent to the running server over its admin socket when one holds the store
//! (`POST|GET /admin/mcp`, `DELETE /admin/mcp/{name}`, `POST /admin/mcp/secrets/{name}`),
//! else done here on the store.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use super::remote::{self, Server};
use crate::plugins::mcp::{self, McpTools};

/// `llmos mcp …`.
#[derive(Debug, Subcommand)]
pub enum McpCommand {
    /// Register a remote MCP server (Streamable HTTP); its tools become `mcp:NAME:<tool>`.
    /// This grants the `http:` capability its URL needs: approve with --yes or at the prompt.
    Add {
        /// Its name in llmos (a-z, 0-9, _ and -).
        name: String,
        /// Its endpoint, e.g. https://example.com/mcp (http:// or https:// only).
        url: String,
        /// The llmos secret holding its bearer token (set it with `llmos mcp secret`).
        #[arg(long)]
        token_secret: Option<String>,
        /// Approve the capability without asking.
        #[arg(long)]
        yes: bool,
    },
    /// List the registered servers: reachable or not (with the reason), and their tools.
    List,
    /// Remove a registered server.
    Remove {
        /// Its name.
        name: String,
    },
    /// Store a token for MCP servers (read from stdin unless --value is given), sealed.
    Secret {
        /// The secret's name (what `--token-secret` names).
        name: String,
        /// The token (else stdin).
        #[arg(long)]
        value: Option<String>,
    },
}

/// A path segment escaped for a URI.
fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Asks the operator to approve the capability an MCP server's URL needs.
fn approve(name: &str, url: &str, yes: bool) -> Result<()> {
    let cap = mcp::capability_of(url)?;
    mcp::check_name(name)?;
    eprintln!(
        "MCP server {name} at {url}: llmos will connect to it and offer its tools as mcp:{name}:<tool> \
         (keys need tools:mcp:{name}:<tool> or tools:mcp:{name}:*).\nThis grants the capability {cap}."
    );
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!(
            "not approved: registering MCP server {name} grants the capability {cap}; pass --yes to approve it"
        );
    }
    eprint!("Approve {cap}? [y/N] ");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    stdin.lock().read_line(&mut line).context("reading the answer")?;
    if matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        bail!("not approved: MCP server {name} was not registered")
    }
}

/// Runs an `mcp` command.
pub fn run(cmd: McpCommand, home: &Path, config: &crate::config::McpConfig) -> Result<()> {
    config.check().map_err(anyhow::Error::msg)?;
    if let McpCommand::Add { name, url, yes, .. } = &cmd {
        approve(name, url, *yes)?;
    }
    if let Some(mut s) = Server::connect(home)? {
        return run_remote(&mut s, cmd);
    }
    let store = match crate::data::Store::open_home(home) {
        Ok(s) => s,
        Err(e) if remote::store_locked(&e) => {
            return match Server::connect(home)? {
                Some(mut s) => run_remote(&mut s, cmd),
                None => Err(remote::held(home, e.into())),
            };
        }
        Err(e) => return Err(e.into()),
    };
    let audit = crate::security::AuditLog::new(store.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Declared after the runtime and its guard: the connections close inside it.
    let _in_runtime = rt.enter();
    let tools = McpTools::with_config(store.clone(), config);
    match cmd {
        McpCommand::Add {
            name,
            url,
            token_secret,
            ..
        } => {
            let record = mcp::new_record(&store, &name, &url, token_secret.as_deref())?;
            let detail = format!("registered MCP server {url}, approved {}", record.capability);
            let cap = record.capability.clone();
            let status = rt.block_on(tools.add(record))?;
            audit.record("mcp-added", &name, Some(cap), detail)?;
            super::print(&json!(status));
        }
        McpCommand::List => {
            let list = rt.block_on(tools.status())?;
            super::print(&json!({"servers": list}));
        }
        McpCommand::Remove { name } => {
            let r = tools.remove(&name)?;
            audit.record("mcp-removed", &name, Some(r.capability), format!("removed MCP server {}", r.url))?;
            super::print(&json!({"removed": name}));
        }
        McpCommand::Secret { name, value } => {
            mcp::set_secret(&store, &name, &super::plugin::secret_value(value)?)?;
            audit.record("mcp-secret-set", &name, None, "operator set an MCP token secret")?;
            println!("secret {name} stored (sealed); name it with --token-secret {name}");
        }
    }
    Ok(())
}

fn run_remote(s: &mut Server, cmd: McpCommand) -> Result<()> {
    match cmd {
        McpCommand::Add {
            name,
            url,
            token_secret,
            ..
        } => {
            let body = json!({"name": name, "url": url, "token_secret": token_secret, "approve": true});
            let v: Value = s.post("/admin/mcp", &body)?;
            super::print(&v);
        }
        McpCommand::List => {
            let v: Value = s.get("/admin/mcp")?;
            super::print(&v);
        }
        McpCommand::Remove { name } => {
            let v = s.delete(&format!("/admin/mcp/{}", seg(&name)))?;
            super::print(&v);
        }
        McpCommand::Secret { name, value } => {
            let value = super::plugin::secret_value(value)?;
            let _: Value = s.post(&format!("/admin/mcp/secrets/{}", seg(&name)), &json!({"value": value}))?;
            println!("secret {name} stored (sealed); name it with --token-secret {name}");
        }
    }
    Ok(())
}

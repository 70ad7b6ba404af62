//! `llmos tools …`: the tool catalogue from the command line (docs/tools.md §2). While a
//! server runs (it holds the store) the commands go to it over its admin socket
//! (`GET /v1/tools`, `POST /v1/tools/{id}/invoke`); otherwise this process opens the plugin
//! host and the collections itself.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::remote::{self, Server};
use crate::api::tools::tool_json;
use crate::core::Core;
use crate::data::collections::Collections;
use crate::plugins::CollectionsBackend;
use crate::plugins::gateway::Gateway;
use crate::plugins::plugin_tools::kind;
use crate::plugins::tools::ToolCallCtx;

/// The tools of installed `tool` plugins (and, later, registered MCP servers).
#[derive(Debug, clap::Subcommand)]
pub enum ToolsCommand {
    /// List the tools: id, where it comes from, description.
    List {
        /// Print the list as JSON (with each tool's parameter schema).
        #[arg(long)]
        json: bool,
    },
    /// Call a tool with arguments (a JSON object) and print its result.
    Call {
        /// The tool's id (see `llmos tools list`).
        id: String,
        /// The arguments, a JSON object matching the tool's schema [default: {}].
        #[arg(default_value = "{}")]
        arguments: String,
    },
}

/// Runs a `tools` command.
pub fn run(cmd: ToolsCommand, core: Core) -> Result<()> {
    let home = core.paths().home.clone();
    if let Some(mut server) = Server::connect(&home)? {
        return remote_run(&mut server, cmd);
    }
    let core = Arc::new(core);
    let gateway = match Gateway::open(core.clone(), None) {
        Ok(g) => g,
        Err(e) if remote::is_locked(&e) => {
            return match Server::connect(&home)? {
                Some(mut s) => remote_run(&mut s, cmd),
                None => Err(remote::held(&home, e.into())),
            };
        }
        Err(e) => return Err(e).context("cannot open the plugin host"),
    };
    let collections = Arc::new(Collections::new(gateway.host.store().clone()));
    gateway.host.set_data(Arc::new(CollectionsBackend::new(
        core,
        collections,
        &gateway.host,
    )));
    match cmd {
        ToolsCommand::List { json } => {
            let tools: Vec<Value> = gateway.tools.list().iter().map(tool_json).collect();
            print_list(&tools, json);
            Ok(())
        }
        ToolsCommand::Call { id, arguments } => {
            let args = parse_arguments(&arguments)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let ctx = ToolCallCtx {
                request_id: format!("cli-{}", std::process::id()),
                key_id: None,
                model: String::new(),
                route: "cli".into(),
            };
            let out = rt.block_on(gateway.tools.invoke(&id, args, ctx));
            let flushed = gateway.host.store().flush();
            match out {
                Ok(result) => {
                    println!("{result}");
                    flushed.context("flushing the store")?;
                    Ok(())
                }
                Err(e) => bail!("tool {id} ({}): {e}", kind(&e)),
            }
        }
    }
}

fn parse_arguments(text: &str) -> Result<Value> {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(other) => bail!("the arguments are {other}: give a JSON object, e.g. '{{\"x\": 1}}'"),
        Err(e) => bail!("the arguments are not JSON ({e}): give a JSON object, e.g. '{{\"x\": 1}}'"),
    }
}

fn remote_run(s: &mut Server, cmd: ToolsCommand) -> Result<()> {
    match cmd {
        ToolsCommand::List { json } => {
            let v: Value = s.get("/v1/tools")?;
            let tools = v
                .get("data")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            print_list(&tools, json);
            Ok(())
        }
        ToolsCommand::Call { id, arguments } => {
            let args = parse_arguments(&arguments)?;
            let uri = format!("/v1/tools/{}/invoke", remote::seg(&id));
            let v: Value = s.post(&uri, &json!({"arguments": args}))?;
            if let Some(r) = v.get("result").and_then(Value::as_str) {
                println!("{r}");
                return Ok(());
            }
            let text = |k: &str| {
                v.pointer(&format!("/error/{k}"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            bail!("tool {id} ({}): {}", text("kind"), text("message"))
        }
    }
}

/// One line per tool (id, source, description), or the JSON list.
fn print_list(tools: &[Value], json: bool) {
    if json {
        println!("{:#}", Value::Array(tools.to_vec()));
        return;
    }
    if tools.is_empty() {
        println!("no tools (install a tool plugin: `llmos plugin install FILE.wasm`)");
        return;
    }
    for t in tools {
        let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
        let source = t.get("source");
        let from = match s(source.and_then(|x| x.get("kind"))).as_str() {
            "plugin" => format!(
                "plugin {} {}",
                s(source.and_then(|x| x.get("plugin"))),
                s(source.and_then(|x| x.get("version")))
            ),
            "mcp" => format!("mcp {}", s(source.and_then(|x| x.get("server")))),
            other => other.to_string(),
        };
        let description = s(t.get("description"));
        let first = description.lines().next().unwrap_or_default();
        println!("{}\t{from}\t{first}", s(t.get("id")));
    }
}

//! [`PluginTools`]: the tools of the installed `tool` plugins, as a [`ToolProvider`] of the
//! catalogue (docs/tools.md §2).
//!
//! The list comes from the plugins' records (each keeps the tools its `tools()` returned at
//! install or upgrade), cached until the plugin host's generation changes: an install,
//! upgrade, enable, disable or removal is seen by the next listing, without a plugin call.
//! A disabled plugin's tools are not listed.

use std::sync::Mutex;
use std::time::Instant;

use serde_json::Value;

use super::bindings::types::{Error as GuestError, ToolCall};
use super::registry;
use super::tools::{ToolCallCtx, ToolError, ToolFuture, ToolProvider, ToolSource, ToolSpec};
use super::{PluginError, PluginHost, RequestContext, World};
use crate::security::audit::AuditEvent;

/// The tools listed at one host generation, each with the plugin offering it.
type Listing = (u64, Vec<(ToolSpec, String)>);

/// The `tool` plugins of a plugin host.
pub struct PluginTools {
    host: PluginHost,
    /// The listing at the host's last generation seen.
    cache: Mutex<Option<Listing>>,
}

impl std::fmt::Debug for PluginTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginTools").finish_non_exhaustive()
    }
}

impl PluginTools {
    /// Over `host`.
    pub fn new(host: PluginHost) -> Self {
        Self {
            host,
            cache: Mutex::new(None),
        }
    }

    /// The tools with the plugin offering each, from the cache when the host is unchanged.
    fn entries(&self) -> Vec<(ToolSpec, String)> {
        let generation = self.host.generation();
        if let Some((g, tools)) = &*self.cache.lock().unwrap_or_else(|e| e.into_inner())
            && *g == generation
        {
            return tools.clone();
        }
        let records = match registry::list(self.host.store()) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("listing the tool plugins: {e}");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for r in records {
            if r.manifest.world != World::Tool || !r.enabled {
                continue;
            }
            for t in &r.tools {
                out.push((
                    ToolSpec {
                        id: t.name.clone(),
                        description: t.description.clone(),
                        parameters: t.parameters.clone(),
                        source: ToolSource::Plugin {
                            plugin: r.manifest.name.clone(),
                            version: r.manifest.version.clone(),
                        },
                    },
                    r.manifest.name.clone(),
                ));
            }
        }
        *self.cache.lock().unwrap_or_else(|e| e.into_inner()) = Some((generation, out.clone()));
        out
    }

    async fn call(&self, id: &str, arguments: Value, ctx: ToolCallCtx) -> Result<String, ToolError> {
        let Some(plugin) = self
            .entries()
            .into_iter()
            .find(|(t, _)| t.id == id)
            .map(|(_, p)| p)
        else {
            return Err(ToolError::Unavailable(format!(
                "tool {id} is no longer offered (its plugin was removed or disabled)"
            )));
        };
        let call = ToolCall {
            context: RequestContext {
                request_id: ctx.request_id.clone(),
                key_id: ctx.key_id.clone(),
                model: ctx.model.clone(),
                task: "tool".into(),
                route: ctx.route.clone(),
            },
            name: id.to_string(),
            arguments_json: arguments.to_string(),
        };
        let start = Instant::now();
        let result = self
            .host
            .invoke_async(&plugin, call)
            .await
            .map_err(|e| tool_error(id, e));
        self.audit(&plugin, id, &ctx, &result, start).await;
        result
    }

    /// Records the call in the audit log (off the executor: an audit write is durable).
    async fn audit(
        &self,
        plugin: &str,
        id: &str,
        ctx: &ToolCallCtx,
        result: &Result<String, ToolError>,
        start: Instant,
    ) {
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        let who = ctx
            .key_id
            .clone()
            .unwrap_or_else(crate::security::audit::current_actor);
        let (outcome, detail) = match result {
            Ok(r) => (
                "ok".to_string(),
                format!("tool {id} on {} ({ms:.1} ms): {} bytes", ctx.route, r.len()),
            ),
            Err(e) => (
                format!("error: {}", kind(e)),
                format!("tool {id} on {} ({ms:.1} ms): {e}", ctx.route),
            ),
        };
        let event = AuditEvent::new("tool-call", plugin)
            .by(&who)
            .outcome(outcome)
            .capability(Some(format!("tools:{id}")))
            .detail(detail);
        let audit = self.host.audit().clone();
        let written = tokio::task::spawn_blocking(move || audit.event(event)).await;
        match written {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!("audit log: tool call {id}: {e}"),
            Err(e) => tracing::error!("audit log: tool call {id}: {e}"),
        }
    }
}

/// The name of a [`ToolError`]'s kind (`limit_exceeded`, …), as the API and the audit log
/// show it.
pub fn kind(e: &ToolError) -> &'static str {
    match e {
        ToolError::NotFound(_) => "not_found",
        ToolError::Denied(_) => "denied",
        ToolError::InvalidArguments(_) => "invalid_arguments",
        ToolError::LimitExceeded(_) => "limit_exceeded",
        ToolError::Unavailable(_) => "unavailable",
        ToolError::Failed(_) => "failed",
    }
}

/// A failed plugin call as the tool error docs/tools.md §2 names.
fn tool_error(id: &str, e: PluginError) -> ToolError {
    match e {
        PluginError::Disabled(_) | PluginError::NotInstalled(_) | PluginError::Busy { .. } => {
            ToolError::Unavailable(format!("tool {id}: {e}"))
        }
        e @ PluginError::Limit { .. } => ToolError::LimitExceeded(format!("tool {id}: {e}")),
        PluginError::Guest { plugin, error, hint } => match error {
            GuestError::Denied(cap) => {
                ToolError::Denied(format!("tool {id} (plugin {plugin}) needs {cap}{hint}"))
            }
            GuestError::InvalidInput(m) => ToolError::InvalidArguments(format!("tool {id}: {m}")),
            GuestError::LimitExceeded(m) => ToolError::LimitExceeded(format!("tool {id}: {m}")),
            GuestError::Unavailable(m) => ToolError::Unavailable(format!("tool {id}: {m}")),
            GuestError::NotFound(m) => ToolError::Failed(format!("tool {id}: not found: {m}")),
        },
        e => ToolError::Failed(format!("tool {id}: {e}")),
    }
}

impl ToolProvider for PluginTools {
    fn tools(&self) -> Vec<ToolSpec> {
        self.entries().into_iter().map(|(t, _)| t).collect()
    }

    fn invoke<'a>(&'a self, id: &'a str, arguments: Value, ctx: ToolCallCtx) -> ToolFuture<'a> {
        Box::pin(self.call(id, arguments, ctx))
    }
}

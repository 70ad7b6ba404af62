//! llmos as an MCP client (docs/tools.md §5): remote MCP servers registered with `llmos mcp
//! add NAME URL`, whose tools join the catalogue as `mcp:<server>:<tool>` through
//! [`McpTools`].
//!
//! Only Streamable HTTP servers (`http://` or `https://` URLs); no process is ever spawned.
//! Requests go to the registered URL only: redirects are not followed, and every request has
//! a timeout. A token, when the registration names one, is read from an llmos secret (sealed
//! in the store, set with `llmos mcp secret NAME`) and sent as `Authorization: Bearer`.
//! Registrations persist in the store (sealed like every value); the tool lists are cached
//! in memory, fetched when the server starts, when a server is added, and again when a call
//! finds a tool missing or the connection gone.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, ContentBlock};
use rmcp::service::{RoleClient, RunningService, ServiceExt};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::data::{Store, StoreError, Tree};
use crate::plugins::tools::{ToolCallCtx, ToolError, ToolFuture, ToolProvider, ToolSource, ToolSpec};
use crate::security::capability::{Capability, HttpScheme};

/// The plugin-secrets namespace of MCP tokens (`@` is never in a plugin's name).
const SECRETS_OWNER: &str = "@mcp";

/// Source of [`Conn::serial`].
static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A wait, as error messages state it (`500 ms`, `10 s`).
fn shown(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// A registered MCP server, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct McpServerRecord {
    /// Its name in llmos (`mcp:<name>:<tool>`).
    pub name: String,
    /// The Streamable HTTP endpoint, e.g. `http://127.0.0.1:8000/mcp`.
    pub url: String,
    /// The llmos secret holding its bearer token, if it needs one.
    pub token_secret: Option<String>,
    /// The `http:` capability the URL needs, as approved by the operator.
    pub capability: String,
    /// When it was registered (Unix ms).
    pub added_ms: u64,
}

/// A registered server and how it answers now, for `llmos mcp list` and `GET /admin/mcp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct McpServerStatus {
    /// The registration.
    #[serde(flatten)]
    pub record: McpServerRecord,
    /// `connected`, `unreachable` or `not connected` (not tried yet).
    pub state: String,
    /// Why it is unreachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Its tools' ids (`mcp:<server>:<tool>`), when connected.
    pub tools: Vec<String>,
}

/// What was wrong with a registration.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// A bad name, URL or secret name.
    #[error("{0}")]
    Invalid(String),
    /// No server of that name.
    #[error("no MCP server named {0:?} is registered (`llmos mcp list` shows them)")]
    NotFound(String),
    /// A server of that name exists.
    #[error("an MCP server named {0:?} is registered already; remove it first (`llmos mcp remove {0}`)")]
    Exists(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks a server's name: `^[a-z0-9][a-z0-9_-]{0,63}$` without `__` (tool ids are
/// `mcp:<name>:<tool>`, and the model sees `mcp__<name>__<tool>`).
pub fn check_name(name: &str) -> Result<(), McpError> {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && !name.contains("__");
    if ok {
        Ok(())
    } else {
        Err(McpError::Invalid(format!(
            "MCP server name {name:?}: accepted 1 to 64 characters a-z, 0-9, _ and -, starting with a letter or digit, without `__`"
        )))
    }
}

/// The `http:` capability an MCP server's URL needs (scheme, host and port), or why the URL
/// is refused (only `http://` and `https://` URLs with a host; no user name or password).
pub fn capability_of(url: &str) -> Result<Capability, McpError> {
    let bad = |why: &str| {
        McpError::Invalid(format!(
            "MCP server URL {url:?}: {why}; accepted: an http:// or https:// URL of a Streamable HTTP endpoint, e.g. https://example.com/mcp"
        ))
    };
    let uri: http::Uri = url.parse().map_err(|e| bad(&format!("not a URL ({e})")))?;
    let scheme = match uri.scheme_str() {
        Some("http") => HttpScheme::Http,
        Some("https") => HttpScheme::Https,
        Some(other) => return Err(bad(&format!("scheme {other:?} is not served (no process is ever spawned)"))),
        None => return Err(bad("no scheme")),
    };
    let Some(authority) = uri.authority() else {
        return Err(bad("no host"));
    };
    if authority.as_str().contains('@') {
        return Err(bad("a user name or password in the URL is refused (use --token-secret)"));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok(Capability::Http {
        scheme: Some(scheme),
        host,
        port: Some(authority.port_u16().unwrap_or_else(|| scheme.default_port())),
    })
}

/// The store key of an MCP token secret.
fn secret_key(name: &str) -> Vec<u8> {
    crate::plugins::state::secret_key(SECRETS_OWNER, name)
}

/// Checks a secret's name (the same characters as a server's name, `.` too).
pub fn check_secret_name(name: &str) -> Result<(), McpError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(McpError::Invalid(format!(
            "secret name {name:?}: accepted 1 to 128 characters A-Z, a-z, 0-9, ., _ and -"
        )))
    }
}

/// Stores (sealed) the MCP token secret `name`.
pub fn set_secret(store: &Store, name: &str, value: &str) -> Result<(), McpError> {
    check_secret_name(name)?;
    if value.trim().is_empty() {
        return Err(McpError::Invalid(format!(
            "secret {name}: the value is empty; give the token (on stdin or with --value)"
        )));
    }
    store.put(Tree::PluginSecrets, &secret_key(name), value.trim().as_bytes())?;
    Ok(())
}

fn read_secret(store: &Store, name: &str) -> Result<Option<String>, StoreError> {
    Ok(store
        .get(Tree::PluginSecrets, &secret_key(name))?
        .map(|v| String::from_utf8_lossy(&v).into_owned()))
}

/// The registered servers, by name.
pub fn records(store: &Store) -> Result<Vec<McpServerRecord>, McpError> {
    let mut out = Vec::new();
    for (_, v) in store.values(Tree::McpServers, b"")? {
        match serde_json::from_slice::<McpServerRecord>(&v) {
            Ok(r) => out.push(r),
            Err(e) => tracing::error!("an MCP server registration cannot be read: {e}"),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Checks and builds a registration (not stored): name, URL, and the token secret, which
/// must be set already.
pub fn new_record(
    store: &Store,
    name: &str,
    url: &str,
    token_secret: Option<&str>,
) -> Result<McpServerRecord, McpError> {
    check_name(name)?;
    let capability = capability_of(url)?.to_string();
    if let Some(s) = token_secret {
        check_secret_name(s)?;
        if read_secret(store, s)?.is_none() {
            return Err(McpError::Invalid(format!(
                "the token secret {s:?} is not set: set it first with `llmos mcp secret {s}` (the token on stdin)"
            )));
        }
    }
    if store.get(Tree::McpServers, name.as_bytes())?.is_some() {
        return Err(McpError::Exists(name.to_string()));
    }
    Ok(McpServerRecord {
        name: name.to_string(),
        url: url.to_string(),
        token_secret: token_secret.map(str::to_string),
        capability,
        added_ms: crate::security::audit::now_ms(),
    })
}

type Client = RunningService<RoleClient, ListChanged>;

/// The connections by server name (shared with each connection's [`ListChanged`]).
type Conns = Arc<RwLock<BTreeMap<String, Arc<Conn>>>>;

/// One registered server's connection and cached tools.
struct Conn {
    record: McpServerRecord,
    client: Option<Arc<Client>>,
    tools: Vec<rmcp::model::Tool>,
    error: Option<String>,
    /// Which connection this is (a reconnection is another).
    serial: u64,
}

/// The client side of one connection: on the server's `notifications/tools/list_changed`
/// it lists the server's tools again and replaces the cached list (if the connection is
/// still the current one), so new tools are offered without waiting for a call to name one.
struct ListChanged {
    server: String,
    serial: u64,
    conns: Conns,
    timeout: Duration,
}

impl rmcp::ClientHandler for ListChanged {
    async fn on_tool_list_changed(&self, context: rmcp::service::NotificationContext<RoleClient>) {
        let server = &self.server;
        let tools = match tokio::time::timeout(self.timeout, context.peer.list_all_tools()).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                tracing::warn!(server, "MCP server changed its tools, and listing them failed: {e}");
                return;
            }
            Err(_) => {
                tracing::warn!(server, "MCP server changed its tools, and did not list them in {}", shown(self.timeout));
                return;
            }
        };
        let mut conns = self.conns.write().unwrap_or_else(|e| e.into_inner());
        let Some(current) = conns.get(server).filter(|c| c.serial == self.serial).cloned() else {
            return;
        };
        tracing::info!(server, tools = tools.len(), "MCP server changed its tools: list refreshed");
        let refreshed = Conn {
            record: current.record.clone(),
            client: current.client.clone(),
            tools,
            error: current.error.clone(),
            serial: current.serial,
        };
        conns.insert(server.clone(), Arc::new(refreshed));
    }
}

impl Conn {
    fn status(&self) -> McpServerStatus {
        let state = match (&self.client, &self.error) {
            (Some(_), _) => "connected",
            (None, Some(_)) => "unreachable",
            (None, None) => "not connected",
        };
        McpServerStatus {
            record: self.record.clone(),
            state: state.into(),
            reason: self.error.clone(),
            tools: self
                .tools
                .iter()
                .map(|t| format!("mcp:{}:{}", self.record.name, t.name))
                .collect(),
        }
    }
}

/// The tools of the registered MCP servers: a [`ToolProvider`] in `Gateway::tools`.
pub struct McpTools {
    store: Store,
    conns: Conns,
    /// `[mcp] connect_timeout_ms`.
    connect_timeout: Duration,
    /// `[mcp] call_timeout_ms`.
    call_timeout: Duration,
}

impl std::fmt::Debug for McpTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpTools")
            .field("servers", &self.conns().keys().cloned().collect::<Vec<_>>())
            .finish()
    }
}

impl McpTools {
    /// The provider over the store's registrations; nothing is connected until
    /// [`McpTools::start`].
    /// With the default timeouts of `[mcp]`.
    pub fn new(store: Store) -> Self {
        Self::with_config(store, &crate::config::McpConfig::default())
    }

    /// With the timeouts of `config` (`[mcp]`).
    pub fn with_config(store: Store, config: &crate::config::McpConfig) -> Self {
        Self {
            store,
            conns: Conns::default(),
            connect_timeout: Duration::from_millis(config.connect_timeout_ms),
            call_timeout: Duration::from_millis(config.call_timeout_ms),
        }
    }

    fn conns(&self) -> BTreeMap<String, Arc<Conn>> {
        self.conns.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, conn: Conn) -> Arc<Conn> {
        let conn = Arc::new(conn);
        self.conns
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(conn.record.name.clone(), conn.clone());
        conn
    }

    /// Connects to every registered server and caches its tools (an unreachable one is
    /// listed with the reason). Needs a tokio runtime.
    pub async fn start(&self) -> Result<(), McpError> {
        let records = records(&self.store)?;
        let tries = records.into_iter().map(|r| self.connect(r));
        for c in futures_join_all(tries).await {
            self.set(c);
        }
        Ok(())
    }

    /// Registers `record` (checked by [`new_record`]), connects to it and caches its tools.
    pub async fn add(&self, record: McpServerRecord) -> Result<McpServerStatus, McpError> {
        if self.store.get(Tree::McpServers, record.name.as_bytes())?.is_some() {
            return Err(McpError::Exists(record.name));
        }
        let bytes = serde_json::to_vec(&record)
            .map_err(|e| McpError::Invalid(format!("cannot encode the registration: {e}")))?;
        self.store.put(Tree::McpServers, record.name.as_bytes(), &bytes)?;
        let conn = self.connect(record).await;
        Ok(self.set(conn).status())
    }

    /// Removes a registration and closes its connection.
    pub fn remove(&self, name: &str) -> Result<McpServerRecord, McpError> {
        let Some(v) = self.store.get(Tree::McpServers, name.as_bytes())? else {
            return Err(McpError::NotFound(name.to_string()));
        };
        let record: McpServerRecord = serde_json::from_slice(&v)
            .map_err(|e| McpError::Invalid(format!("the registration of {name} cannot be read: {e}")))?;
        self.store.remove(Tree::McpServers, name.as_bytes())?;
        let gone = self
            .conns
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        if let Some(c) = gone.and_then(|c| c.client.clone())
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            // Closing ends the session (its DELETE); not waited for.
            rt.spawn(async move {
                if let Ok(c) = Arc::try_unwrap(c) {
                    let _ = c.cancel().await;
                }
            });
        }
        Ok(record)
    }

    /// Every registration and how it answers (servers not tried yet are tried now).
    pub async fn status(&self) -> Result<Vec<McpServerStatus>, McpError> {
        let mut out = Vec::new();
        for r in records(&self.store)? {
            let known = self.conns().get(&r.name).cloned();
            let conn = match known {
                Some(c) if c.record == r => c,
                _ => {
                    let c = self.connect(r).await;
                    self.set(c)
                }
            };
            out.push(conn.status());
        }
        Ok(out)
    }

    /// Connects to a server: initialize, then list its tools. Never fails: an unreachable
    /// server is a [`Conn`] with the reason.
    async fn connect(&self, record: McpServerRecord) -> Conn {
        let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self.try_connect(&record, serial).await {
            Ok((client, tools)) => Conn {
                record,
                client: Some(Arc::new(client)),
                tools,
                error: None,
                serial,
            },
            Err(e) => {
                tracing::warn!(server = %record.name, url = %record.url, "MCP server unreachable: {e}");
                Conn {
                    record,
                    client: None,
                    tools: Vec::new(),
                    error: Some(e),
                    serial,
                }
            }
        }
    }

    async fn try_connect(
        &self,
        record: &McpServerRecord,
        serial: u64,
    ) -> Result<(Client, Vec<rmcp::model::Tool>), String> {
        let http = http_client(self.connect_timeout)?;
        let mut config = StreamableHttpClientTransportConfig::with_uri(record.url.as_str());
        if let Some(s) = &record.token_secret {
            let token = read_secret(&self.store, s)
                .map_err(|e| format!("reading the token secret {s}: {e}"))?
                .ok_or_else(|| format!("the token secret {s} is not set (`llmos mcp secret {s}`)"))?;
            config = config.auth_header(token);
        }
        let transport = StreamableHttpClientTransport::with_client(http, config);
        let url = &record.url;
        let handler = ListChanged {
            server: record.name.clone(),
            serial,
            conns: self.conns.clone(),
            timeout: self.connect_timeout,
        };
        let wait = self.connect_timeout;
        let client = tokio::time::timeout(wait, handler.serve(transport))
            .await
            .map_err(|_| format!("no answer from {url} in {} ([mcp] connect_timeout_ms)", shown(wait)))?
            .map_err(|e| format!("cannot initialize an MCP session with {url}: {e}"))?;
        let tools = tokio::time::timeout(wait, client.list_all_tools())
            .await
            .map_err(|_| format!("{url} did not list its tools in {} ([mcp] connect_timeout_ms)", shown(wait)))?
            .map_err(|e| format!("{url} did not list its tools: {e}"))?;
        Ok((client, tools))
    }

    async fn call(&self, server: &str, tool: &str, arguments: Value) -> Result<String, ToolError> {
        let Some(mut conn) = self.conns().get(server).cloned() else {
            return Err(ToolError::NotFound(format!("no MCP server named {server:?} is registered")));
        };
        if conn.client.is_none() {
            // Unreachable before: try again now.
            let c = self.connect(conn.record.clone()).await;
            conn = self.set(c);
        }
        let Some(client) = conn.client.clone() else {
            let why = conn.error.clone().unwrap_or_default();
            return Err(ToolError::Unavailable(format!("MCP server {server} is unreachable: {why}")));
        };
        if !conn.tools.iter().any(|t| t.name == tool) {
            // A tool added since the listing: refresh once.
            let c = self.connect(conn.record.clone()).await;
            let c = self.set(c);
            if !c.tools.iter().any(|t| t.name == tool) {
                return Err(ToolError::NotFound(format!(
                    "MCP server {server} has no tool {tool:?} (it has {})",
                    c.tools.iter().map(|t| t.name.to_string()).collect::<Vec<_>>().join(", ")
                )));
            }
            return Box::pin(self.call(server, tool, arguments)).await;
        }
        let Value::Object(args) = arguments else {
            return Err(ToolError::InvalidArguments("the arguments must be a JSON object".into()));
        };
        let params = CallToolRequestParams::new(tool.to_string()).with_arguments(args);
        let url = &conn.record.url;
        let result = match tokio::time::timeout(self.call_timeout, client.call_tool(params)).await {
            Err(_) => {
                return Err(ToolError::Unavailable(format!(
                    "MCP server {server} ({url}) did not answer in {} ([mcp] call_timeout_ms)",
                    shown(self.call_timeout)
                )));
            }
            Ok(Err(e)) => {
                // The session may be gone (server restarted): reconnect for the next call.
                let c = self.connect(conn.record.clone()).await;
                self.set(c);
                return Err(ToolError::Unavailable(format!("MCP server {server} ({url}): {e}")));
            }
            Ok(Ok(r)) => r,
        };
        let text = result_text(&result);
        if result.is_error == Some(true) {
            Err(ToolError::Failed(text))
        } else {
            Ok(text)
        }
    }
}

/// Joins futures one after the other (connections are few; each has its timeout).
async fn futures_join_all<F: std::future::Future>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<F> = futs.into_iter().collect();
    let mut out = Vec::with_capacity(handles.len());
    for f in handles {
        out.push(f.await);
    }
    out
}

/// A tool result as text: its text blocks joined, or its structured content; other
/// blocks (images, resources) are named.
fn result_text(r: &rmcp::model::CallToolResult) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in &r.content {
        match c {
            ContentBlock::Text(t) => parts.push(t.text.clone()),
            other => parts.push(serde_json::to_string(other).unwrap_or_default()),
        }
    }
    if parts.is_empty()
        && let Some(v) = &r.structured_content
    {
        return v.to_string();
    }
    parts.join("\n")
}

/// The HTTP client of MCP servers: no redirects (requests go to the registered URL only),
/// rustls over ring with the webpki roots, timeouts on connect and on each request.
/// The HTTP client of one connection. No total timeout per request: the server's stream of
/// notifications (a long GET) must stay open; each connect, listing and call has its own
/// timeout (`[mcp]`).
fn http_client(connect_timeout: Duration) -> Result<reqwest013::Client, String> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest013::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest013::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(connect_timeout)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

impl ToolProvider for McpTools {
    fn tools(&self) -> Vec<ToolSpec> {
        let mut out = Vec::new();
        for (server, c) in self.conns() {
            for t in &c.tools {
                out.push(ToolSpec {
                    id: format!("mcp:{server}:{}", t.name),
                    description: t.description.as_deref().unwrap_or_default().to_string(),
                    parameters: Value::Object((*t.input_schema).clone()),
                    source: ToolSource::Mcp {
                        server: server.clone(),
                        tool: t.name.to_string(),
                    },
                });
            }
        }
        out
    }

    fn invoke<'a>(&'a self, id: &'a str, arguments: Value, ctx: ToolCallCtx) -> ToolFuture<'a> {
        Box::pin(async move {
            let Some((server, tool)) = id.strip_prefix("mcp:").and_then(|r| r.split_once(':')) else {
                return Err(ToolError::NotFound(format!("{id:?} is not an MCP tool id (mcp:<server>:<tool>)")));
            };
            tracing::debug!(server, tool, request = %ctx.request_id, "MCP tool call");
            self.call(server, tool, arguments).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_urls_are_checked() {
        assert!(check_name("wiki").is_ok() && check_name("a-b_c9").is_ok());
        for bad in ["", "Wiki", "a:b", "a__b", "-a", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(
            capability_of("http://127.0.0.1:8000/mcp").unwrap().to_string(),
            "http:http://127.0.0.1:8000"
        );
        assert_eq!(
            capability_of("https://Example.com/mcp").unwrap().to_string(),
            "http:https://example.com:443"
        );
        for bad in ["ftp://x/mcp", "stdio:python server.py", "/mcp", "http://u:p@host/mcp", "not a url"] {
            let e = capability_of(bad).unwrap_err().to_string();
            assert!(e.contains("accepted: an http:// or https:// URL"), "{bad}: {e}");
        }
    }
}

//! The HTTP endpoint: OpenAI-compatible and KServe-v2-compatible routes, task routes,
//! metrics and health, on axum (hyper 1) with its own tokio runtime. Model code never runs
//! here: handlers submit to the models' inference threads and await the answer.

pub mod access;
pub mod admin;
pub mod anonymize;
pub mod console;
pub mod data;
pub mod error;
pub mod generate;
pub(crate) mod grpc;
pub mod html;
pub mod kserve;
pub mod local;
pub mod mcp;
pub mod metrics;
pub mod openai;
pub mod openapi;
pub mod panic;
pub mod routes;
pub mod server;
pub mod strict;
pub mod tools;
pub mod train;
pub mod zero_shot;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::api::error::ApiError;
use crate::api::metrics::Metrics;
use crate::api::routes::{Access, ApiRoute};
use crate::core::text::{Input, Truncation};
use crate::core::{Core, Model};
use crate::plugins::gateway::{self, Gateway, GatewayError, Routed, TextTask};
use crate::plugins::pipeline::PipelineError;
use crate::security::keys::{KeyRecord, Keys};
use std::sync::atomic::{AtomicBool, Ordering};

/// Request limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body in bytes.
    pub body_bytes: usize,
    /// Longest a request may take before 504.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            body_bytes: 2 * 1024 * 1024,
            timeout: Duration::from_secs(60),
        }
    }
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct AppState {
    /// Models.
    pub core: Arc<Core>,
    /// Plugins and pipelines.
    pub gateway: Arc<Gateway>,
    /// Counters.
    pub metrics: Metrics,
    /// Limits.
    pub limits: Limits,
    /// Unix time the server started (OpenAI's `created`).
    pub started: u64,
    /// API keys.
    pub keys: Keys,
    /// Collections and their jobs.
    pub data: data::DataState,
    /// Whether any usable key exists (cached; refreshed when keys change).
    keys_active: Arc<AtomicBool>,
    /// The address the server listens on; `None` (not set) is never open.
    bind: Option<SocketAddr>,
    /// `/mcp`'s service and tool list, built once (docs/tools.md §4).
    pub(crate) mcp: mcp::McpCache,
}

impl AppState {
    /// State over a gateway (its core and plugin host).
    pub fn new(gateway: Arc<Gateway>, limits: Limits) -> Self {
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let keys = Keys::new(gateway.host.store().clone());
        let active = keys.any_active().unwrap_or(true);
        let keys_active = Arc::new(AtomicBool::new(active));
        // Replicas sharing the store: a key created or revoked elsewhere changes openness.
        let (flag, k) = (Arc::downgrade(&keys_active), keys.clone());
        gateway.host.store().on_change(move |tree| {
            if (tree == crate::data::Tree::ApiKeys.name() || tree == "*")
                && let Some(flag) = flag.upgrade()
            {
                flag.store(k.any_active().unwrap_or(true), Ordering::Relaxed);
            }
        });
        let data = data::DataState::new(gateway.host.store().clone());
        // Plugins search these collections (`data.search`, under `data:<collection>`).
        gateway
            .host
            .set_data(Arc::new(crate::plugins::CollectionsBackend::new(
                gateway.core.clone(),
                data.collections.clone(),
                &gateway.host,
            )));
        Self {
            keys,
            data,
            keys_active,
            core: gateway.core.clone(),
            gateway,
            metrics: Metrics::default(),
            limits,
            started,
            bind: None,
            mcp: mcp::McpCache::default(),
        }
    }

    /// Records the listening address: openness is decided from it (and the peer's).
    pub fn bound_to(mut self, addr: SocketAddr) -> Self {
        self.bind = Some(addr);
        self
    }

    /// Whether a request from `peer` may run inference without a key: only on a server
    /// bound to loopback, from a loopback peer, while no usable key exists. A server bound
    /// beyond loopback (`0.0.0.0` included) is never open, even after its last key goes.
    pub fn is_open(&self, peer: Option<SocketAddr>) -> bool {
        self.bind.is_some_and(|b| access::is_loopback(b.ip()))
            && peer.is_some_and(|p| access::is_loopback(p.ip()))
            && !self.keys_active.load(Ordering::Relaxed)
    }
}

impl AppState {
    /// Re-reads whether any usable key exists (after keys change).
    pub fn refresh_keys(&self) {
        // On a read error assume keys exist: failing closed.
        let active = self.keys.any_active().unwrap_or(true);
        self.keys_active.store(active, Ordering::Relaxed);
    }

    /// Records an unauthenticated refusal from `peer` (aggregated per source: see
    /// [`crate::security::AuditLog::refusal`]; no fsync per refusal).
    pub fn audit_refusal(&self, peer: Option<SocketAddr>, subject: &str, detail: &str) {
        let source = peer.map_or_else(|| "unknown-peer".to_string(), |p| p.ip().to_string());
        off_worker(|| self.gateway.host.audit().refusal(&source, subject, detail));
    }

    /// Writes an audit record; a failure to write is logged, never answered.
    pub(crate) fn audit(&self, kind: &str, subject: &str, detail: String) {
        let written = off_worker(|| {
            self.gateway
                .host
                .audit()
                .record(kind, subject, None, detail)
        });
        if let Err(e) = written {
            tracing::error!("audit log: {e}");
        }
    }
}

/// Runs `f`, a synchronous store write (an audit append: a commit on PostgreSQL), telling
/// tokio when it runs on one of its worker threads (`block_in_place`), so that the worker's
/// other tasks move to another thread meanwhile instead of waiting behind it. Elsewhere (a
/// blocking-pool thread, a current-thread runtime, no runtime) it just runs `f`.
pub(crate) fn off_worker<R>(f: impl FnOnce() -> R) -> R {
    let on_worker = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if on_worker {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

/// The authenticated caller of a request (absent on open loopback servers).
#[derive(Debug, Clone)]
pub struct Caller(pub KeyRecord);

/// The model a response was about, for metrics labels.
#[derive(Debug, Clone)]
pub struct ModelLabel(pub String);

/// A JSON body whose errors are API errors: 413 over the size limit, 400 with the parser's
/// message (line, column, what was expected) otherwise.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        // Parsed already by `auth` (which checked the caller's scope for this very value)?
        let value = match req.extensions().get::<ParsedBody>() {
            Some(p) => Value::clone(&p.0),
            None => {
                let limit = req.extensions().get::<BodyLimit>().map_or(0, |l| l.0);
                parse_body(&read_body(req.into_body(), limit).await?)?
            }
        };
        T::deserialize(value)
            .map(ApiJson)
            .map_err(|e| ApiError::invalid(None, format!("invalid request: {e}")))
    }
}

/// A request body parsed by `auth`, handed to the handler so both read the same value.
#[derive(Debug, Clone)]
pub struct ParsedBody(pub Arc<Value>);

/// The JSON text `auth` parsed into [`ParsedBody`] (chat reads a schema's declared property
/// order from it: `Value` sorts keys).
#[derive(Debug, Clone)]
pub struct RawBody(pub Bytes);

/// Reads a body within the limit: 413 over it.
pub(crate) async fn read_body(body: axum::body::Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        let mut too_large = false;
        while let Some(c) = cause {
            too_large |= c.is::<http_body_util::LengthLimitError>();
            cause = c.source();
        }
        if too_large {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                format!("request body is larger than the limit of {limit} bytes; send fewer or shorter inputs per request"),
            )
            .with_code("body_too_large")
        } else {
            ApiError::invalid(None, format!("cannot read the request body: {e}"))
        }
    })
}

/// Parses a JSON body strictly (duplicate keys refused): 400 with the parser's message.
pub(crate) fn parse_body(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::invalid(
            None,
            "the request body is empty: send a JSON object",
        ));
    }
    strict::from_slice(bytes).map_err(|e| {
        let what = if std::str::from_utf8(bytes).is_err() {
            "the request body is not valid UTF-8 JSON"
        } else {
            "the request body is not valid JSON"
        };
        ApiError::invalid(None, format!("{what}: {e}"))
    })
}

#[derive(Clone, Copy)]
pub(crate) struct BodyLimit(pub(crate) usize);

/// Gets a model, loading it on first use (off the executor). Unknown or unpulled models
/// are 404s that say what exists.
pub async fn model(state: &AppState, name: &str) -> Result<Arc<Model>, ApiError> {
    if let Some(m) = state.core.get_loaded(name) {
        return Ok(m);
    }
    let core = state.core.clone();
    let name = name.to_string();
    tokio::task::spawn_blocking(move || core.model(&name))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                e.to_string(),
            )
        })?
        .map_err(ApiError::from)
}

/// Whether a chain has no plugin at all.
pub(crate) fn chain_is_empty(c: &crate::plugins::pipeline::Chain) -> bool {
    c.preprocessors.is_empty()
        && c.request_policies.is_empty()
        && c.response_policies.is_empty()
        && c.integrations.is_empty()
}

static REQUEST_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Runs a text task for a route: straight to the model when the model has no plugin chain
/// there, else through the pipeline on a blocking thread (plugins and models answer on
/// their own threads). A policy's denial is a 403 naming the plugin; a plugin fault a 502.
/// The answer, success or error, carries the model's label for the metrics.
pub async fn route_text(
    state: &AppState,
    caller: Option<Caller>,
    m: &Arc<Model>,
    task: TextTask,
    route: &'static str,
    input: Input,
    policy: Truncation,
) -> Response {
    let label = axum::Extension(ModelLabel(m.name().to_string()));
    match run_text(state, caller, m, task, route, input, policy).await {
        Ok(v) => (label, Json(v)).into_response(),
        Err(e) => (label, e).into_response(),
    }
}

async fn run_text(
    state: &AppState,
    caller: Option<Caller>,
    m: &Arc<Model>,
    task: TextTask,
    route: &'static str,
    input: Input,
    policy: Truncation,
) -> Result<Value, ApiError> {
    let chain = state.gateway.chain(m.name(), route);
    if chain_is_empty(&chain) {
        return Ok(gateway::run_task(m, task, input, policy).await?);
    }
    let Input::Texts(texts) = input else {
        return Err(ApiError::invalid(
            Some("input".into()),
            format!(
                "model {} runs a plugin pipeline on {route}, which works on text: send texts, not token ids",
                m.name()
            ),
        ));
    };
    let id = request_id();
    // Awaited here (plugins and models run on their own threads): when the request times
    // out, dropping this future stops the pipeline before its next stage.
    let ctx = gateway::context(m.name(), task, route, caller.map(|c| c.0.id), id);
    routed_value(state.gateway.route(m, task, ctx, texts, policy).await)
}

/// A new request id for plugins' request context.
pub(crate) fn request_id() -> String {
    format!(
        "req-{}",
        REQUEST_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// The answer of a request routed through a pipeline, or its error as the API reports it.
pub(crate) fn routed_value(routed: Result<Routed, GatewayError>) -> Result<Value, ApiError> {
    match routed {
        Ok(Routed::Done(v)) => Ok(v),
        Ok(Routed::Denied {
            plugin,
            reason,
            stage,
        }) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            format!("denied by plugin {plugin} ({stage} policy): {reason}"),
        )
        .with_param(Some(plugin))
        .with_code("policy_denied")),
        Err(GatewayError::Task(e)) => Err(e.into()),
        Err(GatewayError::Load(e)) => Err(e.into()),
        Err(GatewayError::Pipeline(PipelineError::Plugin(
            e @ crate::plugins::PluginError::Busy { .. },
        ))) => {
            let mut a = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                e.to_string(),
            )
            .with_code("plugin_queue_full");
            a.retry_after = Some(1);
            Err(a)
        }
        Err(GatewayError::Pipeline(
            e @ (PipelineError::Plugin(_) | PipelineError::Contract { .. }),
        )) => Err(
            ApiError::new(StatusCode::BAD_GATEWAY, "server_error", e.to_string())
                .with_code("plugin_failed"),
        ),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            e.to_string(),
        )),
    }
}

/// Every route of the server, from each module's table.
pub(crate) fn all_routes() -> Vec<ApiRoute> {
    let mut all = openai::routes();
    all.extend(generate::routes());
    all.extend(kserve::routes());
    all.extend(admin::routes());
    all.extend(anonymize::routes());
    all.extend(data::routes());
    all.extend(train::routes());
    all.extend(tools::routes());
    all.extend(mcp::routes());
    all.extend(console::routes());
    all.push(routes::get("/health", Access::Public, health));
    all.push(routes::get("/metrics", Access::Key, metrics_text));
    all.push(routes::get(
        "/openapi.json",
        Access::Public,
        openapi::serve_document,
    ));
    all
}

/// The whole router, built from [`all_routes`] only.
pub fn router(state: Arc<AppState>) -> Router {
    let body_limit = state.limits.body_bytes;
    router_with_body_limit(state, body_limit)
}

/// The router with another body limit (the admin socket's, which takes uploaded components).
pub fn router_with_body_limit(state: Arc<AppState>, body_limit: usize) -> Router {
    let mut router = Router::new();
    for r in all_routes() {
        let handler = if r.access == Access::Admin {
            r.handler.route_layer(middleware::from_fn_with_state(
                state.clone(),
                admin::audit_action,
            ))
        } else if r.access == (Access::Data { write: true }) {
            r.handler.route_layer(middleware::from_fn_with_state(
                state.clone(),
                data::audit_write,
            ))
        } else {
            r.handler
        };
        router = router.route(r.path, handler);
    }
    router
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), access::auth))
        .layer(middleware::from_fn_with_state(
            state.metrics.panics.clone(),
            panic::catch_panic,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::Extension(BodyLimit(body_limit)))
        .with_state(state)
}

async fn not_found(req: Request) -> ApiError {
    let path = req.uri().path().to_string();
    let e = ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        format!(
            "no route {} {path}: see the README for the routes llmos serves",
            req.method()
        ),
    );
    if path.starts_with("/v2") {
        e.kserve()
    } else {
        e
    }
}

/// Records metrics and applies the request timeout.
async fn observe(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let kserve = route.starts_with("/v2");
    let start = Instant::now();
    // Which plugin the request's pipeline is running, to name it if the request times out.
    let progress = Arc::new(crate::plugins::pipeline::Progress::default());
    let run = crate::plugins::pipeline::PROGRESS.scope(progress.clone(), next.run(req));
    let resp = match tokio::time::timeout(state.limits.timeout, run).await {
        Ok(r) => r,
        Err(_) => {
            let running = progress
                .running()
                .map(|p| format!(" (plugin {p} was running; the request was stopped)"))
                .unwrap_or_default();
            let e = ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "server_error",
                format!(
                    "the request took longer than the limit of {} s{running}",
                    state.limits.timeout.as_secs_f64()
                ),
            );
            if kserve { e.kserve() } else { e }.into_response()
        }
    };
    let model = resp
        .extensions()
        .get::<ModelLabel>()
        .map_or("", |m| m.0.as_str())
        .to_string();
    state
        .metrics
        .observe(&route, &model, resp.status().as_u16(), start.elapsed());
    resp
}

async fn health(State(state): State<Arc<AppState>>) -> Json<Value> {
    let models: Vec<Value> = state
        .core
        .loaded()
        .iter()
        .map(|m| json!({"name": m.name(), "task": m.manifest.task, "provider": m.provider.serving}))
        .collect();
    let collections = json!({
        "ready": state.data.ready(),
        "loaded": state.data.collections.loaded_count(),
    });
    Json(json!({"status": "ok", "models": models, "collections": collections}))
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    let mut text = state.metrics.render(&state.core, &state.gateway);
    let (loads, followed) = state.data.collections.totals();
    let _ = std::fmt::Write::write_fmt(&mut text, format_args!(
        "# HELP llmos_collection_loads_total Collections loaded whole from the store into memory (start-up, first search, reloads).\n\
         # TYPE llmos_collection_loads_total counter\nllmos_collection_loads_total {loads}\n\
         # HELP llmos_collection_changes_followed_total Chunks another replica wrote or removed, applied in memory one by one.\n\
         # TYPE llmos_collection_changes_followed_total counter\nllmos_collection_changes_followed_total {followed}\n"
    ));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Runs the server until SIGINT/SIGTERM, then stops accepting, lets in-flight requests
/// finish (up to 30 s) and returns. The gRPC service also listens when `[server] grpc_listen`
/// is set.
pub fn serve(core: Arc<Core>, listen: &str) -> Result<()> {
    let grpc = core.config().server.grpc_listen.clone();
    serve_with_grpc(core, listen, grpc.as_deref())
}

/// [`serve`], with the KServe v2 gRPC service (`api/grpc`) on `grpc` when given.
pub fn serve_with_grpc(core: Arc<Core>, listen: &str, grpc: Option<&str>) -> Result<()> {
    let addr: SocketAddr = listen.parse().with_context(|| {
        format!("invalid listen address {listen:?}: expected IP:PORT, e.g. 127.0.0.1:8080")
    })?;
    let server_cfg = core.config().server.clone();
    server_cfg.check().map_err(anyhow::Error::msg)?;
    let conn_limits = server::ConnLimits {
        header_read_timeout: Duration::from_millis(server_cfg.header_read_timeout_ms),
        idle_timeout: Duration::from_millis(server_cfg.idle_timeout_ms),
        max_connections: server_cfg.max_connections,
    };
    let audit_cfg = core.config().audit.clone();
    audit_cfg.check().map_err(anyhow::Error::msg)?;
    core.config().tools.check().map_err(anyhow::Error::msg)?;
    core.config().generation.check().map_err(anyhow::Error::msg)?;
    core.config().mcp.check().map_err(anyhow::Error::msg)?;
    core.config().metrics.check().map_err(anyhow::Error::msg)?;
    let gateway = Arc::new(Gateway::open(core, None).context("cannot open the plugin host")?);
    gateway
        .host
        .audit()
        .set_limits(crate::security::audit::AuditLimits {
            max_records: audit_cfg.max_records,
            segment_records: audit_cfg.segment_records,
            refusal_window: Duration::from_millis(audit_cfg.refusal_window_ms),
        });
    let limits = Limits {
        timeout: Duration::from_millis(server_cfg.request_timeout_ms),
        ..Limits::default()
    };
    let state = Arc::new(AppState::new(gateway, limits).bound_to(addr));
    if !access::is_loopback(addr.ip()) && !state.keys_active.load(Ordering::Relaxed) {
        anyhow::bail!(
            "refusing to listen on {addr} without API keys: a non-loopback address exposes inference \
             to the network, and open inference servers get abused. Create a key first with \
             `llmos keys create --scope 'models:*'` (clients send it as `Authorization: Bearer <key>`), \
             or listen on 127.0.0.1"
        );
    }
    let grpc = grpc.map(str::to_string);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("llmos-http")
        .build()
        .context("cannot start the async runtime")?;
    let state_for_flush = state.clone();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        // Bound before the line below, which tells scripts that the server is up.
        let socket = local_socket(&state, &server_cfg, stop_rx.clone())?;
        let grpc = match grpc {
            Some(g) => Some(grpc::bind(&g).await?),
            None => None,
        };
        if let Some((_, g)) = &grpc
            && !access::is_loopback(g.ip())
            && !state.keys_active.load(Ordering::Relaxed)
        {
            anyhow::bail!(
                "refusing to listen for gRPC on {g} without API keys: a non-loopback address exposes inference \
                 to the network. Create a key first with `llmos keys create --scope 'models:*'` (clients send \
                 it as `authorization: Bearer <key>` metadata), or listen on 127.0.0.1"
            );
        }
        // Tests and scripts read this line to find the port when binding to :0.
        println!("llmos listening on http://{local}");
        tracing::info!(%local, "listening");
        // The gRPC line comes second: scripts that read the first line are unchanged.
        let grpc = grpc.map(|(listener, g)| {
            println!("llmos gRPC listening on {g}");
            tracing::info!(%g, "gRPC listening");
            grpc::serve(listener, state.clone(), stop_rx.clone())
        });
        let app = router(state.clone());
        // The registered MCP servers' tools (docs/tools.md §5), fetched in the background.
        let mcp = state.gateway.mcp.clone();
        tokio::spawn(async move {
            if let Err(e) = mcp.start().await {
                tracing::error!("MCP servers: {e}");
            }
        });
        // Buffered audit entries (refusals) reach the disk within a second.
        let audit = state.gateway.host.audit().clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let a = audit.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    if let Err(e) = a.flush() {
                        tracing::error!("audit log: {e}");
                    }
                })
                .await;
            }
        });
        let server = server::run(listener, app, state, conn_limits, async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        let drain = async move {
            let _ = stop_rx.wait_for(|s| *s).await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        };
        let grpc = async move {
            if let Some(g) = grpc {
                g.await;
            }
        };
        tokio::select! {
            _ = async { tokio::join!(server, socket, grpc) } => {}
            () = drain => tracing::warn!("in-flight requests still running after 30 s; exiting"),
        }
        state_for_flush.gateway.host.audit().flush_refusals();
        let flushed = state_for_flush.gateway.host.store().flush();
        tracing::info!(?flushed, "stopped; store flushed");
        flushed.context("flushing the store on shutdown")
    })
}

/// The admin socket's serving future (`api/local.rs`), or one that ends at once when
/// `[server] admin_socket = false`. Its body limit fits the largest component upload.
fn local_socket(
    state: &Arc<AppState>,
    cfg: &crate::config::ServerConfig,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<impl std::future::Future<Output = ()> + use<>> {
    let sock = if cfg.admin_socket {
        let sock = local::AdminSocket::bind(&state.core.paths().home)?;
        tracing::info!(path = %sock.path().display(), "admin socket listening");
        let upload = admin::upload_body_limit(state.core.config().plugins.max_component_bytes);
        let app = router_with_body_limit(state.clone(), upload.max(state.limits.body_bytes));
        Some((sock, app))
    } else {
        None
    };
    let header_timeout = Duration::from_millis(cfg.header_read_timeout_ms);
    Ok(async move {
        if let Some((sock, app)) = sock {
            sock.serve(app, header_timeout, stop).await;
        }
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
}

//! `/admin/…`: plugins and API keys over HTTP, for keys with the `admin` scope, and over the
//! admin socket for the owner (`api/local.rs`). The same functions as `llmos plugin …` /
//! `llmos keys …`, which send their operation here while the server holds the store
//! (`cli/remote.rs`) and print the answers (the registry's own structures) the same way.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::api::error::ApiError;
use crate::api::routes::{Access, ApiRoute, delete, get, post};
use crate::api::{ApiJson, AppState, Caller};
use crate::plugins::limits::{LimitsRequest, RaisedLimit};
use crate::plugins::registry::{self, InstallReport, InstallRequest};
use crate::plugins::{PluginError, PluginHost};
use crate::security::CapabilitySet;
use crate::security::audit::{self, AuditEvent, AuditFilter, AuditPage, now_ms};
use crate::security::keys::{self, KeyError};

/// The routes of this module, all needing the admin scope. Every change (any method but
/// GET) is audited with the key that made it (`audit_action`, layered by the router).
pub(crate) fn routes() -> Vec<ApiRoute> {
    use Access::Admin;
    vec![
        get("/admin/plugins", Admin, list_plugins),
        post("/admin/plugins", Access::Admin, install).body::<InstallBody>(),
        get("/admin/plugins/{name}", Admin, plugin_info),
        delete("/admin/plugins/{name}", Admin, remove),
        post("/admin/plugins/{name}/grant", Access::Admin, grant).body::<Caps>(),
        post("/admin/plugins/{name}/revoke", Access::Admin, revoke).body::<Caps>(),
        post("/admin/plugins/{name}/enable", Admin, enable),
        post("/admin/plugins/{name}/disable", Admin, disable),
        post("/admin/plugins/{name}/upgrade", Admin, upgrade).body::<InstallBody>(),
        post("/admin/plugins/{name}/configure", Admin, configure).body::<ConfigureBody>(),
        post("/admin/plugins/{name}/limits", Admin, limits).body::<LimitsBody>(),
        post("/admin/plugins/{name}/secret", Admin, secret).body::<SecretBody>(),
        post("/admin/plugins/{name}/test", Admin, test_plugin).body::<TestBody>(),
        get("/admin/publishers", Admin, list_publishers),
        post("/admin/publishers", Admin, add_publisher).body::<PublisherBody>(),
        post("/admin/publishers/{name}/revoke", Admin, revoke_publisher),
        get("/admin/keys", Admin, list_keys),
        post("/admin/keys", Access::Admin, create_key).body::<CreateKey>(),
        delete("/admin/keys/{id}", Admin, revoke_key),
        get("/admin/audit", Admin, audit),
        get("/admin/audit/verify", Admin, audit_verify),
    ]
}

/// Records who (the caller's key id) did what (method, path) with which outcome (status).
pub(crate) async fn audit_action(
    State(s): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    if req.method() == Method::GET {
        return next.run(req).await;
    }
    let who = req
        .extensions()
        .get::<Caller>()
        .map_or_else(|| "unknown".to_string(), |c| c.0.id.clone());
    let what = format!("{} {}", req.method(), req.uri().path());
    // What the handler records (key-created, installed, …) is by this key too.
    let resp = audit::acting_as_async(who.clone(), next.run(req)).await;
    let status = resp.status().as_u16();
    let log = s.gateway.host.audit().clone();
    // sled writes (and their flush) stay off the executor.
    let _ = tokio::task::spawn_blocking(move || {
        let e = AuditEvent::new("admin-action", &what)
            .by(&who)
            .outcome(status.to_string())
            .detail(format!("{what} -> {status}"));
        if let Err(e) = log.event(e) {
            tracing::error!("audit log: {e}");
        }
    })
    .await;
    resp
}

fn plugin_err(e: PluginError) -> ApiError {
    let status = match &e {
        PluginError::NotInstalled(_) => StatusCode::NOT_FOUND,
        PluginError::Exists(_) => StatusCode::CONFLICT,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError::new(status, "invalid_request_error", e.to_string())
}

fn key_err(e: KeyError) -> ApiError {
    match e {
        KeyError::NotFound(_) => ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            e.to_string(),
        ),
        KeyError::Store(_) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            e.to_string(),
        ),
        _ => ApiError::invalid(None, e.to_string()),
    }
}

/// Runs registry work (sled, compilation) off the executor, as the request's actor (so
/// what it audits names the key).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let who = audit::current_actor();
    tokio::task::spawn_blocking(move || audit::acting_as(Some(who), f))
        .await
        .map_err(server_err)?
}

async fn list_plugins(State(s): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let store = s.gateway.host.store().clone();
    let list = blocking(move || registry::list(&store).map_err(plugin_err)).await?;
    Ok(Json(json!({"plugins": list})))
}

async fn plugin_info(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = s.gateway.host.store().clone();
    let (rec, usage) = blocking(move || {
        let rec = registry::info(&store, &name).map_err(plugin_err)?;
        let usage =
            crate::plugins::state::kv_usage(&store, &name).map_err(|e| plugin_err(e.into()))?;
        Ok((rec, usage))
    })
    .await?;
    let mut v = json!(rec);
    if let Some(o) = v.as_object_mut() {
        o.insert("kv_usage".into(), json!(usage));
        o.insert("effective_limits".into(), json!(rec.limits()));
    }
    Ok(Json(v))
}

/// `POST /admin/plugins` (install) and `POST /admin/plugins/{name}/upgrade`: a component
/// and its manifest, either as files on the server (`path`, `manifest`) or as their contents
/// (`component_base64`, `manifest_toml`: what `llmos plugin install` sends over the admin
/// socket; bounded by the body limit, 2 MiB over TCP).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallBody {
    /// The component (`.wasm`), inside `[plugins] install_root` when that is set.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    path: Option<std::path::PathBuf>,
    /// Its manifest (default: `manifest.toml` next to it), confined like `path`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    manifest: Option<std::path::PathBuf>,
    /// Instead of `path`: the component's bytes, base64 (standard alphabet, padded).
    #[serde(default)]
    component_base64: Option<String>,
    /// With `component_base64`: the manifest's text (TOML).
    #[serde(default)]
    manifest_toml: Option<String>,
    #[serde(default)]
    grants: Vec<String>,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    config: BTreeMap<String, String>,
    #[serde(default)]
    approve_limits: bool,
    /// Upgrade only: accept a version not signed by the installed version's publisher.
    #[serde(default)]
    allow_publisher_change: bool,
    /// The signature file (`llmos plugin sign`) on the server, confined like `path`; default
    /// `<path>.sig` when it exists.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    signature: Option<std::path::PathBuf>,
    /// With `component_base64`: the signature file's text (JSON written by `llmos plugin
    /// sign`), when the upload is signed.
    #[serde(default)]
    signature_json: Option<String>,
}

const INSTALL_FIELDS: &str = "accepted fields: path (a file on the server), manifest and signature, or component_base64 (the file's bytes), manifest_toml (its text) and signature_json; grants, sha256, config, approve_limits, allow_publisher_change (upgrade)";

/// The answer to an install or upgrade: [`registry::InstallReport`] as JSON (the CLI prints
/// it the same way whether it installed itself or asked the server).
#[derive(Debug, Serialize, Deserialize)]
pub struct InstallReply {
    /// The stored record.
    pub plugin: registry::PluginRecord,
    /// Version before an upgrade.
    #[serde(default)]
    pub previous_version: Option<String>,
    /// Capabilities only the new version requests.
    #[serde(default)]
    pub added: CapabilitySet,
    /// Capabilities only the old version requested.
    #[serde(default)]
    pub removed: CapabilitySet,
    /// Requested capabilities not granted.
    pub ungranted: CapabilitySet,
    /// Grants the manifest does not request.
    pub unrequested: CapabilitySet,
    /// Limits above the defaults (approved).
    pub raised_limits: Vec<RaisedLimit>,
    /// On upgrade, when the signer changed: `old -> new`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer_change: Option<String>,
}

impl From<InstallReport> for InstallReply {
    fn from(r: InstallReport) -> Self {
        Self {
            plugin: r.record,
            previous_version: r.previous_version,
            added: r.added,
            removed: r.removed,
            ungranted: r.ungranted,
            unrequested: r.unrequested,
            raised_limits: r.raised_limits,
            signer_change: r.signer_change,
        }
    }
}

impl From<InstallReply> for InstallReport {
    fn from(r: InstallReply) -> Self {
        Self {
            record: r.plugin,
            previous_version: r.previous_version,
            added: r.added,
            removed: r.removed,
            ungranted: r.ungranted,
            unrequested: r.unrequested,
            raised_limits: r.raised_limits,
            signer_change: r.signer_change,
        }
    }
}

fn install_body(body: Value) -> Result<InstallBody, ApiError> {
    serde_json::from_value(body).map_err(|e| {
        ApiError::invalid(
            None,
            format!("invalid install request: {e}; {INSTALL_FIELDS}"),
        )
    })
}

/// The largest body an upload of a component of `max_component_bytes` needs (base64 and
/// the rest of the request): the admin socket's body limit.
pub fn upload_body_limit(max_component_bytes: u64) -> usize {
    let encoded = max_component_bytes.saturating_mul(4).div_ceil(3);
    usize::try_from(encoded.saturating_add(1 << 20)).unwrap_or(usize::MAX)
}

/// Runs `f` (install or upgrade) on the body's source: the server's files, or the uploaded
/// bytes written into a private folder for the call (removed after it).
fn with_source(
    host: &PluginHost,
    b: InstallBody,
    f: impl FnOnce(&InstallRequest) -> Result<InstallReport, PluginError>,
) -> Result<InstallReport, ApiError> {
    let mut req = InstallRequest {
        component: std::path::PathBuf::new(),
        manifest: b.manifest,
        grants: b.grants,
        sha256: b.sha256,
        config: b.config,
        approve_limits: b.approve_limits,
        signature: None,
    };
    let bad = |param: &str, msg: &str| {
        ApiError::invalid(Some(param.into()), format!("{msg}; {INSTALL_FIELDS}"))
    };
    match (b.path, b.component_base64, b.manifest_toml) {
        (Some(path), None, None) => {
            if b.signature_json.is_some() {
                return Err(bad(
                    "signature_json",
                    "signature_json goes with component_base64; with path give signature (a file on the server)",
                ));
            }
            req.component = path;
            req.signature = b.signature;
            f(&req).map_err(plugin_err)
        }
        (None, Some(data), Some(text)) => {
            if req.manifest.is_some() || b.signature.is_some() {
                return Err(bad(
                    if req.manifest.is_some() { "manifest" } else { "signature" },
                    "manifest and signature name files on the server: with component_base64 send their text as manifest_toml and signature_json",
                ));
            }
            let up = Upload::write(host.home(), &data, &text, b.signature_json.as_deref())?;
            req.component = up.component();
            req.manifest = Some(up.manifest());
            req.signature = b.signature_json.is_some().then(|| up.signature());
            f(&req).map_err(|e| up.explain(plugin_err(e)))
        }
        (Some(_), Some(_), _) => Err(bad(
            "component_base64",
            "give path or component_base64, not both",
        )),
        (Some(_), None, Some(_)) => Err(bad(
            "manifest_toml",
            "manifest_toml goes with component_base64; with path give manifest (a file on the server)",
        )),
        (None, Some(_), None) => Err(bad(
            "manifest_toml",
            "component_base64 needs manifest_toml (the manifest's text)",
        )),
        (None, None, _) => Err(bad("path", "no component: give path or component_base64")),
    }
}

/// An uploaded component and manifest in a private folder of the data location, removed
/// when dropped.
struct Upload {
    dir: std::path::PathBuf,
}

impl Upload {
    fn write(
        home: &std::path::Path,
        data: &str,
        manifest: &str,
        signature: Option<&str>,
    ) -> Result<Self, ApiError> {
        use base64::Engine as _;
        use std::os::unix::fs::DirBuilderExt;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| {
                ApiError::invalid(
                    Some("component_base64".into()),
                    format!("component_base64 is not base64 (standard alphabet, padded): {e}"),
                )
            })?;
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let root = home.join(registry::UPLOADS);
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true).mode(0o700);
        builder.create(&root).map_err(server_err)?;
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = root.join(format!("{}-{n}-{}", std::process::id(), now_ms()));
        builder.recursive(false).create(&dir).map_err(server_err)?;
        let dir = dir.canonicalize().map_err(server_err)?;
        let up = Self { dir };
        std::fs::write(up.component(), &bytes).map_err(server_err)?;
        std::fs::write(up.manifest(), manifest).map_err(server_err)?;
        if let Some(sig) = signature {
            std::fs::write(up.signature(), sig).map_err(server_err)?;
        }
        Ok(up)
    }

    fn signature(&self) -> std::path::PathBuf {
        self.dir.join("component.wasm.sig")
    }

    fn component(&self) -> std::path::PathBuf {
        self.dir.join("component.wasm")
    }

    fn manifest(&self) -> std::path::PathBuf {
        self.dir.join("manifest.toml")
    }

    /// The error with the private paths named as what the caller sent.
    fn explain(&self, mut e: ApiError) -> ApiError {
        e.message = e
            .message
            .replace(&self.signature().display().to_string(), "(uploaded signature)")
            .replace(&self.component().display().to_string(), "(uploaded component)")
            .replace(&self.manifest().display().to_string(), "(uploaded manifest)");
        e
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The admin socket's peer, if the request came over it.
type Local = Option<axum::Extension<crate::api::local::LocalPeer>>;

/// Refuses an upload over HTTP when `[plugins] install_root` confines installs to the
/// server's files; the owner's CLI (over the admin socket) checks that folder itself.
fn check_upload(s: &AppState, b: &InstallBody, local: &Local) -> Result<(), ApiError> {
    let root = &s.core.config().plugins.install_root;
    match root {
        Some(root) if b.component_base64.is_some() && local.is_none() => Err(ApiError::invalid(
            Some("component_base64".into()),
            format!(
                "this server installs only components under {} ([plugins] install_root): \
                 give path (a file in that folder) instead of component_base64",
                root.display()
            ),
        )),
        _ => Ok(()),
    }
}

async fn install(
    State(s): State<Arc<AppState>>,
    local: Local,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<InstallReply>), ApiError> {
    let b = install_body(body)?;
    check_upload(&s, &b, &local)?;
    let gw = s.gateway.clone();
    let report =
        blocking(move || with_source(&gw.host, b, |req| registry::install(&gw.host, req))).await?;
    Ok((StatusCode::CREATED, Json(report.into())))
}

/// `POST /admin/plugins/{name}/upgrade`: the same body as install.
async fn upgrade(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
    local: Local,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<InstallReply>, ApiError> {
    let b = install_body(body)?;
    check_upload(&s, &b, &local)?;
    let gw = s.gateway.clone();
    let allow = b.allow_publisher_change;
    let report = blocking(move || {
        with_source(&gw.host, b, |req| {
            registry::upgrade_with(&gw.host, &name, req, allow)
        })
    })
    .await?;
    Ok(Json(report.into()))
}

async fn remove(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let gw = s.gateway.clone();
    let rec = blocking(move || registry::remove(&gw.host, &name).map_err(plugin_err)).await?;
    Ok(Json(
        json!({"removed": rec.manifest.name, "version": rec.manifest.version}),
    ))
}

/// `POST /admin/plugins/{name}/grant|revoke`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Caps {
    /// e.g. `kv`, `inference:minilm`, `http:example.com:443`, `secret:NAME`.
    capabilities: Vec<String>,
}

fn caps(body: Value) -> Result<Vec<String>, ApiError> {
    serde_json::from_value::<Caps>(body)
        .map(|c| c.capabilities)
        .map_err(|e| {
            ApiError::invalid(
                Some("capabilities".into()),
                format!("{e}; send {{\"capabilities\": [\"kv\", \"inference:minilm\", …]}}"),
            )
        })
}

async fn grant(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let caps = caps(body)?;
    let gw = s.gateway.clone();
    let (rec, unrequested) =
        blocking(move || registry::grant(&gw.host, &name, &caps).map_err(plugin_err)).await?;
    // The record, and the grants its manifest does not request (kept, never effective).
    let mut v = json!(rec);
    if let Some(o) = v.as_object_mut() {
        o.insert("unrequested".into(), json!(unrequested));
    }
    Ok(Json(v))
}

async fn revoke(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let caps = caps(body)?;
    let gw = s.gateway.clone();
    let rec =
        blocking(move || registry::revoke(&gw.host, &name, &caps).map_err(plugin_err)).await?;
    Ok(Json(json!(rec)))
}

async fn set_enabled(s: &AppState, name: String, enabled: bool) -> Result<Json<Value>, ApiError> {
    let gw = s.gateway.clone();
    let rec = blocking(move || registry::set_enabled(&gw.host, &name, enabled).map_err(plugin_err))
        .await?;
    Ok(Json(json!(rec)))
}

async fn enable(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_enabled(&s, name, true).await
}

async fn disable(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_enabled(&s, name, false).await
}

/// `POST /admin/plugins/{name}/configure`: config values to set and keys to unset (back to
/// the default), validated against the manifest's schema; answers the record.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigureBody {
    /// `KEY: VALUE` to set (list items separated by `;`).
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Keys to unset.
    #[serde(default)]
    pub unset: Vec<String>,
}

async fn configure(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let b: ConfigureBody = typed(body, "configure", "set (an object of KEY: VALUE), unset (a list of keys)")?;
    let mut changes: BTreeMap<String, Option<String>> =
        b.set.into_iter().map(|(k, v)| (k, Some(v))).collect();
    for k in b.unset {
        changes.insert(k, None);
    }
    if changes.is_empty() {
        return Err(ApiError::invalid(
            Some("set".into()),
            "nothing to change: give set {\"KEY\": \"VALUE\"} or unset [\"KEY\"]",
        ));
    }
    let gw = s.gateway.clone();
    let rec = blocking(move || registry::configure(&gw.host, &name, &changes).map_err(plugin_err))
        .await?;
    Ok(Json(json!(rec)))
}

/// `POST /admin/plugins/{name}/limits`: the operator's overrides of the manifest's limits;
/// omitted fields go back to the manifest's. Answers the record.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsBody {
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    memory_mib: Option<u64>,
    #[serde(default)]
    max_output_bytes: Option<u64>,
    #[serde(default)]
    max_host_calls: Option<u64>,
    #[serde(default)]
    max_inference_calls: Option<u64>,
    #[serde(default)]
    max_inference_tokens: Option<u64>,
    #[serde(default)]
    kv_max_bytes: Option<u64>,
    #[serde(default)]
    kv_max_keys: Option<u64>,
    #[serde(default)]
    kv_max_value_bytes: Option<u64>,
}

async fn limits(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let b: LimitsBody = typed(
        body,
        "limits",
        "timeout_ms, memory_mib, max_output_bytes, max_host_calls, max_inference_calls, \
         max_inference_tokens, kv_max_bytes, kv_max_keys, kv_max_value_bytes (whole numbers)",
    )?;
    let o = LimitsRequest {
        timeout_ms: b.timeout_ms,
        memory_mib: b.memory_mib,
        max_output_bytes: b.max_output_bytes,
        max_host_calls: b.max_host_calls,
        max_inference_calls: b.max_inference_calls,
        max_inference_tokens: b.max_inference_tokens,
        kv_max_bytes: b.kv_max_bytes,
        kv_max_keys: b.kv_max_keys,
        kv_max_value_bytes: b.kv_max_value_bytes,
    };
    let gw = s.gateway.clone();
    let rec =
        blocking(move || registry::set_limits(&gw.host, &name, o).map_err(plugin_err)).await?;
    Ok(Json(json!(rec)))
}

/// `POST /admin/plugins/{name}/secret`: stores a secret the plugin reads with
/// `secret:<name>` granted. The value is sealed in the store and never logged or answered.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretBody {
    /// The secret's name.
    name: String,
    /// Its value.
    value: String,
}

async fn secret(
    State(s): State<Arc<AppState>>,
    Path(plugin): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    // serde's messages name fields and types, never a string's content.
    let b: SecretBody = typed(body, "secret", "name, value (strings)")?;
    let gw = s.gateway.clone();
    let name = b.name.clone();
    let p = plugin.clone();
    blocking(move || registry::set_secret(&gw.host, &p, &b.name, &b.value).map_err(plugin_err))
        .await?;
    Ok(Json(json!({"plugin": plugin, "secret": name})))
}

/// Deserialises a body into `T`; the 400 names the request and its accepted fields.
fn typed<T: serde::de::DeserializeOwned>(
    body: Value,
    what: &str,
    accepted: &str,
) -> Result<T, ApiError> {
    serde_json::from_value(body).map_err(|e| {
        ApiError::invalid(
            None,
            format!("invalid {what} request: {e}; accepted fields: {accepted}"),
        )
    })
}

async fn list_keys(State(s): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let k = s.keys.clone();
    let list = blocking(move || k.list().map_err(key_err)).await?;
    Ok(Json(
        json!({"keys": list.iter().map(|k| k.public()).collect::<Vec<_>>()}),
    ))
}

/// `POST /admin/keys`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    #[serde(default)]
    name: String,
    scopes: Vec<String>,
    #[serde(default)]
    expires: Option<String>,
    /// The tenant its generation requests run for (default: the key's id).
    #[serde(default)]
    tenant: Option<String>,
    /// Most generation streams of the tenant queued or running at once.
    #[serde(default)]
    max_streams: Option<usize>,
    /// Most tokens (prompt + max_tokens) of the tenant's requests waiting to start.
    #[serde(default)]
    max_queued_tokens: Option<usize>,
    /// `high`, `normal` (default) or `low`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    priority: Option<crate::core::generate::tenant::Priority>,
}

async fn create_key(
    State(s): State<Arc<AppState>>,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let b: CreateKey = serde_json::from_value(body).map_err(|e| {
        ApiError::invalid(
            None,
            format!("invalid key request: {e}; accepted fields: name, scopes, expires, tenant, max_streams, max_queued_tokens, priority (high, normal, low)"),
        )
    })?;
    let expires = b
        .expires
        .as_deref()
        .map(|e| keys::parse_expiry(e, now_ms()))
        .transpose()
        .map_err(key_err)?;
    let tenancy = keys::Tenancy {
        tenant: b.tenant,
        max_streams: b.max_streams,
        max_queued_tokens: b.max_queued_tokens,
        priority: b.priority.unwrap_or_default(),
    };
    let st = s.clone();
    // The write, the "any key" flag and the audit record all read or write the store: off
    // the executor's workers (round trips on PostgreSQL).
    let (rec, token) = blocking(move || {
        let made = st
            .keys
            .create_with(&b.name, &b.scopes, expires, tenancy)
            .map_err(key_err)?;
        st.refresh_keys();
        let _ = st.gateway.host.audit().record(
            "key-created",
            &made.0.id,
            None,
            format!("scopes {:?}", made.0.scopes),
        );
        Ok(made)
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"key": rec.public(), "secret": token, "note": "the secret is shown once; store it now"}),
        ),
    ))
}

async fn revoke_key(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let st = s.clone();
    let rec = blocking(move || {
        let rec = st.keys.revoke(&id).map_err(key_err)?;
        st.refresh_keys();
        let _ = st
            .gateway
            .host
            .audit()
            .record("key-revoked", &rec.id, None, "revoked over the admin API");
        Ok(rec)
    })
    .await?;
    Ok(Json(json!({"revoked": rec.id})))
}

/// `GET /admin/audit?after=SEQ&limit=N&who=W&what=K&target=T&outcome=O`: one page of the
/// audit log, oldest first, opening only that page; `next` is the `after` of the following
/// page (null at the end). Refusals counted but not yet written are summarised first.
async fn audit(
    State(s): State<Arc<AppState>>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| {
        ApiError::invalid(None, format!("invalid query string: {e}; {AUDIT_QUERY}"))
    })?;
    let tail = audit_tail(&q)?;
    let (after, limit, filter) = audit_query(&q)?;
    let a = s.gateway.host.audit().clone();
    let page = blocking(move || {
        a.flush_refusals();
        match tail {
            Some(n) => a.tail(n).map(|records| AuditPage {
                records,
                next: None,
            }),
            None => a.page(after, limit, &filter),
        }
        .map_err(server_err)
    })
    .await?;
    Ok(Json(json!({"records": page.records, "next": page.next})))
}

fn server_err(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        e.to_string(),
    )
}

/// `GET /admin/audit/verify`: walks the chain from the newest checkpoint (or the start) to
/// the head and reports the first edited, removed, reordered or inserted entry, or forged
/// checkpoint (`ok: false`, `problem`, `message`); 200 either way: the report is the answer.
async fn audit_verify(
    State(s): State<Arc<AppState>>,
) -> Result<Json<audit::VerifyReport>, ApiError> {
    let a = s.gateway.host.audit().clone();
    let report = blocking(move || {
        a.flush_refusals();
        a.verify().map_err(server_err)
    })
    .await?;
    Ok(Json(report))
}

const AUDIT_QUERY: &str = "accepted parameters: after (a sequence number from `next`), limit (1 to 1000, default 100), who, what (or kind), target (or subject), outcome; or tail (the newest 1 to 1000) alone";

/// `tail=N`: the newest N entries (alone: no paging or filter with it).
fn audit_tail(q: &BTreeMap<String, String>) -> Result<Option<usize>, ApiError> {
    let Some(v) = q.get("tail") else {
        return Ok(None);
    };
    if let Some(other) = q.keys().find(|k| k.as_str() != "tail") {
        return Err(ApiError::invalid(
            Some(other.clone()),
            format!("tail is given alone (the newest entries), not with {other}; {AUDIT_QUERY}"),
        ));
    }
    v.parse::<usize>()
        .ok()
        .filter(|n| (1..=1000).contains(n))
        .map(Some)
        .ok_or_else(|| {
            ApiError::invalid(
                Some("tail".into()),
                format!("tail is {v:?}: it must be a whole number from 1 to 1000"),
            )
        })
}

fn audit_query(
    q: &BTreeMap<String, String>,
) -> Result<(Option<u64>, usize, AuditFilter), ApiError> {
    let known = [
        "after", "limit", "who", "what", "kind", "target", "subject", "outcome", "tail",
    ];
    if let Some(k) = q.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ApiError::invalid(
            Some(k.clone()),
            format!("unknown query parameter {k:?}: {AUDIT_QUERY}"),
        ));
    }
    for (a, b) in [("what", "kind"), ("target", "subject")] {
        if q.contains_key(a) && q.contains_key(b) {
            return Err(ApiError::invalid(
                Some(b.into()),
                format!("{a} and {b} are the same filter: give one of them; {AUDIT_QUERY}"),
            ));
        }
    }
    let after = match q.get("after") {
        None => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| {
            ApiError::invalid(
                Some("after".into()),
                format!("after is {v:?}: it must be a sequence number (0 to 18446744073709551615) from a previous page's `next`"),
            )
        })?),
    };
    let limit = match q.get("limit") {
        None => 100,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                ApiError::invalid(
                    Some("limit".into()),
                    format!("limit is {v:?}: it must be a whole number from 1 to 1000"),
                )
            })?,
    };
    let filter = AuditFilter {
        who: q.get("who").cloned(),
        what: q.get("what").or_else(|| q.get("kind")).cloned(),
        target: q.get("target").or_else(|| q.get("subject")).cloned(),
        outcome: q.get("outcome").cloned(),
    };
    Ok((after, limit, filter))
}

/// `POST /admin/plugins/{name}/test`: one traced call of an installed plugin (what
/// `llmos plugin test` prints). The call's world follows from the plugin's; the server's
/// loaded models answer its `inference` calls.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestBody {
    /// The request's inputs (preprocessor, policy) or the event's (integration); at least one.
    inputs: Vec<String>,
    /// The request's model (default `plugin-test`).
    #[serde(default)]
    model: Option<String>,
    /// Policies: call `check-response` with this response body (JSON text).
    #[serde(default)]
    output_json: Option<String>,
    /// Integrations: the synthetic event's kind (default `inference.finished`).
    #[serde(default)]
    event: Option<String>,
}

async fn test_plugin(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let b: TestBody = typed(
        body,
        "plugin test",
        "inputs (strings), model, output_json, event",
    )?;
    let input = crate::plugins::trace::TestInput {
        inputs: b.inputs,
        model: b.model,
        output_json: b.output_json,
        event: b.event,
    };
    let gw = s.gateway.clone();
    let report = blocking(move || {
        let world = registry::world_of(gw.host.store(), &name).map_err(plugin_err)?;
        let call = input
            .call(world, format!("plugin-test-{}", now_ms()))
            .map_err(|m| ApiError::invalid(None, m))?;
        gw.host.test_call(&name, &call).map_err(plugin_err)
    })
    .await?;
    Ok(Json(json!(report)))
}

/// `POST /admin/publishers`: trust a publisher's key (`llmos plugin publisher add`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublisherBody {
    /// The operator's name for the publisher.
    name: String,
    /// `ed25519:<base64>`, as `llmos plugin keygen` prints it.
    public_key: String,
}

async fn list_publishers(State(s): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let gw = s.gateway.clone();
    let list = blocking(move || registry::publishers(&gw.host).map_err(plugin_err)).await?;
    Ok(Json(json!({"publishers": list})))
}

async fn add_publisher(
    State(s): State<Arc<AppState>>,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let b: PublisherBody = typed(body, "publisher", "name, public_key (strings)")?;
    let gw = s.gateway.clone();
    let p = blocking(move || {
        registry::add_publisher(&gw.host, &b.name, &b.public_key).map_err(plugin_err)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(json!(p))))
}

async fn revoke_publisher(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let gw = s.gateway.clone();
    let p =
        blocking(move || registry::revoke_publisher(&gw.host, &name).map_err(plugin_err)).await?;
    Ok(Json(json!(p)))
}

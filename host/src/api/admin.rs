//! `/admin/…`: plugins and API keys over HTTP, for keys with the `admin` scope. The same
//! functions as `llmos plugin …` / `llmos keys …` (the store is locked by the running
//! server, so this is how an operator changes things without stopping it).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::api::error::ApiError;
use crate::api::routes::{Access, ApiRoute, delete, get, post};
use crate::api::{ApiJson, AppState, Caller};
use crate::plugins::PluginError;
use crate::plugins::registry::{self, InstallRequest};
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

/// `POST /admin/plugins`: install a plugin from files on the server.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallBody {
    /// The component (`.wasm`), inside `[plugins] install_root` when that is set.
    #[schema(value_type = String)]
    path: std::path::PathBuf,
    /// Its manifest (default: `manifest.toml` next to it), confined like `path`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    manifest: Option<std::path::PathBuf>,
    #[serde(default)]
    grants: Vec<String>,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    config: BTreeMap<String, String>,
    #[serde(default)]
    approve_limits: bool,
    /// The signature file (`llmos plugin sign`) on the server, confined like `path`; default
    /// `<path>.sig` when it exists.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    signature: Option<std::path::PathBuf>,
}

async fn install(
    State(s): State<Arc<AppState>>,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let b: InstallBody = serde_json::from_value(body).map_err(|e| {
        ApiError::invalid(None, format!("invalid install request: {e}; accepted fields: path, manifest, grants, sha256, config, approve_limits, signature"))
    })?;
    let gw = s.gateway.clone();
    let report = blocking(move || {
        let req = InstallRequest {
            component: b.path,
            manifest: b.manifest,
            grants: b.grants,
            sha256: b.sha256,
            config: b.config,
            approve_limits: b.approve_limits,
            signature: b.signature,
        };
        registry::install(&gw.host, &req).map_err(plugin_err)
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "plugin": report.record,
            "ungranted": report.ungranted,
            "unrequested": report.unrequested,
            "raised_limits": report.raised_limits,
        })),
    ))
}

async fn remove(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let gw = s.gateway.clone();
    let rec = blocking(move || registry::remove(&gw.host, &name).map_err(plugin_err)).await?;
    Ok(Json(json!({"removed": rec.manifest.name})))
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
    let (rec, _) =
        blocking(move || registry::grant(&gw.host, &name, &caps).map_err(plugin_err)).await?;
    Ok(Json(json!(rec)))
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
}

async fn create_key(
    State(s): State<Arc<AppState>>,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let b: CreateKey = serde_json::from_value(body).map_err(|e| {
        ApiError::invalid(
            None,
            format!("invalid key request: {e}; accepted fields: name, scopes, expires"),
        )
    })?;
    let expires = b
        .expires
        .as_deref()
        .map(|e| keys::parse_expiry(e, now_ms()))
        .transpose()
        .map_err(key_err)?;
    let st = s.clone();
    let (rec, token) =
        blocking(move || st.keys.create(&b.name, &b.scopes, expires).map_err(key_err)).await?;
    s.refresh_keys();
    let _ = s.gateway.host.audit().record(
        "key-created",
        &rec.id,
        None,
        format!("scopes {:?}", rec.scopes),
    );
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
    let rec = blocking(move || st.keys.revoke(&id).map_err(key_err)).await?;
    s.refresh_keys();
    let _ =
        s.gateway
            .host
            .audit()
            .record("key-revoked", &rec.id, None, "revoked over the admin API");
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

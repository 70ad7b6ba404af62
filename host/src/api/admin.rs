//! `/admin/…`: plugins and API keys over HTTP, for keys with the `admin` scope. The same
//! functions as `llmos plugin …` / `llmos keys …` (the store is locked by the running
//! server, so this is how an operator changes things without stopping it).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::error::ApiError;
use crate::api::{ApiJson, AppState};
use crate::plugins::PluginError;
use crate::plugins::registry::{self, InstallRequest};
use crate::security::audit::now_ms;
use crate::security::keys::{self, KeyError};

/// The routes of this module.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/plugins", get(list_plugins).post(install))
        .route("/admin/plugins/{name}", get(plugin_info).delete(remove))
        .route("/admin/plugins/{name}/grant", post(grant))
        .route("/admin/plugins/{name}/revoke", post(revoke))
        .route("/admin/plugins/{name}/enable", post(enable))
        .route("/admin/plugins/{name}/disable", post(disable))
        .route("/admin/keys", get(list_keys).post(create_key))
        .route("/admin/keys/{id}", axum::routing::delete(revoke_key))
        .route("/admin/audit", get(audit))
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

/// Runs registry work (sled, compilation) off the executor.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            e.to_string(),
        )
    })?
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
    v["kv_usage"] = json!(usage);
    v["effective_limits"] = json!(rec.limits());
    Ok(Json(v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InstallBody {
    path: std::path::PathBuf,
    #[serde(default)]
    manifest: Option<std::path::PathBuf>,
    #[serde(default)]
    grants: Vec<String>,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    config: BTreeMap<String, String>,
}

async fn install(
    State(s): State<Arc<AppState>>,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let b: InstallBody = serde_json::from_value(body).map_err(|e| {
        ApiError::invalid(None, format!("invalid install request: {e}; accepted fields: path, manifest, grants, sha256, config"))
    })?;
    let gw = s.gateway.clone();
    let report = blocking(move || {
        let req = InstallRequest {
            component: b.path,
            manifest: b.manifest,
            grants: b.grants,
            sha256: b.sha256,
            config: b.config,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Caps {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
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

async fn audit(State(s): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let a = s.gateway.host.audit().clone();
    let records = blocking(move || {
        a.records().map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                e.to_string(),
            )
        })
    })
    .await?;
    let n = records.len();
    Ok(Json(
        json!({"records": records.into_iter().skip(n.saturating_sub(1000)).collect::<Vec<_>>()}),
    ))
}

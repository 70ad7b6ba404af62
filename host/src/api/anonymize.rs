//! `POST /v1/anonymize` and `POST /v1/deanonymize`: the HTTP face of
//! [`crate::data::anonymize`] and the vault. Each needs its own key scope
//! (`pii:anonymize`, `pii:deanonymize`), which a key may hold for every vault scope or
//! narrowed to some (`pii:deanonymize:tenant-a`): a tenant's key then neither reads another
//! tenant's originals nor learns its tokens. Deanonymising is audited.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::security::audit::AuditEvent;
use crate::api::error::ApiError;
use crate::api::routes::{Access, ApiRoute, post};
use crate::api::{ApiJson, AppState, Caller, model};
use crate::data::anonymize::{AnonymizeError, NER_MODEL, Options, anonymize};
use crate::data::vault::{Vault, VaultError};

/// Scope a key needs for `POST /v1/anonymize`.
pub const ANONYMIZE_SCOPE: &str = "pii:anonymize";
/// Scope a key needs for `POST /v1/deanonymize`.
pub const DEANONYMIZE_SCOPE: &str = "pii:deanonymize";

/// The routes of this module.
pub(crate) fn routes() -> Vec<ApiRoute> {
    vec![
        post("/v1/anonymize", Access::Scope(ANONYMIZE_SCOPE), anonymize_route)
            .body::<AnonymizeRequest>(),
        post(
            "/v1/deanonymize",
            Access::Scope(DEANONYMIZE_SCOPE),
            deanonymize_route,
        )
        .body::<DeanonymizeRequest>(),
    ]
}

/// The scope a path of this module needs (read by `access::auth`).
pub(crate) fn scope_of(path: &str) -> Option<&'static str> {
    match path {
        "/v1/anonymize" => Some(ANONYMIZE_SCOPE),
        "/v1/deanonymize" => Some(DEANONYMIZE_SCOPE),
        _ => None,
    }
}

/// `POST /v1/anonymize`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnonymizeRequest {
    /// One text (give `text` or `texts`).
    pub text: Option<String>,
    /// Several texts.
    pub texts: Option<Vec<String>>,
    /// Operator per entity type: `redact`, `mask`, `tag` (default), `hash`, `pseudonymize`,
    /// e.g. `{"PERSON":"pseudonymize","EMAIL":"mask"}`.
    #[serde(default)]
    pub operators: BTreeMap<String, String>,
    /// Vault scope of pseudonyms and hashes (a tenant or collection; default `default`).
    pub scope: Option<String>,
    /// Entity types to detect (default: all).
    pub entities: Option<Vec<String>>,
    /// Report each entity's original text (default false).
    #[serde(default)]
    pub include_text: bool,
}

/// `POST /v1/deanonymize`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeanonymizeRequest {
    /// A text holding pseudonym tokens such as `<PERSON_7f3a9c2e>`.
    pub text: String,
    /// The vault scope that issued them (default `default`).
    pub scope: Option<String>,
}

fn api_error(e: AnonymizeError) -> ApiError {
    let message = e.to_string();
    match e {
        AnonymizeError::UnknownType { field, .. } => ApiError::invalid(Some(field.into()), message),
        AnonymizeError::UnknownOperator { kind, .. } => {
            ApiError::invalid(Some(format!("operators.{kind}")), message)
        }
        AnonymizeError::TooMuchText { .. } => ApiError::invalid(Some("text".into()), message),
        AnonymizeError::Vault(e) => vault_error(e),
        AnonymizeError::Task(e) => e.into(),
        AnonymizeError::Load(e) => e.into(),
    }
}

fn vault_error(e: VaultError) -> ApiError {
    match e {
        VaultError::BadScope(_) => ApiError::invalid(Some("scope".into()), e.to_string()),
        e => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            e.to_string(),
        ),
    }
}

/// A key narrowed to some vault scopes (`pii:anonymize:<scope>`) may use only those; no
/// caller (open mode) may use any. Refusals are audited like the access layer's.
fn check_vault_scope(
    state: &AppState,
    caller: Option<&Caller>,
    route_scope: &str,
    vault_scope: &str,
) -> Result<(), ApiError> {
    let Some(Caller(key)) = caller else {
        return Ok(());
    };
    if key.allows_scope_on(route_scope, vault_scope) {
        return Ok(());
    }
    state.audit(
        "auth-denied",
        &key.id,
        format!("{route_scope}: vault scope {vault_scope} not granted"),
    );
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "permission_error",
        format!(
            "key {} may not use {route_scope} on vault scope {vault_scope:?} (it has {}); \
             it needs {route_scope} or {route_scope}:{vault_scope}",
            key.id,
            key.scopes.join(", ")
        ),
    )
    .with_param(Some("scope".into()))
    .with_code("missing_scope"))
}

fn joined(e: tokio::task::JoinError) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        e.to_string(),
    )
}

/// `text` or `texts` (exactly one, not empty); whether it was `text`.
fn texts_of(req: &mut AnonymizeRequest) -> Result<(Vec<String>, bool), ApiError> {
    match (req.text.take(), req.texts.take()) {
        (Some(t), None) => Ok((vec![t], true)),
        (None, Some(t)) if !t.is_empty() => Ok((t, false)),
        (None, Some(_)) => Err(ApiError::invalid(
            Some("texts".into()),
            "`texts` is empty: give at least one text",
        )),
        (Some(_), Some(_)) => Err(ApiError::invalid(
            Some("text".into()),
            "give `text` (one string) or `texts` (an array of strings), not both",
        )),
        (None, None) => Err(ApiError::invalid(
            Some("text".into()),
            "missing `text` (one string) or `texts` (an array of strings)",
        )),
    }
}

async fn anonymize_route(
    State(state): State<Arc<AppState>>,
    caller: Option<Extension<Caller>>,
    ApiJson(mut req): ApiJson<AnonymizeRequest>,
) -> Result<Json<Value>, ApiError> {
    let (texts, single) = texts_of(&mut req)?;
    let mut options = Options::new(
        &req.operators,
        req.scope.as_deref(),
        req.entities.as_deref(),
        req.include_text,
    )
    .map_err(api_error)?;
    check_vault_scope(
        &state,
        caller.as_deref(),
        ANONYMIZE_SCOPE,
        &options.scope,
    )?;
    options.deadline = Instant::now().checked_add(state.limits.timeout);
    let m = if options.needs_model() {
        Some(model(&state, NER_MODEL).await?)
    } else {
        None
    };
    let vault = Vault::new(state.gateway.host.store().clone());
    let scope = options.scope.clone();
    let out = tokio::task::spawn_blocking(move || {
        anonymize(m.as_deref(), &vault, &texts, &options)
    })
    .await
    .map_err(joined)?
    .map_err(api_error)?;
    Ok(Json(if single {
        let first = out.into_iter().next();
        json!({
            "scope": scope,
            "text": first.as_ref().map(|a| &a.text),
            "entities": first.as_ref().map(|a| &a.entities),
        })
    } else {
        json!({
            "scope": scope,
            "texts": out.iter().map(|a| &a.text).collect::<Vec<_>>(),
            "entities": out.iter().map(|a| &a.entities).collect::<Vec<_>>(),
        })
    }))
}

async fn deanonymize_route(
    State(state): State<Arc<AppState>>,
    caller: Option<Extension<Caller>>,
    ApiJson(req): ApiJson<DeanonymizeRequest>,
) -> Result<Json<Value>, ApiError> {
    let scope = req.scope.unwrap_or_else(|| "default".into());
    crate::data::vault::check_scope(&scope).map_err(vault_error)?;
    check_vault_scope(&state, caller.as_deref(), DEANONYMIZE_SCOPE, &scope)?;
    let vault = Vault::new(state.gateway.host.store().clone());
    let s = scope.clone();
    let restored = tokio::task::spawn_blocking(move || vault.deanonymize(&s, &req.text))
        .await
        .map_err(joined)?
        .map_err(vault_error)?;
    let who = caller.map_or_else(|| "open-mode".to_string(), |c| c.0.0.id.clone());
    let event = AuditEvent::new("pii-deanonymize", &format!("vault:{scope}"))
        .by(&who)
        .detail(format!(
            "{} tokens restored, {} unknown",
            restored.restored, restored.unknown
        ));
    if let Err(e) = state.gateway.host.audit().event(event) {
        tracing::error!("audit log: {e}");
    }
    Ok(Json(json!({
        "scope": scope,
        "text": restored.text,
        "restored": restored.restored,
        "unknown": restored.unknown,
    })))
}

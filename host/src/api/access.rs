//! Access control for every route: API keys and scopes, open loopback mode and its
//! browser guards (Host, Origin, Content-Type).
//!
//! Open mode (no key needed) holds only when all three are true: the server is bound to a
//! loopback address, the peer connects from loopback, and no usable key exists. A server
//! bound beyond loopback (`0.0.0.0` included) is never open, whatever happens to its keys.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::api::error::ApiError;
use crate::api::routes::{Access, access_of};
use crate::api::{AppState, BodyLimit, Caller, ParsedBody, parse_body, read_body};
use crate::security::keys::{KeyRecord, Refusal};

/// Routes that answer without a key in every mode: liveness, the API description and the
/// console's static files (which call the API with the user's key).
pub fn is_public(path: &str) -> bool {
    path == "/health"
        || path.starts_with("/v2/health")
        || path == "/openapi.json"
        || crate::api::console::is_console_path(path)
}

/// Whether an address is loopback (IPv4-mapped IPv6 loopback included).
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// API keys: 401 without a valid key (when the server is not open, and always on
/// `/admin`), 403 without the scope the route or model needs, 400 when a `/v1` body's
/// model cannot be read. Public routes always pass. Every refusal is audited.
pub async fn auth(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    // `[metrics] public`: scrapers that send no key (the inference extension's endpoint picker).
    if is_public(&path) || (path == "/metrics" && state.core.config().metrics.public) {
        return next.run(req).await;
    }
    match authorize(&state, req, &path).await {
        Ok(req) => next.run(req).await,
        Err(e) if path.starts_with("/v2") => e.kserve().into_response(),
        Err(e) => e.into_response(),
    }
}

async fn authorize(state: &AppState, req: Request, path: &str) -> Result<Request, ApiError> {
    // The admin socket's owner (`api/local.rs`): authenticated by the operating system.
    if let Some(owner) = req.extensions().get::<crate::api::local::LocalPeer>().copied() {
        return Ok(with_caller(req, owner.identity()));
    }
    let admin = path.starts_with("/admin");
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    if !admin && state.is_open(peer) {
        // Clients such as OpenAI's insist on sending a key: it is ignored here.
        browser_guard(req.headers(), req.method(), path)?;
        return Ok(req);
    }
    let key = authenticate_off(state, req.headers(), path, peer, admin).await?;
    if admin {
        if !key.is_admin() {
            let msg = format!("key {} lacks the admin scope needed for {path}", key.id);
            let what = format!("{path}: no admin scope");
            return Err(refuse_scope(state, peer, &key, &what, msg));
        }
        return Ok(with_caller(req, key));
    }
    let matched = req.extensions().get::<MatchedPath>().map(|m| m.as_str());
    match matched.and_then(|m| access_of(req.method(), m)) {
        Some(Access::Data { write }) => return check_data(state, peer, req, key, path, write),
        Some(Access::Tool) => {
            let id = tool_of_path(path).unwrap_or_default();
            if !key.allows_tool(&id) {
                let msg = format!(
                    "key {} lacks the scope tools:{id} (or tools:*) needed to use tool {id}; it has {}",
                    key.id,
                    key.scopes.join(", ")
                );
                let what = format!("{path}: no scope tools:{id}");
                return Err(refuse_scope(state, peer, &key, &what, msg));
            }
            return Ok(with_caller(req, key));
        }
        _ => {}
    }
    if let Some(scope) = crate::api::anonymize::scope_of(path) {
        if !key.has_scope(scope) {
            let msg = format!(
                "key {} lacks the scope {scope} needed for {path} (it has {})",
                key.id,
                key.scopes.join(", ")
            );
            let what = format!("{path}: no scope {scope}");
            return Err(refuse_scope(state, peer, &key, &what, msg));
        }
        return Ok(with_caller(req, key));
    }
    let (req, model) = if path.starts_with("/v1/") && req.method() == Method::POST {
        let (req, model) = parse_v1(req).await?;
        (req, Some(model))
    } else {
        let model = model_of_path(path);
        (req, model)
    };
    if let Some(model) = model
        && !key.allows_model(&model)
    {
        let msg = format!(
            "key {} lacks the scope models:{model} (it has {})",
            key.id,
            key.scopes.join(", ")
        );
        let what = format!("{path}: no scope for model {model}");
        return Err(refuse_scope(state, peer, &key, &what, msg));
    }
    Ok(with_caller(req, key))
}

/// The caller of a gRPC call (`api/grpc`), checked as the HTTP `/v2` route it mirrors:
/// open loopback mode passes (`Ok(None)`); otherwise the `authorization: Bearer <key>`
/// metadata must hold a valid key (401, audited, as on HTTP), and with `model` the key needs
/// that model's scope (403 naming it, audited). `what` names the call in audit records.
pub(crate) fn authorize_call(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    what: &str,
    model: Option<&str>,
) -> Result<Option<KeyRecord>, ApiError> {
    if state.is_open(peer) {
        return Ok(None);
    }
    let key = authenticate(state, headers, what, peer, false)?;
    if let Some(model) = model
        && !key.allows_model(model)
    {
        let msg = format!(
            "key {} lacks the scope models:{model} (it has {})",
            key.id,
            key.scopes.join(", ")
        );
        let audit = format!("{what}: no scope for model {model}");
        return Err(refuse_scope(state, peer, &key, &audit, msg));
    }
    Ok(Some(key))
}

/// A data route: the key needs the collection's read or write scope.
fn check_data(
    state: &AppState,
    peer: Option<SocketAddr>,
    req: Request,
    key: KeyRecord,
    path: &str,
    write: bool,
) -> Result<Request, ApiError> {
    let collection = collection_of_path(path).unwrap_or_default();
    require_data(state, peer, &key, path, collection, write)?;
    Ok(with_caller(req, key))
}

/// Whether `key` may read (or, with `write`, change) `collection`; the 403 (audited) if not.
/// Also used by handlers that name a collection in their body (chat's `collection`).
pub(crate) fn require_data(
    state: &AppState,
    peer: Option<SocketAddr>,
    key: &KeyRecord,
    path: &str,
    collection: &str,
    write: bool,
) -> Result<(), ApiError> {
    let allowed = if write {
        key.can_write_data(collection)
    } else {
        key.can_read_data(collection)
    };
    if allowed {
        return Ok(());
    }
    let need = if write { ":write" } else { "" };
    let msg = format!(
        "key {} lacks the scope data:{collection}{need} (or data:*{need}); it has {}",
        key.id,
        key.scopes.join(", ")
    );
    let what = format!("{path}: no scope data:{collection}{need}");
    Err(refuse_scope(state, peer, key, &what, msg))
}

/// A 403 `missing_scope` for `key`, audited (handlers that check a scope themselves).
pub(crate) fn refuse(
    state: &AppState,
    peer: Option<SocketAddr>,
    key: &KeyRecord,
    what: &str,
    msg: String,
) -> ApiError {
    refuse_scope(state, peer, key, what, msg)
}

/// The tool a `/v1/tools/{id}/…` path names (percent-decoded: MCP tool ids hold `:`).
fn tool_of_path(path: &str) -> Option<String> {
    let seg = path.strip_prefix("/v1/tools/")?.split('/').next()?;
    Some(percent_decode(seg))
}

/// `%XX` escapes of a path segment decoded (invalid ones kept as they are).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0usize;
    while let Some(&c) = b.get(i) {
        let hex = |j: usize| b.get(j).and_then(|h| char::from(*h).to_digit(16));
        match (c, hex(i.saturating_add(1)), hex(i.saturating_add(2))) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h.saturating_mul(16).saturating_add(l)).unwrap_or(b'?'));
                i = i.saturating_add(3);
            }
            _ => {
                out.push(c);
                i = i.saturating_add(1);
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The collection a `/v1/collections/{name}…` path names.
fn collection_of_path(path: &str) -> Option<&str> {
    path.strip_prefix("/v1/collections/")?.split('/').next()
}

fn with_caller(mut req: Request, key: KeyRecord) -> Request {
    req.extensions_mut().insert(Caller(key));
    req
}

fn refuse_scope(
    state: &AppState,
    peer: Option<SocketAddr>,
    key: &KeyRecord,
    what: &str,
    msg: String,
) -> ApiError {
    // An authenticated key's refusal is written as it is (accountable, never aggregated).
    let from = peer.map_or_else(String::new, |p| format!(" (from {})", p.ip()));
    state.audit("auth-denied", &key.id, format!("{what}{from}"));
    ApiError::new(StatusCode::FORBIDDEN, "permission_error", msg).with_code("missing_scope")
}

/// The key of a request, or the 401 (audited) that says what was wrong.
/// The key lookup of a stored key, as [`Keys::authenticate`] answers it.
///
/// [`Keys::authenticate`]: crate::security::keys::Keys::authenticate
type Lookup = Result<Result<KeyRecord, Refusal>, crate::security::keys::KeyError>;

/// [`authenticate`] with the key lookup (a store read: a round trip to PostgreSQL on a shared
/// store) on tokio's blocking pool, so that it never holds a worker thread of the executor.
async fn authenticate_off(
    state: &AppState,
    headers: &HeaderMap,
    path: &str,
    peer: Option<SocketAddr>,
    admin: bool,
) -> Result<KeyRecord, ApiError> {
    let looked = match bearer(headers) {
        Some(token) => {
            let keys = state.keys.clone();
            let found = tokio::task::spawn_blocking(move || keys.authenticate(&token))
                .await
                .map_err(|e| {
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", e.to_string())
                })?;
            Some(found)
        }
        None => None,
    };
    settle(state, looked, path, peer, admin)
}

fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    path: &str,
    peer: Option<SocketAddr>,
    admin: bool,
) -> Result<KeyRecord, ApiError> {
    let looked = bearer(headers).map(|token| state.keys.authenticate(&token));
    settle(state, looked, path, peer, admin)
}

/// The outcome of a key lookup (`None`: no key was presented): the key, or the 401, audited.
fn settle(
    state: &AppState,
    looked: Option<Lookup>,
    path: &str,
    peer: Option<SocketAddr>,
    admin: bool,
) -> Result<KeyRecord, ApiError> {
    let unauthorized = |code: &'static str, msg: String| {
        ApiError::new(StatusCode::UNAUTHORIZED, "authentication_error", msg).with_code(code)
    };
    let Some(looked) = looked else {
        state.audit_refusal(peer, "anonymous", &format!("{path}: no API key"));
        let how = if admin {
            "admin routes always need a key with the admin scope (create one with `llmos keys create --scope admin` on the server's machine, which works while it runs, or POST /admin/keys with an admin key)"
        } else {
            "this server needs `Authorization: Bearer <key>` (it has API keys, or listens beyond loopback, or the request comes from another host)"
        };
        return Err(unauthorized(
            "missing_api_key",
            format!("missing API key: {how}"),
        ));
    };
    let refusal = match looked {
        Ok(Ok(k)) => return Ok(k),
        Ok(Err(r)) => r,
        Err(e) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                e.to_string(),
            ));
        }
    };
    let (subject, why) = match refusal {
        Refusal::Invalid => ("unknown".to_string(), "is not a valid llmos API key".into()),
        Refusal::Revoked(id) => (id.clone(), format!("{id} was revoked")),
        Refusal::Expired(id) => (id.clone(), format!("{id} has expired")),
    };
    state.audit_refusal(peer, &subject, &format!("{path}: key {why}"));
    Err(unauthorized(
        "invalid_api_key",
        format!("the API key {why}; create one with `llmos keys create`"),
    ))
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// The model a KServe or `/v1/models/{id}` path names.
fn model_of_path(path: &str) -> Option<String> {
    if let Some(rest) = path.strip_prefix("/v2/models/") {
        return rest.split('/').next().map(str::to_string);
    }
    path.strip_prefix("/v1/models/").map(str::to_string)
}

/// Parses a `/v1` POST body once (duplicate keys refused), reads its model, and keeps the
/// parsed body for the handler, which reads the same value.
async fn parse_v1(req: Request) -> Result<(Request, String), ApiError> {
    let (mut parts, body) = req.into_parts();
    let limit = parts.extensions.get::<BodyLimit>().map_or(0, |l| l.0);
    let raw = read_body(body, limit).await?;
    let value = parse_body(&raw)?;
    let model = match value.get("model") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(other) => {
            return Err(ApiError::invalid(
                Some("model".into()),
                format!("`model` is {other}: it must be a model name string"),
            ));
        }
        None => {
            return Err(ApiError::invalid(
                Some("model".into()),
                "missing required field `model`: give a model name (GET /v1/models lists them); \
                 a key's scope is checked against it",
            ));
        }
    };
    parts.extensions.insert(ParsedBody(Arc::new(value)));
    parts.extensions.insert(crate::api::RawBody(raw));
    Ok((Request::from_parts(parts, axum::body::Body::empty()), model))
}

/// Open mode's guards against web pages: the Host must name loopback (DNS rebinding), an
/// Origin must be loopback (cross-site requests), and JSON routes need a JSON content type
/// (forms and `text/plain` are what a page can send without asking).
pub fn browser_guard(headers: &HeaderMap, method: &Method, path: &str) -> Result<(), ApiError> {
    let forbidden = |code: &'static str, msg: String| {
        ApiError::new(StatusCode::FORBIDDEN, "permission_error", msg).with_code(code)
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if !host.is_some_and(host_is_loopback) {
        return Err(forbidden(
            "host_not_loopback",
            format!(
                "Host {}: without API keys llmos answers only requests addressed to loopback \
                 (localhost, 127.x.x.x or [::1], any port); create a key to serve other names",
                host.map_or_else(|| "(missing)".to_string(), |h| format!("{h:?}"))
            ),
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let text = origin.to_str().unwrap_or("(not text)");
        if !origin_is_loopback(text) {
            return Err(forbidden(
                "origin_not_loopback",
                format!(
                    "Origin {text:?}: without API keys llmos refuses requests from web pages of \
                     other sites; only loopback origins (http://localhost, http://127.0.0.1, \
                     http://[::1], any port) are accepted"
                ),
            ));
        }
    }
    if method == Method::POST {
        content_type_guard(headers, path)?;
    }
    Ok(())
}

fn content_type_guard(headers: &HeaderMap, path: &str) -> Result<(), ApiError> {
    let sent = headers.get(header::CONTENT_TYPE).map(|v| {
        v.to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    // KServe's infer also takes binary tensors, and Triton's client sends no type for JSON.
    let kserve = path.starts_with("/v2/");
    let ok = match sent.as_deref() {
        Some("application/json") => true,
        Some("application/octet-stream") | None => kserve,
        Some(_) => false,
    };
    if ok {
        return Ok(());
    }
    let accepted = if kserve {
        "application/json or application/octet-stream (binary tensors)"
    } else {
        "application/json"
    };
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "invalid_request_error",
        format!(
            "Content-Type {}: this route accepts {accepted}",
            sent.map_or_else(|| "(missing)".to_string(), |s| format!("{s:?}"))
        ),
    )
    .with_code("unsupported_media_type"))
}

/// `localhost`, `127.x.x.x`, `[::1]` (or `::ffff:127.x.x.x`), each with any port or none.
pub fn host_is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, port)) if port.is_empty() || valid_port(port) => ip,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if valid_port(port) => name,
            Some(_) => return false,
            None => host,
        }
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<IpAddr>().is_ok_and(is_loopback)
}

fn valid_port(port: &str) -> bool {
    port.strip_prefix(':')
        .unwrap_or(port)
        .parse::<u16>()
        .is_ok()
}

fn origin_is_loopback(origin: &str) -> bool {
    let Some((scheme, host)) = origin.split_once("://") else {
        return false; // "null" (sandboxed frames, files) and anything unparseable
    };
    matches!(scheme, "http" | "https") && !host.contains('/') && host_is_loopback(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised_with_any_port() {
        for h in [
            "localhost",
            "LOCALHOST:8080",
            "127.0.0.1",
            "127.1.2.3:1",
            "[::1]",
            "[::1]:8080",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert!(host_is_loopback(h), "{h}");
        }
        for h in [
            "evil.example",
            "evil.example:8080",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
            "10.0.0.1:80",
            "[::2]",
            "127.0.0.1:x",
            "[::1]x",
            "",
        ] {
            assert!(!host_is_loopback(h), "{h}");
        }
    }

    #[test]
    fn origins_must_be_loopback_web_origins() {
        assert!(origin_is_loopback("http://localhost:3000"));
        assert!(origin_is_loopback("https://127.0.0.1"));
        assert!(!origin_is_loopback("null"));
        assert!(!origin_is_loopback("https://evil.example"));
        assert!(!origin_is_loopback("http://localhost.evil.example"));
        assert!(!origin_is_loopback("file://"));
    }
}

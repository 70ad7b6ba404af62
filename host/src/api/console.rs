//! The operator console and playground (docs/console.md): a few static files embedded in the
//! binary, served at `/` and `/console/{file}` on the API's port. The page holds no data of
//! its own; it calls the same HTTP API with the key the user enters (kept in
//! `sessionStorage`), so the routes' own auth applies to everything it shows.
//!
//! Every answer carries a strict Content-Security-Policy (scripts, styles and connections
//! only from this origin, no inline script or style, no framing), `X-Frame-Options: DENY`
//! and `nosniff`. `[server] console = false` makes both routes 404.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::routes::{Access, ApiRoute, get};

/// The console's Content-Security-Policy: everything from this origin only, nothing inline,
/// never framed.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The embedded files: name, content type, bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("console/index.html"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("console/style.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("console/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_bytes!("console/api.js"),
    ),
    (
        "playground.js",
        "text/javascript; charset=utf-8",
        include_bytes!("console/playground.js"),
    ),
    (
        "admin.js",
        "text/javascript; charset=utf-8",
        include_bytes!("console/admin.js"),
    ),
    (
        "metrics.js",
        "text/javascript; charset=utf-8",
        include_bytes!("console/metrics.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("console/favicon.svg"),
    ),
];

/// The console's routes (public: the files hold nothing secret; the data comes from the
/// API under the user's key).
pub(crate) fn routes() -> Vec<ApiRoute> {
    vec![
        get("/", Access::Public, index),
        get("/console/{file}", Access::Public, asset),
    ]
}

/// Whether a path is one of the console's (public, like `/health`).
pub fn is_console_path(path: &str) -> bool {
    path == "/" || path.starts_with("/console/")
}

async fn index(State(s): State<Arc<AppState>>) -> Response {
    serve(&s, "index.html")
}

async fn asset(State(s): State<Arc<AppState>>, Path(file): Path<String>) -> Response {
    serve(&s, &file)
}

fn serve(s: &AppState, name: &str) -> Response {
    if !s.core.config().server.console {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "the console is turned off on this server ([server] console = false); the API routes still answer",
        )
        .into_response();
    }
    let Some((_, ctype, bytes)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        let names: Vec<&str> = FILES.iter().map(|(n, _, _)| *n).collect();
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!(
                "no console file {name:?}; the console serves {}",
                names.join(", ")
            ),
        )
        .into_response();
    };
    let body: Vec<u8> = dev_override(name).unwrap_or_else(|| bytes.to_vec());
    (
        [
            (header::CONTENT_TYPE, *ctype),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Debug builds only: `LLMOS_CONSOLE_DIR` serves the console's files from that folder
/// (edit the page without rebuilding). Release builds always serve the embedded files.
#[cfg(debug_assertions)]
fn dev_override(name: &str) -> Option<Vec<u8>> {
    let dir = std::env::var_os("LLMOS_CONSOLE_DIR")?;
    std::fs::read(std::path::Path::new(&dir).join(name)).ok()
}

#[cfg(not(debug_assertions))]
fn dev_override(_: &str) -> Option<Vec<u8>> {
    None
}

//! KServe v2 / Open Inference Protocol routes (being written).

use std::sync::Arc;

use axum::Router;

use crate::api::AppState;

/// The routes of this module.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
}

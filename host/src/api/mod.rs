//! The HTTP endpoint. For now: health and the model listing; the OpenAI- and
//! KServe-compatible routes arrive with the API issue.

use std::sync::Arc;

use anyhow::{Context, Result};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::core::Core;

/// Runs the server until SIGINT/SIGTERM. Builds its own tokio runtime; model code stays
/// on the models' inference threads.
pub fn serve(core: Arc<Core>, listen: &str) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("llmos-http")
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        // Tests and scripts read this line to find the port when binding to :0.
        println!("llmos listening on http://{addr}");
        tracing::info!(%addr, "listening");
        let app = router(core);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("server failed")
    })
}

fn router(core: Arc<Core>) -> Router {
    Router::new().route("/health", get(health)).with_state(core)
}

async fn health(State(core): State<Arc<Core>>) -> Json<Value> {
    let models: Vec<Value> = core
        .loaded()
        .iter()
        .map(|m| json!({"name": m.name(), "task": m.manifest.task, "provider": m.provider.serving}))
        .collect();
    Json(json!({"status": "ok", "models": models}))
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
    tracing::info!("shutting down");
}

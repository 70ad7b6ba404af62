//! A last line of defence: a handler that panics answers 500 in its route's error shape
//! (`{"error": "..."}` on `/v2`, OpenAI's shape elsewhere) instead of dropping the
//! connection, and the panic is logged and counted (`llmos_panics_total`). No request
//! should ever get here; the counter says when one did.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::error::ApiError;

/// Counts panics caught by [`catch_panic`].
pub type PanicCounter = Arc<AtomicU64>;

/// Middleware: runs the rest of the stack, turning a panic into a 500.
pub async fn catch_panic(State(panics): State<PanicCounter>, req: Request, next: Next) -> Response {
    let kserve = req.uri().path().starts_with("/v2");
    let what = format!("{} {}", req.method(), req.uri().path());
    match CatchUnwind(Box::pin(next.run(req))).await {
        Ok(resp) => resp,
        Err(payload) => {
            panics.fetch_add(1, Ordering::Relaxed);
            tracing::error!(request = %what, panic = %message(payload.as_ref()), "a handler panicked");
            let e = ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                format!(
                    "internal error while handling {what}: the server caught a bug (a panic), logged it \
                     and counted it in llmos_panics_total; please report it with the server log"
                ),
            )
            .with_code("internal_panic");
            if kserve { e.kserve() } else { e }.into_response()
        }
    }
}

pub(crate) fn message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// Polls a future, catching a panic in any poll (also around the gRPC calls, `api/grpc`).
pub(crate) struct CatchUnwind<F>(pub(crate) Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::middleware::from_fn_with_state;
    use axum::routing::get;
    use tower::ServiceExt;

    #[allow(clippy::arithmetic_side_effects)] // why: a test handler that panics on purpose
    async fn boom() -> &'static str {
        let v: Vec<u8> = Vec::new();
        let i = v.len() + 3;
        if i > 0 {
            panic!("index {i} out of range");
        }
        "unreachable"
    }

    async fn call(app: Router, path: &str) -> (StatusCode, serde_json::Value) {
        let resp = app
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_in_the_routes_shape_and_is_counted() {
        let panics = PanicCounter::default();
        let app = Router::new()
            .route("/v1/boom", get(boom))
            .route("/v2/boom", get(boom))
            .route("/fine", get(|| async { "fine" }))
            .layer(from_fn_with_state(panics.clone(), catch_panic));

        let (status, v) = call(app.clone(), "/v1/boom").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(v["error"]["type"], "server_error", "{v}");
        assert_eq!(v["error"]["code"], "internal_panic", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("GET /v1/boom"),
            "{v}"
        );

        let (status, v) = call(app.clone(), "/v2/boom").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(v["error"].as_str().unwrap().contains("panic"), "{v}");
        assert_eq!(panics.load(Ordering::Relaxed), 2);

        let resp = app
            .oneshot(Request::get("/fine").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(panics.load(Ordering::Relaxed), 2);
    }
}

//! KServe v2 / Triton's `inference.GRPCInferenceService` on its own port
//! (`llmos serve --grpc-listen ADDR`, `[server] grpc_listen`; off unless set), for
//! `tritonclient.grpc` and other Open Inference Protocol gRPC clients.
//!
//! It shares the HTTP `/v2` routes' code path (`api/kserve`): a `ModelInferRequest` becomes
//! the same `InferRequest` the HTTP parser builds (`convert.rs`), runs through the same
//! `run_request` (model lookup, input and output checks, plugin-chain refusal, the model run)
//! and its `Answer` goes back as a `ModelInferResponse`. Callers are checked as on HTTP
//! (`access::authorize_call`: `authorization: Bearer <key>` metadata, the same scopes, the same
//! audit records), calls are counted in the same metrics (route label: the gRPC method path)
//! and bounded by the same request timeout and body limit (`max_decoding_message_size`). API
//! errors map to gRPC codes: 400 INVALID_ARGUMENT, 401 UNAUTHENTICATED, 403
//! PERMISSION_DENIED, 404 NOT_FOUND, 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED, 413 and 429
//! RESOURCE_EXHAUSTED; the message is the HTTP error's.
//!
//! `inference.rs` is generated from `host/proto/grpc_predict_v2.proto` by
//! `scripts/gen-grpc.sh` and committed (no protoc, no code generator in the build).

mod convert;
// why: generated code (scripts/gen-grpc.sh); its public items are reached through this module.
#[allow(
    unreachable_pub,
    missing_docs,
    clippy::all,
    clippy::pedantic,
    clippy::nursery,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic,
    clippy::unreachable,
    clippy::cast_possible_truncation
)]
mod inference;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::http::StatusCode;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::{Code, Request, Response, Status};

use self::inference::grpc_inference_service_server::{
    GrpcInferenceService, GrpcInferenceServiceServer,
};
use self::inference::model_metadata_response::TensorMetadata;
use self::inference::{
    ModelInferRequest, ModelInferResponse, ModelMetadataRequest, ModelMetadataResponse,
    ModelReadyRequest, ModelReadyResponse, ServerLiveRequest, ServerLiveResponse,
    ServerMetadataRequest, ServerMetadataResponse, ServerReadyRequest, ServerReadyResponse,
};
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::kserve::{self, Port, VERSION};
use crate::api::panic::{CatchUnwind, message};

/// The service path every method's route label starts with.
const SERVICE: &str = "/inference.GRPCInferenceService/";

/// Serves the gRPC service on `listener` until `stop` turns true; then stops accepting, lets
/// calls in flight finish and returns once every connection has closed.
pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    mut stop: watch::Receiver<bool>,
) {
    let limit = state.limits.body_bytes;
    let svc = GrpcInferenceServiceServer::new(Inference { state })
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    if let Err(e) = tonic::transport::Server::builder()
        .serve_with_incoming_shutdown(svc, incoming, shutdown)
        .await
    {
        tracing::error!("gRPC server: {e}");
    }
}

/// Binds the gRPC address; the error names the address and what is accepted.
pub(crate) async fn bind(addr: &str) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let addr: SocketAddr = addr.parse().map_err(|_| {
        anyhow::anyhow!(
            "invalid gRPC listen address {addr:?}: expected IP:PORT, e.g. 127.0.0.1:8081"
        )
    })?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for gRPC on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// The service over the server's shared state.
struct Inference {
    state: Arc<AppState>,
}

/// What a call needs from the caller (as its HTTP `/v2` route).
enum Need<'a> {
    /// Nothing (`/v2/health/*`).
    Public,
    /// A key unless the server is open (`GET /v2`).
    Key,
    /// A key (unless open) with this model's scope (`/v2/models/{name}…`).
    Model(&'a str),
}

impl Inference {
    /// Runs one call: checks the caller, applies the request timeout, records the metrics
    /// (labelled with the model on success, as HTTP does) and maps errors to gRPC codes.
    async fn call<T, R>(
        &self,
        method: &'static str,
        req: &Request<T>,
        need: Need<'_>,
        run: impl Future<Output = Result<(R, Option<String>), ApiError>>,
    ) -> Result<Response<R>, Status> {
        let state = &self.state;
        let start = Instant::now();
        let route = format!("{SERVICE}{method}");
        let result = match self.authorize(&route, req, &need) {
            Err(e) => Err(e),
            Ok(()) => match tokio::time::timeout(state.limits.timeout, CatchUnwind(Box::pin(run)))
                .await
            {
                Ok(Ok(r)) => r,
                // As `api/panic.rs` does for HTTP: logged, counted, answered INTERNAL.
                Ok(Err(payload)) => {
                    state.metrics.panics.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(call = %route, panic = %message(payload.as_ref()), "a gRPC call panicked");
                    Err(ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "server_error",
                        format!(
                            "internal error while handling {route}: the server caught a bug (a panic), logged it \
                             and counted it in llmos_panics_total; please report it with the server log"
                        ),
                    ))
                }
                Err(_) => Err(ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "server_error",
                    format!(
                        "the request took longer than the limit of {} s",
                        state.limits.timeout.as_secs_f64()
                    ),
                )),
            },
        };
        let (status, model) = match &result {
            Ok((_, model)) => (200, model.as_deref().unwrap_or("")),
            Err(e) => (e.status.as_u16(), ""),
        };
        state
            .metrics
            .observe(&route, model, status, start.elapsed());
        result.map(|(r, _)| Response::new(r)).map_err(status_of)
    }

    fn authorize<T>(&self, route: &str, req: &Request<T>, need: &Need<'_>) -> Result<(), ApiError> {
        let model = match need {
            Need::Public => return Ok(()),
            Need::Key => None,
            Need::Model(m) => Some(*m),
        };
        let headers = req.metadata().clone().into_headers();
        // The key lookup reads the store (a round trip on PostgreSQL): tell tokio, so that
        // this worker's other tasks move meanwhile.
        crate::api::off_worker(|| {
            crate::api::access::authorize_call(&self.state, &headers, req.remote_addr(), route, model)
        })
        .map(drop)
    }
}

/// An empty model name, refused before the caller is checked against it.
fn named(name: &str, field: &str) -> Result<(), Status> {
    if name.is_empty() {
        return Err(Status::invalid_argument(format!(
            "{field} is empty: name the model"
        )));
    }
    Ok(())
}

fn version(v: &str) -> Option<&str> {
    Some(v).filter(|v| !v.is_empty())
}

/// The gRPC status of an API error: its code from the HTTP status, its message as is.
fn status_of(e: ApiError) -> Status {
    let code = match e.status.as_u16() {
        400 | 422 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        408 | 504 => Code::DeadlineExceeded,
        413 | 429 => Code::ResourceExhausted,
        501 => Code::Unimplemented,
        502 | 503 => Code::Unavailable,
        _ => Code::Internal,
    };
    Status::new(code, e.message)
}

fn tensors(ports: Vec<Port>) -> Vec<TensorMetadata> {
    ports
        .into_iter()
        .map(|p| TensorMetadata {
            name: p.name,
            datatype: p.datatype,
            shape: p.shape,
        })
        .collect()
}

#[tonic::async_trait]
impl GrpcInferenceService for Inference {
    async fn server_live(
        &self,
        req: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        self.call("ServerLive", &req, Need::Public, async {
            Ok((ServerLiveResponse { live: true }, None))
        })
        .await
    }

    /// Ready once a model is loaded, as `/v2/health/ready` (which answers 503 otherwise).
    async fn server_ready(
        &self,
        req: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        let ready = !self.state.core.loaded().is_empty() && self.state.data.ready();
        self.call("ServerReady", &req, Need::Public, async move {
            Ok((ServerReadyResponse { ready }, None))
        })
        .await
    }

    /// Ready when loaded; a known, pulled model is loaded here, as on HTTP: an unknown model
    /// is NOT_FOUND, one that cannot load UNAVAILABLE with the reason.
    async fn model_ready(
        &self,
        req: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let m = req.get_ref();
        named(&m.name, "name")?;
        let state = &self.state;
        self.call(
            "ModelReady",
            &req,
            Need::Model(&m.name),
            async {
                let model = kserve::kmodel(state, &m.name, version(&m.version)).await?;
                Ok((ModelReadyResponse { ready: true }, Some(model.name().to_string())))
            },
        )
        .await
    }

    async fn server_metadata(
        &self,
        req: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        self.call("ServerMetadata", &req, Need::Key, async {
            let meta = ServerMetadataResponse {
                name: "llmos".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                // Raw tensor contents are part of the gRPC protocol itself: no extension.
                extensions: Vec::new(),
            };
            Ok((meta, None))
        })
        .await
    }

    async fn model_metadata(
        &self,
        req: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let m = req.get_ref();
        named(&m.name, "name")?;
        let state = &self.state;
        self.call(
            "ModelMetadata",
            &req,
            Need::Model(&m.name),
            async {
                let model = kserve::kmodel(state, &m.name, version(&m.version)).await?;
                let (inputs, outputs) = kserve::interface(&model);
                let meta = ModelMetadataResponse {
                    name: model.name().to_string(),
                    versions: vec![VERSION.to_string()],
                    platform: "onnxruntime_onnx".into(),
                    inputs: tensors(inputs),
                    outputs: tensors(outputs),
                };
                Ok((meta, Some(model.name().to_string())))
            },
        )
        .await
    }

    async fn model_infer(
        &self,
        req: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let (meta, ext, msg) = req.into_parts();
        named(&msg.model_name, "model_name")?;
        let model = msg.model_name.clone();
        let head = Request::from_parts(meta, ext, ());
        let state = &self.state;
        self.call("ModelInfer", &head, Need::Model(&model), async move {
            let call = convert::request(msg)?;
            let done =
                kserve::run_request(state, &call.model, call.version.as_deref(), call.request)
                    .await?;
            let name = done.model.clone();
            Ok((convert::response(done)?, Some(name)))
        })
        .await
    }
}

//! The accept loop: hyper's HTTP/1 connection driver with a header-read timeout, an idle
//! timeout and a cap on open connections, and graceful shutdown. It replaces `axum::serve`,
//! which sets no timer (a client that sends its header slowly held a socket forever) and
//! accepts without bound.
//!
//! - `header_read_timeout`: a request's head must arrive within it, counted from when the
//!   connection opens or its previous answer was sent (hyper starts the clock whenever it
//!   waits for a head), so it also bounds how long a kept-alive connection waits between
//!   requests. Past it the connection is closed.
//! - `idle_timeout`: a connection on which no byte moves either way for this long while no
//!   handler runs is closed: a client that stops reading its answer, or one that keeps a
//!   connection open between requests longer than the header timeout allows.
//! - `max_connections`: at the cap a new connection is answered `503` (`Retry-After: 1`,
//!   `Connection: close`) without reading it, and closed; `llmos_http_connections_refused_total`
//!   counts them.
//!
//! Every request carries `ConnectInfo<SocketAddr>`, the peer's address.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::api::AppState;

/// Connection limits (`[server]` in `llmos.toml`).
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Longest wait for a request's head.
    pub header_read_timeout: Duration,
    /// Longest a connection may sit with no byte moving and no handler running.
    pub idle_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: u32,
}

/// Serves `app` on `listener` until `shutdown` completes; then stops accepting, asks every
/// connection to finish its request in flight and close, and returns once all have closed.
pub async fn run(
    listener: TcpListener,
    app: Router,
    state: Arc<AppState>,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections as usize));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refuse(&stream, limits.max_connections);
            state
                .metrics
                .connections_refused
                .fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let conn = Conn {
            app: app.clone(),
            state: state.clone(),
            limits,
            peer,
            _slot: slot,
        };
        tokio::spawn(conn.serve(stream, stop_rx.clone()));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a slot until it closes: all slots back means all closed.
    let _ = slots.acquire_many(limits.max_connections).await;
}

/// Answers 503 on a connection over the cap, without waiting: the socket is new, so its send
/// buffer has room, and a client that does not read it loses nothing it was promised.
fn refuse(stream: &TcpStream, max: u32) {
    let body = format!(
        "{{\"error\":{{\"message\":\"the server has {max} connections open, its max_connections limit: retry shortly\",\
         \"type\":\"server_error\",\"param\":null,\"code\":\"too_many_connections\"}}}}"
    );
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         retry-after: 1\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.try_write(format!("{head}{body}").as_bytes());
}

/// One accepted connection.
struct Conn {
    app: Router,
    state: Arc<AppState>,
    limits: ConnLimits,
    peer: SocketAddr,
    _slot: OwnedSemaphorePermit,
}

impl Conn {
    async fn serve(self, stream: TcpStream, mut stop: watch::Receiver<bool>) {
        let _ = stream.set_nodelay(true);
        let metrics = &self.state.metrics;
        metrics.connections.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Tracked {
            inner: stream,
            activity: activity.clone(),
        });
        let (app, peer, busy) = (self.app.clone(), self.peer, activity.clone());
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let (app, busy) = (app.clone(), Busy::start(busy.clone()));
            async move {
                let resp = app.oneshot(req.map(Body::new)).await;
                drop(busy);
                resp.map_err(|e: Infallible| match e {})
            }
        });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout)
            .keep_alive(true);
        let conn = builder.serve_connection(io, service);
        tokio::pin!(conn);
        let idle = self.limits.idle_timeout;
        let mut closing = false;
        loop {
            // While a handler runs (or the clock says idle), look again one period later.
            let now = Instant::now();
            let deadline = match activity.last().checked_add(idle) {
                Some(d) if d > now => d,
                _ => now.checked_add(idle).unwrap_or(now),
            };
            tokio::select! {
                done = conn.as_mut() => {
                    if let Err(e) = done {
                        tracing::debug!(peer = %self.peer, "connection closed: {e}");
                    }
                    break;
                }
                _ = stop.wait_for(|s| *s), if !closing => {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                () = tokio::time::sleep_until(deadline), if !closing => {
                    if activity.busy.load(Ordering::Relaxed) == 0 && activity.last().elapsed() >= idle {
                        tracing::debug!(peer = %self.peer, "closing a connection idle for {idle:?}");
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        }
        metrics.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// When bytes last moved on a connection, and how many handlers run on it.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    busy: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        let ms = self.last_ms.load(Ordering::Relaxed);
        self.start
            .checked_add(Duration::from_millis(ms))
            .unwrap_or(self.start)
    }
}

/// A handler running on a connection; counted until dropped.
struct Busy(Arc<Activity>);

impl Busy {
    fn start(a: Arc<Activity>) -> Self {
        a.busy.fetch_add(1, Ordering::Relaxed);
        Self(a)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A socket that records when bytes move.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

//! Outbound `wasi:http` for plugins: check the grant by name, resolve once, check every
//! resolved address, then connect to exactly that address (no second lookup, so DNS cannot
//! point a granted name at llmos itself, the cloud metadata service or the private network
//! between the check and the connection).
//!
//! The connection code follows `wasmtime_wasi_http::default_send_request` (TLS with the
//! webpki roots, HTTP/1.1, the same timeouts); only how the socket is opened differs.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

use crate::security::{CapabilitySet, HttpScheme, capability::special_address};

/// Where a request may go, or why not.
#[derive(Debug)]
pub(crate) enum Resolved {
    /// These addresses passed the checks (in resolver order).
    Allowed(Vec<SocketAddr>),
    /// The name resolved only to refused addresses: the operator message.
    Refused(String),
    /// The lookup failed or found nothing.
    NotFound,
}

/// Resolves `host` (an IP literal is taken as is) and keeps the addresses `effective` allows.
pub(crate) async fn resolve(
    plugin: &str,
    effective: &CapabilitySet,
    scheme: HttpScheme,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Resolved {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => {
            match tokio::time::timeout(timeout, tokio::net::lookup_host((bare, port))).await {
                Ok(Ok(a)) => a.collect(),
                _ => return Resolved::NotFound,
            }
        }
    };
    if addrs.is_empty() {
        return Resolved::NotFound;
    }
    let (ok, refused): (Vec<_>, Vec<_>) = addrs
        .into_iter()
        .partition(|a| effective.allows_addr(scheme, a.ip(), port));
    if !ok.is_empty() {
        return Resolved::Allowed(ok);
    }
    let Some(first) = refused.first().map(SocketAddr::ip) else {
        return Resolved::NotFound;
    };
    let kind = special_address(first).unwrap_or("special");
    let grant = if first.is_ipv6() {
        format!("http:[{first}]:{port}")
    } else {
        format!("http:{first}:{port}")
    };
    let all: Vec<String> = refused.iter().map(|a| a.ip().to_string()).collect();
    Resolved::Refused(format!(
        "plugin {plugin} may not connect to {bare}:{port}: it resolved to {} ({kind} address); \
         loopback, private, link-local, unique-local, CGNAT and metadata addresses need an \
         explicit address or CIDR grant, e.g. `llmos plugin grant {plugin} {grant}` \
         (the manifest must request it or http:*)",
        all.join(", ")
    ))
}

trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static> Stream for T {}

/// What `send_request` hands back to wasi-http.
pub(crate) type Sent = (
    Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
);

/// Sends `req` over a connection to one of `addrs` (tried in order).
pub(crate) async fn send(
    mut req: Request<WasiBody>,
    addrs: Vec<SocketAddr>,
    host: String,
    options: RequestOptions,
) -> Result<Sent, Error> {
    let long = Duration::from_secs(600);
    let connect_timeout = options.connect_timeout.unwrap_or(long);
    let first_byte_timeout = options.first_byte_timeout.unwrap_or(long);
    let between_bytes = options
        .between_bytes_timeout
        .unwrap_or(long)
        .max(Duration::new(0, 1));
    let use_tls = req.uri().scheme() == Some(&http::uri::Scheme::HTTPS);

    let tcp = tokio::time::timeout(connect_timeout, connect(&addrs))
        .await
        .map_err(|_| Error::ConnectionTimeout)??;
    let stream: Box<dyn Stream> = if use_tls {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let name = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => rustls::pki_types::ServerName::from(ip),
            Err(_) => rustls::pki_types::ServerName::try_from(host)?,
        };
        Box::new(connector.connect(name, tcp).await.map_err(Error::Tls)?)
    } else {
        Box::new(tcp)
    };
    let (mut sender, conn) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;

    // Only the path goes on the wire (scheme and authority are for proxies).
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    *req.uri_mut() = http::Uri::builder()
        .path_and_query(path)
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;

    let mut conn = Box::pin(conn);
    let send = tokio::time::timeout(first_byte_timeout, sender.send_request(req));
    let mut send = Box::pin(send);
    // Drive the connection while waiting for the response head.
    let mut conn_done = false;
    let res = std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = send.as_mut().poll(cx) {
            return Poll::Ready(r);
        }
        if !conn_done && let Poll::Ready(r) = conn.as_mut().poll(cx) {
            conn_done = true;
            if let Err(e) = r {
                return Poll::Ready(Ok(Err(e)));
            }
        }
        Poll::Pending
    })
    .await
    .map_err(|_| Error::ConnectionReadTimeout)??;
    let mut timeout = tokio::time::interval(between_bytes);
    timeout.reset();
    let res = res.map(|incoming| Timed { incoming, timeout }.boxed_unsync());
    let io: Box<dyn Future<Output = Result<(), Error>> + Send> = Box::new(async move {
        if conn_done {
            return Ok(());
        }
        conn.await.map_err(|e| {
            if e.is_timeout() {
                Error::HttpResponseTimeout
            } else {
                Error::from(e)
            }
        })
    });
    Ok((res, io))
}

async fn connect(addrs: &[SocketAddr]) -> Result<TcpStream, Error> {
    let mut last = None;
    for a in addrs {
        match TcpStream::connect(a).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(Error::Connect(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no address to connect to")
    })))
}

/// A response body with the between-bytes timeout.
struct Timed {
    incoming: hyper::body::Incoming,
    timeout: tokio::time::Interval,
}

impl http_body::Body for Timed {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(if e.is_timeout() {
                Error::HttpResponseTimeout
            } else {
                Error::from(e)
            }))),
            Poll::Ready(Some(Ok(frame))) => {
                self.timeout.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                ready!(self.timeout.poll_tick(cx));
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
    }
}

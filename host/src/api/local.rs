//! The admin socket: `llmos serve` also listens on `$LLMOS_HOME/admin.sock`, a Unix socket
//! through which the owner's `llmos plugin …` and `llmos keys …` commands reach the running
//! server (which holds the store), with the same router as HTTP.
//!
//! Authentication is the operating system's, checked twice: the socket is mode 0600 (set
//! before the first accept; connecting needs write permission on it), and every connection's
//! peer credentials (`SO_PEERCRED`) must name the server's own uid, else it is closed
//! unanswered. A request over it acts as [`KeyRecord::local_owner`] (`local:uid=N` in the
//! audit log, every scope); the loopback Host/Origin guards of open mode do not apply.
//!
//! At start a socket file left by a crashed server (nothing answers on it) is replaced; one
//! that answers belongs to another server and is refused, as is a path that is not a socket.
//! The file is removed at clean shutdown, if it is still the one this server made.
//! `[server] admin_socket = false` turns it off.

use std::convert::Infallible;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

use crate::security::keys::KeyRecord;

/// The socket's file name in the data location.
pub const SOCKET_NAME: &str = "admin.sock";

/// Most connections open on the socket at once (the owner's CLI uses one per command).
const MAX_CONNECTIONS: u32 = 64;

/// The socket's path for a data location.
pub fn socket_path(home: &Path) -> PathBuf {
    home.join(SOCKET_NAME)
}

/// Errors of the admin socket.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// Another process answers on the socket.
    #[error(
        "{path} answers: another llmos server is running on this data location; stop it first \
         (or set [server] admin_socket = false)"
    )]
    Live {
        /// The socket.
        path: PathBuf,
    },
    /// Something other than a socket is in the way.
    #[error("{path} exists and is not a socket: remove it (llmos makes its admin socket there)")]
    NotSocket {
        /// The path.
        path: PathBuf,
    },
    /// The socket could not be made or secured.
    #[error(
        "cannot listen on the admin socket {path}: {source} (Unix socket paths are limited to \
         107 bytes; use a shorter LLMOS_HOME, or set [server] admin_socket = false)"
    )]
    Io {
        /// The socket.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
}

/// The identity of a request that came over the admin socket (inserted by the connection,
/// never by a client: HTTP cannot set extensions), read by `access::auth`.
#[derive(Debug, Clone, Copy)]
pub struct LocalPeer {
    /// The peer's uid (the server's own).
    pub uid: u32,
}

impl LocalPeer {
    /// The caller it acts as.
    pub fn identity(self) -> KeyRecord {
        KeyRecord::local_owner(self.uid)
    }
}

/// The effective uid of this process: the peer credentials of one end of a fresh socket
/// pair (no `unsafe`, no libc call).
pub fn own_uid() -> io::Result<u32> {
    let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    a.set_nonblocking(true)?;
    Ok(UnixStream::from_std(a)?.peer_cred()?.uid())
}

/// A bound admin socket, not yet accepting.
#[derive(Debug)]
pub struct AdminSocket {
    path: PathBuf,
    listener: UnixListener,
    uid: u32,
    /// (device, inode) of the file made, so that shutdown removes only this one.
    file: (u64, u64),
}

impl AdminSocket {
    /// Binds `<home>/admin.sock` (mode 0600), replacing a stale socket; must run inside the
    /// server's runtime.
    pub fn bind(home: &Path) -> Result<Self, LocalError> {
        let path = socket_path(home);
        let io = |source| LocalError::Io {
            path: path.clone(),
            source,
        };
        clear_stale(&path)?;
        warn_if_shared(home);
        let listener = UnixListener::bind(&path).map_err(io)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        let meta = std::fs::metadata(&path).map_err(io)?;
        let uid = own_uid().map_err(io)?;
        Ok(Self {
            file: (meta.dev(), meta.ino()),
            path,
            listener,
            uid,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves `app` until `stop` turns true; then lets each connection finish its request,
    /// waits for them all, and removes the socket file.
    pub async fn serve(self, app: Router, header_timeout: Duration, stop: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS as usize));
        let mut stopping = stop.clone();
        loop {
            let stream = tokio::select! {
                _ = stopping.wait_for(|s| *s) => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!("admin socket: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Some(peer) = self.admit(&stream) else {
                continue;
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::warn!("admin socket: {MAX_CONNECTIONS} connections open; refusing one");
                continue;
            };
            let (app, stop) = (app.clone(), stop.clone());
            tokio::spawn(async move {
                serve_conn(stream, app, peer, header_timeout, stop).await;
                drop(slot);
            });
        }
        let _ = slots.acquire_many(MAX_CONNECTIONS).await;
        // Dropping `self` removes the socket file.
    }

    /// The peer, when its uid is the server's; others are logged and closed.
    fn admit(&self, stream: &UnixStream) -> Option<LocalPeer> {
        match stream.peer_cred() {
            Ok(c) if c.uid() == self.uid => Some(LocalPeer { uid: c.uid() }),
            Ok(c) => {
                tracing::warn!(
                    "admin socket: refused a connection from uid {} (only uid {} may use it)",
                    c.uid(),
                    self.uid
                );
                None
            }
            Err(e) => {
                tracing::warn!("admin socket: no peer credentials ({e}); connection refused");
                None
            }
        }
    }

}

impl Drop for AdminSocket {
    /// Removes the socket file if it is still the one this server made (clean shutdown, or
    /// a server future dropped at the end of the drain period).
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| (m.dev(), m.ino()) == self.file);
        if ours && let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!("admin socket: cannot remove {}: {e}", self.path.display());
        }
    }
}

/// One connection: HTTP/1.1 with the same router, every request marked as the owner's.
async fn serve_conn(
    stream: UnixStream,
    app: Router,
    peer: LocalPeer,
    header_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(peer);
        let app = app.clone();
        async move {
            let resp = app.oneshot(req.map(Body::new)).await;
            resp.map_err(|e: Infallible| match e {})
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        done = conn.as_mut() => {
            if let Err(e) = done {
                tracing::debug!("admin socket: connection closed: {e}");
            }
            return;
        }
        _ = stop.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
    }
    if let Err(e) = conn.await {
        tracing::debug!("admin socket: connection closed: {e}");
    }
}

/// Removes a socket nothing answers on (a crashed server's); refuses a live one or a path
/// that is not a socket.
fn clear_stale(path: &Path) -> Result<(), LocalError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(LocalError::Io {
                path: path.into(),
                source,
            });
        }
    };
    if !meta.file_type().is_socket() {
        return Err(LocalError::NotSocket { path: path.into() });
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(LocalError::Live { path: path.into() }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!("replacing the stale admin socket {}", path.display());
            std::fs::remove_file(path).map_err(|source| LocalError::Io {
                path: path.into(),
                source,
            })
        }
        Err(source) => Err(LocalError::Io {
            path: path.into(),
            source,
        }),
    }
}

/// The data location holds the store, the master key and this socket: others must not be
/// able to replace its files. The socket stays safe either way (mode 0600 and the uid check
/// on both ends: a socket planted by another user gets nothing from the CLI), so this warns
/// rather than refuses.
fn warn_if_shared(home: &Path) {
    if let Ok(m) = std::fs::metadata(home)
        && m.mode() & 0o022 != 0
    {
        tracing::warn!(
            "the data location {} is writable by group or others (mode {:o}); it holds the \
             store, the master key and admin.sock: make it owner-only with `chmod 700 {}`",
            home.display(),
            m.mode() & 0o777,
            home.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_socket_is_replaced_and_a_live_one_refused() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let path = socket_path(dir.path());
            // A crashed server's socket: the file stays, nothing listens.
            drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
            let s = AdminSocket::bind(dir.path()).unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            // Now it answers: a second server is refused.
            let e = AdminSocket::bind(dir.path()).unwrap_err();
            assert!(matches!(e, LocalError::Live { .. }), "{e}");
            drop(s);
            assert!(!path.exists());
            std::fs::write(&path, "x").unwrap();
            let e = AdminSocket::bind(dir.path()).unwrap_err();
            assert!(matches!(e, LocalError::NotSocket { .. }), "{e}");
        });
    }

    #[test]
    fn own_uid_is_the_owner_of_a_file_this_process_makes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let uid = rt.block_on(async { own_uid().unwrap() });
        assert_eq!(uid, std::fs::metadata(&f).unwrap().uid());
    }
}

//! Serving a router on one listener: HTTP/1.1 and h2c on the same port (hyper-util's auto
//! builder tells them apart by the connection preface), TCP_NODELAY on every connection, one
//! limit on the request head for both protocols, and graceful shutdown.
//!
//! The request-head limit (`max-header-bytes`) and what each protocol does past it:
//!
//! - HTTP/1.1: the connection's read buffer is bounded at the limit (`max_buf_size`). When
//!   the request line and headers do not fit, hyper answers `431 Request Header Fields Too
//!   Large` and closes that connection (the rest of the stream cannot be trusted to be a new
//!   request). hyper also refuses more than 100 header fields the same way.
//! - HTTP/2: the limit is advertised as SETTINGS_MAX_HEADER_LIST_SIZE (each field counts its
//!   name, its value and 32 bytes, pseudo-headers included, as RFC 9113 does). h2 decodes a
//!   larger header block (HPACK state is shared by the connection), answers 431 on that stream
//!   and resets it; the connection and its other streams go on. Only a block h2 treats as
//!   abuse closes the connection with GOAWAY ENHANCE_YOUR_CALM: more than four times the limit
//!   once decoded, or more CONTINUATION frames than max(5, 1.25 × limit / 16 KiB).
//! - gRPC rides on HTTP/2: the call fails with a status the client derives from 431 (tonic:
//!   UNKNOWN) and the channel stays usable.
//!
//! These answers come from hyper and h2 before any router layer runs: no access log line, no
//! CORS headers, no face-shaped body.

use std::future::Future;
use std::pin::pin;

use axum::Router;
use axum::serve::Listener;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Limits applied by the protocol layer, below the router.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest request head in bytes; hyper needs at least 8192.
    pub max_header_bytes: usize,
}

/// The smallest read buffer hyper accepts for HTTP/1.1.
const HYPER_MIN_BUFFER: usize = 8192;

fn builder(limits: Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(limits.max_header_bytes.max(HYPER_MIN_BUFFER));
    builder
        .http2()
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting (the port is
/// closed), lets every connection finish its in-flight requests (HTTP/1.1 answers them with
/// `Connection: close`, HTTP/2 sends GOAWAY) and returns once all are closed. Dropping the
/// returned future drops every connection at once.
pub async fn serve(
    mut listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let builder = builder(limits);
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            // Accept errors (out of file descriptors, a reset before accept) are logged and
            // retried by axum's `Listener` implementation.
            (tcp, peer) = Listener::accept(&mut listener) => {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "could not set TCP_NODELAY");
                }
                let builder = builder.clone();
                // The peer's address, for handlers that record it (`ConnectInfo`).
                let service = TowerToHyperService::new(tower::ServiceExt::map_request(
                    router.clone(),
                    move |mut request: http::Request<hyper::body::Incoming>| {
                        request
                            .extensions_mut()
                            .insert(axum::extract::ConnectInfo(peer));
                        request
                    },
                ));
                let mut stopping = stopping.clone();
                connections.spawn(async move {
                    let mut connection = pin!(builder.serve_connection(TokioIo::new(tcp), service));
                    tokio::select! {
                        result = connection.as_mut() => {
                            if let Err(e) = result {
                                tracing::debug!(%peer, error = %e, "connection ended with an error");
                            }
                            return;
                        }
                        _ = stopping.wait_for(|stop| *stop) => connection.as_mut().graceful_shutdown(),
                    }
                    if let Err(e) = connection.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

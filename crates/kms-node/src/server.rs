//! Serves the API's router over TCP (HTTP/1.1), with the bounds a public endpoint needs against
//! slow or idle clients (slowloris):
//!
//! - a connection must send each request's headers within [`Limits::header_read_timeout`],
//!   idle keep-alive connections included, or it is closed;
//! - at most [`Limits::max_connections`] connections are served at once. A connection is
//!   accepted only once one of those slots is free: further ones wait in the kernel's listen
//!   backlog, holding no file descriptor of the node's (which its store and RPC calls need);
//! - the request body's own deadline ([`Limits::body_read_timeout`], 408) is the router's.
//!
//! With a TLS acceptor (`crate::tls`), every connection is TLS: its handshake must end within
//! [`Limits::header_read_timeout`] too, and runs in the connection's own task (a slow handshake
//! holds its slot, not the accept loop).
//!
//! Shutdown stops accepting, lets every connection finish the request it is serving (idle ones
//! close at once), and returns when all are closed, as `axum::serve`'s graceful shutdown does.

use std::{future::Future, io, net::SocketAddr, sync::Arc, time::Duration};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use prometheus::IntGauge;
use tokio::{
    net::TcpListener,
    sync::{watch, Semaphore},
};
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;
use tower::Service;

use crate::api::Limits;

/// Counts a connection in the gauge while it is open.
struct Open(IntGauge);

impl Open {
    fn new(gauge: IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Accept errors that concern one connection only (the next accept may well succeed).
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves `app` on `listener` until `shutdown` resolves, then shuts down gracefully (see the
/// module docs) and returns; over TLS with `tls`, plain HTTP without. `open_connections` counts
/// the connections being served. Handlers can extract the peer's address as
/// `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &Limits,
    tls: Option<TlsAcceptor>,
    open_connections: IntGauge,
    shutdown: impl Future<Output = ()>,
) {
    let handshake_timeout = limits.header_read_timeout;
    // `acquire_many` takes a u32: the limit is capped there (far above any fd limit anyway).
    let max_connections = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX);
    let slots = Arc::new(Semaphore::new(max_connections as usize));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let mut make_service = app.into_make_service_with_connect_info::<SocketAddr>();
    let (stop, stopped) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        // A slot first, then the connection: above the limit, connections wait in the backlog.
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some to be released.
                    tracing::error!(error = %e, "cannot accept connections");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            },
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        let service = match make_service.call(peer).await {
            Ok(service) => TowerToHyperService::new(service),
            Err(never) => match never {},
        };
        let (mut stopped, open) = (stopped.clone(), Open::new(open_connections.clone()));
        let (builder, tls) = (builder.clone(), tls.clone());
        tokio::spawn(async move {
            let (_slot, _open) = (slot, open);
            let stream = match tls {
                None => Either::Left(stream),
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => Either::Right(tls),
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            let mut stopping = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(%peer, error = %e, "connection closed on an error");
                        }
                        break;
                    }
                    () = async { let _ = stopped.wait_for(|&s| s).await; }, if !stopping => {
                        stopping = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        });
    }

    drop(listener);
    let _ = stop.send(true);
    // Every connection holds a slot until it is closed: all slots back means all closed.
    let _ = slots.acquire_many(max_connections).await;
}

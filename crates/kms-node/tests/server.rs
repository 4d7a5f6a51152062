//! The server loop (`kms_node::server::serve`) on 127.0.0.1: idle and slow connections are
//! closed after the header timeout, no more than `max_connections` are served at once, and a
//! real request still gets through. Every wait is bounded: a server that never answers or never
//! closes fails the test instead of hanging it.

#![allow(clippy::unwrap_used)]

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicI64, Ordering},
        Arc,
    },
    time::Duration,
};

use alloy::{primitives::Address, signers::local::PrivateKeySigner};
use kms_node::{test_utils::FakeDirectory, ApiState, Limits, NodeIdentity, Store};
use prometheus::IntGauge;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::oneshot,
    task::JoinHandle,
};
use umbral_pre::SecretKey;

/// Longest wait for anything the server must do; far above what it needs.
const BOUND: Duration = Duration::from_secs(60);

/// A server on 127.0.0.1 and what it takes to stop it.
struct Server {
    addr: SocketAddr,
    open: IntGauge,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(limits: Limits) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("node.redb")).unwrap();
        let identity = NodeIdentity {
            staker: Address::repeat_byte(1),
            worker: PrivateKeySigner::random(),
            umbral: SecretKey::random(),
            chain_id: 31337,
            adjudicator: Address::repeat_byte(0xad),
            policy_manager: Address::repeat_byte(0xb0),
            seconds_per_period: 3_600,
        };
        let state = ApiState::new(
            identity,
            store,
            Arc::new(FakeDirectory::default()),
            limits.clone(),
        )
        .unwrap();
        let open = state.metrics().open_connections();
        let app = kms_node::router(Arc::new(state));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let gauge = open.clone();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            kms_node::server::serve(listener, app, &limits, None, gauge, shutdown).await;
        });
        Self {
            addr,
            open,
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    /// Shuts the server down and waits (bounded) for `serve` to return.
    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(BOUND, &mut self.task)
            .await
            .expect("serve did not return after shutdown")
            .unwrap();
    }
}

/// `GET /v1/status` on a new connection, answered within [`BOUND`].
async fn status(addr: SocketAddr) -> serde_json::Value {
    let request = async {
        let response = reqwest::get(format!("http://{addr}/v1/status")).await?;
        assert_eq!(response.status(), 200);
        response.json::<serde_json::Value>().await
    };
    tokio::time::timeout(BOUND, request)
        .await
        .expect("GET /v1/status was not answered")
        .unwrap()
}

/// Waits (bounded) until the server closes `stream`: a read returns end of file or a reset.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buffer = [0u8; 1024];
    let read_to_end = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                // Whatever the server answered before closing (hyper may send a 408).
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(BOUND, read_to_end).await.is_ok()
}

const PARTIAL_HEADER: &[u8] = b"GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n";

/// Review finding 8: 64 idle connections (half sent a partial header, half nothing) against a
/// limit of 16: the server never serves more than 16 at once, closes the idle ones after the
/// header timeout, and a real request is answered.
#[tokio::test]
async fn idle_connections_beyond_the_limit_do_not_keep_a_request_out() {
    const LIMIT: usize = 16;
    const IDLE: usize = 64;
    let server = Server::start(Limits {
        max_connections: LIMIT,
        header_read_timeout: Duration::from_secs(1),
        ..Limits::default()
    })
    .await;

    // The most connections the server held open at once, sampled while the test runs.
    let (most, done) = (
        Arc::new(AtomicI64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let sampler = {
        let (most, done, open) = (most.clone(), done.clone(), server.open.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                most.fetch_max(open.get(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };

    let mut idle = Vec::new();
    for i in 0..IDLE {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        if i % 2 == 0 {
            stream.write_all(PARTIAL_HEADER).await.unwrap();
        }
        idle.push(stream);
    }
    let answer = status(server.addr).await;
    assert_eq!(answer["kfrags"], 0, "{answer}");

    // Every idle connection is closed by the server (after the header timeout).
    for (i, stream) in idle.iter_mut().enumerate() {
        assert!(
            closed_by_server(stream).await,
            "idle connection {i} not closed"
        );
    }
    done.store(true, Ordering::SeqCst);
    sampler.await.unwrap();
    let most = most.load(Ordering::SeqCst);
    assert!(most <= LIMIT as i64, "{most} connections served at once");
    // The limit was reached: the idle connections did occupy every slot for a while.
    assert_eq!(most, LIMIT as i64);
    server.shutdown().await;
}

/// Review finding 8: a connection that sent part of a request's headers, and one idle between
/// two requests (keep-alive), are closed after the header timeout.
#[tokio::test]
async fn slow_and_idle_connections_are_closed_after_the_header_timeout() {
    let server = Server::start(Limits {
        header_read_timeout: Duration::from_secs(1),
        ..Limits::default()
    })
    .await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(PARTIAL_HEADER).await.unwrap();
    assert!(
        closed_by_server(&mut slow).await,
        "partial header kept open"
    );

    // A full request is answered; the connection is then idle and closed the same way.
    let mut keep_alive = TcpStream::connect(server.addr).await.unwrap();
    keep_alive
        .write_all(b"GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(BOUND, keep_alive.read_exact(&mut head))
        .await
        .expect("no answer")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    assert!(
        closed_by_server(&mut keep_alive).await,
        "idle keep-alive kept open"
    );
    server.shutdown().await;
}

/// Shutdown stops accepting, closes idle connections, and returns once every connection is.
#[tokio::test]
async fn shutdown_closes_idle_connections_and_stops_accepting() {
    let server = Server::start(Limits::default()).await;
    let addr = server.addr;
    status(addr).await;
    // Idle, and the default header timeout (10 s) far away: only the shutdown closes it.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    server.shutdown().await;
    assert!(closed_by_server(&mut idle).await);
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
}

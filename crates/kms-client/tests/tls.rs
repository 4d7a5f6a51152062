//! The client's TLS rules against a real TLS server (`kms_node::server::serve` with a
//! self-signed certificate, as `kms node init` makes): the pinned URL is served; a wrong pin is
//! refused at once with both fingerprints; the same certificate without a pin fails the web PKI;
//! plain HTTP is refused unless allowed.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::{routing::get, Json, Router};
use kms_client::{HttpConfig, NodeClient, NodeError};
use kms_crypto::{tls::with_pin, wire::NodeInfo};
use kms_node::{
    test_utils::serve_tls,
    tls::{generate_self_signed, TlsIdentity, TlsKind},
};

fn info() -> NodeInfo {
    serde_json::from_value(serde_json::json!({
        "staker": "0x0000000000000000000000000000000000000001",
        "worker": "0x0000000000000000000000000000000000000002",
        "umbralPublicKey": "0x02",
        "chainId": 31337,
        "version": "0.1.0",
        "maxCapsulesPerRequest": 64
    }))
    .unwrap()
}

/// Serves `GET /v1/node` over TLS with `identity` on a free port; its `https://` URL.
async fn serve(identity: &TlsIdentity) -> (String, tokio::task::JoinHandle<()>) {
    serve_app(
        identity,
        Router::new().route("/v1/node", get(|| async { Json(info()) })),
    )
    .await
}

/// Serves `app` over TLS with `identity` on a free port; its `https://` URL.
async fn serve_app(identity: &TlsIdentity, app: Router) -> (String, tokio::task::JoinHandle<()>) {
    let (port, task) = serve_tls(identity, app).await.unwrap();
    (format!("https://127.0.0.1:{port}"), task)
}

/// A self-signed certificate for 127.0.0.1, as `kms node init` makes one.
fn self_signed() -> TlsIdentity {
    let (cert, key) = generate_self_signed(&["127.0.0.1".into()]).unwrap();
    TlsIdentity::from_pem(&cert, &key, TlsKind::SelfSigned).unwrap()
}

fn client(allow_plain_http: bool) -> NodeClient {
    NodeClient::new(HttpConfig {
        attempts: 3,
        backoff: Duration::from_millis(200),
        allow_plain_http,
        ..HttpConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn a_pinned_certificate_is_served_and_a_wrong_pin_refused() {
    let identity = self_signed();
    let (url, task) = serve(&identity).await;
    let nodes = client(false);

    // The URL the node publishes: its pin in the fragment.
    let pinned = identity.public_url(&url);
    assert_eq!(nodes.node_info(&pinned).await.unwrap(), info());

    // Another pin: refused at the handshake, saying which certificate came, and not retried
    // (a retry would first wait the 5 s backoff).
    let wrong = with_pin(&url, &[0xab; 32]);
    let patient = NodeClient::new(HttpConfig {
        attempts: 2,
        backoff: Duration::from_secs(5),
        ..HttpConfig::default()
    })
    .unwrap();
    let started = std::time::Instant::now();
    let err = patient.node_info(&wrong).await.unwrap_err();
    let NodeError::Certificate(message) = &err else {
        panic!("expected a certificate error, got {err}");
    };
    assert!(message.contains("not the one its URL pins"), "{message}");
    assert!(message.contains(&"ab".repeat(32)), "{message}");
    assert!(
        message.contains(&alloy::hex::encode(identity.fingerprint())),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a wrong pin was retried"
    );

    // No pin: a self-signed certificate fails the web PKI.
    let err = nodes.node_info(&url).await.unwrap_err();
    assert!(matches!(err, NodeError::Unreachable(_)), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );

    // Plain HTTP: refused unless allowed (before anything is sent), and a pin needs https.
    let plain = url.replacen("https://", "http://", 1);
    let err = nodes.node_info(&plain).await.unwrap_err();
    assert!(
        matches!(&err, NodeError::BadUrl { reason, .. } if reason.contains("--allow-plain-http")),
        "{err}"
    );
    let err = client(true)
        .node_info(&with_pin(&plain, &identity.fingerprint()))
        .await
        .unwrap_err();
    assert!(matches!(err, NodeError::BadUrl { .. }), "{err}");
    // Written so that a prefix check would miss it, yet read as http:// by the URL parser.
    let port = plain.rsplit(':').next().unwrap();
    for disguised in [
        format!(" {plain}"),
        format!("\t{plain}"),
        format!("HTTP://127.0.0.1:{port}"),
        format!("http:/127.0.0.1:{port}"),
    ] {
        let err = nodes.node_info(&disguised).await.unwrap_err();
        assert!(
            matches!(&err, NodeError::BadUrl { reason, .. } if reason.contains("--allow-plain-http")),
            "{disguised:?}: {err}"
        );
    }
    task.abort();
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    // A node (or whoever answers for its URL) sending the client elsewhere, to plain HTTP here.
    let identity = self_signed();
    let app = Router::new().route(
        "/v1/node",
        get(|| async {
            (
                axum::http::StatusCode::FOUND,
                [(axum::http::header::LOCATION, "http://127.0.0.1:9/v1/node")],
            )
        }),
    );
    let (url, task) = serve_app(&identity, app).await;
    let pinned = identity.public_url(&url);
    let err = client(false).node_info(&pinned).await.unwrap_err();
    assert!(
        matches!(&err, NodeError::Refused { status: 302, .. }),
        "{err}"
    );
    task.abort();
}

#[tokio::test]
async fn an_answer_past_the_size_cap_is_refused() {
    let identity = self_signed();
    // Valid JSON once read whole: only the cap refuses it.
    let app = Router::new().route(
        "/v1/node",
        get(|| async {
            let mut body = vec![b' '; kms_client::http::MAX_ANSWER_BYTES];
            body.extend_from_slice(b"{}");
            body
        }),
    );
    let (url, task) = serve_app(&identity, app).await;
    let pinned = identity.public_url(&url);
    let err = client(false).node_info(&pinned).await.unwrap_err();
    assert!(
        matches!(&err, NodeError::InvalidAnswer(reason) if reason.contains("exceeds")),
        "{err}"
    );
    task.abort();
}

//! `[tls] mode = "ca"`, the configuration a node that browsers reach needs: the node serves a
//! CA-issued chain (leaf first, then the issuer) from PEM files, publishes its URL without a pin,
//! and a standard client that trusts the CA (as a browser trusts the web PKI) verifies the chain
//! and the host name; a client that does not trust the CA refuses it.

#![allow(clippy::unwrap_used)]

use axum::{routing::get, Router};
use kms_node::{
    test_utils::serve_tls,
    tls::{TlsIdentity, TlsKind},
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A CA, and a certificate it issued for `localhost`: `(ca_pem, chain_pem, leaf_key_pem)`.
fn ca_issued() -> (String, String, String) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "KMS test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let chain = format!("{}{}", leaf.pem(), ca_cert.pem());
    (ca_cert.pem(), chain, leaf_key.serialize_pem())
}

#[tokio::test]
async fn a_ca_issued_chain_is_served_and_verified_by_name() {
    let (ca, chain, key) = ca_issued();
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = (dir.path().join("chain.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, &chain).unwrap();
    std::fs::write(&key_file, &key).unwrap();
    let identity = TlsIdentity::from_pem_files(&cert_file, &key_file, TlsKind::CaIssued).unwrap();

    let app = Router::new().route("/v1/node", get(|| async { "a node" }));
    let (port, server) = serve_tls(&identity, app).await.unwrap();
    let url = format!("https://localhost:{port}");
    // No pin: clients verify it as browsers do.
    assert_eq!(identity.public_url(&url), url);

    let trusting = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let answer = trusting
        .get(format!("{url}/v1/node"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(answer, "a node");
    // The certificate names localhost, not 127.0.0.1: refused by address, as a browser would.
    let by_address = trusting
        .get(format!("https://127.0.0.1:{port}/v1/node"))
        .send()
        .await;
    assert!(by_address.is_err());
    // A client that does not trust the CA refuses the chain.
    let stranger = reqwest::Client::builder().build().unwrap();
    assert!(stranger.get(format!("{url}/v1/node")).send().await.is_err());
    server.abort();
}

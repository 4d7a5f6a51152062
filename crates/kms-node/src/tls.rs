//! The node's TLS identity: a certificate chain and its key, from PEM files, served with rustls.
//!
//! Two kinds (see `docs/node.md#tls`):
//! - **self-signed** (what `kms node init` makes with [`generate_self_signed`]): clients pin it.
//!   The node publishes its URL with the certificate's SHA-256 as the fragment
//!   ([`kms_crypto::tls::with_pin`]), so the pin reaches every client through the node record.
//! - **CA-issued** (the operator's files): clients, browsers included, verify it against the web
//!   PKI; the URL carries no pin.

use std::{path::Path, sync::Arc};

use kms_crypto::tls::{fingerprint, with_pin, Fingerprint};
use rustls::{
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    ServerConfig,
};
use tokio_rustls::TlsAcceptor;

/// The TLS identity could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the certificate and key (e.g. a key that is not the certificate's).
    #[error("the TLS certificate and key cannot be served: {0}")]
    Config(String),
    /// The self-signed certificate could not be made.
    #[error("cannot make a self-signed certificate: {0}")]
    Generate(String),
}

/// Whether clients pin the certificate or verify it against certificate authorities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsKind {
    /// Self-signed: the published URL carries its pin.
    SelfSigned,
    /// Issued by a certificate authority: the published URL carries no pin.
    CaIssued,
}

/// A certificate chain (leaf first) and its private key.
pub struct TlsIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    kind: TlsKind,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("kind", &self.kind)
            .field(
                "fingerprint",
                &alloy::primitives::hex::encode(self.fingerprint()),
            )
            .finish_non_exhaustive()
    }
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            kind: self.kind,
        }
    }
}

impl TlsIdentity {
    /// The identity in the PEM files `cert` (the chain, leaf first) and `key`.
    pub fn from_pem_files(cert: &Path, key: &Path, kind: TlsKind) -> Result<Self, TlsError> {
        let file_err = |path: &Path, reason: String| TlsError::File {
            path: path.display().to_string(),
            reason,
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| file_err(cert, e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| file_err(cert, e.to_string()))?;
        if chain.is_empty() {
            return Err(file_err(cert, "no CERTIFICATE in the PEM file".into()));
        }
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, e.to_string()))?;
        let identity = Self { chain, key, kind };
        identity.server_config()?;
        Ok(identity)
    }

    /// The identity of the PEM texts `cert` and `key` (e.g. just made by
    /// [`generate_self_signed`]).
    pub fn from_pem(cert: &str, key: &str, kind: TlsKind) -> Result<Self, TlsError> {
        let pem_err = |what: &str, e: rustls::pki_types::pem::Error| TlsError::File {
            path: what.to_owned(),
            reason: e.to_string(),
        };
        let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_err("certificate", e))?;
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| pem_err("key", e))?;
        let identity = Self { chain, key, kind };
        identity.server_config()?;
        Ok(identity)
    }

    /// The SHA-256 of the leaf certificate (what a pin is).
    pub fn fingerprint(&self) -> Fingerprint {
        self.chain.first().map_or([0; 32], |leaf| fingerprint(leaf))
    }

    /// Self-signed or CA-issued.
    pub fn kind(&self) -> TlsKind {
        self.kind
    }

    /// The URL to publish for `url`: pinned to the certificate when it is self-signed.
    pub fn public_url(&self, url: &str) -> String {
        match self.kind {
            TlsKind::SelfSigned => with_pin(url, &self.fingerprint()),
            TlsKind::CaIssued => url.split_once('#').map_or(url, |(base, _)| base).to_owned(),
        }
    }

    fn server_config(&self) -> Result<ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| TlsError::Config(e.to_string()))?;
        // The API is HTTP/1.1 only (`crate::server`).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// The acceptor the server wraps each connection in.
    pub fn acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        Ok(TlsAcceptor::from(Arc::new(self.server_config()?)))
    }
}

/// A self-signed certificate for `names` (DNS names or IP addresses, the first also the common
/// name) and its private key (ECDSA P-256), as PEM: `(certificate, key)`.
pub fn generate_self_signed(names: &[String]) -> Result<(String, String), TlsError> {
    let certified = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    Ok((certified.cert.pem(), certified.signing_key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_self_signed_identity_is_pinned_in_its_public_url() {
        let (cert, key) = generate_self_signed(&["127.0.0.1".into(), "localhost".into()]).unwrap();
        let identity = TlsIdentity::from_pem(&cert, &key, TlsKind::SelfSigned).unwrap();
        let url = identity.public_url("https://127.0.0.1:9151");
        let parsed = kms_crypto::tls::parse_node_url(&url).unwrap();
        assert_eq!(parsed.pin, Some(identity.fingerprint()));
        let ca = TlsIdentity::from_pem(&cert, &key, TlsKind::CaIssued).unwrap();
        assert_eq!(ca.public_url("https://n.example#x"), "https://n.example");
        assert!(identity.acceptor().is_ok());
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let (cert, _) = generate_self_signed(&["localhost".into()]).unwrap();
        let (_, other_key) = generate_self_signed(&["localhost".into()]).unwrap();
        let err = TlsIdentity::from_pem(&cert, &other_key, TlsKind::SelfSigned).unwrap_err();
        assert!(matches!(err, TlsError::Config(_)), "{err}");
    }
}

//! The HTTP client of the nodes' API (`docs/node.md`): one `reqwest::Client` (connection pool)
//! reused for every node, timeouts, and retries of what may succeed on a second try.
//!
//! TLS: a node URL pinned to its certificate (`https://…#tls-sha256=…`, see
//! [`kms_crypto::tls`]) is reached through a client that accepts exactly that certificate (one
//! client per pin); any other `https://` URL is verified against the web PKI. Plain `http://` is
//! refused unless [`HttpConfig::allow_plain_http`] (devnets).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use alloy::primitives::B256;
use kms_crypto::revocation::{RevocationAccepted, RevocationOrderBody, RevocationOrders};
use kms_crypto::tls::{fingerprint, parse_node_url, Fingerprint};
use kms_crypto::wire::{
    ErrorBody, EvidenceStatus, KfragAccepted, KfragUpload, NetworkView, NodeInfo, NodeStatus,
    ReencryptRequest, ReencryptResponse,
};
use reqwest::StatusCode;
use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider},
    pki_types::{CertificateDer, ServerName, UnixTime},
    CertificateError, DigitallySignedStruct, SignatureScheme,
};
use serde::de::DeserializeOwned;

/// Timeouts and retries of node requests.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Longest wait for a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Longest wait for a whole request, answer included.
    pub request_timeout: Duration,
    /// Attempts per request, the first included (at least 1).
    pub attempts: u32,
    /// Wait before the first retry; doubled before each further one.
    pub backoff: Duration,
    /// Whether plain `http://` node URLs may be used (a devnet's); refused otherwise, since a
    /// node on the open internet serves `https://`.
    pub allow_plain_http: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            attempts: 3,
            backoff: Duration::from_millis(250),
            allow_plain_http: false,
        }
    }
}

/// Why a node request failed (after the retries).
#[derive(Debug, Clone, thiserror::Error)]
pub enum NodeError {
    /// The node could not be reached, or did not answer in time.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The node refused the request; `reason` is its `{"error": ...}`.
    #[error("refused with HTTP {status}: {reason}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The node's reason.
        reason: String,
        /// The node's `Retry-After`, in seconds, if it sent one.
        retry_after_secs: Option<u64>,
    },
    /// The node's answer is not what the API specifies.
    #[error("invalid answer: {0}")]
    InvalidAnswer(String),
    /// The node presented another certificate than its URL pins (a man in the middle, or a
    /// node that changed its certificate without publishing the new pin).
    #[error("TLS: {0}")]
    Certificate(String),
    /// The URL is not usable.
    #[error("bad node URL {url:?}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
}

impl NodeError {
    /// Whether another attempt may succeed: a connection failure, a timeout, a 5xx, or a 429
    /// (the node's quota for this client or policy, which refills).
    fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable(_) => true,
            Self::Refused { status, .. } => *status >= 500 || *status == 429,
            Self::InvalidAnswer(_) | Self::Certificate(_) | Self::BadUrl { .. } => false,
        }
    }

    /// How long the node asked to wait before trying again (`Retry-After`), at most
    /// [`MAX_RETRY_AFTER`].
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Refused {
                retry_after_secs: Some(secs),
                ..
            } => Some(Duration::from_secs(*secs).min(MAX_RETRY_AFTER)),
            _ => None,
        }
    }
}

/// The longest `Retry-After` a retry waits for: a node that asks for more is reported instead.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// The client could not be built (the TLS backend failed to initialize).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the HTTP client: {0}")]
pub struct HttpSetupError(String);

/// A client of the nodes' HTTP API. Cheap to clone: clones share the connection pool and what
/// the nodes advertised.
#[derive(Debug, Clone)]
pub struct NodeClient {
    http: reqwest::Client,
    /// The clients of pinned URLs, by pin.
    pinned: Arc<Mutex<HashMap<Fingerprint, reqwest::Client>>>,
    config: HttpConfig,
    /// Each node's most capsules per re-encryption request, by URL, as it advertised.
    capsule_limits: Arc<Mutex<HashMap<String, usize>>>,
}

/// The error message with its chain of causes (reqwest's own `Display` stops at the top).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// `{url}/v1/...`, with the URL's trailing slashes dropped.
fn endpoint(url: &str, path: &str) -> String {
    format!("{}{path}", url.trim_end_matches('/'))
}

/// A request that got no answer: a certificate that is not the pinned one, or unreachable.
fn send_error(error: &reqwest::Error) -> NodeError {
    let message = with_causes(error);
    if message.contains(PIN_MISMATCH) {
        NodeError::Certificate(message)
    } else {
        NodeError::Unreachable(message)
    }
}

/// What a pin mismatch says (and how [`NodeClient`] tells it from other connection failures).
const PIN_MISMATCH: &str = "the node's certificate is not the one its URL pins";

/// Accepts exactly the certificate whose SHA-256 is `pin` (a node's self-signed certificate, the
/// pin published with its URL), and checks the handshake's signatures with it as rustls does:
/// the pin replaces the certificate authorities, not the proof that the server holds the key.
#[derive(Debug)]
struct PinnedCertificate {
    pin: Fingerprint,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = fingerprint(end_entity);
        if presented == self.pin {
            return Ok(ServerCertVerified::assertion());
        }
        let message = format!(
            "{PIN_MISMATCH} (pinned sha256 {}, presented {}): a man in the middle, or a node that \
             changed its certificate; check the node record (`kms network status`) and ask the \
             policy's owner for a fresh policy file",
            alloy::hex::encode(self.pin),
            alloy::hex::encode(presented)
        );
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            rustls::OtherError(Arc::new(std::io::Error::other(message))),
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The TLS configuration of a client of the node pinned to `pin`.
fn pinned_tls_config(pin: Fingerprint) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(PinnedCertificate {
        pin,
        provider: provider.clone(),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The largest answer read from a node, in bytes: far above any the API gives (64 cfrags with
/// their signatures are about 60 KB), so that a hostile node cannot fill the client's memory by
/// sending an endless body.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// The body, refused as soon as it passes `limit` bytes (or announces more).
async fn read_bounded(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, NodeError> {
    let too_long = || NodeError::InvalidAnswer(format!("the answer exceeds {limit} bytes"));
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(too_long());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| NodeError::Unreachable(with_causes(&e)))?
    {
        if body.len() + chunk.len() > limit {
            return Err(too_long());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// What every client of the nodes shares, web PKI or pinned: the timeouts, the user agent, and
/// no redirects (one would leave the pinned or https URL for one the caller did not choose, plain
/// http:// included; the API has none).
fn client_builder(config: &HttpConfig) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        .timeout(config.request_timeout)
        .user_agent(concat!("kms-client/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
}

impl NodeClient {
    /// A client with `config`.
    pub fn new(config: HttpConfig) -> Result<Self, HttpSetupError> {
        let http = client_builder(&config)
            .build()
            .map_err(|e| HttpSetupError(with_causes(&e)))?;
        Ok(Self {
            http,
            pinned: Arc::default(),
            config,
            capsule_limits: Arc::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    /// The client and the full URL of `path` at the node at `url`: the pinned client of a pinned
    /// URL; plain HTTP refused unless allowed.
    fn route(&self, url: &str, path: &str) -> Result<(reqwest::Client, String), NodeError> {
        let bad = |reason: String| NodeError::BadUrl {
            url: url.to_owned(),
            reason,
        };
        let parsed = parse_node_url(url).map_err(|e| bad(e.reason))?;
        let target = endpoint(&parsed.base, path);
        // The scheme as reqwest will read the URL: it trims spaces and control characters and
        // reads `http:/host` as `http://host`, which a look at the text's prefix would let by.
        let read = reqwest::Url::parse(&target).map_err(|e| bad(format!("not a URL: {e}")))?;
        match read.scheme() {
            "https" => {}
            "http" if self.config.allow_plain_http => {}
            "http" => {
                return Err(bad(
                    "plain http:// is refused: a node serves https:// (on a devnet's plain-HTTP \
                     nodes, pass --allow-plain-http, or set HttpConfig::allow_plain_http)"
                        .into(),
                ))
            }
            other => return Err(bad(format!("the scheme {other}: is not https"))),
        }
        let Some(pin) = parsed.pin else {
            return Ok((self.http.clone(), target));
        };
        let mut pinned = self
            .pinned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(client) = pinned.get(&pin) {
            return Ok((client.clone(), target));
        }
        let tls = pinned_tls_config(pin)
            .map_err(|e| bad(format!("cannot set up its pinned TLS client: {e}")))?;
        let client = client_builder(&self.config)
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| {
                bad(format!(
                    "cannot set up its pinned TLS client: {}",
                    with_causes(&e)
                ))
            })?;
        pinned.insert(pin, client.clone());
        Ok((client, target))
    }

    /// One attempt: sends the request and decodes a 2xx answer as `T`, anything else as the
    /// node's `{"error": ...}`.
    async fn once<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, T), NodeError> {
        let response = request.send().await.map_err(|e| send_error(&e))?;
        let status = response.status();
        let retry_after_secs = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok());
        let bytes = read_bounded(response, MAX_ANSWER_BYTES).await?;
        if status.is_success() {
            let value = serde_json::from_slice(&bytes)
                .map_err(|e| NodeError::InvalidAnswer(format!("HTTP {status}: {e}")))?;
            return Ok((status, value));
        }
        let reason = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => body.error,
            Err(_) => String::from_utf8_lossy(&bytes).chars().take(200).collect(),
        };
        Err(NodeError::Refused {
            status: status.as_u16(),
            reason,
            retry_after_secs,
        })
    }

    /// Runs `attempt` until it succeeds, fails for good, or the attempts are spent; waits
    /// `backoff`, doubling, between attempts, or longer when the node's `Retry-After` says so
    /// (an unknown policy is remembered by the node for a few seconds: an earlier retry would get
    /// the same answer). `retry_also` makes further errors transient.
    async fn retrying<T, F, Fut>(
        &self,
        what: &str,
        retry_also: impl Fn(&NodeError) -> bool,
        mut attempt: F,
    ) -> Result<T, NodeError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, NodeError>>,
    {
        let attempts = self.config.attempts.max(1);
        let mut backoff = self.config.backoff;
        let mut tried = 1;
        loop {
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(e) if tried < attempts && (e.is_transient() || retry_also(&e)) => {
                    tracing::debug!(%what, attempt = tried, error = %e, "retrying");
                    tokio::time::sleep(e.retry_after().map_or(backoff, |after| after.max(backoff)))
                        .await;
                    backoff = backoff.saturating_mul(2);
                    tried += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `GET {url}{path}`, its JSON answer (a 5xx or 429 retried, a 404 not).
    async fn get<T: DeserializeOwned>(&self, url: &str, path: &str) -> Result<T, NodeError> {
        let (http, target) = self.route(url, path)?;
        self.retrying(
            &target,
            |_| false,
            || async { Ok(self.once(http.get(&target)).await?.1) },
        )
        .await
    }

    /// `GET {url}{path}` as text, once (no retry), through the same TLS rules as every request:
    /// e.g. `kms node check`'s reachability probe.
    pub async fn get_text(&self, url: &str, path: &str) -> Result<String, NodeError> {
        let (http, target) = self.route(url, path)?;
        let response = http.get(&target).send().await.map_err(|e| send_error(&e))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| NodeError::Unreachable(with_causes(&e)))?;
        if !status.is_success() {
            return Err(NodeError::Refused {
                status: status.as_u16(),
                reason: text.chars().take(200).collect(),
                retry_after_secs: None,
            });
        }
        Ok(text)
    }

    /// `GET {url}/v1/node`: who the node says it is.
    pub async fn node_info(&self, url: &str) -> Result<NodeInfo, NodeError> {
        self.get(url, "/v1/node").await
    }

    /// The most capsules the node at `url` takes in one re-encryption request, as it advertises
    /// in `GET /v1/node` (asked once per client and URL). When it cannot be asked, the nodes'
    /// default ([`crate::retrieve::MAX_CAPSULES_PER_REQUEST`]), not remembered.
    pub async fn capsule_limit(&self, url: &str) -> usize {
        match self.known_capsule_limit(url) {
            Some(limit) => limit,
            None => self
                .refresh_capsule_limit(url)
                .await
                .unwrap_or(crate::retrieve::MAX_CAPSULES_PER_REQUEST),
        }
    }

    /// The limit the node at `url` advertised, if this client asked it already.
    pub fn known_capsule_limit(&self, url: &str) -> Option<usize> {
        self.capsule_limits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(url)
            .copied()
    }

    /// Asks the node at `url` its limit again and remembers it (`None` if it does not answer).
    pub(crate) async fn refresh_capsule_limit(&self, url: &str) -> Option<usize> {
        let info = self.node_info(url).await.ok()?;
        // At least one: a node advertising 0 would make no progress possible anyway.
        let limit = usize::try_from(info.max_capsules_per_request)
            .unwrap_or(usize::MAX)
            .max(1);
        self.capsule_limits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(url.to_owned(), limit);
        Some(limit)
    }

    /// `GET {url}/v1/status`: what the node holds and how far it has read the chain (e.g. to
    /// wait until it has read the block of a revocation).
    pub async fn status(&self, url: &str) -> Result<NodeStatus, NodeError> {
        self.get(url, "/v1/status").await
    }

    /// `GET {url}/v1/network`: the stakers as the node reads them from the chain, and what its
    /// audits saw of each. A node older than this endpoint answers 404 (not retried).
    pub async fn network(&self, url: &str) -> Result<NetworkView, NodeError> {
        self.get(url, "/v1/network").await
    }

    /// `GET {url}/v1/evidence/{id}`: where the node's filing of the evidence `id` stands. A
    /// node that never accepted it answers 404 (not retried).
    pub async fn evidence_status(&self, url: &str, id: B256) -> Result<EvidenceStatus, NodeError> {
        self.get(url, &format!("/v1/evidence/{id}")).await
    }

    /// `POST {url}/v1/policies/{id}/kfrag`: hands the node its kfrag. Returns whether the node
    /// stored it now (`false`: it already held this very kfrag).
    ///
    /// A 404 is retried too: the node checks the policy on its own view of the chain, which may
    /// be a block behind the one that created it.
    pub async fn upload_kfrag(
        &self,
        url: &str,
        policy_id: [u8; 16],
        upload: &KfragUpload,
    ) -> Result<bool, NodeError> {
        let (http, target) = self.route(
            url,
            &format!(
                "/v1/policies/{}/kfrag",
                alloy::hex::encode_prefixed(policy_id)
            ),
        )?;
        let not_found = |e: &NodeError| matches!(e, NodeError::Refused { status: 404, .. });
        self.retrying(&target, not_found, || async {
            let (status, accepted): (_, KfragAccepted) =
                self.once(http.post(&target).json(upload)).await?;
            Ok(accepted.created || status == StatusCode::CREATED)
        })
        .await
    }

    /// `POST {url}/v1/policies/{id}/revocation`: hands the node the owner's signed revocation
    /// order; from the answer on, the node refuses the policy. Returns whether the node kept it
    /// now (`false`: it held this very order, or one of its kind with a later deadline). A 404
    /// (the node holds no kfrag for the policy) is not retried.
    pub async fn send_revocation_order(
        &self,
        url: &str,
        order: &RevocationOrderBody,
    ) -> Result<bool, NodeError> {
        let (http, target) =
            self.route(url, &format!("/v1/policies/{}/revocation", order.policy_id))?;
        self.retrying(
            &target,
            |_| false,
            || async {
                let (status, accepted): (_, RevocationAccepted) =
                    self.once(http.post(&target).json(order)).await?;
                Ok(accepted.created || status == StatusCode::CREATED)
            },
        )
        .await
    }

    /// `GET {url}/v1/policies/{id}/revocation`: the owner's signed orders the node keeps for
    /// the policy (a 404 when it keeps none; not retried).
    pub async fn revocation_orders(
        &self,
        url: &str,
        policy_id: [u8; 16],
    ) -> Result<RevocationOrders, NodeError> {
        self.get(
            url,
            &format!(
                "/v1/policies/{}/revocation",
                alloy::hex::encode_prefixed(policy_id)
            ),
        )
        .await
    }

    /// `POST {url}/v1/policies/{id}/reencrypt`, with a request `sign(timestamp)` builds; each
    /// attempt is signed anew (a fresh timestamp and nonce). A refusal as a replay (409) is
    /// retried too: the node remembers messages, and a new signature is a new message.
    pub(crate) async fn reencrypt(
        &self,
        url: &str,
        policy_id: [u8; 16],
        sign: impl Fn(u64) -> ReencryptRequest,
    ) -> Result<ReencryptResponse, NodeError> {
        let (http, target) = self.route(
            url,
            &format!(
                "/v1/policies/{}/reencrypt",
                alloy::hex::encode_prefixed(policy_id)
            ),
        )?;
        let replayed = |e: &NodeError| matches!(e, NodeError::Refused { status: 409, .. });
        self.retrying(&target, replayed, || async {
            let request = sign(unix_now());
            Ok(self.once(http.post(&target).json(&request)).await?.1)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(endpoint("http://h:1/", "/v1/node"), "http://h:1/v1/node");
        assert_eq!(endpoint("http://h:1", "/v1/node"), "http://h:1/v1/node");
    }

    #[test]
    fn quota_refusals_are_retried_after_the_nodes_delay() {
        let refused = |status, retry_after_secs| NodeError::Refused {
            status,
            reason: String::new(),
            retry_after_secs,
        };
        assert!(refused(429, Some(2)).is_transient());
        assert!(refused(503, None).is_transient());
        assert!(
            !refused(404, Some(5)).is_transient(),
            "404 is retried only for uploads"
        );
        assert!(!refused(400, None).is_transient());
        assert_eq!(
            refused(404, Some(5)).retry_after(),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            refused(429, Some(3600)).retry_after(),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(refused(429, None).retry_after(), None);
    }

    #[tokio::test]
    async fn unreachable_nodes_are_retried_then_reported() {
        let client = NodeClient::new(HttpConfig {
            attempts: 2,
            backoff: Duration::from_millis(1),
            allow_plain_http: true,
            ..HttpConfig::default()
        })
        .unwrap();
        // Port 9 (discard) on localhost: nothing listens in a test environment.
        let err = client.node_info("http://127.0.0.1:9").await.unwrap_err();
        assert!(matches!(err, NodeError::Unreachable(_)), "{err}");
    }
}

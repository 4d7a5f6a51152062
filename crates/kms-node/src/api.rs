//! The node's HTTP API (axum): see `docs/node.md` for the endpoints and their bodies.
//!
//! Every failure answers a JSON `{"error": "..."}` with a 4xx (the request's fault) or a 5xx
//! (the node's or the chain's); request data is never unwrapped. Decryption, kfrag verification
//! and re-encryption run on the blocking pool, at most [`Limits::workers`] at a time, so the
//! async runtime keeps serving while they run.
//!
//! No client can deny service to another: replays are remembered per policy, each within its
//! own quota (429 above it); kfrag uploads, which cost a chain call, are rate-limited per client
//! address (429), and policy ids the chain does not know are remembered for a few seconds (see
//! [`crate::guard`]). Bodies are read within [`Limits::body_read_timeout`] (408).

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use alloy::{primitives::Address, signers::local::PrivateKeySigner};
use axum::{
    body::{Body, Bytes},
    extract::{rejection::BytesRejection, ConnectInfo, MatchedPath, Path, Request, State},
    http::{header, HeaderValue, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Extension, Json, Router,
};
use futures_util::StreamExt;
use kms_crypto::{answer::sign_answer, ethereum_address, AnswerContext};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use umbral_pre::{
    decrypt_original, reencrypt, Capsule, DefaultDeserialize, DefaultSerialize, KeyFrag, PublicKey,
    SecretKey, VerifiedKeyFrag,
};

use kms_crypto::wire::{
    self, encode_b64, encode_hex, ErrorBody, KfragAccepted, KfragUpload, NodeInfo, NodeStatus,
    ReencryptRequest, ReencryptResponse, SignedCFrag,
};

use crate::{
    clock::ChainClock,
    directory::PolicyDirectory,
    guard::{
        client_key, Admission, RateLimiter, ReplayGuard, UnknownPolicies,
        RATE_LIMITED_CLIENTS_CAPACITY, UNKNOWN_POLICIES_CAPACITY,
    },
    store::{PutOutcome, Store, StoredKfrag},
};

/// Bounds on what a request, a client or a connection may ask of the node.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, in bytes (413 above).
    pub max_body_bytes: usize,
    /// Most capsules in one re-encryption request (413 above).
    pub max_capsules: usize,
    /// Largest distance between a request's timestamp and the node's clock, in seconds (401
    /// above); also how long a request is remembered against replays.
    pub max_clock_skew_secs: u64,
    /// Most re-encryption requests remembered against replays per policy (429 above, for that
    /// policy only): a policy's Bob may send this many requests per `max_clock_skew_secs` or so.
    /// The replay guard holds at most this many entries per kfrag held (~100 bytes each).
    pub max_remembered_per_policy: usize,
    /// How many CPU-bound jobs (decryption, re-encryption) run at once.
    pub workers: usize,
    /// Kfrag uploads a client address may make per minute, after its burst (429 above): each
    /// costs the node a chain call.
    pub kfrag_uploads_per_minute: u32,
    /// Kfrag uploads a client address may make at once.
    pub kfrag_upload_burst: u32,
    /// How long a policy id the chain did not know is answered 404 without asking the chain
    /// again (zero: always ask). A policy may be created later, so keep it about a block time.
    pub unknown_policy_ttl: Duration,
    /// Longest time a connection may take to send a request's headers, idle keep-alive
    /// connections included (the connection is closed then).
    pub header_read_timeout: Duration,
    /// Longest time a request's body may take to arrive (408 then).
    pub body_read_timeout: Duration,
    /// Most connections served at once; further ones wait in the listen backlog until one
    /// closes. Keep it below the file-descriptor limit (`ulimit -n`) with room for the store
    /// and the RPC connections.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 256 * 1024,
            max_capsules: 64,
            max_clock_skew_secs: 300,
            max_remembered_per_policy: 10_000,
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            kfrag_uploads_per_minute: 120,
            kfrag_upload_burst: 30,
            unknown_policy_ttl: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 512,
        }
    }
}

/// How the node answers re-encryption requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Behaviour {
    /// Correct cfrags: every real node.
    #[default]
    Honest,
    /// **Devnets and tests only**: every cfrag has its `E1` point replaced (by `E2`), and is
    /// signed by the worker all the same, so that the client's verification fails and the
    /// signed answer is provable misbehaviour the Adjudicator slashes (verdict `WrongE`). This is
    /// how `kms devnet --demo` shows slashing; `kms node run` never sets it.
    WrongCFrags,
}

/// Who the node is.
#[derive(Clone)]
pub struct NodeIdentity {
    /// The staker the node serves (the address policies name).
    pub staker: Address,
    /// The worker key bonded to the staker: signs every cfrag.
    pub worker: PrivateKeySigner,
    /// The node's Umbral key: kfrags are encrypted to its public key.
    pub umbral: SecretKey,
    /// The chain id the worker's signatures are bound to.
    pub chain_id: u64,
    /// The Adjudicator the worker's answers name (they are judged by it alone).
    pub adjudicator: Address,
    /// The length of a period, in seconds: answers name the chain's current period.
    pub seconds_per_period: u64,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("staker", &self.staker)
            .field("worker", &self.worker.address())
            .field("umbral", &self.umbral.public_key())
            .field("chain_id", &self.chain_id)
            .field("adjudicator", &self.adjudicator)
            .field("seconds_per_period", &self.seconds_per_period)
            .finish()
    }
}

/// The API's Prometheus metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    reencryptions: IntCounter,
    kfrags: IntGauge,
    connections: IntGauge,
}

impl Metrics {
    fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("kms_node".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by endpoint and status",
            ),
            &["endpoint", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by endpoint",
            ),
            &["endpoint"],
        )?;
        let reencryptions =
            IntCounter::new("reencryptions_total", "Capsules re-encrypted and signed")?;
        let kfrags = IntGauge::new("kfrags_stored", "Kfrags held in the store")?;
        let connections = IntGauge::new("http_connections_open", "HTTP connections being served")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(reencryptions.clone()))?;
        registry.register(Box::new(kfrags.clone()))?;
        registry.register(Box::new(connections.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
            reencryptions,
            kfrags,
            connections,
        })
    }

    /// The registry, e.g. to add the daemon's other metrics to the same `/metrics`.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The gauge of open HTTP connections, for [`crate::server::serve`].
    pub fn open_connections(&self) -> IntGauge {
        self.connections.clone()
    }
}

/// The API could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A metric could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// The API's shared state.
pub struct ApiState<D> {
    identity: NodeIdentity,
    store: Store,
    directory: Arc<D>,
    limits: Limits,
    pool: Arc<Semaphore>,
    replays: Mutex<ReplayGuard>,
    uploads: Mutex<RateLimiter>,
    unknown_policies: Mutex<UnknownPolicies>,
    metrics: Metrics,
    started: Instant,
    behaviour: Behaviour,
    verified: Mutex<VerifiedKfrags>,
    clock: Arc<ChainClock>,
}

/// Verified kfrags by policy, with the record each was verified from.
type VerifiedKfrags = HashMap<[u8; 16], (Arc<StoredKfrag>, VerifiedKeyFrag)>;

/// Most verified kfrags kept in memory (the cache is emptied when full).
const VERIFIED_KFRAG_CACHE: usize = 10_000;

impl<D> std::fmt::Debug for ApiState<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("identity", &self.identity)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl<D: PolicyDirectory> ApiState<D> {
    /// The state of an API serving `identity` from `store`, checking policies with `directory`.
    pub fn new(
        identity: NodeIdentity,
        store: Store,
        directory: Arc<D>,
        limits: Limits,
    ) -> Result<Self, SetupError> {
        let metrics = Metrics::new()?;
        metrics
            .kfrags
            .set(i64::try_from(store.kfrag_count()?).unwrap_or(i64::MAX));
        Ok(Self {
            pool: Arc::new(Semaphore::new(limits.workers.max(1))),
            identity,
            store,
            directory,
            replays: Mutex::new(ReplayGuard::new(limits.max_remembered_per_policy)),
            uploads: Mutex::new(RateLimiter::new(
                limits.kfrag_uploads_per_minute,
                limits.kfrag_upload_burst,
                RATE_LIMITED_CLIENTS_CAPACITY,
            )),
            unknown_policies: Mutex::new(UnknownPolicies::new(
                limits.unknown_policy_ttl,
                UNKNOWN_POLICIES_CAPACITY,
            )),
            limits,
            metrics,
            started: Instant::now(),
            behaviour: Behaviour::Honest,
            verified: Mutex::new(HashMap::new()),
            clock: Arc::new(ChainClock::new()),
        })
    }

    /// The stored kfrag, verified: from the cache when the record read now is the one verified
    /// before (verification depends only on the kfrag's bytes and the three keys, so a deleted
    /// or replaced kfrag is never served from the cache). Blocking (curve arithmetic).
    fn verified_kfrag(
        &self,
        policy_id: [u8; 16],
        record: &Arc<StoredKfrag>,
    ) -> Result<VerifiedKeyFrag, ApiError> {
        if let Ok(cache) = self.verified.lock() {
            if let Some((cached, verified)) = cache.get(&policy_id) {
                if **cached == **record {
                    return Ok(verified.clone());
                }
            }
        }
        let kfrag = KeyFrag::from_bytes(&record.kfrag).map_err(ApiError::internal)?;
        let verified = kfrag
            .verify(
                &record.verifying_key,
                Some(&record.delegating_key),
                Some(&record.receiving_key),
            )
            .map_err(|(e, _)| ApiError::internal(format!("stored kfrag does not verify: {e}")))?;
        if let Ok(mut cache) = self.verified.lock() {
            if cache.len() >= VERIFIED_KFRAG_CACHE {
                cache.clear();
            }
            cache.insert(policy_id, (record.clone(), verified.clone()));
        }
        Ok(verified)
    }

    /// Takes one of the client's kfrag-upload tokens: 429 when it has none left. A request
    /// without a peer address (handed to the router in process) counts as one unknown client.
    fn admit_upload(&self, peer: Option<SocketAddr>) -> Result<(), ApiError> {
        let checked = match self.uploads.lock() {
            Ok(mut limiter) => limiter.check(client_key(peer.map(|p| p.ip())), Instant::now()),
            Err(_) => return Err(ApiError::internal("upload rate limiter poisoned")),
        };
        checked.map_err(|wait| {
            let retry_after = wait.as_secs().saturating_add(1);
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many kfrag uploads from this address (at most {} at once, then {} a \
                     minute): retry in {retry_after} s",
                    self.limits.kfrag_upload_burst, self.limits.kfrag_uploads_per_minute
                ),
            )
            .retry_after(retry_after)
        })
    }

    /// The policy's kfrag signer on chain; 404 if there is no such policy. A policy id the
    /// chain did not know is answered from memory for [`Limits::unknown_policy_ttl`], so that
    /// uploads repeating it cost no chain call.
    async fn kfrag_signer(&self, policy_id: [u8; 16]) -> Result<Address, ApiError> {
        let unknown = |ttl: Duration| {
            ApiError::new(StatusCode::NOT_FOUND, "no such policy on chain")
                .retry_after(ttl.as_secs().max(1))
        };
        let known_unknown = match self.unknown_policies.lock() {
            Ok(mut cache) => cache
                .is_unknown(policy_id, Instant::now())
                .then(|| cache.ttl()),
            Err(_) => return Err(ApiError::internal("unknown-policy cache poisoned")),
        };
        if let Some(ttl) = known_unknown {
            return Err(unknown(ttl));
        }
        match self.directory.kfrag_signer(policy_id).await {
            Ok(Some(signer)) => Ok(signer),
            Ok(None) => {
                let ttl = match self.unknown_policies.lock() {
                    Ok(mut cache) => {
                        cache.remember(policy_id, Instant::now());
                        cache.ttl()
                    }
                    Err(_) => return Err(ApiError::internal("unknown-policy cache poisoned")),
                };
                Err(unknown(ttl))
            }
            Err(e) => Err(ApiError::chain(e)),
        }
    }

    /// Sets how re-encryption requests are answered (see [`Behaviour`]).
    pub fn with_behaviour(mut self, behaviour: Behaviour) -> Self {
        self.behaviour = behaviour;
        self
    }

    /// Answers name the period of this clock (the daemon's duties keep it on the chain's time).
    pub fn with_clock(mut self, clock: Arc<ChainClock>) -> Self {
        self.clock = clock;
        self
    }

    /// The clock the answers' periods come from.
    pub fn clock(&self) -> Arc<ChainClock> {
        self.clock.clone()
    }

    /// The API's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// The router with every endpoint, the body limit and the metrics layer.
pub fn router<D: PolicyDirectory>(state: Arc<ApiState<D>>) -> Router {
    Router::new()
        .route("/v1/node", get(node_info::<D>))
        .route("/v1/status", get(status::<D>))
        .route("/v1/policies/{id}/kfrag", post(upload_kfrag::<D>))
        .route("/v1/policies/{id}/reencrypt", post(reencrypt_capsules::<D>))
        .route("/metrics", get(metrics::<D>))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            read_body::<D>,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), observe::<D>))
        .with_state(state)
}

/// An error answer: a status and the reason, sent as `{"error": reason}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// Why.
    pub message: String,
    /// Seconds after which the same request may succeed, sent as `Retry-After`.
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after_secs: None,
        }
    }
    fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    fn internal(message: impl std::fmt::Display) -> Self {
        tracing::error!(%message, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
    /// The chain could not be asked. The detail stays in the log: an RPC client's error text
    /// carries the endpoint's URL, which often holds an API key.
    fn chain(error: impl std::fmt::Display) -> Self {
        tracing::warn!(%error, "chain unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the chain cannot be reached now, retry later",
        )
    }
}

impl From<wire::WireError> for ApiError {
    fn from(e: wire::WireError) -> Self {
        Self::bad_request(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Parses a policy id: 16 bytes in hex, `0x` optional.
fn parse_policy_id(id: &str) -> Result<[u8; 16], ApiError> {
    let bytes = alloy::primitives::hex::decode(id)
        .map_err(|e| ApiError::bad_request(format!("policy id: invalid hex: {e}")))?;
    <[u8; 16]>::try_from(bytes.as_slice()).map_err(|_| {
        ApiError::bad_request(format!("policy id: expected 16 bytes, got {}", bytes.len()))
    })
}

fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        let status = rejection.status();
        let status = if status.is_client_error() || status.is_server_error() {
            status
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::new(status, format!("request body: {}", rejection.body_text()))
    })
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// Runs a CPU-bound job on the blocking pool, at most `workers` at a time.
async fn run_blocking<D, T, F>(state: &ApiState<D>, job: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
{
    let permit = state
        .pool
        .clone()
        .acquire_owned()
        .await
        .map_err(ApiError::internal)?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        job()
    })
    .await
    .map_err(ApiError::internal)?
}

/// Runs a store operation on the blocking pool (redb fsyncs).
async fn with_store<T, F>(store: &Store, op: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Store) -> Result<T, crate::store::StoreError> + Send + 'static,
{
    let store = store.clone();
    tokio::task::spawn_blocking(move || op(&store))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

/// Reads the whole request body, at most [`Limits::max_body_bytes`] (413 above) within
/// [`Limits::body_read_timeout`] (408 after), before the handler runs: a client sending its body
/// slowly holds its connection that long at most.
async fn read_body<D: PolicyDirectory>(
    State(state): State<Arc<ApiState<D>>>,
    request: Request,
    next: Next,
) -> Response {
    let (max, timeout) = (state.limits.max_body_bytes, state.limits.body_read_timeout);
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body: larger than {max} bytes"),
        )
    };
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > u64::try_from(max).unwrap_or(u64::MAX)) {
        return too_large().into_response();
    }
    let read = async {
        let mut stream = body.into_data_stream();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ApiError::bad_request(format!("request body: {e}")))?;
            if bytes.len().saturating_add(chunk.len()) > max {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(e)) => e.into_response(),
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "request body: not received within {} s",
                timeout.as_secs_f64()
            ),
        )
        .into_response(),
    }
}

/// Times and counts every request, and turns any error answer that is not JSON yet (the body
/// limit's 413, the router's 404 and 405) into `{"error": ...}`.
async fn observe<D: PolicyDirectory>(
    State(state): State<Arc<ApiState<D>>>,
    request: Request,
    next: Next,
) -> Response {
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let start = Instant::now();
    let mut response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        let reason = status.canonical_reason().unwrap_or("error").to_lowercase();
        response = ApiError::new(status, reason).into_response();
    }
    state
        .metrics
        .latency
        .with_label_values(&[endpoint.as_str()])
        .observe(start.elapsed().as_secs_f64());
    state
        .metrics
        .requests
        .with_label_values(&[endpoint.as_str(), status.as_str()])
        .inc();
    response
}

async fn node_info<D: PolicyDirectory>(State(state): State<Arc<ApiState<D>>>) -> Json<NodeInfo> {
    let id = &state.identity;
    Json(NodeInfo {
        staker: id.staker,
        worker: id.worker.address(),
        umbral_public_key: wire::encode_public_key(&id.umbral.public_key()),
        chain_id: id.chain_id,
        version: env!("CARGO_PKG_VERSION").to_owned(),
    })
}

async fn status<D: PolicyDirectory>(
    State(state): State<Arc<ApiState<D>>>,
) -> Result<Json<NodeStatus>, ApiError> {
    let (kfrags, policies, cursor) = with_store(&state.store, |s| {
        Ok((s.kfrag_count()?, s.policy_count()?, s.cursor()?))
    })
    .await?;
    Ok(Json(NodeStatus {
        kfrags,
        uptime_seconds: state.started.elapsed().as_secs(),
        policies,
        cursor_block: cursor.map(|c| c.block),
    }))
}

async fn metrics<D: PolicyDirectory>(
    State(state): State<Arc<ApiState<D>>>,
) -> Result<Response, ApiError> {
    // The follower and the pruning duty delete kfrags too: count at scrape time.
    let kfrags = with_store(&state.store, Store::kfrag_count).await?;
    state
        .metrics
        .kfrags
        .set(i64::try_from(kfrags).unwrap_or(i64::MAX));
    let encoder = TextEncoder::new();
    let mut buffer = Vec::new();
    encoder
        .encode(&state.metrics.registry.gather(), &mut buffer)
        .map_err(ApiError::internal)?;
    let content_type = HeaderValue::from_str(encoder.format_type()).map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, content_type)], Body::from(buffer)).into_response())
}

/// `POST /v1/policies/{id}/kfrag`.
async fn upload_kfrag<D: PolicyDirectory>(
    State(state): State<Arc<ApiState<D>>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<KfragAccepted>), ApiError> {
    // Each upload may cost a chain call: a client gets so many a minute.
    state.admit_upload(peer.map(|Extension(ConnectInfo(addr))| addr))?;
    let policy_id = parse_policy_id(&id)?;
    let upload: KfragUpload = parse_json(&body_bytes(body)?)?;
    let upload = upload.decode()?;
    let staker = state.identity.staker;

    // The chain first: it is cheaper than decrypting, and junk for unknown policies stops here
    // (and is remembered for a moment, so that repeating it costs no chain call).
    let signer = state.kfrag_signer(policy_id).await?;
    if ethereum_address(&upload.verifying_key) != signer {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("verifyingKey is not the policy's kfrag signer {signer}"),
        ));
    }
    // Bound to this policy and this node by Alice's kfrag signer: an upload seen elsewhere
    // cannot be stored under another policy of the same Alice (and make hers a 409).
    if !upload.is_signed_for(policy_id, staker) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "signature: not by the kfrag signer over this upload for this policy and node",
        ));
    }
    let arrangement = state
        .directory
        .arrangement(policy_id)
        .await
        .map_err(ApiError::chain)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                format!("the policy does not name this node ({staker})"),
            )
        })?;
    if !arrangement.nodes.contains(&staker) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("the policy does not name this node ({staker})"),
        ));
    }
    if arrangement.end_timestamp <= unix_now()
        || !state
            .directory
            .is_active(policy_id, staker, &arrangement.nodes)
            .await
            .map_err(ApiError::chain)?
    {
        return Err(ApiError::new(
            StatusCode::GONE,
            "the policy is revoked or ended for this node",
        ));
    }

    let umbral = state.identity.umbral.clone();
    let (delegating, receiving, verifying) = (
        upload.delegating_key,
        upload.receiving_key,
        upload.verifying_key,
    );
    let kfrag = run_blocking(&state, move || {
        let plaintext =
            decrypt_original(&umbral, &upload.capsule, &upload.ciphertext).map_err(|e| {
                ApiError::bad_request(format!(
                    "the kfrag does not decrypt with this node's Umbral key: {e}"
                ))
            })?;
        let kfrag = KeyFrag::from_bytes(&plaintext)
            .map_err(|e| ApiError::bad_request(format!("the plaintext is no KeyFrag: {e}")))?;
        let canonical = kfrag.to_bytes().map_err(ApiError::internal)?;
        wire::verify_uploaded_kfrag(&kfrag, &verifying, &delegating, &receiving)
            .map_err(ApiError::bad_request)?;
        Ok(canonical.into_vec())
    })
    .await?;

    let record = StoredKfrag {
        kfrag,
        delegating_key: delegating,
        receiving_key: receiving,
        verifying_key: verifying,
        end_timestamp: arrangement.end_timestamp,
        nodes: arrangement.nodes,
    };
    let outcome = with_store(&state.store, move |s| {
        s.put_kfrag_if_absent(policy_id, &record)
    })
    .await?;
    let policy_id_hex = encode_hex(&policy_id);
    match outcome {
        PutOutcome::Inserted => {
            state.metrics.kfrags.inc();
            tracing::info!(policy = %policy_id_hex, "kfrag stored");
            Ok((
                StatusCode::CREATED,
                Json(KfragAccepted {
                    policy_id: policy_id_hex,
                    created: true,
                }),
            ))
        }
        PutOutcome::AlreadyStored => Ok((
            StatusCode::OK,
            Json(KfragAccepted {
                policy_id: policy_id_hex,
                created: false,
            }),
        )),
        PutOutcome::Conflict => Err(ApiError::new(
            StatusCode::CONFLICT,
            "another kfrag is already stored for this policy",
        )),
    }
}

/// `POST /v1/policies/{id}/reencrypt`.
async fn reencrypt_capsules<D: PolicyDirectory>(
    State(state): State<Arc<ApiState<D>>>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ReencryptResponse>, ApiError> {
    let policy_id = parse_policy_id(&id)?;
    let request: ReencryptRequest = parse_json(&body_bytes(body)?)?;
    let limits = &state.limits;
    if request.capsules.is_empty() {
        return Err(ApiError::bad_request("capsules: empty"));
    }
    if request.capsules.len() > limits.max_capsules {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "capsules: {} in one request, at most {}",
                request.capsules.len(),
                limits.max_capsules
            ),
        ));
    }
    let now = unix_now();
    if request.timestamp.abs_diff(now) > limits.max_clock_skew_secs {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!(
                "timestamp {} is more than {} s from the node's clock ({now})",
                request.timestamp, limits.max_clock_skew_secs
            ),
        ));
    }
    let capsule_bytes = request.capsule_bytes()?;
    let signature = request.decode_signature()?;
    let nonce = request.decode_nonce()?;

    let record = with_store(&state.store, move |s| s.get_kfrag(policy_id))
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "this node holds no kfrag for the policy",
            )
        })?;
    let record = Arc::new(record);
    let staker = state.identity.staker;
    let message =
        wire::reencrypt_message(policy_id, staker, request.timestamp, nonce, &capsule_bytes);
    // The elliptic-curve work (the signature, capsule checks, the kfrag) off the async threads.
    // The signature covers the raw capsule bytes, so it is checked first: decoding a capsule
    // verifies it (curve arithmetic), which only Bob's requests are worth.
    let (capsules, verified) = {
        let (state, record, message) = (state.clone(), record.clone(), message.clone());
        run_blocking(&state.clone(), move || {
            if !signature.verify(&record.receiving_key, &message) {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "signature: not by the policy's receiving key over this request",
                ));
            }
            let capsules = capsule_bytes
                .iter()
                .enumerate()
                .map(|(i, bytes)| wire::decode_umbral::<Capsule>(&format!("capsules[{i}]"), bytes))
                .collect::<Result<Vec<_>, _>>()?;
            let verified = state.verified_kfrag(policy_id, &record)?;
            Ok((capsules, verified))
        })
        .await?
    };
    if record.end_timestamp <= now
        || !state
            .directory
            .is_active(policy_id, staker, &record.nodes)
            .await
            .map_err(ApiError::chain)?
    {
        return Err(ApiError::new(
            StatusCode::GONE,
            "the policy is revoked or ended for this node",
        ));
    }
    // Only a request signed by the Bob of a policy whose kfrag the node holds gets here, so the
    // guard holds entries of those policies only, each within its own quota.
    let digest: [u8; 32] = Sha256::digest(&message).into();
    let admission = match state.replays.lock() {
        Ok(mut guard) => guard.admit(
            policy_id,
            digest,
            request.timestamp.saturating_add(limits.max_clock_skew_secs),
            now,
        ),
        Err(_) => return Err(ApiError::internal("replay guard poisoned")),
    };
    match admission {
        Admission::New => {}
        Admission::Replay => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "replayed request: sign a new one",
            ))
        }
        Admission::OverQuota { retry_after_secs } => {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "this policy has {} recent requests remembered against replays, its quota: \
                     retry in {retry_after_secs} s",
                    limits.max_remembered_per_policy
                ),
            )
            .retry_after(retry_after_secs))
        }
    }

    // Every answer of the batch names the same period: the chain's, by the node's clock.
    let identity = &state.identity;
    let context = AnswerContext {
        chain_id: identity.chain_id,
        adjudicator: identity.adjudicator,
        staker,
        period: state.clock.period(identity.seconds_per_period),
        policy_id,
    };
    // A batch is spread over the worker pool, so one client's batch uses every core.
    let count = capsules.len();
    let per_job = count.div_ceil(limits.workers.max(1));
    let jobs = capsules.chunks(per_job).map(|chunk| {
        let (chunk, verified) = (chunk.to_vec(), verified.clone());
        let worker = state.identity.worker.clone();
        let behaviour = state.behaviour;
        run_blocking(&state, move || {
            serve(&verified, &worker, &context, &chunk, behaviour)
        })
    });
    let cfrags = futures_util::future::try_join_all(jobs)
        .await?
        .into_iter()
        .flatten()
        .collect();
    state
        .metrics
        .reencryptions
        .inc_by(u64::try_from(count).unwrap_or(u64::MAX));
    Ok(Json(ReencryptResponse { cfrags }))
}

/// Re-encrypts every capsule with the verified kfrag and signs each answer.
fn serve(
    verified: &VerifiedKeyFrag,
    worker: &PrivateKeySigner,
    context: &AnswerContext,
    capsules: &[Capsule],
    behaviour: Behaviour,
) -> Result<Vec<SignedCFrag>, ApiError> {
    capsules
        .iter()
        .map(|capsule| {
            let cfrag = reencrypt(capsule, verified.clone());
            let (cfrag_simple, cfrag_bytes) = match behaviour {
                Behaviour::Honest => (
                    cfrag.to_bytes_simple().into_vec(),
                    cfrag.to_bytes().map_err(ApiError::internal)?.into_vec(),
                ),
                Behaviour::WrongCFrags => wrong_cfrag(&cfrag.to_bytes_simple())?,
            };
            let signature = sign_answer(worker, context, &capsule.to_bytes_simple(), &cfrag_simple)
                .map_err(ApiError::internal)?;
            Ok(SignedCFrag {
                cfrag: encode_b64(&cfrag_bytes),
                signature: encode_hex(&signature.as_bytes()),
                period: context.period,
            })
        })
        .collect()
}

/// [`Behaviour::WrongCFrags`]: `E1` replaced by `E2` (both valid points, so the cfrag still
/// deserializes), as `(to_bytes_simple, to_bytes)`.
fn wrong_cfrag(simple: &[u8]) -> Result<(Vec<u8>, Vec<u8>), ApiError> {
    use kms_crypto::umbral::layout::{E1, E2};
    let mut tampered = simple.to_vec();
    let e2 = tampered
        .get(E2)
        .ok_or_else(|| ApiError::internal("cfrag shorter than its layout"))?
        .to_vec();
    tampered[E1].copy_from_slice(&e2);
    let cfrag =
        kms_crypto::umbral::cfrag_from_bytes_simple(&tampered).map_err(ApiError::internal)?;
    let bytes = cfrag.to_bytes().map_err(ApiError::internal)?;
    Ok((tampered, bytes.into_vec()))
}

/// Used by tests and clients: the public key a node's [`NodeInfo`] announces.
pub fn decode_node_key(info: &NodeInfo) -> Result<PublicKey, wire::WireError> {
    wire::decode_public_key("umbralPublicKey", &info.umbral_public_key)
}

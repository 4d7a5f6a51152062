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
//! `guard`). Bodies are read within [`Limits::body_read_timeout`] (408).
//!
//! - `kfrag`: `POST /v1/policies/{id}/kfrag`, Alice's uploads;
//! - `reencrypt`: `POST /v1/policies/{id}/reencrypt`, Bob's requests and the signed answers;
//! - `status`: `GET /v1/node`, `/v1/status`, `/metrics`, and the metrics every request counts in;
//!   `page`: `GET /` (or `/status`), the status as a page for a browser;
//! - `revocation`: `POST` and `GET /v1/policies/{id}/revocation`, the owner's signed orders;
//! - `investigation`: `POST /v1/evidence`, `GET /v1/evidence/{id}`, `GET /v1/network`;
//! - `gate`: the 503 every request gets while the node starts, with what it waits for;
//! - `cors`: the headers and preflights that let browser apps call `/v1/` from other origins.
//!
//! The messages themselves (how an upload is opened, how an answer is signed) are in
//! [`kms_crypto::wire`]; the handlers here keep the statuses, limits, replays and chain checks.

mod cors;
mod gate;
mod investigation;
mod kfrag;
mod page;
mod reencrypt;
mod revocation;
mod status;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use alloy::{primitives::Address, signers::local::PrivateKeySigner};
use axum::{
    body::{Body, Bytes},
    extract::{rejection::BytesRejection, Request, State},
    http::{header, HeaderValue, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use futures_util::StreamExt;
use tokio::sync::Semaphore;
use umbral_pre::{PublicKey, SecretKey, VerifiedKeyFrag};

use kms_crypto::wire::{self, ErrorBody, NodeInfo};

use crate::{
    clock::ChainClock,
    directory::PolicyDirectory,
    guard::{
        RateLimiter, Recent, ReplayGuard, UnknownPolicies, RATE_LIMITED_CLIENTS_CAPACITY,
        UNKNOWN_POLICIES_CAPACITY,
    },
    head::HeadView,
    store::Store,
};

pub use cors::{AllowedOrigins, OriginError, PREFLIGHT_MAX_AGE};
pub use gate::Gate;
pub use investigation::{Accepted, EvidenceIntake, Investigation, RECENT_PERIODS};
pub use status::Metrics;

/// Bounds on what a request, a client or a connection may ask of the node.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, in bytes (413 above).
    pub max_body_bytes: usize,
    /// Most capsules in one re-encryption request (413 above); `GET /v1/node` advertises it, and
    /// clients split their requests by it.
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
    /// How old the node's read of the chain head may be before re-encryption requests are
    /// refused with 503: past it, the RPC endpoint is not answering and a revocation could go
    /// unseen. Keep it several poll intervals long, so that one slow read is not a refusal.
    pub max_head_age: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 256 * 1024,
            max_capsules: wire::DEFAULT_MAX_CAPSULES_PER_REQUEST as usize,
            max_clock_skew_secs: 300,
            max_remembered_per_policy: 10_000,
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            kfrag_uploads_per_minute: 120,
            kfrag_upload_burst: 30,
            unknown_policy_ttl: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 512,
            max_head_age: Duration::from_secs(15),
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
    /// The `PolicyManager`: the owner's revocation orders are signed in its EIP-712 domain.
    pub policy_manager: Address,
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
            .field("policy_manager", &self.policy_manager)
            .field("seconds_per_period", &self.seconds_per_period)
            .finish()
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
    verified_digests: Mutex<Recent<[u8; 16], [u8; 32]>>,
    clock: Arc<ChainClock>,
    investigation: Investigation,
    head: Arc<HeadView>,
    standing: Arc<crate::standing::StandingView>,
}

/// Verified kfrags by policy, with the digest of the record each was verified from.
type VerifiedKfrags = Recent<[u8; 16], ([u8; 32], VerifiedKeyFrag)>;

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
        let max_head_age = limits.max_head_age;
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
            verified: Mutex::new(Recent::new(reencrypt::VERIFIED_KFRAG_CACHE)),
            verified_digests: Mutex::new(Recent::new(reencrypt::VERIFIED_DIGESTS)),
            clock: Arc::new(ChainClock::new()),
            investigation: Investigation::default(),
            head: Arc::new(HeadView::new(max_head_age)),
            standing: Arc::default(),
        })
    }

    /// Whether the policy is live for this node, from what the node follows (no chain call):
    /// 503 if the node's view of the chain head is missing or older than
    /// [`Limits::max_head_age`], 410 if the policy (or this node's arrangement in it) is revoked,
    /// confirmed (`revoked`, from the store) or not yet (the head view), or if it has ended by
    /// the chain's clock or the local one, whichever is later.
    fn ensure_live(
        &self,
        policy_id: [u8; 16],
        end_timestamp: u64,
        policy: Confirmed,
    ) -> Result<(), ApiError> {
        let fresh = self.head.check(policy_id).map_err(not_fresh)?;
        match policy {
            Confirmed::Revoked => return Err(gone_revoked()),
            // Not confirmed: its creation must be in the blocks the node has read above its
            // cursor. Not there: created in a block the node has not read yet, or removed by a
            // reorg since the upload (the pruning duty then deletes the kfrag).
            Confirmed::No if fresh.created_unconfirmed == Some(false) => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the chain the node has read (head block {}) does not hold this \
                         policy's creation: created in a block the node has not read yet \
                         (retry in a moment), or removed by a reorg",
                        fresh.head.number
                    ),
                )
                .retry_after(1));
            }
            Confirmed::No | Confirmed::Live => {}
        }
        if fresh.revoked_unconfirmed {
            return Err(ApiError::new(
                StatusCode::GONE,
                format!(
                    "the policy, or this node's arrangement in it, is revoked (seen at block {}, \
                     not yet confirmed)",
                    fresh.head.number
                ),
            ));
        }
        let now = fresh.head.timestamp.max(unix_now());
        if end_timestamp <= now {
            return Err(gone_ended(end_timestamp));
        }
        Ok(())
    }

    /// 503 unless the node's view of the chain head is fresh: checked before anything that
    /// costs the client a token, so that retrying while the node starts or its RPC endpoint is
    /// down never runs into the rate limit.
    fn ensure_fresh(&self) -> Result<(), ApiError> {
        self.head.check([0; 16]).map(|_| ()).map_err(not_fresh)
    }

    /// Reads the node's views of the chain head from `view` (the daemon's follower keeps it);
    /// without it, the API has a view no one updates and refuses re-encryptions with 503.
    pub fn with_head_view(mut self, view: Arc<HeadView>) -> Self {
        self.head = view;
        self
    }

    /// Shows the node's standing on chain as the duties read it into `view` (commitments, the
    /// worker's balance) in `GET /v1/status`; without it, the status has no `standing`.
    pub fn with_standing(mut self, view: Arc<crate::standing::StandingView>) -> Self {
        self.standing = view;
        self
    }

    /// The view of the chain head the API serves on.
    pub fn head_view(&self) -> Arc<HeadView> {
        self.head.clone()
    }

    /// Counts in `metrics` (e.g. made before the state, so that the server answering while the
    /// node starts counts its connections on the same `/metrics`).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        metrics.kfrags.set(self.metrics.kfrags.get());
        self.metrics = metrics;
        self
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

    /// Serves `POST /v1/evidence`, `GET /v1/evidence/{id}` and `GET /v1/network` with these
    /// (each answers 501 without its part).
    pub fn with_investigation(mut self, investigation: Investigation) -> Self {
        self.investigation = investigation;
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
        .route("/v1/node", get(status::node_info::<D>))
        .route("/v1/status", get(status::status::<D>))
        .route("/", get(status::status_page::<D>))
        .route("/status", get(status::status_page::<D>))
        .route("/v1/policies/{id}/kfrag", post(kfrag::upload_kfrag::<D>))
        .route(
            "/v1/policies/{id}/reencrypt",
            post(reencrypt::reencrypt_capsules::<D>),
        )
        .route(
            "/v1/policies/{id}/revocation",
            post(revocation::take_order::<D>).get(revocation::orders::<D>),
        )
        .route("/v1/evidence", post(investigation::relay_evidence::<D>))
        .route(
            "/v1/evidence/{id}",
            get(investigation::evidence_status::<D>),
        )
        .route("/v1/network", get(investigation::network::<D>))
        .route("/metrics", get(status::metrics::<D>))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            read_body::<D>,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            status::observe::<D>,
        ))
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

/// 503 with why the head view is not fresh, and when to retry.
fn not_fresh(e: crate::head::NotFresh) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).retry_after(1)
}

/// What the follower has confirmed of a policy (its record in the store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Confirmed {
    /// No record: its creation is not confirmed (yet).
    No,
    /// Confirmed, and not revoked as far as confirmed blocks go.
    Live,
    /// Confirmed revoked (or this node's arrangement in it).
    Revoked,
}

impl Confirmed {
    fn of(record: Option<&crate::store::PolicyRecord>) -> Self {
        match record {
            None => Self::No,
            Some(r) if r.revoked => Self::Revoked,
            Some(_) => Self::Live,
        }
    }
}

/// 410: the policy, or this node's arrangement in it, was revoked (confirmed).
fn gone_revoked() -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        "the policy, or this node's arrangement in it, is revoked",
    )
}

/// 410: the owner's signed revocation order is kept (and maybe not yet carried out on chain).
fn gone_by_order() -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        "the policy's owner revoked it, or this node's arrangement in it, by a signed order \
         (GET /v1/policies/{id}/revocation hands it out; anyone may carry it out on chain)",
    )
}

/// 410: the policy ended.
fn gone_ended(end_timestamp: u64) -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        format!("the policy ended at {end_timestamp} (Unix seconds)"),
    )
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

/// Used by tests and clients: the public key a node's [`NodeInfo`] announces.
pub fn decode_node_key(info: &NodeInfo) -> Result<PublicKey, wire::WireError> {
    wire::decode_public_key("umbralPublicKey", &info.umbral_public_key)
}

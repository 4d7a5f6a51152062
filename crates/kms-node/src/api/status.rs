//! `GET /v1/node`, `GET /v1/status` (and its page, `GET /`), `GET /metrics`, and the metrics
//! every request is counted in.

use std::{sync::Arc, time::Instant};

use axum::{
    body::Body,
    extract::{MatchedPath, Request, State},
    http::{header, HeaderValue},
    middleware::Next,
    response::{IntoResponse, Response},
    Json,
};
use kms_crypto::wire::{self, NodeInfo, NodeStatus, StandingStatus};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use super::{with_store, ApiError, ApiState};
use crate::{directory::PolicyDirectory, store::Store};

/// The API's Prometheus metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub(super) registry: Registry,
    pub(super) requests: IntCounterVec,
    pub(super) latency: HistogramVec,
    pub(super) reencryptions: IntCounter,
    pub(super) kfrags: IntGauge,
    pub(super) connections: IntGauge,
    pub(super) revocation_orders: IntCounter,
}

impl Metrics {
    /// A new registry with the API's metrics.
    pub fn new() -> Result<Self, prometheus::Error> {
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
        let revocation_orders = IntCounter::new(
            "revocation_orders_kept_total",
            "Owners' signed revocation orders kept (each refuses its policy from then on)",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(reencryptions.clone()))?;
        registry.register(Box::new(kfrags.clone()))?;
        registry.register(Box::new(connections.clone()))?;
        registry.register(Box::new(revocation_orders.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
            reencryptions,
            kfrags,
            connections,
            revocation_orders,
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

/// Times and counts every request, and turns any error answer that is not JSON yet (the body
/// limit's 413, the router's 404 and 405) into `{"error": ...}`.
pub(super) async fn observe<D: PolicyDirectory>(
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

pub(super) async fn node_info<D: PolicyDirectory>(
    State(state): State<Arc<ApiState<D>>>,
) -> Json<NodeInfo> {
    let id = &state.identity;
    Json(NodeInfo {
        staker: id.staker,
        worker: id.worker.address(),
        umbral_public_key: wire::encode_public_key(&id.umbral.public_key()),
        chain_id: id.chain_id,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        max_capsules_per_request: u32::try_from(state.limits.max_capsules).unwrap_or(u32::MAX),
    })
}

pub(super) async fn status<D: PolicyDirectory>(
    State(state): State<Arc<ApiState<D>>>,
) -> Result<Json<NodeStatus>, ApiError> {
    Ok(Json(node_status(&state).await?))
}

/// `GET /` and `GET /status`: the same as `GET /v1/status`, as a page for a browser.
pub(super) async fn status_page<D: PolicyDirectory>(
    State(state): State<Arc<ApiState<D>>>,
) -> Result<Response, ApiError> {
    let status = node_status(&state).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // The page is the node's own: nothing of it runs scripts or loads from elsewhere.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        super::page::render_status(&status),
    )
        .into_response())
}

/// What `GET /v1/status` answers: from the store, the head view, the counters and the duties'
/// last read of the node's standing; no chain call.
async fn node_status<D: PolicyDirectory>(state: &ApiState<D>) -> Result<NodeStatus, ApiError> {
    let (kfrags, policies, cursor) = with_store(&state.store, |s| {
        Ok((s.kfrag_count()?, s.policy_count()?, s.cursor()?))
    })
    .await?;
    let head_block = state.head.head().map(|h| h.number);
    // The freshness check is the same for every policy id.
    let refusing = state.head.check([0; 16]).err().map(|e| e.to_string());
    let standing = state.standing.latest();
    let mut warnings = Vec::new();
    if let Some(reason) = &refusing {
        warnings.push(format!("re-encryptions are refused (503): {reason}"));
    }
    if let Some((standing, _)) = &standing {
        warnings.extend(standing.warnings());
    }
    let id = &state.identity;
    let requests_served = state
        .metrics
        .requests
        .with_label_values(&["/v1/policies/{id}/reencrypt", "200"])
        .get();
    Ok(NodeStatus {
        kfrags,
        uptime_seconds: state.started.elapsed().as_secs(),
        policies,
        cursor_block: cursor.map(|c| c.block),
        head_block,
        head_age_ms: state
            .head
            .age()
            .map(|age| u64::try_from(age.as_millis()).unwrap_or(u64::MAX)),
        refusing,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        chain_id: id.chain_id,
        staker: id.staker,
        worker: id.worker.address(),
        lag_blocks: head_block
            .zip(cursor)
            .map(|(head, cursor)| head.saturating_sub(cursor.block)),
        requests_served,
        reencryptions: state.metrics.reencryptions.get(),
        standing: standing.map(|(s, age)| StandingStatus {
            block: s.block,
            age_seconds: age.as_secs(),
            current_period: s.current_period,
            last_committed_period: s.last_committed_period,
            next_commitment_period: s.next_commitment_period,
            next_commitment_due_by: s.next_commitment_due_by,
            committed_next: s.committed_next,
            worker_balance_wei: s.worker_balance_wei.to_string(),
            low_balance_below_wei: s.low_balance_below_wei().to_string(),
            low_balance: s.low_balance(),
            pending_duties: s.pending_duties,
        }),
        warnings,
    })
}

pub(super) async fn metrics<D: PolicyDirectory>(
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

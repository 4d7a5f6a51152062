//! Test support (feature `test-utils`): a [`PolicyDirectory`] without a chain and a head view
//! that never goes stale, for the API's tests and benchmarks, the [`Settings`] of a node on a
//! test chain, and an RPC proxy that counts, delays or stalls a node's calls. Nothing here ships in a
//! binary.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex, MutexGuard, PoisonError,
    },
};

use alloy::primitives::Address;

use crate::{
    api::AllowedOrigins,
    audit::AuditConfig,
    directory::{Arrangement, DirectoryError, PolicyDirectory},
    head::{HeadBlock, HeadView},
    Behaviour, DutyConfig, Limits, Settings,
};

/// The settings of a node on `chain` for its dev accounts `staker` and `worker`, its store at
/// `store_path`: any free port of 127.0.0.1, acting at depth 0, polling every 100 ms, its Umbral
/// key derived from the staker's index, honest, and **audits off** (a test that wants them sets
/// `duties.audit`), over plain HTTP (a test that wants TLS sets `tls`). Callers change what
/// their test needs with `Settings { .., ..settings }`.
pub fn local_settings(
    chain: &kms_contracts::devchain::DevChain,
    staker: usize,
    worker: usize,
    store_path: std::path::PathBuf,
) -> Result<Settings, kms_contracts::devchain::DevChainError> {
    let seed = u8::try_from(staker).unwrap_or(u8::MAX);
    Ok(Settings {
        rpc_url: chain.endpoint_url().to_string(),
        deployment: chain.deployment().clone(),
        staker: chain.address(staker)?,
        worker: chain.signer(worker)?,
        umbral: kms_crypto::keys::MasterSecret::from_seed([seed; 32]).node_key(),
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        public_url: None,
        tls: None,
        store_path,
        confirmations: 0,
        poll_interval: std::time::Duration::from_millis(100),
        max_log_range: 1000,
        duties: DutyConfig {
            audit: AuditConfig {
                budget_per_period: alloy::primitives::U256::ZERO,
                ..AuditConfig::default()
            },
            ..DutyConfig::default()
        },
        limits: Limits::default(),
        behaviour: Behaviour::Honest,
        cors: AllowedOrigins::Any,
    })
}

/// Serves `app` over TLS with `identity` on a free port of 127.0.0.1 until the task is aborted
/// (the node's own server loop, `crate::server::serve`, with the default limits); the port.
pub async fn serve_tls(
    identity: &crate::tls::TlsIdentity,
    app: axum::Router,
) -> Result<(u16, tokio::task::JoinHandle<()>), String> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let acceptor = identity.acceptor().map_err(|e| e.to_string())?;
    let gauge = crate::api::Metrics::new()
        .map_err(|e| e.to_string())?
        .open_connections();
    let task = tokio::spawn(async move {
        crate::server::serve(
            listener,
            app,
            &Limits::default(),
            Some(acceptor),
            gauge,
            std::future::pending(),
        )
        .await;
    });
    Ok((port, task))
}

/// A head view that never goes stale, holding one head and no unconfirmed revocation: for an
/// API without a chain follower (a daemon's follower keeps its real one).
pub fn steady_head() -> std::sync::Arc<HeadView> {
    let view = HeadView::new(std::time::Duration::MAX);
    view.publish(
        HeadBlock {
            number: 1,
            hash: alloy::primitives::B256::repeat_byte(1),
            timestamp: 0,
        },
        std::collections::HashSet::new(),
    );
    std::sync::Arc::new(view)
}

/// A policy as the chain would tell it.
#[derive(Debug, Clone)]
pub struct FakePolicy {
    /// Its kfrag signer.
    pub signer: Address,
    /// Its nodes and end.
    pub arrangement: Arrangement,
}

/// The chain, as a map the test edits. Empty by default: it knows no policy.
#[derive(Debug, Default)]
pub struct FakeDirectory {
    policies: Mutex<HashMap<[u8; 16], FakePolicy>>,
    /// `kfrag_signer` calls (each an `eth_call` on a real chain).
    signer_calls: AtomicUsize,
    /// When set, every call fails with this error text (the RPC endpoint is down).
    failure: Mutex<Option<String>>,
}

/// A test's lock: a panic elsewhere in the test must not hide its own failure behind a poison.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FakeDirectory {
    /// A chain on which `policy_id` is `policy`.
    pub fn with(policy_id: [u8; 16], policy: FakePolicy) -> Self {
        let directory = Self::default();
        directory.insert(policy_id, policy);
        directory
    }

    /// Puts `policy` on the chain as `policy_id` (replacing any).
    pub fn insert(&self, policy_id: [u8; 16], policy: FakePolicy) {
        lock(&self.policies).insert(policy_id, policy);
    }

    /// From now on every call fails with `text` (`None`: the chain answers again).
    pub fn fail_with(&self, text: Option<String>) {
        *lock(&self.failure) = text;
    }

    /// How many times the kfrag signer was asked.
    pub fn signer_calls(&self) -> usize {
        self.signer_calls.load(Ordering::SeqCst)
    }

    fn check_up(&self) -> Result<(), DirectoryError> {
        match lock(&self.failure).clone() {
            Some(text) => Err(DirectoryError(text)),
            None => Ok(()),
        }
    }
}

impl PolicyDirectory for FakeDirectory {
    async fn kfrag_signer(&self, policy_id: [u8; 16]) -> Result<Option<Address>, DirectoryError> {
        self.signer_calls.fetch_add(1, Ordering::SeqCst);
        self.check_up()?;
        Ok(lock(&self.policies).get(&policy_id).map(|p| p.signer))
    }

    async fn arrangement(
        &self,
        policy_id: [u8; 16],
    ) -> Result<Option<Arrangement>, DirectoryError> {
        self.check_up()?;
        Ok(lock(&self.policies)
            .get(&policy_id)
            .map(|p| p.arrangement.clone()))
    }
}

/// What an [`RpcProxy`] does with the calls it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forwards every call (after the delay, if any).
    Forward,
    /// Holds every call, answering none until the mode changes: an endpoint that accepts
    /// connections and never answers.
    Stall,
}

#[derive(Debug)]
struct ProxyState {
    upstream: String,
    http: reqwest::Client,
    calls: Mutex<HashMap<String, u64>>,
    delay: Mutex<std::time::Duration>,
    mode: tokio::sync::watch::Sender<ProxyMode>,
}

/// A JSON-RPC proxy in front of a node's RPC endpoint (HTTP only): counts the calls by method,
/// adds a delay to each (a remote, metered endpoint), or stalls them all. Tests use it to show
/// which paths make chain calls; the benchmarks, to put an RPC endpoint 50 ms away.
#[derive(Debug)]
pub struct RpcProxy {
    url: String,
    state: std::sync::Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

impl RpcProxy {
    /// A proxy of `upstream` (an `http://` JSON-RPC URL) on a free port of 127.0.0.1.
    pub async fn start(upstream: &str) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (mode, _) = tokio::sync::watch::channel(ProxyMode::Forward);
        let state = std::sync::Arc::new(ProxyState {
            upstream: upstream.to_owned(),
            http: reqwest::Client::new(),
            calls: Mutex::new(HashMap::new()),
            delay: Mutex::new(std::time::Duration::ZERO),
            mode,
        });
        let app = axum::Router::new()
            .fallback(axum::routing::post(proxy_call))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "RPC proxy stopped");
            }
        });
        Ok(Self { url, state, task })
    }

    /// The proxy's URL, to give the node as its RPC endpoint.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Calls received so far (each call of a batch counts), by method.
    pub fn calls_by_method(&self) -> HashMap<String, u64> {
        lock(&self.state.calls).clone()
    }

    /// Calls received so far.
    pub fn calls(&self) -> u64 {
        lock(&self.state.calls).values().sum()
    }

    /// Every call waits `delay` before it is forwarded.
    pub fn set_delay(&self, delay: std::time::Duration) {
        *lock(&self.state.delay) = delay;
    }

    /// Forward or stall the calls from now on (held calls go on when forwarding resumes).
    pub fn set_mode(&self, mode: ProxyMode) {
        self.state.mode.send_replace(mode);
    }
}

impl Drop for RpcProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn proxy_call(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<ProxyState>>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let methods = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Array(calls)) => calls
            .iter()
            .map(|c| c["method"].as_str().unwrap_or("?").to_owned())
            .collect(),
        Ok(call) => vec![call["method"].as_str().unwrap_or("?").to_owned()],
        Err(_) => vec!["(not JSON)".to_owned()],
    };
    {
        let mut calls = lock(&state.calls);
        for method in methods {
            *calls.entry(method).or_default() += 1;
        }
    }
    let mut mode = state.mode.subscribe();
    if mode.wait_for(|m| *m == ProxyMode::Forward).await.is_err() {
        return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let delay = *lock(&state.delay);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let forwarded = state
        .http
        .post(&state.upstream)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    match forwarded {
        Ok(response) => {
            let status = axum::http::StatusCode::from_u16(response.status().as_u16())
                .unwrap_or(axum::http::StatusCode::BAD_GATEWAY);
            match response.bytes().await {
                Ok(bytes) => (
                    status,
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    bytes,
                )
                    .into_response(),
                Err(_) => axum::http::StatusCode::BAD_GATEWAY.into_response(),
            }
        }
        Err(_) => axum::http::StatusCode::BAD_GATEWAY.into_response(),
    }
}

//! The daemon: listens at once (every request answered 503 with what the node waits for, see
//! [`Gate`]), checks the chain and the node's bond, opens the store, publishes its node record
//! (the start-up duties), then opens the API and runs its services until shut down, each owning its loop (the
//! shape of Lighthouse's validator client): the HTTP API, the block notifier (WebSocket
//! endpoints only), the chain follower ([`Follower::run`]) and the duties ([`Duties::run`]),
//! woken by new blocks or the poll interval ([`Wakeups`]).
//!
//! Shutdown (SIGINT/SIGTERM in `kms node run`, [`RunningNode::shutdown`] in tests) stops the
//! loops between two steps (each step is atomic in the store, and a duty transaction recorded
//! as sent is resumed at the next start) and lets the HTTP server finish in-flight requests.
//! redb has made every committed write durable already: nothing is left to flush.

use std::{net::SocketAddr, sync::Arc};

use alloy::{
    network::EthereumWallet,
    providers::{DynProvider, Provider, ProviderBuilder},
};
use futures_util::StreamExt;
use prometheus::{IntGauge, Registry};
use tokio::{net::TcpListener, sync::watch, task::JoinSet};

pub use crate::settings::{DaemonError, Settings};
use crate::{
    api::{router, AllowedOrigins, ApiState, Gate, Investigation, Limits, Metrics, NodeIdentity},
    audit::{AuditMetrics, Auditor},
    directory::ChainDirectory,
    duties::{startup, Duties, DutyMetrics},
    evidence::EvidenceDesk,
    follower::{Follower, FollowerConfig},
    head::HeadView,
    standing::StandingView,
    store::Store,
    tx::TxSender,
    wakeup::Wakeups,
};

/// A started node.
#[derive(Debug)]
pub struct RunningNode {
    addr: SocketAddr,
    public_url: String,
    store: Store,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl RunningNode {
    /// The API's bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL published in the node record.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// The node's store (for status and tests).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Stops the loops, lets in-flight requests finish, and waits for everything to end.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
    }

    /// Waits until `signal` resolves, then shuts down.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) {
        signal.await;
        tracing::info!("shutting down: finishing in-flight requests");
        self.shutdown().await;
        tracing::info!("stopped");
    }
}

fn chain(e: impl std::fmt::Display) -> DaemonError {
    DaemonError::Chain(e.to_string())
}

/// Starts the node: see the module docs. The API's port answers from the start: 503 with what
/// the node is waiting for (the chain, the bond, the node record's confirmation), then the real
/// API once the services run. Waiting for a start-up transaction never gives up (an idle devnet
/// mines a block only with a transaction): race this future against a shutdown signal.
pub async fn start(settings: Settings) -> Result<RunningNode, DaemonError> {
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|e| DaemonError::Api(format!("cannot listen on {}: {e}", settings.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| DaemonError::Api(e.to_string()))?;
    let scheme = if settings.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let public_url = settings
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{addr}"));
    // A self-signed certificate's pin goes with the URL (`kms_crypto::tls`).
    let public_url = match &settings.tls {
        Some(tls) => tls.public_url(&public_url),
        None => public_url,
    };
    let acceptor = match &settings.tls {
        Some(tls) => Some(
            tls.acceptor()
                .map_err(|e| DaemonError::Api(e.to_string()))?,
        ),
        None => None,
    };
    let gate = Gate::new("connecting to the chain");
    let metrics = Metrics::new().map_err(|e| DaemonError::Api(e.to_string()))?;
    let (shutdown, _) = watch::channel(false);
    let wakeups = Wakeups::new(settings.poll_interval, shutdown.subscribe());
    let mut tasks = JoinSet::new();
    tasks.spawn(serve_api(
        listener,
        gate.clone(),
        settings.limits.clone(),
        settings.cors.clone(),
        acceptor,
        metrics.open_connections(),
        wakeups.clone(),
    ));

    let (provider, chain_id) = connect(&settings).await?;
    let worker = settings.worker.address();
    let path = settings.store_path.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(path))
        .await
        .map_err(chain)??;
    let sender = TxSender::new(
        provider.clone(),
        EthereumWallet::from(settings.worker.clone()),
        worker,
        chain_id,
        store.clone(),
        settings.confirmations,
        settings.poll_interval,
    );
    gate.set_phase("checking the worker's bond");
    startup::accept_bond(&provider, &sender, &settings, &gate).await?;
    gate.set_phase("checking the node record");
    startup::publish_node_record(&provider, &sender, &settings, &public_url, &gate).await?;
    gate.set_phase("starting the services");

    // The investigator: evidence filed for the staker (or the configured beneficiary), and the
    // audits, which also keep the network view of `GET /v1/network`.
    let desk = EvidenceDesk::new(
        provider.clone(),
        settings.deployment.clone(),
        store.clone(),
        settings.staker,
        worker,
        settings.duties.beneficiary.unwrap_or(settings.staker),
    );
    // The audits reach the peers as any client does; plain HTTP only among a devnet's nodes
    // (a node serving plain HTTP is one).
    let client = kms_client::Client::connect(
        provider.clone(),
        settings.deployment.clone(),
        kms_client::HttpConfig {
            allow_plain_http: settings.tls.is_none(),
            ..kms_client::HttpConfig::default()
        },
    )
    .await
    .map_err(chain)?;
    let auditor = Auditor::new(
        client,
        store.clone(),
        settings.staker,
        worker,
        settings.duties.audit.clone(),
        desk.clone(),
    );
    let investigation = Investigation {
        evidence: Some(Arc::new(desk.clone())),
        network: Some(auditor.network()),
    };

    // The follower keeps the head view the API refuses on: no chain call per request.
    let head_view = Arc::new(HeadView::new(settings.limits.max_head_age));
    // The duties read the node's standing (commitments, the worker's balance) for the status.
    let standing = Arc::new(StandingView::new());
    let state = api_state(&settings, &provider, &store, chain_id, investigation)?
        .with_metrics(metrics)
        .with_head_view(head_view.clone())
        .with_standing(standing.clone());
    let clock = state.clock();
    let registry = state.metrics().registry();
    let (duty_metrics, chain_lag) =
        register_metrics(registry).map_err(|e| DaemonError::Api(e.to_string()))?;
    let audit_metrics =
        AuditMetrics::register(registry).map_err(|e| DaemonError::Api(e.to_string()))?;
    let auditor = Arc::new(auditor.with_metrics(audit_metrics));
    let state = Arc::new(state);

    // New blocks wake the loops early on a WebSocket endpoint; polling covers the rest.
    if settings.rpc_url.starts_with("ws") {
        tasks.spawn(notify_new_blocks(provider.clone(), wakeups.clone()));
    }
    let follower = Follower::new(
        provider.clone(),
        store.clone(),
        FollowerConfig {
            staker: settings.staker,
            policy_manager: settings.deployment.policy_manager,
            start_block: settings.deployment.start_block,
            confirmations: settings.confirmations,
            max_range: settings.max_log_range,
        },
    )
    .with_head_view(head_view);
    tasks.spawn(follower.run(wakeups.clone(), chain_lag));
    tasks.spawn(auditor.clone().run(wakeups.clone()));
    let audits = settings.duties.audit.enabled().then_some(auditor);
    let duties = Duties::new(
        provider,
        store.clone(),
        sender,
        settings.staker,
        settings.deployment.clone(),
        settings.confirmations,
        settings.duties.clone(),
    )
    .with_metrics(duty_metrics)
    .with_standing(standing, worker)
    .with_clock(clock)
    .with_investigation(desk, audits);
    tasks.spawn(duties.run(wakeups));
    gate.open(router(state));

    tracing::info!(%addr, staker = %settings.staker, %worker, %public_url, "node started");
    Ok(RunningNode {
        addr,
        public_url,
        store,
        shutdown,
        tasks,
    })
}

/// Connects to the RPC endpoint and checks it serves the deployment's chain.
async fn connect(settings: &Settings) -> Result<(DynProvider, u64), DaemonError> {
    let provider = ProviderBuilder::new()
        .connect(&settings.rpc_url)
        .await
        .map_err(|e| DaemonError::Connect {
            url: settings.rpc_url.clone(),
            reason: e.to_string(),
        })?
        .erased();
    let chain_id = provider.get_chain_id().await.map_err(chain)?;
    if chain_id != settings.deployment.chain_id {
        return Err(DaemonError::WrongChain {
            expected: settings.deployment.chain_id,
            actual: chain_id,
        });
    }
    Ok((provider, chain_id))
}

/// The duties' counters and the follower's lag gauge, on the API's `/metrics`.
fn register_metrics(registry: &Registry) -> Result<(DutyMetrics, IntGauge), prometheus::Error> {
    let duty_metrics = DutyMetrics::register(registry)?;
    let chain_lag = IntGauge::new(
        "chain_lag_blocks",
        "Blocks between the chain head and the follower's cursor",
    )?;
    registry.register(Box::new(chain_lag.clone()))?;
    Ok((duty_metrics, chain_lag))
}

/// The API's state: the node's identity, checking policies against the chain (through the
/// store's confirmed policies first).
fn api_state(
    settings: &Settings,
    provider: &DynProvider,
    store: &Store,
    chain_id: u64,
    investigation: Investigation,
) -> Result<ApiState<ChainDirectory<DynProvider>>, DaemonError> {
    let directory = ChainDirectory::new(
        provider.clone(),
        settings.deployment.policy_manager,
        settings.deployment.start_block,
    )
    .with_store(store.clone());
    let identity = NodeIdentity {
        staker: settings.staker,
        worker: settings.worker.clone(),
        umbral: settings.umbral.clone(),
        chain_id,
        adjudicator: settings.deployment.adjudicator,
        policy_manager: settings.deployment.policy_manager,
        seconds_per_period: settings.deployment.seconds_per_period,
    };
    Ok(ApiState::new(
        identity,
        store.clone(),
        Arc::new(directory),
        settings.limits.clone(),
    )
    .map_err(|e| DaemonError::Api(e.to_string()))?
    .with_behaviour(settings.behaviour)
    .with_investigation(investigation))
}

/// The API service: serves the gate (503 while the node starts, then the API) until shutdown,
/// then lets in-flight requests finish.
async fn serve_api(
    listener: TcpListener,
    gate: Arc<Gate>,
    limits: Limits,
    cors: AllowedOrigins,
    tls: Option<tokio_rustls::TlsAcceptor>,
    open_connections: IntGauge,
    mut wakeups: Wakeups,
) {
    let graceful = async move { wakeups.shutdown().await };
    // Outside the gate: a page gets the 503 "starting" with its reason, not a CORS failure.
    let app = match cors.layer() {
        Some(layer) => gate.router().layer(layer),
        None => gate.router(),
    };
    crate::server::serve(listener, app, &limits, tls, open_connections, graceful).await;
}

/// The block notifier service: wakes the other services at each new block, until shutdown or
/// the end of the subscription (polling covers the rest).
async fn notify_new_blocks(provider: DynProvider, mut wakeups: Wakeups) {
    match provider.subscribe_blocks().await {
        Ok(subscription) => {
            let mut stream = subscription.into_stream();
            loop {
                tokio::select! {
                    _ = wakeups.shutdown() => break,
                    header = stream.next() => match header {
                        Some(_) => wakeups.notify_new_block(),
                        None => break,
                    },
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "no block subscription: polling only"),
    }
}

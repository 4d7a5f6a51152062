//! The daemon: checks the node is bonded, publishes its node record, serves the HTTP API, and
//! runs the chain follower and the duties until shut down.
//!
//! Shutdown (SIGINT/SIGTERM in `kms node run`, [`RunningNode::shutdown`] in tests) stops the
//! loops between two steps (each step is atomic in the store, and a duty transaction recorded
//! as sent is resumed at the next start) and lets the HTTP server finish in-flight requests.
//! redb has made every committed write durable already: nothing is left to flush.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use alloy::{
    eips::BlockId,
    network::EthereumWallet,
    primitives::{keccak256, Address, Bytes},
    providers::{DynProvider, Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
    sol_types::SolCall,
};
use futures_util::StreamExt;
use kms_contracts::{describe_contract_error, Deployment, StakingEscrow};
use prometheus::IntGauge;
use tokio::{
    net::TcpListener,
    sync::{watch, Notify},
    task::JoinSet,
};
use umbral_pre::SecretKey;

use crate::{
    api::{router, ApiState, Behaviour, Limits, NodeIdentity},
    directory::ChainDirectory,
    duties::{Duties, DutyConfig, DutyMetrics},
    follower::{Follower, Step},
    store::{DutyRecord, Store},
    tx::TxSender,
};

/// Everything the daemon runs with.
#[derive(Clone)]
pub struct Settings {
    /// The RPC endpoint (`http(s)://` polls, `ws(s)://` also subscribes to new blocks).
    pub rpc_url: String,
    /// The contracts.
    pub deployment: Deployment,
    /// The staker served.
    pub staker: Address,
    /// The worker key bonded to the staker.
    pub worker: PrivateKeySigner,
    /// The node's Umbral key.
    pub umbral: SecretKey,
    /// Where the API listens (port 0: any free port).
    pub listen: SocketAddr,
    /// The URL published in the node record; `None`: `http://` + the bound address.
    pub public_url: Option<String>,
    /// The store's file.
    pub store_path: std::path::PathBuf,
    /// Act on events this many blocks deep.
    pub confirmations: u64,
    /// Poll interval without a subscription, and the duties' tick.
    pub poll_interval: Duration,
    /// Most blocks per `eth_getLogs`.
    pub max_log_range: u64,
    /// The duties.
    pub duties: DutyConfig,
    /// The API's limits.
    pub limits: Limits,
    /// How re-encryptions are answered: [`Behaviour::Honest`] except in devnets and tests.
    pub behaviour: Behaviour,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("rpc_url", &self.rpc_url)
            .field("staker", &self.staker)
            .field("worker", &self.worker.address())
            .field("listen", &self.listen)
            .field("store_path", &self.store_path)
            .field("confirmations", &self.confirmations)
            .finish_non_exhaustive()
    }
}

/// The daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The RPC endpoint could not be reached.
    #[error("cannot reach the chain at {url}: {reason}")]
    Connect {
        /// The endpoint.
        url: String,
        /// Why.
        reason: String,
    },
    /// The endpoint serves another chain than the deployments file's.
    #[error("the RPC endpoint is chain {actual}, the deployments file is for chain {expected}")]
    WrongChain {
        /// The deployments file's chain.
        expected: u64,
        /// The endpoint's.
        actual: u64,
    },
    /// The worker is not bonded to the staker.
    #[error(
        "worker {worker} is bonded to {bonded_to} on chain, not to staker {staker}: run `kms stake bond-worker --worker {worker}` as the staker (the node accepts the proposal when it starts)"
    )]
    NotBonded {
        /// The worker.
        worker: Address,
        /// The staker configured.
        staker: Address,
        /// Whom the chain says the worker serves (zero: nobody).
        bonded_to: Address,
    },
    /// A chain read or transaction failed.
    #[error("chain: {0}")]
    Chain(String),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The API could not be set up or bound.
    #[error("api: {0}")]
    Api(String),
}

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

/// Starts the node: see the module docs.
pub async fn start(settings: Settings) -> Result<RunningNode, DaemonError> {
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
    accept_bond(&provider, &sender, &settings).await?;

    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|e| DaemonError::Api(format!("cannot listen on {}: {e}", settings.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| DaemonError::Api(e.to_string()))?;
    let public_url = settings
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    publish_node_record(&provider, &sender, &settings, &public_url).await?;

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
        seconds_per_period: settings.deployment.seconds_per_period,
    };
    let state = Arc::new(
        ApiState::new(
            identity,
            store.clone(),
            Arc::new(directory),
            settings.limits.clone(),
        )
        .map_err(|e| DaemonError::Api(e.to_string()))?
        .with_behaviour(settings.behaviour),
    );
    let clock = state.clock();
    let registry = state.metrics().registry().clone();
    let duty_metrics =
        DutyMetrics::register(&registry).map_err(|e| DaemonError::Api(e.to_string()))?;
    let chain_lag = IntGauge::new(
        "chain_lag_blocks",
        "Blocks between the chain head and the follower's cursor",
    )
    .map_err(|e| DaemonError::Api(e.to_string()))?;
    registry
        .register(Box::new(chain_lag.clone()))
        .map_err(|e| DaemonError::Api(e.to_string()))?;

    let (shutdown, _) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let new_block = Arc::new(Notify::new());

    // The API.
    let open_connections = state.metrics().open_connections();
    let app = router(state);
    let (mut stop, limits) = (shutdown.subscribe(), settings.limits.clone());
    tasks.spawn(async move {
        let graceful = async move {
            let _ = stop.wait_for(|&s| s).await;
        };
        crate::server::serve(listener, app, &limits, open_connections, graceful).await;
    });

    // New blocks wake the loops early on a WebSocket endpoint; polling covers the rest.
    if settings.rpc_url.starts_with("ws") {
        let (provider, notify, mut stop) =
            (provider.clone(), new_block.clone(), shutdown.subscribe());
        tasks.spawn(async move {
            match provider.subscribe_blocks().await {
                Ok(subscription) => {
                    let mut stream = subscription.into_stream();
                    loop {
                        tokio::select! {
                            _ = stop.wait_for(|&s| s) => break,
                            header = stream.next() => match header {
                                Some(_) => notify.notify_waiters(),
                                None => break,
                            },
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "no block subscription: polling only"),
            }
        });
    }

    // The chain follower.
    let follower = Follower::new(
        provider.clone(),
        store.clone(),
        settings.staker,
        settings.deployment.policy_manager,
        settings.deployment.start_block,
        settings.confirmations,
        settings.max_log_range,
    );
    let (notify, mut stop, poll) = (
        new_block.clone(),
        shutdown.subscribe(),
        settings.poll_interval,
    );
    tasks.spawn(async move {
        loop {
            match follower.step().await {
                // Catching up: go on right away.
                Ok(Step::Advanced { to, head, .. }) if to < head => {
                    chain_lag.set(i64::try_from(head - to).unwrap_or(i64::MAX));
                    if *stop.borrow() {
                        break;
                    }
                    continue;
                }
                Ok(Step::Advanced { to, head, .. }) => {
                    chain_lag.set(i64::try_from(head.saturating_sub(to)).unwrap_or(i64::MAX));
                }
                Ok(Step::Idle { .. }) | Ok(Step::Rewound { .. }) => {}
                Err(e) => tracing::warn!(error = %e, "chain follower step failed; retrying"),
            }
            tokio::select! {
                _ = stop.wait_for(|&s| s) => break,
                _ = notify.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
    });

    // The duties.
    let mut duties = Duties::new(
        provider.clone(),
        store.clone(),
        sender,
        settings.staker,
        settings.deployment.clone(),
        settings.confirmations,
        settings.duties.clone(),
    )
    .with_metrics(duty_metrics)
    .with_clock(clock);
    let (notify, mut stop) = (new_block, shutdown.subscribe());
    tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = stop.wait_for(|&s| s) => break,
                result = duties.tick() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "duty tick had a failure");
                    }
                }
            }
            tokio::select! {
                _ = stop.wait_for(|&s| s) => break,
                _ = notify.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
    });

    tracing::info!(%addr, staker = %settings.staker, %worker, %public_url, "node started");
    Ok(RunningNode {
        addr,
        public_url,
        store,
        shutdown,
        tasks,
    })
}

/// Publishes the node record (URL, Umbral key) unless the chain has exactly it already.
/// Checks that the worker is bonded to the configured staker, and accepts the staker's pending
/// proposal if that is all that is missing (bonding takes the worker's consent).
async fn accept_bond(
    provider: &DynProvider,
    sender: &TxSender<DynProvider>,
    settings: &Settings,
) -> Result<(), DaemonError> {
    let worker = settings.worker.address();
    let escrow = StakingEscrow::new(settings.deployment.staking_escrow, provider);
    let bonded_to = || async {
        escrow
            .stakerOf(worker)
            .block(BlockId::latest())
            .call()
            .await
            .map_err(|e| DaemonError::Chain(describe_contract_error(&e)))
    };
    let not_bonded = |bonded_to| DaemonError::NotBonded {
        worker,
        staker: settings.staker,
        bonded_to,
    };
    let current = bonded_to().await?;
    if current == settings.staker {
        return Ok(());
    }
    let proposed = escrow
        .pendingWorker(settings.staker)
        .block(BlockId::latest())
        .call()
        .await
        .map_err(|e| DaemonError::Chain(describe_contract_error(&e)))?;
    if !current.is_zero() || proposed != worker {
        return Err(not_bonded(current));
    }
    let input = StakingEscrow::acceptWorkerCall {
        staker: settings.staker,
    }
    .abi_encode();
    // A later proposal of the same worker comes after another (un)bonding: a new duty.
    let bonded_period = worker_bonded_period(provider, settings).await?;
    let duty = format!("accept-bond/{}/{bonded_period}", settings.staker);
    run_setup_tx(
        sender,
        &duty,
        settings.deployment.staking_escrow,
        input,
        "accepting the bond",
    )
    .await?;
    tracing::info!(staker = %settings.staker, "bond to the staker accepted");
    match bonded_to().await? {
        staker if staker == settings.staker => Ok(()),
        other => Err(not_bonded(other)),
    }
}

/// The period the staker's current worker was bonded in: part of the start-up duties' keys, so
/// that a duty of an earlier bond is never mistaken for one of this bond.
async fn worker_bonded_period(
    provider: &DynProvider,
    settings: &Settings,
) -> Result<u32, DaemonError> {
    Ok(
        StakingEscrow::new(settings.deployment.staking_escrow, provider)
            .getStakerInfo(settings.staker)
            .block(BlockId::latest())
            .call()
            .await
            .map_err(|e| DaemonError::Chain(describe_contract_error(&e)))?
            .workerBondedPeriod
            .saturating_to(),
    )
}

/// Sends a start-up transaction through the exactly-once sender, waiting a little for it to be
/// confirmed.
async fn run_setup_tx(
    sender: &TxSender<DynProvider>,
    duty: &str,
    to: Address,
    input: Vec<u8>,
    what: &str,
) -> Result<(), DaemonError> {
    for _ in 0..10 {
        match sender.run(duty, to, input.clone().into()).await {
            Ok(DutyRecord::Done { .. }) => return Ok(()),
            Ok(other) => return Err(DaemonError::Chain(format!("{what} failed: {other:?}"))),
            Err(crate::tx::TxError::Pending(_)) => continue,
            Err(e) => return Err(chain(format!("{what}: {e}"))),
        }
    }
    Err(DaemonError::Chain(format!(
        "{what}: the transaction is not confirmed yet; the next start resumes it"
    )))
}

async fn publish_node_record(
    provider: &DynProvider,
    sender: &TxSender<DynProvider>,
    settings: &Settings,
    url: &str,
) -> Result<(), DaemonError> {
    let escrow = StakingEscrow::new(settings.deployment.staking_escrow, provider);
    let key = Bytes::from(
        settings
            .umbral
            .public_key()
            .to_compressed_bytes()
            .into_vec(),
    );
    let current = escrow
        .nodeRecordOf(settings.staker)
        .block(BlockId::latest())
        .call()
        .await
        .map_err(|e| DaemonError::Chain(describe_contract_error(&e)))?;
    if current.url == url && current.umbralPublicKey == key {
        return Ok(());
    }
    let input = StakingEscrow::publishNodeRecordCall {
        url: url.to_owned(),
        umbralPublicKey: key.clone(),
    }
    .abi_encode();
    // One duty per distinct record: a restart with the same record resumes the same transaction.
    let mut preimage = url.as_bytes().to_vec();
    preimage.extend_from_slice(&key);
    // Bonding a worker clears the record: the bonding period tells a cleared record from ours.
    let bonded_period = worker_bonded_period(provider, settings).await?;
    let duty = format!(
        "record/{}/{bonded_period}",
        &keccak256(&preimage).to_string()[2..18]
    );
    run_setup_tx(
        sender,
        &duty,
        settings.deployment.staking_escrow,
        input,
        "publishing the node record",
    )
    .await?;
    tracing::info!(url, "node record published");
    Ok(())
}

//! What the daemon runs with ([`Settings`]) and why it could not start ([`DaemonError`]): shared
//! by the daemon and its start-up duties.

use std::{net::SocketAddr, time::Duration};

use alloy::{primitives::Address, signers::local::PrivateKeySigner};
use kms_contracts::Deployment;
use umbral_pre::SecretKey;

use crate::{
    api::{Behaviour, Limits},
    duties::DutyConfig,
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
    /// The URL published in the node record; `None`: `https://` (or `http://` without `tls`) +
    /// the bound address. With a self-signed certificate, the pin is added as its fragment.
    pub public_url: Option<String>,
    /// The certificate the API serves over TLS; `None`: plain HTTP (devnets only: clients refuse
    /// it unless told otherwise).
    pub tls: Option<crate::tls::TlsIdentity>,
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
    /// Which browser origins may call the JSON API (`[cors]`; any by default).
    pub cors: crate::api::AllowedOrigins,
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

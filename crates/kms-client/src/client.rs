//! [`Client`]: a provider, a deployment and the nodes' HTTP client, with which Alice grants,
//! revokes and refunds ([`crate::grant`]) and Bob retrieves and reports ([`crate::retrieve`]).

use std::time::Duration;

use alloy::providers::Provider;
use kms_contracts::Deployment;

use crate::{
    chain::ChainError,
    http::{HttpConfig, HttpSetupError, NodeClient},
};

/// Why a [`Client`] could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The chain could not be asked, or is not the deployment's.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Http(#[from] HttpSetupError),
}

/// A KMS client on one chain.
///
/// For transactions (grant, revoke, refund, report), `provider` must sign with the account that
/// pays (and, for revoke, the policy's owner): an alloy provider with a wallet.
#[derive(Debug, Clone)]
pub struct Client<P> {
    pub(crate) provider: P,
    pub(crate) deployment: Deployment,
    pub(crate) nodes: NodeClient,
    pub(crate) receipt_timeout: Duration,
}

impl<P: Provider> Client<P> {
    /// A client of the contracts of `deployment` through `provider`; fails if the provider's
    /// chain is not the deployment's.
    pub async fn connect(
        provider: P,
        deployment: Deployment,
        http: HttpConfig,
    ) -> Result<Self, ClientError> {
        let chain_id = provider
            .get_chain_id()
            .await
            .map_err(|e| ChainError::rpc("asking the chain id", e))?;
        if chain_id != deployment.chain_id {
            return Err(ChainError::Mismatch(format!(
                "the RPC endpoint serves chain {chain_id}, the deployments file is for chain {}: \
                 use the deployments file of that chain (deployments/{chain_id}.json)",
                deployment.chain_id
            ))
            .into());
        }
        Ok(Self {
            provider,
            deployment,
            nodes: NodeClient::new(http)?,
            receipt_timeout: Duration::from_secs(120),
        })
    }

    /// How long to wait for a transaction's receipt (default two minutes).
    pub fn with_receipt_timeout(mut self, timeout: Duration) -> Self {
        self.receipt_timeout = timeout;
        self
    }

    /// The provider.
    pub fn provider(&self) -> &P {
        &self.provider
    }

    /// The deployment.
    pub fn deployment(&self) -> &Deployment {
        &self.deployment
    }

    /// The nodes' HTTP client.
    pub fn node_client(&self) -> &NodeClient {
        &self.nodes
    }

    /// Fails unless a file made for `chain_id` and `policy_manager` belongs to this client's
    /// deployment.
    pub(crate) fn check_policy_home(
        &self,
        chain_id: u64,
        policy_manager: alloy::primitives::Address,
    ) -> Result<(), ChainError> {
        if chain_id != self.deployment.chain_id {
            return Err(ChainError::Mismatch(format!(
                "the policy is on chain {chain_id}, this client is connected to chain {}",
                self.deployment.chain_id
            )));
        }
        if policy_manager != self.deployment.policy_manager {
            return Err(ChainError::Mismatch(format!(
                "the policy is on PolicyManager {policy_manager}, the deployments file names {}",
                self.deployment.policy_manager
            )));
        }
        Ok(())
    }
}

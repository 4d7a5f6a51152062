//! What the API needs to know about policies from the chain.

use std::future::Future;

use alloy::{
    eips::BlockId,
    primitives::{Address, FixedBytes, B256},
    providers::Provider,
    rpc::types::Filter,
    sol_types::SolEvent,
};
use kms_contracts::PolicyManager;

/// A policy's arrangement: the nodes it names and when it ends, from its `PolicyCreated` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrangement {
    /// The policy's nodes (stakers), ascending.
    pub nodes: Vec<Address>,
    /// When the policy ends (Unix seconds).
    pub end_timestamp: u64,
    /// The policy's owner: revokes it, herself or by a signed order.
    pub owner: Address,
}

/// The chain could not be asked.
#[derive(Debug, thiserror::Error)]
#[error("chain: {0}")]
pub struct DirectoryError(pub String);

/// The policy facts the API checks kfrag uploads against (a re-encryption is checked against
/// the store and the head view alone: see `crate::head`).
pub trait PolicyDirectory: Send + Sync + 'static {
    /// The policy's kfrag signer; `None` if there is no such policy.
    fn kfrag_signer(
        &self,
        policy_id: [u8; 16],
    ) -> impl Future<Output = Result<Option<Address>, DirectoryError>> + Send;

    /// The policy's arrangement; `None` if no such policy was created.
    fn arrangement(
        &self,
        policy_id: [u8; 16],
    ) -> impl Future<Output = Result<Option<Arrangement>, DirectoryError>> + Send;
}

/// The [`PolicyDirectory`] of a deployed `PolicyManager`.
#[derive(Debug, Clone)]
pub struct ChainDirectory<P> {
    provider: P,
    policy_manager: Address,
    from_block: u64,
    store: Option<crate::store::Store>,
}

impl<P: Provider + Clone + 'static> ChainDirectory<P> {
    /// The directory of the `PolicyManager` at `policy_manager`; `PolicyCreated` events are
    /// searched from `from_block` (the deployment's start block).
    pub fn new(provider: P, policy_manager: Address, from_block: u64) -> Self {
        Self {
            provider,
            policy_manager,
            from_block,
            store: None,
        }
    }

    /// Answers from the chain follower's store first: a policy it has confirmed is read from
    /// there, and logs are searched only past its cursor (the blocks not yet confirmed), instead
    /// of from the deployment block on every miss.
    pub fn with_store(mut self, store: crate::store::Store) -> Self {
        self.store = Some(store);
        self
    }
}

fn chain_err(e: impl std::fmt::Display) -> DirectoryError {
    DirectoryError(e.to_string())
}

/// The topic of an indexed `bytes16`: the value left-aligned in 32 bytes.
fn bytes16_topic(policy_id: [u8; 16]) -> B256 {
    let mut topic = B256::ZERO;
    topic[..16].copy_from_slice(&policy_id);
    topic
}

impl<P: Provider + Clone + 'static> PolicyDirectory for ChainDirectory<P> {
    async fn kfrag_signer(&self, policy_id: [u8; 16]) -> Result<Option<Address>, DirectoryError> {
        let manager = PolicyManager::new(self.policy_manager, &self.provider);
        let signer = manager
            .kfragSignerOf(FixedBytes(policy_id))
            .block(BlockId::latest())
            .call()
            .await
            .map_err(chain_err)?;
        Ok((signer != Address::ZERO).then_some(signer))
    }

    async fn arrangement(
        &self,
        policy_id: [u8; 16],
    ) -> Result<Option<Arrangement>, DirectoryError> {
        let mut from_block = self.from_block;
        if let Some(store) = self.store.clone() {
            let (record, cursor) = tokio::task::spawn_blocking(move || {
                Ok::<_, crate::store::StoreError>((store.policy(policy_id)?, store.cursor()?))
            })
            .await
            .map_err(chain_err)?
            .map_err(chain_err)?;
            match record {
                Some(record) if record.owner != Address::ZERO => {
                    return Ok(Some(Arrangement {
                        nodes: record.nodes,
                        end_timestamp: record.end_timestamp,
                        owner: record.owner,
                    }));
                }
                // Recorded before owners were: the logs from the deployment on have it.
                Some(_) => {}
                None => {
                    if let Some(cursor) = cursor {
                        // Confirmed blocks hold no policy naming this node with this id;
                        // policies not naming it are found past the cursor only, which is what
                        // the caller refuses anyway.
                        from_block = from_block.max(cursor.block + 1);
                    }
                }
            }
        }
        // A follower at the head leaves no block to search: asking for logs from past the head
        // is an error on some nodes (anvil's), not an empty answer.
        let head = self.provider.get_block_number().await.map_err(chain_err)?;
        if from_block > head {
            return Ok(None);
        }
        let filter = Filter::new()
            .address(self.policy_manager)
            .event_signature(PolicyManager::PolicyCreated::SIGNATURE_HASH)
            .topic1(bytes16_topic(policy_id))
            .from_block(from_block);
        let logs = self.provider.get_logs(&filter).await.map_err(chain_err)?;
        // A policy id is created at most once; a reorged-out log is not returned.
        let Some(log) = logs.first() else {
            return Ok(None);
        };
        let event = log
            .log_decode::<PolicyManager::PolicyCreated>()
            .map_err(chain_err)?
            .inner
            .data;
        if event.policyId.0 != policy_id {
            return Err(DirectoryError(
                "the node returned a PolicyCreated log of another policy".into(),
            ));
        }
        let end_timestamp = u64::try_from(event.endTimestamp).map_err(chain_err)?;
        Ok(Some(Arrangement {
            nodes: event.nodes,
            end_timestamp,
            owner: event.owner,
        }))
    }
}

//! The chain follower: applies the `PolicyManager` events that concern this node to the store,
//! from a durable cursor, only once they are `confirmations` blocks deep.
//!
//! Each step reads the logs of one range of confirmed blocks and applies them together with the
//! cursor's move in one store transaction, so a crash at any point leaves the store at a range
//! boundary and the next run resumes there. Applying a range twice is harmless (the store's
//! batch is idempotent). A reorg shallower than the confirmation depth is never seen; a deeper
//! one is noticed when the cursor block's hash changes, and the cursor is rewound by
//! [`REORG_REWIND_BLOCKS`] to re-read the new branch (revocations stay applied; policies that
//! vanished are pruned by the duty that checks stored kfrags against the chain).

use alloy::{
    eips::BlockNumberOrTag,
    primitives::{Address, B256},
    providers::Provider,
    rpc::types::Filter,
    sol_types::SolEvent,
};
use kms_contracts::PolicyManager;
use prometheus::IntGauge;

use crate::{
    store::{Cursor, FollowerBatch, PolicyRecord, Store},
    wakeup::Wakeups,
};

/// How far the cursor goes back when its block was reorged out.
pub const REORG_REWIND_BLOCKS: u64 = 64;

/// The follower failed this step; the next step retries.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The RPC endpoint failed.
    #[error("rpc: {0}")]
    Rpc(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The chain answered something inconsistent (e.g. a missing block below the head).
    #[error("chain: {0}")]
    Chain(String),
}

fn rpc(e: impl std::fmt::Display) -> FollowError {
    FollowError::Rpc(e.to_string())
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing new at confirmation depth.
    Idle {
        /// The chain head.
        head: u64,
    },
    /// Applied blocks `from..=to`.
    Advanced {
        /// First block of the range.
        from: u64,
        /// Last block of the range (the new cursor).
        to: u64,
        /// The chain head.
        head: u64,
        /// Events applied that concern this node.
        events: usize,
    },
    /// The cursor's block is no longer canonical: rewound to `to`.
    Rewound {
        /// The new cursor block.
        to: u64,
    },
}

/// What a [`Follower`] follows, and how closely.
#[derive(Debug, Clone)]
pub struct FollowerConfig {
    /// The node's staker: events naming it are applied.
    pub staker: Address,
    /// The `PolicyManager` whose events are read.
    pub policy_manager: Address,
    /// Where following starts when there is no cursor (the deployment's block).
    pub start_block: u64,
    /// How deep a block must be before its events are applied.
    pub confirmations: u64,
    /// The most blocks read per step (`eth_getLogs` range); at least 1.
    pub max_range: u64,
}

/// The follower of one node.
#[derive(Debug, Clone)]
pub struct Follower<P> {
    provider: P,
    store: Store,
    config: FollowerConfig,
}

impl<P: Provider + Clone> Follower<P> {
    /// A follower of `config.policy_manager`'s events naming `config.staker` (see
    /// [`FollowerConfig`]), reading with `provider` and applying them to `store`.
    pub fn new(provider: P, store: Store, config: FollowerConfig) -> Self {
        Self {
            provider,
            store,
            config: FollowerConfig {
                max_range: config.max_range.max(1),
                ..config
            },
        }
    }

    async fn block_hash(&self, number: u64) -> Result<B256, FollowError> {
        self.provider
            .get_block_by_number(BlockNumberOrTag::Number(number))
            .await
            .map_err(rpc)?
            .map(|b| b.header.hash)
            .ok_or_else(|| FollowError::Chain(format!("block {number} not found")))
    }

    async fn cursor(&self) -> Result<Option<Cursor>, FollowError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.cursor())
            .await
            .map_err(|e| FollowError::Chain(e.to_string()))?
            .map_err(FollowError::from)
    }

    /// Processes the next range of confirmed blocks, if any.
    pub async fn step(&self) -> Result<Step, FollowError> {
        let head = self.provider.get_block_number().await.map_err(rpc)?;
        let cursor = self.cursor().await?;
        if let Some(cursor) = cursor {
            if cursor.block > head || self.block_hash(cursor.block).await? != cursor.hash {
                return self.rewind(cursor, head).await;
            }
        }
        let Some(confirmed) = head.checked_sub(self.config.confirmations) else {
            return Ok(Step::Idle { head });
        };
        let from = cursor.map_or(self.config.start_block, |c| c.block + 1);
        if from > confirmed {
            return Ok(Step::Idle { head });
        }
        let to = confirmed.min(from.saturating_add(self.config.max_range - 1));
        let batch = self.read(from, to).await?;
        let events = batch.created.len() + batch.revoked.len();
        let next = Cursor {
            block: to,
            hash: self.block_hash(to).await?,
        };
        let store = self.store.clone();
        let deleted = tokio::task::spawn_blocking(move || store.apply_batch(&batch, next))
            .await
            .map_err(|e| FollowError::Chain(e.to_string()))??;
        if events > 0 {
            tracing::info!(from, to, events, deleted, "applied policy events");
        }
        Ok(Step::Advanced {
            from,
            to,
            head,
            events,
        })
    }

    /// The follower service: steps until shut down, at once while catching up, otherwise at
    /// each wake-up; `chain_lag` is kept at the blocks between the head and the cursor. A failed
    /// step is logged and retried at the next wake-up.
    pub async fn run(self, mut wakeups: Wakeups, chain_lag: IntGauge) {
        loop {
            match self.step().await {
                Ok(Step::Advanced { to, head, .. }) => {
                    chain_lag.set(i64::try_from(head.saturating_sub(to)).unwrap_or(i64::MAX));
                    // Catching up: go on right away.
                    if to < head {
                        if wakeups.is_shutting_down() {
                            break;
                        }
                        continue;
                    }
                }
                Ok(Step::Idle { .. }) | Ok(Step::Rewound { .. }) => {}
                Err(e) => tracing::warn!(error = %e, "chain follower step failed; retrying"),
            }
            if !wakeups.next().await {
                break;
            }
        }
    }

    async fn rewind(&self, cursor: Cursor, head: u64) -> Result<Step, FollowError> {
        let floor = self.config.start_block.saturating_sub(1);
        let to = cursor
            .block
            .min(head)
            .saturating_sub(REORG_REWIND_BLOCKS)
            .max(floor);
        let rewound = Cursor {
            block: to,
            hash: self.block_hash(to).await?,
        };
        tracing::warn!(
            from = cursor.block,
            to,
            "cursor block no longer canonical (reorg deeper than the confirmation depth): rewinding"
        );
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.set_cursor(rewound))
            .await
            .map_err(|e| FollowError::Chain(e.to_string()))??;
        Ok(Step::Rewound { to })
    }

    /// The events of blocks `from..=to` that concern this node.
    async fn read(&self, from: u64, to: u64) -> Result<FollowerBatch, FollowError> {
        let filter = Filter::new()
            .address(self.config.policy_manager)
            .event_signature(vec![
                PolicyManager::PolicyCreated::SIGNATURE_HASH,
                PolicyManager::PolicyRevoked::SIGNATURE_HASH,
                PolicyManager::ArrangementRevoked::SIGNATURE_HASH,
            ])
            .from_block(from)
            .to_block(to);
        let logs = self.provider.get_logs(&filter).await.map_err(rpc)?;
        let mut batch = FollowerBatch::default();
        for log in &logs {
            let block = log.block_number.unwrap_or(to);
            match log.topic0() {
                Some(&PolicyManager::PolicyCreated::SIGNATURE_HASH) => {
                    let Ok(event) = log.log_decode::<PolicyManager::PolicyCreated>() else {
                        tracing::warn!(?log, "undecodable PolicyCreated log skipped");
                        continue;
                    };
                    let event = event.inner.data;
                    if !event.nodes.contains(&self.config.staker) {
                        continue;
                    }
                    batch.created.push((
                        event.policyId.0,
                        PolicyRecord {
                            nodes: event.nodes,
                            end_timestamp: u64::try_from(event.endTimestamp).unwrap_or(u64::MAX),
                            kfrag_signer: event.kfragSigner,
                            created_block: block,
                            revoked: false,
                        },
                    ));
                }
                Some(&PolicyManager::PolicyRevoked::SIGNATURE_HASH) => {
                    if let Ok(event) = log.log_decode::<PolicyManager::PolicyRevoked>() {
                        batch.revoked.push(event.inner.data.policyId.0);
                    }
                }
                Some(&PolicyManager::ArrangementRevoked::SIGNATURE_HASH) => {
                    if let Ok(event) = log.log_decode::<PolicyManager::ArrangementRevoked>() {
                        if event.inner.data.node == self.config.staker {
                            batch.revoked.push(event.inner.data.policyId.0);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(batch)
    }
}

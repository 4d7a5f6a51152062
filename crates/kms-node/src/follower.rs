//! The chain follower: applies the `PolicyManager` events that concern this node to the store,
//! from a durable cursor, only once they are `confirmations` blocks deep, and keeps the API's
//! [`HeadView`]: the head and the revocations of the blocks not yet confirmed, so that a revoked
//! policy is refused from the block its revocation is in (seen at the next wake-up: a new block
//! on a WebSocket endpoint, else the poll interval), with no chain call on the request path.
//!
//! Each step reads the logs of one range of blocks and applies the confirmed ones together with
//! the cursor's move in one store transaction, so a crash at any point leaves the store at a
//! range boundary and the next run resumes there. Applying a range twice is harmless (the
//! store's batch is idempotent). A reorg shallower than the confirmation depth is never applied
//! (the unconfirmed revocations are read again at every new head, so one a reorg dropped stops
//! being refused); a deeper one is noticed when the cursor block's hash changes, and the cursor
//! is rewound by [`REORG_REWIND_BLOCKS`] to re-read the new branch (revocations stay applied;
//! policies that vanished are pruned by the duty that checks stored kfrags against the chain).

use std::{collections::HashSet, sync::Arc, time::Duration};

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
    head::{HeadBlock, HeadView},
    store::{Cursor, FollowerBatch, PolicyRecord, Store},
    wakeup::Wakeups,
};

/// The longest a follower step may take before it is abandoned and retried: a stalled RPC
/// endpoint must not stop the follower for good (the API refuses once the head view is older
/// than its bound meanwhile).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

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
    head_view: Option<Arc<HeadView>>,
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
            head_view: None,
        }
    }

    /// Publishes the head and the unconfirmed revocations to `view` at every step that
    /// reaches the head (the API refuses on them, with no chain call).
    pub fn with_head_view(mut self, view: Arc<HeadView>) -> Self {
        self.head_view = Some(view);
        self
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

    /// The latest block.
    async fn latest(&self) -> Result<HeadBlock, FollowError> {
        let block = self
            .provider
            .get_block_by_number(BlockNumberOrTag::Latest)
            .await
            .map_err(rpc)?
            .ok_or_else(|| FollowError::Chain("no latest block".into()))?;
        Ok(HeadBlock {
            number: block.header.number,
            hash: block.header.hash,
            timestamp: block.header.timestamp,
        })
    }

    /// Processes the next range of confirmed blocks, if any, and, once it reaches the head,
    /// publishes the head and the unconfirmed revocations to the [`HeadView`] (see
    /// [`Follower::with_head_view`]).
    ///
    /// While the blocks from the cursor to the head fit in one read (`max_range`, or the
    /// confirmation window if that is larger), they are read with a single `eth_getLogs`: the
    /// confirmed ones are applied, the revocations above them published. Further behind, only
    /// confirmed blocks are read, `max_range` at a time, and the view says the node is catching
    /// up. A head unchanged since the last step (same hash) costs one call and nothing else.
    pub async fn step(&self) -> Result<Step, FollowError> {
        let latest = self.latest().await?;
        let head = latest.number;
        if let Some(view) = &self.head_view {
            if view.refresh(&latest) {
                return Ok(Step::Idle { head });
            }
        }
        let cursor = self.cursor().await?;
        if let Some(cursor) = cursor {
            if cursor.block > head || self.block_hash(cursor.block).await? != cursor.hash {
                return self.rewind(cursor, head).await;
            }
        }
        let from = cursor.map_or(self.config.start_block, |c| c.block + 1);
        let confirmed = head.checked_sub(self.config.confirmations);
        let window = self
            .config
            .max_range
            .max(self.config.confirmations.saturating_add(1));
        if from > head {
            self.publish(latest, Pending::default());
            return Ok(Step::Idle { head });
        }
        // Up to the head in one read, or only confirmed blocks while catching up.
        let at_head = head - from < window;
        let to = if at_head {
            head
        } else {
            let Some(confirmed) = confirmed.filter(|c| *c >= from) else {
                return Ok(Step::Idle { head });
            };
            confirmed.min(from.saturating_add(self.config.max_range - 1))
        };
        let events = self.read(from, to).await?;
        let applied_to = confirmed.filter(|c| *c >= from).map(|c| c.min(to));
        let mut batch = FollowerBatch::default();
        let mut pending = Pending::default();
        for (block, event) in events {
            let is_confirmed = applied_to.is_some_and(|c| block <= c);
            match event {
                PolicyEvent::Created(id, record) if is_confirmed => {
                    batch.created.push((id, record))
                }
                PolicyEvent::Created(id, _) => {
                    pending.creations.insert(id);
                }
                // An unconfirmed extension changes nothing yet: the pruning duty asks the chain
                // before deleting an ended policy's kfrag, so none is lost meanwhile.
                PolicyEvent::Extended(id, end) if is_confirmed => batch.extended.push((id, end)),
                PolicyEvent::Extended(..) => {}
                PolicyEvent::Revoked(id) if is_confirmed => batch.revoked.push(id),
                PolicyEvent::Revoked(id) => {
                    pending.revocations.insert(id);
                }
            }
        }
        let Some(applied_to) = applied_to else {
            // Nothing confirmed past the cursor yet: only the head's revocations are news.
            self.publish(latest, pending);
            return Ok(Step::Idle { head });
        };
        let applied = batch.created.len() + batch.revoked.len() + batch.extended.len();
        let next = Cursor {
            block: applied_to,
            hash: if applied_to == head {
                latest.hash
            } else {
                self.block_hash(applied_to).await?
            },
        };
        let store = self.store.clone();
        let deleted = tokio::task::spawn_blocking(move || store.apply_batch(&batch, next))
            .await
            .map_err(|e| FollowError::Chain(e.to_string()))??;
        if applied > 0 {
            tracing::info!(
                from,
                to = applied_to,
                events = applied,
                deleted,
                "applied policy events"
            );
        }
        // Published after the store's commit: a revocation leaves the pending set only once
        // the store holds it.
        if at_head {
            self.publish(latest, pending);
        } else if let Some(view) = &self.head_view {
            view.catching_up(latest, applied_to);
        }
        Ok(Step::Advanced {
            from,
            to: applied_to,
            head,
            events: applied,
        })
    }

    fn publish(&self, latest: HeadBlock, pending: Pending) {
        if let Some(view) = &self.head_view {
            if !pending.revocations.is_empty() {
                tracing::info!(
                    head = latest.number,
                    revocations = pending.revocations.len(),
                    "unconfirmed revocations refused from now on"
                );
            }
            view.publish_followed(latest, pending.revocations, pending.creations);
        }
    }

    /// The follower service: steps until shut down, at once while catching up, otherwise at
    /// each wake-up; `chain_lag` is kept at the blocks between the head and the cursor. A failed
    /// step is logged and retried at the next wake-up; a step that takes longer than
    /// [`STEP_TIMEOUT`] (a stalled RPC endpoint) is abandoned and retried the same way.
    pub async fn run(self, mut wakeups: Wakeups, chain_lag: IntGauge) {
        loop {
            match tokio::time::timeout(STEP_TIMEOUT, self.step()).await {
                Ok(Ok(Step::Advanced { to, head, .. })) => {
                    chain_lag.set(i64::try_from(head.saturating_sub(to)).unwrap_or(i64::MAX));
                    // Catching up: go on right away.
                    if to < head.saturating_sub(self.config.confirmations) {
                        if wakeups.is_shutting_down() {
                            break;
                        }
                        continue;
                    }
                }
                Ok(Ok(Step::Idle { .. })) | Ok(Ok(Step::Rewound { .. })) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "chain follower step failed; retrying"),
                Err(_) => tracing::warn!(
                    timeout_secs = STEP_TIMEOUT.as_secs(),
                    "chain follower step timed out (RPC endpoint stalled?); retrying"
                ),
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

    /// The events of blocks `from..=to` that concern this node, with their block: policies
    /// naming it, revocations of any policy (a policy the node does not hold is a no-op) and of
    /// its own arrangements.
    async fn read(&self, from: u64, to: u64) -> Result<Vec<(u64, PolicyEvent)>, FollowError> {
        let filter = Filter::new()
            .address(self.config.policy_manager)
            .event_signature(vec![
                PolicyManager::PolicyCreated::SIGNATURE_HASH,
                PolicyManager::PolicyRevoked::SIGNATURE_HASH,
                PolicyManager::ArrangementRevoked::SIGNATURE_HASH,
                PolicyManager::PolicyExtended::SIGNATURE_HASH,
            ])
            .from_block(from)
            .to_block(to);
        let logs = self.provider.get_logs(&filter).await.map_err(rpc)?;
        let mut events = Vec::new();
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
                    events.push((
                        block,
                        PolicyEvent::Created(
                            event.policyId.0,
                            PolicyRecord {
                                nodes: event.nodes,
                                end_timestamp: u64::try_from(event.endTimestamp)
                                    .unwrap_or(u64::MAX),
                                kfrag_signer: event.kfragSigner,
                                owner: event.owner,
                                created_block: block,
                                revoked: false,
                            },
                        ),
                    ));
                }
                Some(&PolicyManager::PolicyRevoked::SIGNATURE_HASH) => {
                    if let Ok(event) = log.log_decode::<PolicyManager::PolicyRevoked>() {
                        events.push((block, PolicyEvent::Revoked(event.inner.data.policyId.0)));
                    }
                }
                // Every policy's extensions are read (the event does not list the nodes): the
                // store applies those of the policies it holds.
                Some(&PolicyManager::PolicyExtended::SIGNATURE_HASH) => {
                    if let Ok(event) = log.log_decode::<PolicyManager::PolicyExtended>() {
                        let event = event.inner.data;
                        events.push((
                            block,
                            PolicyEvent::Extended(
                                event.policyId.0,
                                u64::try_from(event.endTimestamp).unwrap_or(u64::MAX),
                            ),
                        ));
                    }
                }
                Some(&PolicyManager::ArrangementRevoked::SIGNATURE_HASH) => {
                    if let Ok(event) = log.log_decode::<PolicyManager::ArrangementRevoked>() {
                        if event.inner.data.node == self.config.staker {
                            events.push((block, PolicyEvent::Revoked(event.inner.data.policyId.0)));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(events)
    }
}

/// What the blocks above the confirmation depth hold for the head view.
#[derive(Debug, Default)]
struct Pending {
    revocations: HashSet<[u8; 16]>,
    creations: HashSet<[u8; 16]>,
}

/// A `PolicyManager` event that concerns the node.
#[derive(Debug)]
enum PolicyEvent {
    /// A policy naming the node was created.
    Created([u8; 16], PolicyRecord),
    /// A policy was revoked, or the node's arrangement in it.
    Revoked([u8; 16]),
    /// A policy was extended to a new end (Unix seconds).
    Extended([u8; 16], u64),
}

//! The node's view of the chain head, kept by the chain follower and read by the API on every
//! re-encryption request, so that the request path makes no RPC call.
//!
//! The follower applies policy events to the store once they are `confirmations` blocks deep.
//! Revocations cannot wait that long: refusing early is the safe side. So at every step that
//! reaches the head, the follower also reads the revocations of the blocks above its cursor (the
//! unconfirmed ones) and publishes them here with the head it read them at, replacing the
//! previous set: a reorg that drops a revocation drops it from the next set, and service is
//! restored. A revocation confirmed moves to the store in the same step (the kfrag is deleted),
//! and the previous set still holds it until then, so it is never out of both.
//!
//! The view has an age: the time since the follower last read the head. Past
//! [`HeadView::max_age`] (the RPC endpoint is down or stalled) the API refuses with 503 rather
//! than serve on revocation state it can no longer vouch for. A node that has not read the head
//! yet (starting) or is catching up with the chain refuses the same way.

use std::{
    collections::HashSet,
    sync::{PoisonError, RwLock},
    time::{Duration, Instant},
};

use alloy::primitives::B256;

/// The latest block, as the follower read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadBlock {
    /// Its number.
    pub number: u64,
    /// Its hash (a head of the same hash means nothing changed below it either).
    pub hash: B256,
    /// Its timestamp (Unix seconds, chain time).
    pub timestamp: u64,
}

/// Why the view cannot vouch for the chain's state now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotFresh {
    /// The follower has not read the head yet.
    #[error("the node has not read the chain head yet (starting): retry in a moment")]
    NoHeadYet,
    /// The follower's last read of the head is older than the bound.
    #[error(
        "the node's view of the chain is {age_secs} s old (bound {bound_secs} s, head block \
         {block}): its RPC endpoint is not answering; retry later"
    )]
    Stale {
        /// Seconds since the head was last read.
        age_secs: u64,
        /// [`HeadView::max_age`] in seconds.
        bound_secs: u64,
        /// The last head read.
        block: u64,
    },
    /// The follower is applying older blocks: revocations past its cursor are not read yet.
    #[error(
        "the node is catching up with the chain (applied up to block {cursor}, head {head}): \
         retry in a moment"
    )]
    CatchingUp {
        /// The follower's cursor.
        cursor: u64,
        /// The chain head.
        head: u64,
    },
}

#[derive(Debug, Clone)]
struct State {
    head: HeadBlock,
    /// When the head was last read (refreshed by a read that found the same head).
    read_at: Instant,
    /// Policies revoked (or this node's arrangement in them) in blocks above the cursor.
    pending_revocations: HashSet<[u8; 16]>,
    /// Policies naming the node created in blocks above the cursor; `None` for a view that does
    /// not track creations (an API without a follower: tests, benchmarks).
    pending_creations: Option<HashSet<[u8; 16]>>,
    /// Set while the follower is behind by more than one read.
    catching_up: Option<(u64, u64)>,
}

/// What the API reads of the head: see the module docs.
#[derive(Debug)]
pub struct HeadView {
    max_age: Duration,
    state: RwLock<Option<State>>,
}

/// The view at one instant, for one request.
#[derive(Debug, Clone)]
pub struct FreshHead {
    /// The head.
    pub head: HeadBlock,
    /// Whether the policy asked about was revoked in a block above the follower's cursor.
    pub revoked_unconfirmed: bool,
    /// Whether the policy asked about was created in a block above the follower's cursor;
    /// `None` if the view does not track creations.
    pub created_unconfirmed: Option<bool>,
}

impl HeadView {
    /// A view refusing once its last head read is older than `max_age`.
    pub fn new(max_age: Duration) -> Self {
        Self {
            max_age,
            state: RwLock::new(None),
        }
    }

    /// The bound on the view's age.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// `head` and the unconfirmed revocations of the blocks above the cursor, for a view that
    /// does not track creations (an API without a follower).
    pub fn publish(&self, head: HeadBlock, pending_revocations: HashSet<[u8; 16]>) {
        self.set(head, pending_revocations, None);
    }

    /// The follower read `head`, and the unconfirmed revocations and creations (of policies
    /// naming the node) of the blocks above its cursor.
    pub fn publish_followed(
        &self,
        head: HeadBlock,
        pending_revocations: HashSet<[u8; 16]>,
        pending_creations: HashSet<[u8; 16]>,
    ) {
        self.set(head, pending_revocations, Some(pending_creations));
    }

    fn set(
        &self,
        head: HeadBlock,
        pending_revocations: HashSet<[u8; 16]>,
        pending_creations: Option<HashSet<[u8; 16]>>,
    ) {
        let state = State {
            head,
            read_at: Instant::now(),
            pending_revocations,
            pending_creations,
            catching_up: None,
        };
        *self.state.write().unwrap_or_else(PoisonError::into_inner) = Some(state);
    }

    /// The follower read the head again and found `head` unchanged: the view is as fresh as now.
    /// Returns `false` (and changes nothing) if the view holds another head.
    pub fn refresh(&self, head: &HeadBlock) -> bool {
        let mut guard = self.state.write().unwrap_or_else(PoisonError::into_inner);
        match guard.as_mut() {
            Some(state) if state.head == *head && state.catching_up.is_none() => {
                state.read_at = Instant::now();
                true
            }
            _ => false,
        }
    }

    /// The follower is behind the head by more than it reads at once.
    pub fn catching_up(&self, head: HeadBlock, cursor: u64) {
        let mut guard = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let (pending_revocations, pending_creations) = guard
            .take()
            .map(|s| (s.pending_revocations, s.pending_creations))
            .unwrap_or_default();
        *guard = Some(State {
            head,
            read_at: Instant::now(),
            pending_revocations,
            pending_creations,
            catching_up: Some((cursor, head.number)),
        });
    }

    /// The head read last, if any (however old).
    pub fn head(&self) -> Option<HeadBlock> {
        self.read().map(|s| s.head)
    }

    /// How long ago the head was last read.
    pub fn age(&self) -> Option<Duration> {
        self.read().map(|s| s.read_at.elapsed())
    }

    /// The view for a request about `policy_id`, if it is fresh.
    pub fn check(&self, policy_id: [u8; 16]) -> Result<FreshHead, NotFresh> {
        let guard = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let state = guard.as_ref().ok_or(NotFresh::NoHeadYet)?;
        if let Some((cursor, head)) = state.catching_up {
            return Err(NotFresh::CatchingUp { cursor, head });
        }
        let age = state.read_at.elapsed();
        if age > self.max_age {
            return Err(NotFresh::Stale {
                age_secs: age.as_secs(),
                bound_secs: self.max_age.as_secs(),
                block: state.head.number,
            });
        }
        Ok(FreshHead {
            head: state.head,
            revoked_unconfirmed: state.pending_revocations.contains(&policy_id),
            created_unconfirmed: state
                .pending_creations
                .as_ref()
                .map(|created| created.contains(&policy_id)),
        })
    }

    fn read(&self) -> Option<State> {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(number: u64) -> HeadBlock {
        HeadBlock {
            number,
            hash: B256::with_last_byte(u8::try_from(number % 256).unwrap_or(0)),
            timestamp: 1_000 + number,
        }
    }

    #[test]
    fn refuses_before_the_first_head_while_catching_up_and_once_stale() {
        let view = HeadView::new(Duration::from_millis(50));
        assert_eq!(view.check([1; 16]).err(), Some(NotFresh::NoHeadYet));
        view.catching_up(head(100), 10);
        assert_eq!(
            view.check([1; 16]).err(),
            Some(NotFresh::CatchingUp {
                cursor: 10,
                head: 100
            })
        );
        view.publish(head(101), HashSet::from([[2; 16]]));
        let fresh = view.check([2; 16]).expect("fresh");
        assert!(fresh.revoked_unconfirmed);
        assert!(!view.check([1; 16]).expect("fresh").revoked_unconfirmed);
        std::thread::sleep(Duration::from_millis(80));
        assert!(matches!(
            view.check([1; 16]),
            Err(NotFresh::Stale { block: 101, .. })
        ));
        // The same head read again: fresh again; another head is not a refresh.
        assert!(view.refresh(&head(101)));
        assert!(view.check([1; 16]).is_ok());
        assert!(!view.refresh(&head(102)));
    }

    #[test]
    fn a_new_set_replaces_the_old_one() {
        let view = HeadView::new(Duration::from_secs(60));
        view.publish(head(5), HashSet::from([[7; 16]]));
        assert!(view.check([7; 16]).expect("fresh").revoked_unconfirmed);
        // A reorg dropped the revocation: the next read's set does not hold it.
        view.publish(head(5), HashSet::new());
        assert!(!view.check([7; 16]).expect("fresh").revoked_unconfirmed);
    }
}

//! The node's view of the chain's time, for the period its answers name.
//!
//! A signed answer names the period it was given in, and Bob refuses an answer whose period is not
//! the one of the latest block he sees, or the one before. The node names the period of the latest
//! block its duties saw (they read it every tick): never later than the chain's, and never a
//! period the Adjudicator would still call the future. Not the local clock: a devnet travels in
//! time (`evm_increaseTime`), and an idle devnet's time stands still between blocks. No chain call
//! on the request path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The timestamp of the latest block the node saw.
#[derive(Debug, Default)]
pub struct ChainClock {
    /// Unix seconds; zero until a block is observed.
    latest: AtomicU64,
}

fn local_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ChainClock {
    /// A clock that reads the local clock until a block is observed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the timestamp of the latest block (a reorg or a restarted devnet may move it back).
    pub fn observe(&self, block_timestamp: u64) {
        self.latest.store(block_timestamp, Ordering::Relaxed);
    }

    /// The chain's time as last seen, in Unix seconds (the local clock before any block).
    pub fn now(&self) -> u64 {
        match self.latest.load(Ordering::Relaxed) {
            0 => local_now(),
            seen => seen,
        }
    }

    /// The period of [`ChainClock::now`].
    pub fn period(&self, seconds_per_period: u64) -> u64 {
        self.now() / seconds_per_period.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_observed_blocks() {
        let clock = ChainClock::new();
        let local = local_now();
        assert!(
            clock.now().abs_diff(local) <= 1,
            "the local clock before any block"
        );
        // A devnet three days ahead of the local clock.
        clock.observe(local + 3 * 86_400);
        assert_eq!(clock.now(), local + 3 * 86_400);
        assert_eq!(clock.period(86_400), (local + 3 * 86_400) / 86_400);
        // Back, after a restarted devnet.
        clock.observe(local - 30);
        assert_eq!(clock.now(), local - 30);
        assert_eq!(
            clock.period(0),
            local - 30,
            "a zero period length is taken as one second"
        );
    }
}

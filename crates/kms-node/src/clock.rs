//! The node's view of the chain's time, for the period its answers name.
//!
//! A signed answer names the period it was given in, and Bob refuses an answer whose period is not
//! the chain's current (or previous) one. The chain's time is not the local clock: a devnet travels
//! in time (`evm_increaseTime`), and a real chain runs a little behind. So the clock keeps the
//! offset between the latest block's timestamp and the local clock when that block was seen (the
//! duties read the latest block every tick) and adds it to the local clock, which keeps it moving
//! between blocks. No chain call on the request path.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The chain's time as the node last saw it, moving with the local clock.
#[derive(Debug, Default)]
pub struct ChainClock {
    /// Chain time minus local time, in seconds.
    offset: AtomicI64,
}

fn local_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl ChainClock {
    /// A clock that follows the local clock until a block is observed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the timestamp of the latest block, seen now.
    pub fn observe(&self, block_timestamp: u64) {
        let chain = i64::try_from(block_timestamp).unwrap_or(i64::MAX);
        self.offset
            .store(chain.saturating_sub(local_now()), Ordering::Relaxed);
    }

    /// The chain's time now, in Unix seconds.
    pub fn now(&self) -> u64 {
        let now = local_now().saturating_add(self.offset.load(Ordering::Relaxed));
        u64::try_from(now).unwrap_or(0)
    }

    /// The chain's current period.
    pub fn period(&self, seconds_per_period: u64) -> u64 {
        self.now() / seconds_per_period.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_observed_chain_time() {
        let clock = ChainClock::new();
        let local = local_now().unsigned_abs();
        assert!(
            clock.now().abs_diff(local) <= 1,
            "the local clock before any block"
        );
        // A devnet three days ahead of the local clock.
        clock.observe(local + 3 * 86_400);
        assert!(clock.now().abs_diff(local + 3 * 86_400) <= 1);
        assert_eq!(clock.period(86_400), clock.now() / 86_400);
        // A chain behind the local clock.
        clock.observe(local - 30);
        assert!(clock.now().abs_diff(local - 30) <= 1);
        assert_eq!(
            clock.period(0),
            clock.now(),
            "a zero period length is taken as one second"
        );
    }
}

//! The node's standing on chain as its duties last read it: the staker's commitments, the
//! worker's balance and what the node's own transactions cost, with the warnings an operator
//! acts on. The duties refresh it ([`crate::Duties::with_standing`]) at most every
//! [`STANDING_REFRESH`]; `GET /v1/status` and the status page read it, so that a status request
//! costs no chain call.

use std::{
    sync::RwLock,
    time::{Duration, Instant},
};

use alloy::primitives::U256;

/// How often the duties read the standing (three chain calls: the staker's view, the worker's
/// balance, the gas price).
pub const STANDING_REFRESH: Duration = Duration::from_secs(30);

/// The gas of one period's duty transactions, rounded up: a commitment that also mints (the
/// README's bar: at most 100,000), a fee withdrawal (under 60,000) and room for an audit policy
/// or an evidence filing now and then.
pub const PERIOD_DUTY_GAS: u64 = 250_000;

/// Below this many periods of duties at the current gas price, the worker's balance is low.
pub const LOW_BALANCE_PERIODS: u64 = 14;

/// What the duties read of the node's standing at one block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// The block it was read at.
    pub block: u64,
    /// That block's timestamp (Unix seconds).
    pub timestamp: u64,
    /// The chain's period at that block.
    pub current_period: u64,
    /// The last period the staker committed to (`None`: never).
    pub last_committed_period: Option<u64>,
    /// The period the next commitment is for (the one after the current).
    pub next_commitment_period: u64,
    /// When that commitment must be mined by: the start of its period (Unix seconds).
    pub next_commitment_due_by: u64,
    /// Whether the staker has committed to the next period already.
    pub committed_next: bool,
    /// Whether the staker has tokens locked for the next period (no commitment is due without).
    pub locked_next: bool,
    /// The worker's ETH balance, in wei: it pays every duty transaction.
    pub worker_balance_wei: U256,
    /// The gas price read with it, in wei.
    pub gas_price_wei: u128,
    /// Duty transactions sent and not yet settled (`Sent` records).
    pub pending_duties: u64,
}

impl Standing {
    /// The balance below which the worker is low: [`LOW_BALANCE_PERIODS`] periods of duties
    /// ([`PERIOD_DUTY_GAS`]) at the gas price read.
    pub fn low_balance_below_wei(&self) -> U256 {
        U256::from(self.gas_price_wei)
            * U256::from(PERIOD_DUTY_GAS)
            * U256::from(LOW_BALANCE_PERIODS)
    }

    /// Whether the worker's balance is low.
    pub fn low_balance(&self) -> bool {
        self.worker_balance_wei < self.low_balance_below_wei()
    }

    /// What an operator should act on, in words.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.low_balance() {
            warnings.push(format!(
                "the worker's balance ({} wei) pays fewer than {LOW_BALANCE_PERIODS} periods of \
                 duties at the current gas price (below {} wei): fund the worker, or commitments \
                 will stop",
                self.worker_balance_wei,
                self.low_balance_below_wei()
            ));
        }
        if self.locked_next && !self.committed_next {
            warnings.push(format!(
                "not yet committed to period {} (due before {}): the duties commit at their next \
                 tick; if this stays, check the worker's balance and the log",
                self.next_commitment_period, self.next_commitment_due_by
            ));
        }
        if !self.locked_next {
            warnings.push(
                "no tokens locked for the next period: the node earns no rewards and gets no new \
                 policies (`kms stake lock` or `kms stake deposit`)"
                    .to_owned(),
            );
        }
        warnings
    }
}

/// The latest [`Standing`], shared by the duties (writer) and the API (readers).
#[derive(Debug, Default)]
pub struct StandingView {
    latest: RwLock<Option<(Standing, Instant)>>,
}

impl StandingView {
    /// A view nothing has been read into yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records what was just read.
    pub fn publish(&self, standing: Standing) {
        if let Ok(mut latest) = self.latest.write() {
            *latest = Some((standing, Instant::now()));
        }
    }

    /// The last standing read, and how long ago.
    pub fn latest(&self) -> Option<(Standing, Duration)> {
        self.latest
            .read()
            .ok()?
            .as_ref()
            .map(|(standing, at)| (standing.clone(), at.elapsed()))
    }

    /// Whether it is time to read again (nothing read yet, or read [`STANDING_REFRESH`] ago).
    pub fn is_due(&self) -> bool {
        self.latest().is_none_or(|(_, age)| age >= STANDING_REFRESH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standing() -> Standing {
        Standing {
            block: 10,
            timestamp: 7_200,
            current_period: 2,
            last_committed_period: Some(2),
            next_commitment_period: 3,
            next_commitment_due_by: 10_800,
            committed_next: true,
            locked_next: true,
            worker_balance_wei: U256::from(10u64).pow(U256::from(18)),
            gas_price_wei: 1_000_000_000,
            pending_duties: 0,
        }
    }

    #[test]
    fn the_balance_is_low_below_fourteen_periods_of_duties() {
        let healthy = standing();
        assert_eq!(
            healthy.low_balance_below_wei(),
            U256::from(3_500_000_000_000_000u64)
        );
        assert!(!healthy.low_balance() && healthy.warnings().is_empty());
        let low = Standing {
            worker_balance_wei: U256::from(3_499_999_999_999_999u64),
            ..healthy
        };
        assert!(low.low_balance());
        assert!(
            low.warnings()[0].contains("fund the worker"),
            "{:?}",
            low.warnings()
        );
    }

    #[test]
    fn a_missing_commitment_and_an_empty_stake_are_warned_of() {
        let late = Standing {
            committed_next: false,
            ..standing()
        };
        assert!(late.warnings()[0].contains("not yet committed to period 3"));
        let idle = Standing {
            committed_next: false,
            locked_next: false,
            ..standing()
        };
        let warnings = idle.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("no tokens locked"));
    }

    #[test]
    fn the_view_is_due_until_read_then_not() {
        let view = StandingView::new();
        assert!(view.is_due() && view.latest().is_none());
        view.publish(standing());
        assert!(!view.is_due());
        assert_eq!(view.latest().map(|(s, _)| s), Some(standing()));
    }
}

//! The node's duties, run at every tick of the daemon (each new block, or the poll interval):
//!
//! | duty | when | record key | transaction |
//! |------|------|------------|-------------|
//! | commit | once per period, while tokens are locked next period | `commit/<next period>` | `StakingEscrow.commitToNextPeriod()` |
//! | mint | once per period, when rewards are pending and no commitment will mint them | `mint/<period>` | `StakingEscrow.mint()` |
//! | withdraw fees | once per period, when the accrued fees reach the threshold ([`FeeThreshold`]) | `fees/<period>` | `PolicyManager.withdrawFees(staker)` |
//! | prune | every [`PRUNE_EVERY`] ticks (recent policies checked on chain every [`PRUNE_CHAIN_CHECK_EVERY`] ticks) | — | none: deletes kfrags |
//! | audit policy | once per period, when auditing (see [`crate::audit`]) | `audit-policy/<period>` | `PolicyManager.createPolicy(...)` paying the audit's fee |
//! | evidence | each accepted evidence, two steps (see [`crate::evidence`]) | `evidence-commit/<hash>`, `evidence-reveal/<hash>` | `Adjudicator.commitEvidence`, then `evaluateCFragFor` |
//!
//! Commit, mint and fees share one skeleton (`Duties::run_tx_duty`): a settled key is left
//! alone, a key in flight is resumed, and a fresh one is sent if the chain says it is due. The
//! fees duty decides once a period, after the period's commitment (which accrues fees) has
//! settled: a withdrawal below the threshold is recorded as skipped, with the fees, the
//! threshold and, for the default threshold, the gas price it was derived from. The
//! start-up duties (accepting the bond, publishing the node record, keyed `accept-bond/...` and
//! `record/...`) run once before the daemon's services start: see `startup`.
//!
//! Transactions go through [`TxSender`]: recorded before broadcast, at most
//! once per key. Each tick first settles the transactions recorded as sent (after a crash, their
//! duty may not come up again), and sends no new one until they are. Periods are taken from the
//! latest block's timestamp (chain time, not the local clock), so a devnet that travels in time
//! is followed.

pub(crate) mod startup;

use alloy::{
    eips::BlockId,
    primitives::{Address, FixedBytes, U256},
    providers::Provider,
    sol_types::SolCall,
};
use kms_contracts::{describe_contract_error, Deployment, PolicyManager, StakingEscrow};
use prometheus::{Gauge, IntCounterVec, Opts, Registry};

use std::sync::Arc;

use crate::{
    audit::{AuditConfig, AuditError, Auditor},
    clock::ChainClock,
    evidence::{EvidenceDesk, FilingError},
    follower::REORG_REWIND_BLOCKS,
    standing::{Standing, StandingView},
    store::{DutyRecord, Store},
    tx::{blocking, TxError, TxSender},
    wakeup::Wakeups,
};

/// The pruning duty scans the stored kfrags once in this many ticks (a scan reads every record:
/// a node holding 100,000 policies must not do it every second; an ended policy is refused by
/// the API meanwhile anyway).
pub const PRUNE_EVERY: u64 = 10;

/// The pruning duty asks the chain about the stored kfrags of recent policies (unconfirmed, or
/// confirmed less than `REORG_REWIND_BLOCKS` ago) once in this many ticks.
pub const PRUNE_CHAIN_CHECK_EVERY: u64 = 30;

/// The most gas a fee withdrawal (`PolicyManager.withdrawFees`, sent by the worker) costs: its
/// bar, which the contracts' gas tests hold it to (`test/gas/Gas.t.sol`; 38,322 measured).
pub const WITHDRAW_FEES_GAS: u64 = 40_000;

/// The default threshold's multiple of a withdrawal's gas cost: fees are withdrawn once worth at
/// least this many withdrawals, so that the gas is at most a tenth of what is withdrawn.
pub const WITHDRAW_FEES_GAS_MULTIPLE: u64 = 10;

/// When the fees duty withdraws the node's fees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeeThreshold {
    /// Once the fees reach this many wei (`withdraw_fees_threshold_wei = "<wei>"`).
    Wei(U256),
    /// Once the fees reach `multiple` x [`WITHDRAW_FEES_GAS`] x the gas price (`eth_gasPrice`)
    /// when the duty decides: the withdrawal's gas is then at most `1 / multiple` of what it
    /// withdraws (`withdraw_fees_threshold_wei = "auto"`, the default).
    GasCost {
        /// How many withdrawals' gas the fees must be worth.
        multiple: u64,
    },
}

impl FeeThreshold {
    /// The shipped default: fees worth ten withdrawals' gas at the gas price of the moment.
    pub const DEFAULT: Self = Self::GasCost {
        multiple: WITHDRAW_FEES_GAS_MULTIPLE,
    };

    /// The threshold in wei, at `gas_price` wei per gas (read only by [`FeeThreshold::GasCost`]),
    /// and how it was reached, for the record of a skipped withdrawal.
    pub fn wei(&self, gas_price: u128) -> (U256, String) {
        match *self {
            Self::Wei(wei) => (wei, "withdraw_fees_threshold_wei".into()),
            Self::GasCost { multiple } => (
                U256::from(multiple) * U256::from(WITHDRAW_FEES_GAS) * U256::from(gas_price),
                format!(
                    "{multiple} x {WITHDRAW_FEES_GAS} gas (a withdrawal) x {gas_price} wei/gas \
                     (the gas price now)"
                ),
            ),
        }
    }

    /// Whether `fees` (positive) are to be withdrawn at `gas_price`: `Err` with the reason to
    /// record when they are below the threshold.
    pub fn check(&self, fees: U256, gas_price: u128) -> Result<(), String> {
        let (threshold, derivation) = self.wei(gas_price);
        if fees >= threshold {
            Ok(())
        } else {
            Err(format!(
                "fees of {fees} wei below the threshold of {threshold} wei = {derivation}"
            ))
        }
    }
}

/// A duty failed this tick; the next tick retries.
#[derive(Debug, thiserror::Error)]
pub enum DutyError {
    /// A read of the chain failed.
    #[error("chain: {0}")]
    Chain(String),
    /// A transaction failed to settle.
    #[error(transparent)]
    Tx(#[from] TxError),
}

/// Where a duty stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DutyState {
    /// No record: decide from the chain whether it is due.
    Fresh,
    /// Its transaction is recorded as sent: settle it.
    InFlight,
    /// Done, skipped or failed: nothing more for this key.
    Settled,
}

/// The duties that send a transaction at most once per period, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxDuty {
    /// `StakingEscrow.commitToNextPeriod()`, keyed by the next period.
    Commit,
    /// `StakingEscrow.mint()`.
    Mint,
    /// `PolicyManager.withdrawFees(staker)`.
    Fees,
}

impl TxDuty {
    const ALL: [Self; 3] = [Self::Commit, Self::Mint, Self::Fees];

    /// The duty's name: its metrics label and the first part of its record keys.
    fn name(self) -> &'static str {
        match self {
            Self::Commit => "commit",
            Self::Mint => "mint",
            Self::Fees => "fees",
        }
    }
}

/// A transaction duty's key and call for one period.
struct TxPlan {
    duty: TxDuty,
    /// `<name>/<key_period>`.
    key: String,
    key_period: u64,
    to: Address,
    input: Vec<u8>,
}

/// Whether a fresh transaction duty is due, by the chain.
enum Due {
    /// Send it.
    Yes,
    /// Not now (ask again next tick).
    No,
    /// Not for this key (its effect is on chain already, or not worth its gas): recorded as
    /// skipped with this reason.
    Skip(String),
}

/// The duties' Prometheus metrics: `kms_node_duties_total{duty, outcome}`, and the worker's
/// balance as the duties last read it, `kms_node_worker_balance_eth`.
#[derive(Debug, Clone)]
pub struct DutyMetrics {
    runs: IntCounterVec,
    worker_balance: Gauge,
}

impl DutyMetrics {
    /// Registers the counters in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let runs = IntCounterVec::new(
            Opts::new("duties_total", "Duty outcomes by duty"),
            &["duty", "outcome"],
        )?;
        registry.register(Box::new(runs.clone()))?;
        let worker_balance = Gauge::new(
            "worker_balance_eth",
            "The worker's ETH balance (it pays every duty transaction), read every 30 s",
        )?;
        registry.register(Box::new(worker_balance.clone()))?;
        Ok(Self {
            runs,
            worker_balance,
        })
    }

    fn count(&self, duty: &str, outcome: &str) {
        self.runs.with_label_values(&[duty, outcome]).inc();
    }
}

/// What the duties are configured to do.
#[derive(Debug, Clone)]
pub struct DutyConfig {
    /// Commit to each next period.
    pub commit: bool,
    /// Mint rewards that no commitment will mint.
    pub mint: bool,
    /// When to withdraw the fees (`None`: never).
    pub withdraw_fees_threshold: Option<FeeThreshold>,
    /// Delete kfrags of revoked, ended or vanished policies.
    pub prune: bool,
    /// The audit duty (see [`crate::audit`]).
    pub audit: AuditConfig,
    /// Who is paid the investigator reward of the evidence the node files when the reporter
    /// names nobody; `None`: the staker. Never the worker (a hot key).
    pub beneficiary: Option<Address>,
}

impl Default for DutyConfig {
    fn default() -> Self {
        Self {
            commit: true,
            mint: true,
            withdraw_fees_threshold: Some(FeeThreshold::DEFAULT),
            prune: true,
            audit: AuditConfig::default(),
            beneficiary: None,
        }
    }
}

/// The duties of one node.
#[derive(Debug)]
pub struct Duties<P> {
    provider: P,
    store: Store,
    sender: TxSender<P>,
    staker: Address,
    deployment: Deployment,
    confirmations: u64,
    config: DutyConfig,
    metrics: Option<DutyMetrics>,
    ticks: u64,
    clock: Option<Arc<ChainClock>>,
    desk: Option<EvidenceDesk<P>>,
    auditor: Option<Arc<Auditor<P>>>,
    standing: Option<(Arc<StandingView>, Address)>,
}

impl From<AuditError> for DutyError {
    fn from(e: AuditError) -> Self {
        match e {
            AuditError::Tx(e) => Self::Tx(e),
            other => Self::Chain(other.to_string()),
        }
    }
}

impl From<FilingError> for DutyError {
    fn from(e: FilingError) -> Self {
        match e {
            FilingError::Tx(e) => Self::Tx(e),
            FilingError::Chain(e) => Self::Chain(e),
        }
    }
}

fn chain(e: impl std::fmt::Display) -> DutyError {
    DutyError::Chain(e.to_string())
}

fn contract(e: &alloy::contract::Error) -> DutyError {
    DutyError::Chain(describe_contract_error(e))
}

impl<P: Provider + Clone> Duties<P> {
    /// The duties of `staker`'s node, sending with `sender` (the worker's account).
    pub fn new(
        provider: P,
        store: Store,
        sender: TxSender<P>,
        staker: Address,
        deployment: Deployment,
        confirmations: u64,
        config: DutyConfig,
    ) -> Self {
        Self {
            provider,
            store,
            sender,
            staker,
            deployment,
            confirmations,
            config,
            metrics: None,
            ticks: 0,
            clock: None,
            desk: None,
            auditor: None,
            standing: None,
        }
    }

    /// Reads the node's standing (commitments, the balance of `worker`) into `view` at most
    /// every [`crate::standing::STANDING_REFRESH`], and after a duty transaction settles, for
    /// the status endpoint.
    pub fn with_standing(mut self, view: Arc<StandingView>, worker: Address) -> Self {
        self.standing = Some((view, worker));
        self
    }

    /// Sets `clock` to the latest block's timestamp at every tick (the API's answers name the
    /// period of that clock).
    pub fn with_clock(mut self, clock: Arc<ChainClock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Files the evidence `desk` accepted (duty `evidence`) and creates `auditor`'s audit
    /// policies (duty `audit-policy`): their transactions go out one at a time with the others.
    pub fn with_investigation(
        mut self,
        desk: EvidenceDesk<P>,
        auditor: Option<Arc<Auditor<P>>>,
    ) -> Self {
        self.desk = Some(desk);
        self.auditor = auditor;
        self
    }

    /// Counts outcomes in `metrics`.
    pub fn with_metrics(mut self, metrics: DutyMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn count(&self, duty: &str, outcome: &str) {
        if let Some(m) = &self.metrics {
            m.count(duty, outcome);
        }
    }

    /// The duties service: a [`tick`](Self::tick) at every wake-up until shut down (a tick
    /// under way is dropped then: each of its steps is atomic in the store, and a transaction
    /// recorded as sent is settled at the next start).
    pub async fn run(mut self, mut wakeups: Wakeups) {
        loop {
            tokio::select! {
                _ = wakeups.shutdown() => break,
                result = self.tick() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "duty tick had a failure");
                    }
                }
            }
            if !wakeups.next().await {
                break;
            }
        }
    }

    /// Runs every due duty once. Each duty's failure is logged and counted, and does not stop
    /// the others.
    pub async fn tick(&mut self) -> Result<(), DutyError> {
        self.ticks += 1;
        let block = self
            .provider
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await
            .map_err(chain)?
            .ok_or_else(|| DutyError::Chain("no latest block".into()))?;
        let now = block.header.timestamp;
        if let Some(clock) = &self.clock {
            clock.observe(now);
        }
        let period = now / self.deployment.seconds_per_period.max(1);
        let mut first_error = None;
        // First the transactions left unsettled by a crash (their duty may never come up
        // again), each counted under its duty. Until they are settled, no duty sends a new one
        // (see `TxSender::run`): only pruning runs.
        let in_flight_settled = match self.sender.settle_in_flight().await {
            Ok(settled) => {
                for (key, record) in settled {
                    let duty = key.split('/').next().unwrap_or("unknown");
                    match record {
                        DutyRecord::Done { .. } => self.count(duty, "done"),
                        DutyRecord::Failed { .. } => self.count(duty, "failed"),
                        _ => {}
                    }
                }
                true
            }
            Err(TxError::Pending(tx)) => {
                tracing::debug!(%tx, "an earlier duty transaction is pending");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "settling earlier duty transactions failed");
                first_error = Some(DutyError::Tx(e));
                false
            }
        };
        let mut results = Vec::with_capacity(6);
        if in_flight_settled {
            for duty in TxDuty::ALL {
                results.push((duty.name(), self.run_tx_duty(duty, period).await));
            }
            if let Some(auditor) = &self.auditor {
                let created = auditor.create_due(&self.sender, now).await;
                results.push(("audit-policy", created.map_err(DutyError::from)));
            }
            if let Some(desk) = &self.desk {
                let filed = desk.file(&self.sender, block.header.number).await;
                results.push((
                    "evidence",
                    filed
                        .map(|moved| (moved > 0).then_some("moved"))
                        .map_err(DutyError::from),
                ));
            }
        }
        results.push(("prune", self.prune(now, block.header.number).await));
        // After the duties: a commitment just made shows at once.
        let transacted = results
            .iter()
            .any(|(_, result)| matches!(result, Ok(Some("done"))));
        let standing = self
            .refresh_standing(block.header.number, now, period, transacted)
            .await;
        results.push(("standing", standing.map(|()| None)));
        for (duty, result) in results {
            match result {
                Ok(Some(outcome)) => self.count(duty, outcome),
                Ok(None) => {}
                Err(DutyError::Tx(TxError::Pending(tx))) => {
                    tracing::debug!(duty, %tx, "duty transaction pending");
                    self.count(duty, "pending");
                }
                Err(e) => {
                    tracing::warn!(duty, error = %e, "duty failed");
                    self.count(duty, "error");
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Runs the transaction duty `key` and names its outcome; a simulated revert is recorded as
    /// skipped, so it is not retried within the same key.
    async fn transact(
        &self,
        key: &str,
        to: Address,
        input: Vec<u8>,
    ) -> Result<Option<&'static str>, DutyError> {
        match self.sender.run(key, to, input.into()).await {
            Ok(DutyRecord::Done { .. }) => Ok(Some("done")),
            Ok(DutyRecord::Failed { .. }) => Ok(Some("failed")),
            Ok(DutyRecord::Skipped { .. }) => Ok(None),
            Ok(DutyRecord::Sent { tx_hash, .. }) => Err(TxError::Pending(tx_hash).into()),
            Err(TxError::Reverted(reason)) => {
                tracing::warn!(duty = key, %reason, "duty would revert: skipped");
                self.record(key, DutyRecord::Skipped { reason }).await?;
                Ok(Some("skipped"))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn record(&self, key: &str, record: DutyRecord) -> Result<(), DutyError> {
        let store = self.store.clone();
        let key = key.to_owned();
        Ok(blocking(move || store.set_duty(&key, &record)).await?)
    }

    /// Where the duty `key` stands, from its record.
    async fn state(&self, key: &str) -> Result<DutyState, DutyError> {
        let store = self.store.clone();
        let key = key.to_owned();
        Ok(match blocking(move || store.duty(&key)).await? {
            None => DutyState::Fresh,
            Some(DutyRecord::Sent { .. }) => DutyState::InFlight,
            Some(_) => DutyState::Settled,
        })
    }

    /// Reads the standing into the view, if one is set and a read is due (or `force`).
    async fn refresh_standing(
        &self,
        block: u64,
        now: u64,
        period: u64,
        force: bool,
    ) -> Result<(), DutyError> {
        let Some((view, worker)) = &self.standing else {
            return Ok(());
        };
        if !force && !view.is_due() {
            return Ok(());
        }
        // One block for all the reads (the tick's transactions came after its first read).
        let block = self
            .provider
            .get_block_number()
            .await
            .map_err(chain)?
            .max(block);
        let info = StakingEscrow::new(self.deployment.staking_escrow, &self.provider)
            .getStakerInfo(self.staker)
            .block(BlockId::number(block))
            .call()
            .await
            .map_err(|e| contract(&e))?;
        let balance = self
            .provider
            .get_balance(*worker)
            .block_id(BlockId::number(block))
            .await
            .map_err(chain)?;
        let gas_price = self.provider.get_gas_price().await.map_err(chain)?;
        let store = self.store.clone();
        let pending = blocking(move || {
            Ok(store
                .duties()?
                .iter()
                .filter(|(_, record)| matches!(record, DutyRecord::Sent { .. }))
                .count())
        })
        .await?;
        let next = period + 1;
        let standing = Standing {
            block,
            timestamp: now,
            current_period: period,
            last_committed_period: u64::try_from(info.lastCommittedPeriod)
                .ok()
                .filter(|&p| p != 0),
            next_commitment_period: next,
            next_commitment_due_by: next.saturating_mul(self.deployment.seconds_per_period),
            committed_next: info.commitPeriods.contains(&U256::from(next)),
            locked_next: !info.lockedNextPeriod.is_zero(),
            worker_balance_wei: balance,
            gas_price_wei: gas_price,
            pending_duties: u64::try_from(pending).unwrap_or(u64::MAX),
        };
        if let Some(metrics) = &self.metrics {
            // Wei to ETH as a float: a gauge's precision is plenty for an alert threshold.
            let wei = u128::try_from(balance).unwrap_or(u128::MAX);
            metrics.worker_balance.set(wei as f64 / 1e18);
        }
        view.publish(standing);
        Ok(())
    }

    async fn staker_info(&self) -> Result<StakingEscrow::StakerView, DutyError> {
        StakingEscrow::new(self.deployment.staking_escrow, &self.provider)
            .getStakerInfo(self.staker)
            .block(BlockId::latest())
            .call()
            .await
            .map_err(|e| contract(&e))
    }

    /// The transaction duty `duty` for `period`, the one skeleton of commit, mint and fees:
    /// a settled key is left alone; a key in flight resumes its recorded transaction whatever
    /// the chain says now; a fresh key asks the chain whether it is due, then transacts.
    async fn run_tx_duty(
        &self,
        duty: TxDuty,
        period: u64,
    ) -> Result<Option<&'static str>, DutyError> {
        let Some(plan) = self.plan(duty, period) else {
            return Ok(None);
        };
        let state = self.state(&plan.key).await?;
        if state == DutyState::Settled {
            return Ok(None);
        }
        if state == DutyState::Fresh {
            match self.due(&plan).await? {
                Due::Yes => {}
                Due::No => return Ok(None),
                Due::Skip(reason) => {
                    tracing::info!(duty = plan.key, %reason, "duty skipped");
                    self.record(&plan.key, DutyRecord::Skipped { reason })
                        .await?;
                    return Ok(Some("skipped"));
                }
            }
        }
        self.transact(&plan.key, plan.to, plan.input).await
    }

    /// What `duty` would send for `period`: `None` when it is configured off.
    fn plan(&self, duty: TxDuty, period: u64) -> Option<TxPlan> {
        let escrow = self.deployment.staking_escrow;
        let (key_period, to, input) = match duty {
            TxDuty::Commit if self.config.commit => (
                period + 1,
                escrow,
                StakingEscrow::commitToNextPeriodCall {}.abi_encode(),
            ),
            TxDuty::Mint if self.config.mint => {
                (period, escrow, StakingEscrow::mintCall {}.abi_encode())
            }
            TxDuty::Fees if self.config.withdraw_fees_threshold.is_some() => (
                period,
                self.deployment.policy_manager,
                PolicyManager::withdrawFeesCall { node: self.staker }.abi_encode(),
            ),
            TxDuty::Commit | TxDuty::Mint | TxDuty::Fees => return None,
        };
        Some(TxPlan {
            duty,
            key: format!("{}/{key_period}", duty.name()),
            key_period,
            to,
            input,
        })
    }

    /// Whether a fresh duty is due, from the chain.
    async fn due(&self, plan: &TxPlan) -> Result<Due, DutyError> {
        Ok(match plan.duty {
            TxDuty::Commit => {
                let info = self.staker_info().await?;
                if info.commitPeriods.contains(&U256::from(plan.key_period)) {
                    // Committed already (by an earlier run whose record is gone, or by hand).
                    Due::Skip("already committed on chain".into())
                } else if info.lockedNextPeriod.is_zero() {
                    Due::No
                } else {
                    Due::Yes
                }
            }
            TxDuty::Mint => {
                let info = self.staker_info().await?;
                // A commitment mints the ended periods' rewards itself; mint only when none will.
                if info.pendingReward.is_zero() || !info.lockedNextPeriod.is_zero() {
                    Due::No
                } else {
                    Due::Yes
                }
            }
            TxDuty::Fees => {
                let Some(threshold) = self.config.withdraw_fees_threshold else {
                    return Ok(Due::No); // configured off: `plan` made no plan
                };
                // The period's commitment accrues fees: decide once it has settled.
                let commit = format!("{}/{}", TxDuty::Commit.name(), plan.key_period + 1);
                if self.config.commit && self.state(&commit).await? == DutyState::InFlight {
                    return Ok(Due::No);
                }
                let fees = PolicyManager::new(self.deployment.policy_manager, &self.provider)
                    .fees(self.staker)
                    .block(BlockId::latest())
                    .call()
                    .await
                    .map_err(|e| contract(&e))?;
                if fees.is_zero() {
                    return Ok(Due::No);
                }
                let gas_price = match threshold {
                    FeeThreshold::Wei(_) => 0,
                    FeeThreshold::GasCost { .. } => {
                        self.provider.get_gas_price().await.map_err(chain)?
                    }
                };
                match threshold.check(fees, gas_price) {
                    Ok(()) => Due::Yes,
                    Err(reason) => Due::Skip(reason),
                }
            }
        })
    }

    async fn is_active<Q: Provider>(
        &self,
        manager: &PolicyManager::PolicyManagerInstance<Q>,
        policy_id: [u8; 16],
        nodes: &[Address],
        block: BlockId,
    ) -> Result<bool, DutyError> {
        manager
            .isArrangementActive(FixedBytes(policy_id), self.staker, nodes.to_vec())
            .block(block)
            .call()
            .await
            .map_err(|e| contract(&e))
    }

    /// The policy's end on chain now (extensions included); zero if the chain has no such
    /// policy (a reorg removed it).
    async fn chain_end<Q: Provider>(
        &self,
        manager: &PolicyManager::PolicyManagerInstance<Q>,
        policy_id: [u8; 16],
    ) -> Result<u64, DutyError> {
        match manager
            .getPolicy(alloy::primitives::FixedBytes(policy_id))
            .block(BlockId::latest())
            .call()
            .await
        {
            Ok(view) => Ok(u64::try_from(view.endTimestamp).unwrap_or(u64::MAX)),
            // A revert is `PolicyNotFound`: nothing to keep the kfrag for.
            Err(alloy::contract::Error::TransportError(e)) if e.as_error_resp().is_some() => Ok(0),
            Err(e) => Err(DutyError::Chain(e.to_string())),
        }
    }

    /// Every [`PRUNE_EVERY`] ticks, deletes the kfrags of ended policies (their end confirmed on chain: an extension may be unconfirmed) and of revoked ones
    /// (revocations also delete them in the follower); every [`PRUNE_CHAIN_CHECK_EVERY`] ticks,
    /// also of recent policies (not confirmed yet, or created within the follower's reorg rewind)
    /// that are inactive both at the confirmed block and at the latest one (revoked, or vanished
    /// in a reorg). A policy still unconfirmed is active at the latest block and kept; an older
    /// one is what the follower confirmed, and is never asked about (a chain call per stored
    /// policy would spend the operator's RPC quota in proportion to the policies held).
    async fn prune(&self, now: u64, head: u64) -> Result<Option<&'static str>, DutyError> {
        let check_chain = self.ticks % PRUNE_CHAIN_CHECK_EVERY == 1;
        if !self.config.prune || (self.ticks % PRUNE_EVERY != 1 && !check_chain) {
            return Ok(None);
        }
        let store = self.store.clone();
        let stored = blocking(move || store.kfrag_policies()).await?;
        let confirmed = head.saturating_sub(self.confirmations);
        let manager = PolicyManager::new(self.deployment.policy_manager, &self.provider);
        let mut deleted = 0u64;
        for policy in stored {
            let (policy_id, nodes) = (policy.policy_id, policy.nodes);
            let ended = policy.end_timestamp <= now && !policy.revoked;
            let mut gone = ended || policy.revoked;
            if ended {
                // An extension may not be confirmed yet (the follower applies it then): the
                // chain's end decides, one call per ended policy.
                gone = self.chain_end(&manager, policy_id).await? <= now;
            }
            let recent = policy
                .created_block
                .is_none_or(|block| block.saturating_add(REORG_REWIND_BLOCKS) > head);
            if !gone && check_chain && recent {
                let confirmed_active = self
                    .is_active(&manager, policy_id, &nodes, BlockId::number(confirmed))
                    .await?;
                gone = !confirmed_active
                    && !self
                        .is_active(&manager, policy_id, &nodes, BlockId::latest())
                        .await?;
            }
            if gone {
                let store = self.store.clone();
                if blocking(move || store.delete_kfrag(policy_id)).await? {
                    deleted += 1;
                    tracing::info!(
                        policy = %alloy::primitives::hex::encode_prefixed(policy_id),
                        "kfrag deleted: policy ended, revoked or gone"
                    );
                }
            }
        }
        Ok((deleted > 0).then_some("pruned"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_default_threshold_is_ten_withdrawals_of_gas_at_the_gas_price() {
        let gwei = 1_000_000_000u128;
        let (threshold, derivation) = FeeThreshold::DEFAULT.wei(2 * gwei);
        // 10 x 40,000 gas x 2 gwei = 0.0008 ETH: the gas is a tenth of the least withdrawn.
        assert_eq!(threshold, U256::from(800_000_000_000_000u64));
        assert_eq!(
            derivation,
            "10 x 40000 gas (a withdrawal) x 2000000000 wei/gas (the gas price now)"
        );
        let gas_cost = U256::from(WITHDRAW_FEES_GAS) * U256::from(2 * gwei);
        assert!(gas_cost * U256::from(10) <= threshold);
    }

    #[test]
    fn fees_at_the_threshold_are_withdrawn_below_it_skipped_with_the_reason() {
        let gwei = 1_000_000_000u128;
        let threshold = U256::from(400_000_000_000_000u64); // at 1 gwei
        assert_eq!(FeeThreshold::DEFAULT.check(threshold, gwei), Ok(()));
        assert_eq!(
            FeeThreshold::DEFAULT.check(threshold + U256::from(1), gwei),
            Ok(())
        );
        let reason = FeeThreshold::DEFAULT
            .check(threshold - U256::from(1), gwei)
            .unwrap_err();
        assert_eq!(
            reason,
            "fees of 399999999999999 wei below the threshold of 400000000000000 wei = 10 x 40000 \
             gas (a withdrawal) x 1000000000 wei/gas (the gas price now)"
        );
        // The gas price moves the threshold: the same fees are worth withdrawing when gas is
        // cheaper.
        assert_eq!(
            FeeThreshold::DEFAULT.check(threshold - U256::from(1), gwei / 2),
            Ok(())
        );
        // A chain without a gas price: any fees.
        assert_eq!(FeeThreshold::DEFAULT.check(U256::from(1), 0), Ok(()));
    }

    #[test]
    fn an_explicit_threshold_ignores_the_gas_price() {
        let threshold = FeeThreshold::Wei(U256::from(1_000u64));
        assert_eq!(threshold.check(U256::from(1_000u64), u128::MAX), Ok(()));
        let reason = threshold.check(U256::from(999u64), 0).unwrap_err();
        assert_eq!(
            reason,
            "fees of 999 wei below the threshold of 1000 wei = withdraw_fees_threshold_wei"
        );
    }

    #[test]
    fn the_threshold_does_not_overflow() {
        let threshold = FeeThreshold::GasCost { multiple: u64::MAX };
        let (wei, _) = threshold.wei(u128::MAX);
        assert!(wei > U256::from(u128::MAX));
        assert!(threshold.check(U256::MAX, u128::MAX).is_ok());
    }
}

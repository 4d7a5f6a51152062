//! Test support for this and downstream crates (feature `test-utils`): a [`TestChain`] is a
//! [`DevChain`] with the steps tests repeat — staking a node, travelling in time, mining,
//! reorganising, restarting anvil — through alloy's anvil API rather than raw requests.
//!
//! Nothing here ships in a binary: `kms` depends on this crate with `devnet` only.

use std::{
    future::Future,
    ops::Deref,
    time::{Duration, Instant},
};

use alloy::{
    contract::CallBuilder,
    eips::BlockNumberOrTag,
    primitives::{Address, B256, U256},
    providers::{ext::AnvilApi, Provider},
    rpc::types::anvil::ReorgOptions,
};

pub use crate::devchain::{repo_root, ChainOptions, ANVIL_BIN, DEPLOY_SCRIPT, FORGE_BIN};
use crate::devchain::{spawn_anvil, step_failed, DevChain, DevChainError};

/// The roles tests give anvil's dev accounts (a test may give further accounts roles of its own).
pub mod accounts {
    /// Deploys the contracts and holds the initial token supply.
    pub const DEPLOYER: usize = 0;
    /// A staker.
    pub const STAKER: usize = 1;
    /// `STAKER`'s worker: the node's key.
    pub const WORKER: usize = 2;
    /// A policy creator.
    pub const ALICE: usize = 3;
    /// Reports misbehaviour to the Adjudicator.
    pub const INVESTIGATOR: usize = 4;
    /// A second staker.
    pub const OTHER_STAKER: usize = 5;
    /// `OTHER_STAKER`'s worker.
    pub const OTHER_WORKER: usize = 6;
}

/// Why a test chain could not be started or a test step failed.
pub type TestChainError = DevChainError;

/// A [`DevChain`] for tests; dereferences to it for the deployment, accounts and providers.
#[derive(Debug)]
pub struct TestChain {
    chain: DevChain,
}

impl Deref for TestChain {
    type Target = DevChain;

    fn deref(&self) -> &DevChain {
        &self.chain
    }
}

impl From<DevChain> for TestChain {
    fn from(chain: DevChain) -> Self {
        Self { chain }
    }
}

impl TestChain {
    /// Starts anvil on a free port and deploys the contracts with periods of
    /// `seconds_per_period` seconds and the script's defaults for everything else.
    pub async fn start(seconds_per_period: u64) -> Result<Self, TestChainError> {
        DevChain::start(seconds_per_period).await.map(Self::from)
    }

    /// Like [`TestChain::start`], with further script parameters (e.g. `("MIN_STAKE", "1")`);
    /// see `script/Deploy.s.sol` for the names.
    pub async fn start_with(
        seconds_per_period: u64,
        parameters: &[(&str, &str)],
    ) -> Result<Self, TestChainError> {
        DevChain::start_with(seconds_per_period, parameters)
            .await
            .map(Self::from)
    }

    /// Starts anvil and deploys as `options` say.
    pub async fn start_on(options: ChainOptions) -> Result<Self, TestChainError> {
        DevChain::start_on(options).await.map(Self::from)
    }

    /// Like [`TestChain::start_on`], with further arguments for anvil (e.g. `--accounts 20`, or
    /// `--state FILE` so that [`TestChain::restart_anvil`] keeps the chain).
    pub async fn start_with_anvil_args(
        options: ChainOptions,
        anvil_args: &[&str],
    ) -> Result<Self, TestChainError> {
        DevChain::start_with_anvil_args(options, anvil_args)
            .await
            .map(Self::from)
    }

    /// Stops anvil gracefully (SIGTERM, so that `--state`/`--dump-state` write their file on
    /// exit; SIGKILL after 20 s), keeps it down for `downtime`, then starts it again on the same
    /// port with the same arguments. Without `--state`, the chain starts over empty (and the
    /// contracts are gone).
    pub async fn restart_anvil(
        &mut self,
        downtime: std::time::Duration,
    ) -> Result<(), DevChainError> {
        let pid = self.chain.anvil.child().id();
        let port = self.chain.anvil.port();
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
        // Wait for the process to exit without reaping it: the old instance's drop reaps it
        // (and would otherwise signal a pid that might have been reused).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut killed = false;
        while !exited(pid) {
            if !killed && std::time::Instant::now() >= deadline {
                let _ = self.chain.anvil.child_mut().kill();
                killed = true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        tokio::time::sleep(downtime).await;
        let anvil = spawn_anvil(
            self.chain.anvil_bin.clone(),
            Some(port),
            self.chain.anvil_args.clone(),
        )
        .await?;
        // Dropping the old instance reaps the exited process.
        drop(std::mem::replace(&mut self.chain.anvil, anvil));
        // No pooled connection to the old process is reused.
        self.chain.reader = self.chain.read_provider();
        Ok(())
    }

    /// Replaces the last `depth` blocks with as many empty ones (`anvil_reorg`).
    pub async fn reorg(&self, depth: u64) -> Result<(), TestChainError> {
        self.chain
            .reader
            .anvil_reorg(ReorgOptions {
                depth,
                tx_block_pairs: Vec::new(),
            })
            .await
            .map_err(|e| step_failed("anvil_reorg", e))
    }

    /// The hash of block `number` (zero if there is none).
    pub async fn block_hash(&self, number: u64) -> Result<B256, TestChainError> {
        Ok(self
            .chain
            .reader
            .get_block_by_number(BlockNumberOrTag::Number(number))
            .await
            .map_err(|e| step_failed("eth_getBlockByNumber", e))?
            .map(|block| block.header.hash)
            .unwrap_or_default())
    }

    /// The periods `staker` committed to, with the hash of each commitment's transaction, in
    /// chain order (`CommitmentMade` events).
    pub async fn commitments(&self, staker: Address) -> Result<Vec<(u64, B256)>, TestChainError> {
        use alloy::sol_types::SolEvent;
        let filter = alloy::rpc::types::Filter::new()
            .address(self.deployment().staking_escrow)
            .event_signature(crate::StakingEscrow::CommitmentMade::SIGNATURE_HASH)
            .topic1(staker.into_word())
            .from_block(0);
        let logs = self
            .chain
            .reader
            .get_logs(&filter)
            .await
            .map_err(|e| step_failed("eth_getLogs", e))?;
        logs.iter()
            .map(|log| {
                let event = crate::StakingEscrow::CommitmentMade::decode_log_data(log.data())
                    .map_err(|e| step_failed("CommitmentMade", e))?;
                Ok((
                    event.period.saturating_to(),
                    log.transaction_hash.unwrap_or_default(),
                ))
            })
            .collect()
    }

    /// Makes dev account `staker` a node with the smallest stake the deployment allows (its
    /// minimum, for the minimum lock), funded by [`accounts::DEPLOYER`], with `worker` bonded.
    pub async fn stake_minimum(&self, staker: usize, worker: usize) -> Result<(), DevChainError> {
        let d = self.deployment();
        let (amount, periods) = (d.min_stake, U256::from(d.min_lock_periods));
        self.stake_and_propose(accounts::DEPLOYER, staker, worker, amount, periods)
            .await?;
        self.accept_bond(staker, worker).await
    }

    /// Dev account `worker` commits its staker to the next period (`commitToNextPeriod`),
    /// as a node's duty would.
    pub async fn commit_as(&self, worker: usize) -> Result<(), DevChainError> {
        let as_worker = self.provider(worker)?;
        confirm(
            "commitToNextPeriod",
            self.deployment()
                .staking_escrow(&as_worker)
                .commitToNextPeriod(),
        )
        .await
    }

    /// Dev account `worker` accepts the bond dev account `staker` proposed (nothing to do when
    /// a staker is its own worker: that bond needs no acceptance).
    pub async fn accept_bond(&self, staker: usize, worker: usize) -> Result<(), DevChainError> {
        if worker == staker {
            return Ok(());
        }
        let as_worker = self.provider(worker)?;
        confirm(
            "acceptWorker",
            self.deployment()
                .staking_escrow(&as_worker)
                .acceptWorker(self.address(staker)?),
        )
        .await
    }

    /// Dev account `deployer` (which holds the initial supply) sends dev account `staker`
    /// `amount` tokens, which it approves and deposits for `periods`, then proposes dev account
    /// `worker` as its worker (bonded to itself at once when `worker == staker`). The bond is left
    /// for the worker to accept: `kms node run` does so when it starts.
    pub async fn stake_and_propose(
        &self,
        deployer: usize,
        staker: usize,
        worker: usize,
        amount: U256,
        periods: U256,
    ) -> Result<(), DevChainError> {
        let d = self.deployment();
        let (staker_address, worker_address) = (self.address(staker)?, self.address(worker)?);
        let as_deployer = self.provider(deployer)?;
        let as_staker = self.provider(staker)?;
        let escrow = d.staking_escrow(&as_staker);
        confirm(
            "transfer",
            d.token(&as_deployer).transfer(staker_address, amount),
        )
        .await?;
        confirm(
            "approve",
            d.token(&as_staker).approve(d.staking_escrow, amount),
        )
        .await?;
        confirm("deposit", escrow.deposit(amount, periods)).await?;
        confirm("bondWorker", escrow.bondWorker(worker_address)).await
    }
}

/// Polls `check` every 100 ms until it holds, failing after `timeout` (or with the first error
/// `check` returns).
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await? {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends a setup transaction and requires it to succeed.
async fn confirm<P, D, N>(
    step: &'static str,
    call: CallBuilder<P, D, N>,
) -> Result<(), DevChainError>
where
    P: Provider<N>,
    D: alloy::contract::CallDecoder,
    N: alloy::network::Network,
{
    let receipt = call
        .send()
        .await
        .map_err(|e| step_failed(step, e))?
        .get_receipt()
        .await
        .map_err(|e| step_failed(step, e))?;
    if alloy::network::ReceiptResponse::status(&receipt) {
        Ok(())
    } else {
        Err(step_failed(step, format!("reverted: {receipt:?}")))
    }
}

/// Whether process `pid` (a child of this process) has exited: gone, or a zombie not yet reaped.
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}

//! `kms stake ...` and `kms rewards withdraw`: the staker's side.

use alloy::{
    primitives::{Address, U256},
    providers::Provider,
};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::{
    common::{format_eth, format_tokens, parse_tokens, parse_wei, print_json, send},
    opts::Chain,
    opts::{Account, ChainOpts},
};

/// `kms stake ...`: the subcommand, and the chain and account they share.
#[derive(Debug, Args)]
pub struct StakeArgs {
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: StakeSubcommand,
    /// The chain and deployment to use.
    #[command(flatten)]
    pub chain: ChainOpts,
}

impl StakeArgs {
    /// Connects (with the account, which all but `status` need) and runs the subcommand.
    pub async fn run(self) -> Result<()> {
        let account = match self.command {
            StakeSubcommand::Status(_) => Account::Optional,
            _ => Account::Required,
        };
        let chain = self.chain.connect(account).await?;
        match self.command {
            StakeSubcommand::Deposit(args) => args.run(&chain).await,
            StakeSubcommand::Prolong(args) => args.run(&chain).await,
            StakeSubcommand::Lock(args) => args.run(&chain).await,
            StakeSubcommand::Increase(args) => args.run(&chain).await,
            StakeSubcommand::Restake(args) => args.run(&chain).await,
            StakeSubcommand::Divide(args) => args.run(&chain).await,
            StakeSubcommand::Merge(args) => args.run(&chain).await,
            StakeSubcommand::Withdraw(args) => args.run(&chain).await,
            StakeSubcommand::BondWorker(args) => args.run(&chain).await,
            StakeSubcommand::SetMinFeeRate(args) => args.run(&chain).await,
            StakeSubcommand::Status(args) => args.run(&chain).await,
        }
    }
}

/// `kms stake ...`.
#[derive(Debug, Subcommand)]
pub enum StakeSubcommand {
    /// Lock KMS tokens for a number of periods (approves the escrow first when needed).
    ///
    /// Example: kms stake deposit --amount 15000 --periods 30 --keystore staker.json --password-file pw
    Deposit(DepositArgs),
    /// Lock free tokens in the escrow (minted rewards, released sub-stakes) as a new sub-stake.
    /// Below the minimum stake only while the other sub-stakes keep the minimum locked through
    /// its last period.
    ///
    /// Example: kms stake lock --amount 250 --periods 30   (or --all)
    Lock(LockArgs),
    /// Top up a locked sub-stake, from the wallet (approves the escrow first when needed) or with
    /// `--from-unlocked` from free tokens in the escrow; any amount. Counts from the next
    /// commitment.
    ///
    /// Example: kms stake increase --index 0 --amount 100 --from-unlocked
    Increase(IncreaseArgs),
    /// Turn restaking on or off: when on, each reward is locked into the sub-stake that ends
    /// last and counts in the next period's locked amount.
    ///
    /// Example: kms stake restake on
    Restake(RestakeArgs),
    /// Extend a sub-stake's lock.
    ///
    /// Example: kms stake prolong --index 0 --periods 10
    Prolong(ProlongArgs),
    /// Split part of a sub-stake off into a new one locked longer.
    ///
    /// Example: kms stake divide --index 0 --amount 15000 --periods 5
    Divide(DivideArgs),
    /// Merge two sub-stakes that end in the same period.
    ///
    /// Example: kms stake merge --index 0 --merged 1
    Merge(MergeArgs),
    /// Withdraw unlocked tokens (ended sub-stakes, minted rewards).
    ///
    /// Example: kms stake withdraw --amount 100   (or --all)
    Withdraw(WithdrawArgs),
    /// Propose the node's worker address for the stake (zero address to unbond). The bond takes
    /// effect when the worker accepts it: `kms node run` with that worker key does so at start.
    ///
    /// Example: kms stake bond-worker --worker 0xWorker
    BondWorker(BondWorkerArgs),
    /// Set the lowest fee rate the node accepts for new policies.
    ///
    /// Example: kms stake set-min-fee-rate --rate 2gwei
    SetMinFeeRate(SetMinFeeRateArgs),
    /// The stake: sub-stakes, locked tokens per coming period, commitments, rewards, fees.
    ///
    /// Example: kms stake status --staker 0xStaker --json
    Status(StatusArgs),
}

/// `kms stake deposit`.
#[derive(Debug, Args)]
pub struct DepositArgs {
    /// Tokens, in KMS (e.g. 15000 or 15000.5).
    #[arg(long)]
    pub amount: String,
    /// Periods to lock for after the current one.
    #[arg(long)]
    pub periods: u64,
}

impl DepositArgs {
    /// Checks the balance, approves the escrow if needed, deposits.
    pub async fn run(self, chain: &Chain) -> Result<()> {
        let d = &chain.deployment;
        let amount = parse_tokens(&self.amount)?;
        let staker = chain.account()?;
        let token = d.token(&chain.provider);
        let balance = token.balanceOf(staker).call().await?;
        if balance < amount {
            bail!(
                "{staker} holds {} KMS, the deposit needs {}: get tokens first",
                format_tokens(balance),
                format_tokens(amount)
            );
        }
        let allowance = token.allowance(staker, d.staking_escrow).call().await?;
        if allowance < amount {
            send("approve", token.approve(d.staking_escrow, amount)).await?;
        }
        let escrow = d.staking_escrow(&chain.provider);
        send("deposit", escrow.deposit(amount, U256::from(self.periods))).await?;
        Ok(())
    }
}

/// `kms stake lock`.
#[derive(Debug, Args)]
pub struct LockArgs {
    /// Tokens, in KMS.
    #[arg(long, conflicts_with = "all")]
    pub amount: Option<String>,
    /// Every free token in the escrow.
    #[arg(long)]
    pub all: bool,
    /// Periods to lock for after the current one.
    #[arg(long)]
    pub periods: u64,
}

impl LockArgs {
    /// Locks the amount (or everything free) as a new sub-stake.
    pub async fn run(self, chain: &Chain) -> Result<()> {
        let free = unlocked(chain).await?;
        let amount = match (self.amount, self.all) {
            (Some(amount), false) => parse_tokens(&amount)?,
            (None, true) => free,
            _ => bail!("pass --amount KMS or --all"),
        };
        if amount.is_zero() || amount > free {
            bail!(
                "{} KMS are free in the escrow (minted rewards, released sub-stakes), the lock \
                 needs {}: `kms rewards withdraw` mints pending rewards first",
                format_tokens(free),
                format_tokens(amount)
            );
        }
        let escrow = chain.deployment.staking_escrow(&chain.provider);
        send("lock", escrow.lock(amount, U256::from(self.periods))).await?;
        println!(
            "locked {} KMS for {} periods",
            format_tokens(amount),
            self.periods
        );
        Ok(())
    }
}

/// `kms stake increase`.
#[derive(Debug, Args)]
pub struct IncreaseArgs {
    /// The sub-stake's index (`kms stake status`).
    #[arg(long)]
    pub index: u64,
    /// Tokens, in KMS.
    #[arg(long)]
    pub amount: String,
    /// Take the tokens from the free ones in the escrow instead of the wallet.
    #[arg(long)]
    pub from_unlocked: bool,
}

impl IncreaseArgs {
    /// Tops the sub-stake up.
    pub async fn run(self, chain: &Chain) -> Result<()> {
        let d = &chain.deployment;
        let amount = parse_tokens(&self.amount)?;
        let index = U256::from(self.index);
        let escrow = d.staking_escrow(&chain.provider);
        if self.from_unlocked {
            send(
                "increaseFromUnlocked",
                escrow.increaseFromUnlocked(index, amount),
            )
            .await?;
        } else {
            let staker = chain.account()?;
            let token = d.token(&chain.provider);
            let balance = token.balanceOf(staker).call().await?;
            if balance < amount {
                bail!(
                    "{staker} holds {} KMS, the increase needs {}: get tokens first, or use \
                     --from-unlocked",
                    format_tokens(balance),
                    format_tokens(amount)
                );
            }
            let allowance = token.allowance(staker, d.staking_escrow).call().await?;
            if allowance < amount {
                send("approve", token.approve(d.staking_escrow, amount)).await?;
            }
            send("increase", escrow.increase(index, amount)).await?;
        }
        println!(
            "sub-stake {} increased by {} KMS (counts from the next commitment)",
            self.index,
            format_tokens(amount)
        );
        Ok(())
    }
}

/// `kms stake restake`.
#[derive(Debug, Args)]
pub struct RestakeArgs {
    /// `on` or `off`.
    #[arg(value_parser = ["on", "off"])]
    pub switch: String,
}

impl RestakeArgs {
    /// Sets the switch.
    pub async fn run(self, chain: &Chain) -> Result<()> {
        let on = self.switch == "on";
        let escrow = chain.deployment.staking_escrow(&chain.provider);
        send("setReStake", escrow.setReStake(on)).await?;
        println!(
            "restaking {}",
            if on {
                "on: each reward is locked into the sub-stake that ends last"
            } else {
                "off: rewards stay free (withdrawable)"
            }
        );
        Ok(())
    }
}

/// `kms stake prolong`.
#[derive(Debug, Args)]
pub struct ProlongArgs {
    /// The sub-stake's index (`kms stake status`).
    #[arg(long)]
    pub index: u64,
    /// Periods to add.
    #[arg(long)]
    pub periods: u64,
}

impl ProlongArgs {
    /// Extends the sub-stake.
    pub async fn run(self, chain: &Chain) -> Result<()> {
        let escrow = chain.deployment.staking_escrow(&chain.provider);
        send(
            "prolong",
            escrow.prolong(U256::from(self.index), U256::from(self.periods)),
        )
        .await?;
        Ok(())
    }
}

/// `kms stake divide`.
#[derive(Debug, Args)]
pub struct DivideArgs {
    /// The sub-stake's index.
    #[arg(long)]
    pub index: u64,
    /// Tokens for the new sub-stake, in KMS.
    #[arg(long)]
    pub amount: String,
    /// Periods the new sub-stake is locked beyond the old one's end.
    #[arg(long)]
    pub periods: u64,
}

impl DivideArgs {
    /// Splits the sub-stake.
    pub async fn run(self, chain: &Chain) -> Result<()> {
        let amount = parse_tokens(&self.amount)?;
        let escrow = chain.deployment.staking_escrow(&chain.provider);
        send(
            "divide",
            escrow.divide(U256::from(self.index), amount, U256::from(self.periods)),
        )
        .await?;
        Ok(())
    }
}

/// `kms stake merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The sub-stake that stays.
    #[arg(long)]
    pub index: u64,
    /// The sub-stake merged into it.
    #[arg(long)]
    pub merged: u64,
}

impl MergeArgs {
    /// Merges the two sub-stakes.
    pub async fn run(self, chain: &Chain) -> Result<()> {
        let escrow = chain.deployment.staking_escrow(&chain.provider);
        send(
            "merge",
            escrow.merge(U256::from(self.index), U256::from(self.merged)),
        )
        .await?;
        Ok(())
    }
}

/// `kms stake withdraw`.
#[derive(Debug, Args)]
pub struct WithdrawArgs {
    /// Tokens, in KMS.
    #[arg(long, conflicts_with = "all")]
    pub amount: Option<String>,
    /// Everything unlocked.
    #[arg(long)]
    pub all: bool,
}

impl WithdrawArgs {
    /// Withdraws the amount, or everything unlocked.
    pub async fn run(self, chain: &Chain) -> Result<()> {
        let amount = match (self.amount, self.all) {
            (Some(amount), false) => parse_tokens(&amount)?,
            (None, true) => unlocked(chain).await?,
            _ => bail!("pass --amount KMS or --all"),
        };
        if amount.is_zero() {
            bail!(
                "nothing is withdrawable yet: a sub-stake is held for the evidence window \
                 (evidenceWindow periods) after its last period"
            );
        }
        let escrow = chain.deployment.staking_escrow(&chain.provider);
        send("withdraw", escrow.withdraw(amount)).await?;
        Ok(())
    }
}

/// `kms stake bond-worker`.
#[derive(Debug, Args)]
pub struct BondWorkerArgs {
    /// The worker address (`kms node init` prints it).
    #[arg(long)]
    pub worker: Address,
}

impl BondWorkerArgs {
    /// Proposes the worker.
    pub async fn run(self, chain: &Chain) -> Result<()> {
        let worker = self.worker;
        let escrow = chain.deployment.staking_escrow(&chain.provider);
        send("bondWorker", escrow.bondWorker(worker)).await?;
        if !worker.is_zero() && worker != chain.account()? {
            eprintln!(
                "proposed worker {worker}: the bond takes effect when the worker accepts it \
                 (`kms node run` with that worker key does so when it starts)"
            );
        }
        Ok(())
    }
}

/// `kms stake set-min-fee-rate`.
#[derive(Debug, Args)]
pub struct SetMinFeeRateArgs {
    /// Wei per period, or with a unit (`2gwei`).
    #[arg(long)]
    pub rate: String,
}

impl SetMinFeeRateArgs {
    /// Sets the node's minimum fee rate.
    pub async fn run(self, chain: &Chain) -> Result<()> {
        let rate = parse_wei(&self.rate)?;
        let manager = chain.deployment.policy_manager(&chain.provider);
        send("setMinFeeRate", manager.setMinFeeRate(rate)).await?;
        Ok(())
    }
}

/// `kms stake status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The staker (default: the signing account).
    #[arg(long)]
    pub staker: Option<Address>,
    /// How many coming periods to show the locked tokens of.
    #[arg(long, default_value_t = 5)]
    pub periods: u64,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

impl StatusArgs {
    /// Prints the stake.
    pub async fn run(self, chain: &Chain) -> Result<()> {
        let staker = match self.staker {
            Some(s) => s,
            None => chain
                .account
                .context("pass --staker ADDRESS (or an account)")?,
        };
        status(chain, staker, self.periods, self.json).await
    }
}

/// `kms rewards ...`: the subcommand, and the chain and account they share.
#[derive(Debug, Args)]
pub struct RewardsArgs {
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: RewardsSubcommand,
    /// The chain and deployment to use.
    #[command(flatten)]
    pub chain: ChainOpts,
}

impl RewardsArgs {
    /// Connects with the account and runs the subcommand.
    pub async fn run(self) -> Result<()> {
        let chain = self.chain.connect(Account::Required).await?;
        match self.command {
            RewardsSubcommand::Withdraw(args) => args.run(&chain).await,
        }
    }
}

/// `kms rewards ...`.
#[derive(Debug, Subcommand)]
pub enum RewardsSubcommand {
    /// Mint pending rewards into the stake and withdraw everything unlocked; with --fees, also
    /// the node's accrued policy fees (ETH).
    ///
    /// Example: kms rewards withdraw --fees
    Withdraw(WithdrawRewardsArgs),
}

/// `kms rewards withdraw`.
#[derive(Debug, Args)]
pub struct WithdrawRewardsArgs {
    /// Also withdraw the accrued fees.
    #[arg(long)]
    pub fees: bool,
}

impl WithdrawRewardsArgs {
    /// Mints, withdraws what is unlocked, and with `--fees` the fees.
    pub async fn run(self, chain: &Chain) -> Result<()> {
        let d = &chain.deployment;
        let escrow = d.staking_escrow(&chain.provider);
        let staker = chain.account()?;
        if !escrow.pendingReward(staker).call().await?.is_zero() {
            send("mint", escrow.mint()).await?;
        }
        let amount = unlocked(chain).await?;
        if amount.is_zero() {
            eprintln!("no unlocked tokens to withdraw");
        } else {
            send("withdraw", escrow.withdraw(amount)).await?;
            println!("withdrew {} KMS", format_tokens(amount));
        }
        if self.fees {
            let manager = d.policy_manager(&chain.provider);
            let accrued = manager.fees(staker).call().await?;
            if accrued.is_zero() {
                eprintln!("no fees accrued");
            } else {
                send("withdrawFees", manager.withdrawFees(staker)).await?;
                println!("withdrew {} ETH of fees", format_eth(accrued));
            }
        }
        Ok(())
    }
}

/// What the staker can withdraw: its stake less what is held (locked, or unlocked less than the
/// evidence window ago).
async fn unlocked(chain: &Chain) -> Result<U256> {
    let staker = chain.account()?;
    let escrow = chain.deployment.staking_escrow(&chain.provider);
    let value = escrow.stakeOf(staker).call().await?;
    let held = escrow.heldStakeOf(staker).call().await?;
    Ok(value.saturating_sub(held))
}

/// Prints (or as JSON) the stake of `staker` and the locked tokens of `periods` coming periods.
async fn status(chain: &Chain, staker: Address, periods: u64, json: bool) -> Result<()> {
    let d = &chain.deployment;
    let escrow = d.staking_escrow(&chain.provider);
    let manager = d.policy_manager(&chain.provider);
    let info = escrow.getStakerInfo(staker).call().await?;
    let sub_stakes = escrow.getSubStakes(staker).call().await?;
    let record = escrow.nodeRecordOf(staker).call().await?;
    let fees = manager.fees(staker).call().await?;
    let held = escrow.heldStakeOf(staker).call().await?;
    let pending_worker = escrow.pendingWorker(staker).call().await?;
    let restake = escrow.reStakeEnabled(staker).call().await?;
    let current = chain.current_period().await?;
    let mut locked = Vec::new();
    for period in current..=current + periods {
        let amount = escrow.lockedAt(staker, U256::from(period)).call().await?;
        locked.push((period, amount));
    }
    let commitments: Vec<u64> = info
        .commitPeriods
        .iter()
        .filter(|p| !p.is_zero())
        .map(|p| p.saturating_to::<u64>())
        .collect();
    let balance = chain.provider.get_balance(staker).await?;
    if json {
        return print_json(&json!({
            "staker": staker,
            "currentPeriod": current,
            "value": info.value.to_string(),
            "lockedNow": info.lockedNow.to_string(),
            "held": held.to_string(),
            "lockedNextPeriod": info.lockedNextPeriod.to_string(),
            "subStakes": sub_stakes.iter().enumerate().map(|(i, s)| json!({
                "index": i, "firstPeriod": s.firstPeriod, "lastPeriod": s.lastPeriod,
                "amount": s.amount.to_string(),
            })).collect::<Vec<_>>(),
            "locked": locked.iter().map(|(p, a)| json!({"period": p, "amount": a.to_string()})).collect::<Vec<_>>(),
            "committedPeriods": commitments,
            "lastCommittedPeriod": info.lastCommittedPeriod.to_string(),
            "rewardsMinted": info.rewardsMinted.to_string(),
            "pendingReward": info.pendingReward.to_string(),
            "feesWei": fees.to_string(),
            "worker": info.worker,
            "pendingWorker": pending_worker,
            "reStake": restake,
            "nodeUrl": record.url,
            "ethBalanceWei": balance.to_string(),
        }));
    }
    println!("staker            {staker}");
    println!("current period    {current}");
    println!("staked            {} KMS", format_tokens(info.value));
    println!("locked now        {} KMS", format_tokens(info.lockedNow));
    println!("held (not withdrawable) {} KMS", format_tokens(held));
    println!(
        "restaking         {}",
        if restake {
            "on (rewards locked into the sub-stake that ends last)"
        } else {
            "off"
        }
    );
    println!("worker            {}", info.worker);
    if !pending_worker.is_zero() {
        println!("proposed worker   {pending_worker} (not yet accepted)");
    }
    println!(
        "node record       {}",
        if record.url.is_empty() {
            "(none)"
        } else {
            &record.url
        }
    );
    println!("sub-stakes");
    for (i, s) in sub_stakes.iter().enumerate() {
        if s.amount.is_zero() {
            continue;
        }
        println!(
            "  #{i:<3} {:>24} KMS  periods {}..={}",
            format_tokens(U256::from(s.amount)),
            s.firstPeriod,
            s.lastPeriod
        );
    }
    println!("locked per period");
    for (period, amount) in &locked {
        println!("  {period:<10} {:>24} KMS", format_tokens(*amount));
    }
    println!("committed to      {commitments:?}");
    println!(
        "rewards minted    {} KMS",
        format_tokens(info.rewardsMinted)
    );
    println!(
        "rewards pending   {} KMS",
        format_tokens(info.pendingReward)
    );
    println!("fees accrued      {} ETH", format_eth(fees));
    Ok(())
}

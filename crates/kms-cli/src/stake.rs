//! `kms stake ...` and `kms rewards withdraw`: the staker's side.

use alloy::{
    primitives::{Address, U256},
    providers::Provider,
};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::common::{
    format_eth, format_tokens, parse_tokens, parse_wei, print_json, send, Chain, ChainArgs,
    WalletArgs,
};

/// `kms stake ...`.
#[derive(Debug, Subcommand)]
pub enum StakeCommand {
    /// Lock KMS tokens for a number of periods (approves the escrow first when needed).
    ///
    /// Example: kms stake deposit --amount 15000 --periods 30 --keystore staker.json --password-file pw
    Deposit {
        /// Tokens, in KMS (e.g. 15000 or 15000.5).
        #[arg(long)]
        amount: String,
        /// Periods to lock for after the current one.
        #[arg(long)]
        periods: u64,
    },
    /// Extend a sub-stake's lock.
    ///
    /// Example: kms stake prolong --index 0 --periods 10
    Prolong {
        /// The sub-stake's index (`kms stake status`).
        #[arg(long)]
        index: u64,
        /// Periods to add.
        #[arg(long)]
        periods: u64,
    },
    /// Split part of a sub-stake off into a new one locked longer.
    ///
    /// Example: kms stake divide --index 0 --amount 15000 --periods 5
    Divide {
        /// The sub-stake's index.
        #[arg(long)]
        index: u64,
        /// Tokens for the new sub-stake, in KMS.
        #[arg(long)]
        amount: String,
        /// Periods the new sub-stake is locked beyond the old one's end.
        #[arg(long)]
        periods: u64,
    },
    /// Merge two sub-stakes that end in the same period.
    ///
    /// Example: kms stake merge --index 0 --merged 1
    Merge {
        /// The sub-stake that stays.
        #[arg(long)]
        index: u64,
        /// The sub-stake merged into it.
        #[arg(long)]
        merged: u64,
    },
    /// Withdraw unlocked tokens (ended sub-stakes, minted rewards).
    ///
    /// Example: kms stake withdraw --amount 100   (or --all)
    Withdraw {
        /// Tokens, in KMS.
        #[arg(long, conflicts_with = "all")]
        amount: Option<String>,
        /// Everything unlocked.
        #[arg(long)]
        all: bool,
    },
    /// Propose the node's worker address for the stake (zero address to unbond). The bond takes
    /// effect when the worker accepts it: `kms node run` with that worker key does so at start.
    ///
    /// Example: kms stake bond-worker --worker 0xWorker
    BondWorker {
        /// The worker address (`kms node init` prints it).
        #[arg(long)]
        worker: Address,
    },
    /// Set the lowest fee rate the node accepts for new policies.
    ///
    /// Example: kms stake set-min-fee-rate --rate 2gwei
    SetMinFeeRate {
        /// Wei per period, or with a unit (`2gwei`).
        #[arg(long)]
        rate: String,
    },
    /// The stake: sub-stakes, locked tokens per coming period, commitments, rewards, fees.
    ///
    /// Example: kms stake status --staker 0xStaker --json
    Status {
        /// The staker (default: the signing account).
        #[arg(long)]
        staker: Option<Address>,
        /// How many coming periods to show the locked tokens of.
        #[arg(long, default_value_t = 5)]
        periods: u64,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// `kms rewards ...`.
#[derive(Debug, Subcommand)]
pub enum RewardsCommand {
    /// Mint pending rewards into the stake and withdraw everything unlocked; with --fees, also
    /// the node's accrued policy fees (ETH).
    ///
    /// Example: kms rewards withdraw --fees
    Withdraw {
        /// Also withdraw the accrued fees.
        #[arg(long)]
        fees: bool,
    },
}

/// The chain and wallet flags of the staking commands.
#[derive(Debug, Args)]
pub struct Connection {
    #[command(flatten)]
    pub chain: ChainArgs,
    #[command(flatten)]
    pub wallet: WalletArgs,
}

async fn connect(connection: &Connection, needs_account: bool) -> Result<Chain> {
    let signer = if needs_account {
        Some(connection.wallet.require()?)
    } else {
        connection.wallet.signer()?
    };
    Chain::connect(&connection.chain, signer).await
}

/// Runs a `kms stake` command.
pub async fn run(command: StakeCommand, connection: Connection) -> Result<()> {
    let read_only = matches!(command, StakeCommand::Status { .. });
    let chain = connect(&connection, !read_only).await?;
    let d = chain.deployment.clone();
    let provider = &chain.provider;
    let escrow = d.staking_escrow(provider);
    match command {
        StakeCommand::Deposit { amount, periods } => {
            let amount = parse_tokens(&amount)?;
            let staker = chain.account()?;
            let token = d.token(provider);
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
            send("deposit", escrow.deposit(amount, U256::from(periods))).await?;
        }
        StakeCommand::Prolong { index, periods } => {
            send(
                "prolong",
                escrow.prolong(U256::from(index), U256::from(periods)),
            )
            .await?;
        }
        StakeCommand::Divide {
            index,
            amount,
            periods,
        } => {
            let amount = parse_tokens(&amount)?;
            send(
                "divide",
                escrow.divide(U256::from(index), amount, U256::from(periods)),
            )
            .await?;
        }
        StakeCommand::Merge { index, merged } => {
            send("merge", escrow.merge(U256::from(index), U256::from(merged))).await?;
        }
        StakeCommand::Withdraw { amount, all } => {
            let amount = match (amount, all) {
                (Some(amount), false) => parse_tokens(&amount)?,
                (None, true) => unlocked(&chain).await?,
                _ => bail!("pass --amount KMS or --all"),
            };
            if amount.is_zero() {
                bail!(
                    "nothing is withdrawable yet: a sub-stake is held for the evidence window \
                     (evidenceWindow periods) after its last period"
                );
            }
            send("withdraw", escrow.withdraw(amount)).await?;
        }
        StakeCommand::BondWorker { worker } => {
            send("bondWorker", escrow.bondWorker(worker)).await?;
            if !worker.is_zero() && worker != chain.account()? {
                eprintln!(
                    "proposed worker {worker}: the bond takes effect when the worker accepts it \
                     (`kms node run` with that worker key does so when it starts)"
                );
            }
        }
        StakeCommand::SetMinFeeRate { rate } => {
            let rate = parse_wei(&rate)?;
            send(
                "setMinFeeRate",
                d.policy_manager(provider).setMinFeeRate(rate),
            )
            .await?;
        }
        StakeCommand::Status {
            staker,
            periods,
            json,
        } => {
            let staker = match staker {
                Some(s) => s,
                None => chain
                    .account
                    .context("pass --staker ADDRESS (or an account)")?,
            };
            status(&chain, staker, periods, json).await?;
        }
    }
    Ok(())
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

/// Runs a `kms rewards` command.
pub async fn run_rewards(command: RewardsCommand, connection: Connection) -> Result<()> {
    let chain = connect(&connection, true).await?;
    let d = chain.deployment.clone();
    let escrow = d.staking_escrow(&chain.provider);
    let staker = chain.account()?;
    match command {
        RewardsCommand::Withdraw { fees } => {
            if !escrow.pendingReward(staker).call().await?.is_zero() {
                send("mint", escrow.mint()).await?;
            }
            let amount = unlocked(&chain).await?;
            if amount.is_zero() {
                eprintln!("no unlocked tokens to withdraw");
            } else {
                send("withdraw", escrow.withdraw(amount)).await?;
                println!("withdrew {} KMS", format_tokens(amount));
            }
            if fees {
                let manager = d.policy_manager(&chain.provider);
                let accrued = manager.fees(staker).call().await?;
                if accrued.is_zero() {
                    eprintln!("no fees accrued");
                } else {
                    send("withdrawFees", manager.withdrawFees(staker)).await?;
                    println!("withdrew {} ETH of fees", format_eth(accrued));
                }
            }
        }
    }
    Ok(())
}

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
            "nodeUrl": record.url,
            "ethBalanceWei": balance.to_string(),
        }));
    }
    println!("staker            {staker}");
    println!("current period    {current}");
    println!("staked            {} KMS", format_tokens(info.value));
    println!("locked now        {} KMS", format_tokens(info.lockedNow));
    println!("held (not withdrawable) {} KMS", format_tokens(held));
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

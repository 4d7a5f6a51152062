//! A staker joins the network with kms-contracts' bindings: it receives tokens (from the
//! devnet's deployer, which holds the supply), approves the escrow, deposits a sub-stake locked
//! for the minimum number of periods, and bonds a worker in two steps: the staker proposes it
//! (`bondWorker`), the worker accepts (`acceptWorker`).
//!
//! The worker is a fresh key here; to serve, it would run a node (`kms node init` and
//! `kms node run` with its key, docs/node.md). Every call goes through the deployment's typed
//! contract instances; a revert comes back as the contract's custom error.
//!
//! ```sh
//! cargo run -p kms-examples --example staker
//! ```

use alloy::{
    network::TransactionBuilder, primitives::U256, providers::Provider,
    rpc::types::TransactionRequest, signers::local::PrivateKeySigner,
};
use anyhow::{ensure, Result};
use kms_examples::{deployment, provider, send, signer, DEV_DEPLOYER_KEY, DEV_STAKER_KEY};

#[tokio::main]
async fn main() -> Result<()> {
    let deployment = deployment()?;
    let staker = signer("STAKER_KEY", DEV_STAKER_KEY)?;
    let worker = PrivateKeySigner::random();
    let as_deployer = provider(signer("DEPLOYER_KEY", DEV_DEPLOYER_KEY)?).await?;
    let as_staker = provider(staker.clone()).await?;
    let as_worker = provider(worker.clone()).await?;
    let escrow = deployment.staking_escrow(&as_staker);

    let amount = deployment.min_stake;
    let periods = U256::from(deployment.min_lock_periods);
    send(
        "transfer tokens to the staker",
        deployment
            .token(&as_deployer)
            .transfer(staker.address(), amount),
    )
    .await?;
    // The worker pays the gas of its acceptance (and, as a node, of its commitments).
    let gas_money = TransactionRequest::default()
        .with_to(worker.address())
        .with_value(U256::from(10u64).pow(U256::from(18u64)));
    let funded = as_deployer
        .send_transaction(gas_money)
        .await?
        .get_receipt()
        .await?;
    ensure!(funded.status(), "sending the worker 1 ETH failed");

    send(
        "approve",
        deployment
            .token(&as_staker)
            .approve(deployment.staking_escrow, amount),
    )
    .await?;
    send("deposit", escrow.deposit(amount, periods)).await?;
    send("bondWorker", escrow.bondWorker(worker.address())).await?;
    send(
        "acceptWorker",
        deployment
            .staking_escrow(&as_worker)
            .acceptWorker(staker.address()),
    )
    .await?;

    let next = escrow.currentPeriod().call().await? + U256::from(1);
    let locked = escrow.lockedAt(staker.address(), next).call().await?;
    let bonded = escrow.workerOf(staker.address()).call().await?;
    ensure!(bonded == worker.address(), "the worker is not bonded");
    println!("staker  {}", staker.address());
    println!("worker  {} (bonded)", worker.address());
    println!("locked  {locked} token units in period {next} (a deposit locks from now for {periods} periods)");
    Ok(())
}

//! Alice grants Bob access with kms-client: she samples 3 nodes by stake, pays a 2-of-3 policy
//! on chain for 3 periods, and hands each node its kfrag; the policy file she writes is what
//! Enrico encrypts to (its public key) and what Bob retrieves with.
//!
//! `Client::plan_grant` only reads the chain (the nodes it would pick, the fee): Alice can
//! check the plan before `Client::execute_grant` sends anything. Her Umbral key, Bob's (standing
//! in for Bob giving Alice his public key) and Enrico's (standing in for Enrico giving her his
//! sender key, which the policy file lists as its only authorized sender) are created in the
//! examples' directory on first use.
//!
//! ```sh
//! cargo run -p kms-examples --example alice_grant
//! ```

use alloy::{primitives::U256, providers::Provider};
use anyhow::{ensure, Context, Result};
use kms_client::GrantRequest;
use kms_examples::{
    client, signer, umbral_key, work_dir, ALICE_UMBRAL_FILE, BOB_UMBRAL_FILE, DEV_ALICE_KEY,
    ENRICO_UMBRAL_FILE, POLICY_FILE,
};

/// The policy's label: Alice's delegating key for it is derived from her master secret.
const LABEL: &str = "kms-examples";
/// 0.001 ETH per node per period, as in `kms devnet --demo`.
const FEE_RATE_WEI: u64 = 1_000_000_000_000_000;
const PERIODS: u64 = 3;

#[tokio::main]
async fn main() -> Result<()> {
    let alice = umbral_key(ALICE_UMBRAL_FILE)?;
    let bob = umbral_key(BOB_UMBRAL_FILE)?;
    let enrico = umbral_key(ENRICO_UMBRAL_FILE)?;
    let account = signer("ALICE_KEY", DEV_ALICE_KEY)?;
    let client = client(account.clone()).await?;

    let now = client
        .provider()
        .get_block_by_number(Default::default())
        .await?
        .context("no latest block")?
        .header
        .timestamp;
    let seconds_per_period = client.deployment().seconds_per_period;
    let request = GrantRequest {
        label: LABEL.to_owned(),
        owner: account.address(),
        creator: account.address(),
        delegating_key: alice.delegating_key(LABEL).public_key(),
        verifying_key: alice.signing_key().public_key(),
        receiving_key: bob.receiving_key().public_key(),
        senders: vec![enrico.sender_key().public_key()],
        threshold: 2,
        shares: 3,
        // Periods are whole: the policy ends at a period boundary.
        end_timestamp: (now / seconds_per_period + PERIODS) * seconds_per_period,
        fee_rate: U256::from(FEE_RATE_WEI),
        seed: now,
        salt: None,
    };
    let plan = client.plan_grant(&request).await?;
    println!(
        "plan: policy {}, {} periods, {} wei",
        plan.policy.policy_id_hex(),
        plan.periods,
        plan.total_fee
    );
    for node in &plan.policy.nodes {
        println!("  node {}  {}", node.staker, node.url);
    }

    let outcome = client
        .execute_grant(&plan, &alice.delegating_key(LABEL), &alice.signing_key())
        .await?;
    for upload in &outcome.uploads {
        println!("  kfrag -> {}: {:?}", upload.node.staker, upload.result);
    }
    ensure!(
        outcome.is_usable(),
        "fewer nodes than the threshold took their kfrag"
    );
    let path = work_dir()?.join(POLICY_FILE);
    outcome.policy.save(&path)?;
    println!("paid {} wei in {}", outcome.paid, outcome.tx_hash);
    println!("policy file {}", path.display());
    Ok(())
}

//! `ChainDirectory` against the real contracts on anvil: a staked node, a policy naming it, and
//! its revocation (whose facts of creation stay). Needs `forge build` artifacts and `npm ci` (for anvil and forge).

use alloy::{
    primitives::{FixedBytes, U256},
    providers::Provider,
};
use anyhow::{ensure, Context, Result};
use kms_contracts::test_utils::accounts::{ALICE, STAKER, WORKER};
use kms_contracts::test_utils::TestChain;
use kms_node::{Arrangement, ChainDirectory, PolicyDirectory};

const SECONDS_PER_PERIOD: u64 = 3600;
const KFRAG_SIGNER: usize = 4;

#[tokio::test]
async fn chain_directory_follows_a_policy_to_its_revocation() -> Result<()> {
    let chain = TestChain::start(SECONDS_PER_PERIOD).await?;
    let d = chain.deployment().clone();
    let staker = chain.address(STAKER)?;
    let (alice, kfrag_signer) = (chain.address(ALICE)?, chain.address(KFRAG_SIGNER)?);

    // Stake the minimum for the minimum lock and bond a worker.
    chain.stake_minimum(STAKER, WORKER).await?;

    let reader = chain.read_provider();
    let directory = ChainDirectory::new(reader.clone(), d.policy_manager, d.start_block);
    let salt = [0x5a; 16];
    let policy_id = kms_crypto::policy_id_of(alice, salt);
    assert_eq!(directory.kfrag_signer(policy_id).await?, None);
    assert_eq!(directory.arrangement(policy_id).await?, None);

    // Alice creates a policy for two periods at 1 gwei per node and period.
    let latest = reader
        .get_block_by_number(Default::default())
        .await?
        .context("no latest block")?;
    let current = latest.header.timestamp / SECONDS_PER_PERIOD;
    let end = (current + 2) * SECONDS_PER_PERIOD;
    let periods = 2u64;
    let nodes = vec![staker];
    let as_alice = chain.provider(ALICE)?;
    let manager = d.policy_manager(&as_alice);
    let receipt = manager
        .createPolicy(
            FixedBytes(salt),
            alice,
            kfrag_signer,
            U256::from(end),
            nodes.clone(),
        )
        .value(U256::from(1_000_000_000u64 * periods * nodes.len() as u64))
        .send()
        .await?
        .get_receipt()
        .await?;
    ensure!(receipt.status(), "createPolicy reverted");

    assert_eq!(directory.kfrag_signer(policy_id).await?, Some(kfrag_signer));
    assert_eq!(
        directory.arrangement(policy_id).await?,
        Some(Arrangement {
            nodes: nodes.clone(),
            end_timestamp: end,
            owner: alice,
        })
    );
    // Another policy id is still unknown.
    assert_eq!(directory.arrangement([0x5b; 16]).await?, None);

    // Alice revokes: the facts of its creation stay (the node refuses a revoked policy from
    // its head view, not from the directory).
    let receipt = manager
        .revokePolicy(FixedBytes(policy_id), nodes.clone())
        .send()
        .await?
        .get_receipt()
        .await?;
    ensure!(receipt.status(), "revokePolicy reverted");
    assert_eq!(directory.kfrag_signer(policy_id).await?, Some(kfrag_signer));
    assert!(directory.arrangement(policy_id).await?.is_some());
    Ok(())
}

//! End-to-end checks of the bindings against the real contracts: deployed on a fresh anvil by
//! `script/Deploy.s.sol`, loaded back from the deployments file the script wrote.
//!
//! Needs `forge build` artifacts (for the bindings) and `npm ci` (for anvil and forge).

use alloy::{
    primitives::{Address, U256},
    providers::Provider,
};
use anyhow::{ensure, Context, Result};
use kms_contracts::test_utils::accounts::{DEPLOYER, STAKER, WORKER};
use kms_contracts::{
    test_utils::TestChain,
    KMSToken::{self, KMSTokenErrors},
    PolicyManager,
    StakingEscrow::{self, StakingEscrowErrors},
};

/// Long periods, so that no period boundary falls inside a test and shifts `currentPeriod()`.
const SECONDS_PER_PERIOD: u64 = 3600;

/// A dev account with no role in the deployment (the shared roles are in `accounts`).
const OUTSIDER: usize = 3;

#[tokio::test]
async fn deployment_file_matches_the_linked_contracts() -> Result<()> {
    let chain = TestChain::start(SECONDS_PER_PERIOD).await?;
    let d = chain.deployment();
    let provider = chain.read_provider();
    let token = d.token(&provider);
    let escrow = d.staking_escrow(&provider);
    let policy_manager = d.policy_manager(&provider);

    assert_eq!(d.deployer, chain.address(DEPLOYER)?);
    assert_eq!(d.chain_id, provider.get_chain_id().await?);
    assert_eq!(d.seconds_per_period, SECONDS_PER_PERIOD);
    assert!(d.has_adjudicator());

    // The links the script makes, read back through the bindings.
    assert_eq!(token.minter().call().await?, d.staking_escrow);
    assert_eq!(escrow.token().call().await?, d.token);
    assert_eq!(escrow.policyManager().call().await?, d.policy_manager);
    assert_eq!(policy_manager.escrow().call().await?, d.staking_escrow);
    assert_eq!(escrow.owner().call().await?, d.deployer);
    assert_eq!(escrow.adjudicator().call().await?, d.adjudicator);
    let adjudicator = d.adjudicator(&provider);
    assert_eq!(adjudicator.escrow().call().await?, d.staking_escrow);
    assert_eq!(adjudicator.policyManager().call().await?, d.policy_manager);

    // The parameters in the file are the escrow's immutables.
    assert_eq!(
        escrow.secondsPerPeriod().call().await?,
        U256::from(SECONDS_PER_PERIOD)
    );
    assert_eq!(
        policy_manager.secondsPerPeriod().call().await?,
        U256::from(SECONDS_PER_PERIOD)
    );
    assert_eq!(escrow.minStake().call().await?, d.min_stake);
    assert_eq!(escrow.maxStake().call().await?, d.max_stake);
    assert_eq!(
        escrow.minLockPeriods().call().await?,
        U256::from(d.min_lock_periods)
    );
    assert_eq!(
        escrow.maxLockPeriods().call().await?,
        U256::from(d.max_lock_periods)
    );
    assert_eq!(
        escrow.minWorkerPeriods().call().await?,
        U256::from(d.min_worker_periods)
    );
    assert_eq!(escrow.issuanceRate().call().await?, d.issuance_rate);

    // The deployer holds the whole initial supply; the rest of the cap is the escrow's reserve.
    let supply = token.totalSupply().call().await?;
    assert_eq!(token.balanceOf(d.deployer).call().await?, supply);
    assert_eq!(
        supply + escrow.unallocatedReserve().call().await?.to::<U256>(),
        token.cap().call().await?
    );
    Ok(())
}

#[tokio::test]
async fn stake_bond_and_commit() -> Result<()> {
    let chain = TestChain::start(SECONDS_PER_PERIOD).await?;
    let d = chain.deployment().clone();
    let (staker, worker) = (chain.address(STAKER)?, chain.address(WORKER)?);
    let amount = d.min_stake;
    let periods = U256::from(d.min_lock_periods);

    // The deployer funds the staker.
    let deployer = chain.provider(DEPLOYER)?;
    let receipt = d
        .token(&deployer)
        .transfer(staker, amount)
        .send()
        .await?
        .get_receipt()
        .await?;
    ensure!(receipt.status(), "transfer reverted: {receipt:?}");

    // The staker approves and deposits the minimum stake for the minimum lock.
    let as_staker = chain.provider(STAKER)?;
    let token = d.token(&as_staker);
    let escrow = d.staking_escrow(&as_staker);
    let receipt = token
        .approve(d.staking_escrow, amount)
        .send()
        .await?
        .get_receipt()
        .await?;
    ensure!(receipt.status(), "approve reverted: {receipt:?}");
    let receipt = escrow
        .deposit(amount, periods)
        .send()
        .await?
        .get_receipt()
        .await?;
    ensure!(receipt.status(), "deposit reverted: {receipt:?}");
    let deposited = receipt
        .decoded_log::<StakingEscrow::Deposited>()
        .context("no Deposited event")?;
    assert_eq!(deposited.address, d.staking_escrow);
    assert_eq!(deposited.staker, staker);
    assert_eq!(deposited.amount, amount);
    assert_eq!(token.balanceOf(staker).call().await?, U256::ZERO);
    assert_eq!(escrow.stakeOf(staker).call().await?, amount);

    // The staker proposes a separate worker account, which accepts: bonding takes both.
    let receipt = escrow
        .bondWorker(worker)
        .send()
        .await?
        .get_receipt()
        .await?;
    ensure!(receipt.status(), "bondWorker reverted: {receipt:?}");
    assert_eq!(escrow.pendingWorker(staker).call().await?, worker);
    assert_eq!(escrow.workerOf(staker).call().await?, Address::ZERO);
    let receipt = d
        .staking_escrow(&chain.provider(WORKER)?)
        .acceptWorker(staker)
        .send()
        .await?
        .get_receipt()
        .await?;
    ensure!(receipt.status(), "acceptWorker reverted: {receipt:?}");
    assert_eq!(escrow.workerOf(staker).call().await?, worker);
    assert_eq!(escrow.stakerOf(worker).call().await?, staker);

    // The worker commits its staker to the next period.
    let as_worker = chain.provider(WORKER)?;
    let current = escrow.currentPeriod().call().await?;
    let receipt = d
        .staking_escrow(&as_worker)
        .commitToNextPeriod()
        .send()
        .await?
        .get_receipt()
        .await?;
    ensure!(receipt.status(), "commitToNextPeriod reverted: {receipt:?}");
    let commitment = receipt
        .decoded_log::<StakingEscrow::CommitmentMade>()
        .context("no CommitmentMade event")?;
    assert_eq!(commitment.address, d.staking_escrow);
    assert_eq!(commitment.staker, staker);
    assert_eq!(commitment.period, current + U256::from(1));
    assert_eq!(commitment.locked, amount);

    // The escrow's view of the staker agrees with the event...
    let info = escrow.getStakerInfo(staker).call().await?;
    assert_eq!(info.value, amount);
    assert_eq!(info.worker, worker);
    assert_eq!(info.lastCommittedPeriod, commitment.period);
    assert!(info.commitPeriods.contains(&commitment.period), "{info:?}");
    assert!(info.commitLocked.contains(&amount), "{info:?}");
    // ...and the escrow told the policy manager.
    let policy_manager = d.policy_manager(&as_worker);
    assert!(
        policy_manager
            .isCommitted(staker, commitment.period)
            .call()
            .await?
    );
    Ok(())
}

#[tokio::test]
async fn reverts_decode_as_custom_errors() -> Result<()> {
    let chain = TestChain::start(SECONDS_PER_PERIOD).await?;
    let d = chain.deployment().clone();
    let outsider = chain.address(OUTSIDER)?;
    let as_outsider = chain.provider(OUTSIDER)?;
    let escrow = d.staking_escrow(&as_outsider);
    let below = d.min_stake - U256::from(1);
    let periods = U256::from(d.min_lock_periods);

    // A call (eth_call) that reverts: the revert data decodes to the error and its arguments.
    let err = escrow
        .deposit(below, periods)
        .call()
        .await
        .expect_err("deposit below the minimum stake must revert");
    let decoded = err
        .as_decoded_error::<StakingEscrow::StakingEscrow_AmountBelowMinStake>()
        .with_context(|| format!("not AmountBelowMinStake: {err:?}"))?;
    assert_eq!(decoded.amount, below);
    assert_eq!(decoded.minStake, d.min_stake);

    // A transaction that would revert fails at gas estimation, with the same revert data; the
    // contract's error enum tells the errors apart.
    let err = escrow
        .deposit(below, periods)
        .send()
        .await
        .expect_err("deposit below the minimum stake must revert");
    match err.as_decoded_interface_error::<StakingEscrowErrors>() {
        Some(StakingEscrowErrors::StakingEscrow_AmountBelowMinStake(e)) => {
            assert_eq!((e.amount, e.minStake), (below, d.min_stake));
        }
        other => panic!("expected StakingEscrow_AmountBelowMinStake, got {other:?} from {err:?}"),
    }

    // An account that is no worker cannot commit.
    let err = escrow
        .commitToNextPeriod()
        .call()
        .await
        .expect_err("not a worker");
    assert_eq!(
        err.as_decoded_interface_error::<StakingEscrowErrors>(),
        Some(StakingEscrowErrors::StakingEscrow_NotAWorker(
            StakingEscrow::StakingEscrow_NotAWorker { account: outsider }
        ))
    );

    // Errors inherited from OpenZeppelin are part of the token's ABI too.
    let token = KMSToken::new(d.token, &as_outsider);
    let err = token
        .transfer(Address::repeat_byte(0x11), U256::from(1))
        .call()
        .await
        .expect_err("the outsider holds no tokens");
    match err.as_decoded_interface_error::<KMSTokenErrors>() {
        Some(KMSTokenErrors::ERC20InsufficientBalance(e)) => {
            assert_eq!(
                (e.sender, e.balance, e.needed),
                (outsider, U256::ZERO, U256::from(1))
            );
        }
        other => panic!("expected ERC20InsufficientBalance, got {other:?} from {err:?}"),
    }

    // Only the escrow may report commitments to the policy manager.
    let policy_manager = PolicyManager::new(d.policy_manager, &as_outsider);
    let err = policy_manager
        .recordCommitment(outsider, U256::from(1))
        .call()
        .await
        .expect_err("not the escrow");
    assert_eq!(
        err.as_decoded_error::<PolicyManager::PolicyManager_CallerNotEscrow>(),
        Some(PolicyManager::PolicyManager_CallerNotEscrow { caller: outsider })
    );
    Ok(())
}

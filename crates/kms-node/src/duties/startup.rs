//! The start-up duties: accepting the staker's bond proposal and publishing the node record.
//! Each is a transaction at most once per key through the exactly-once
//! [`TxSender`](crate::tx::TxSender), run by [`crate::daemon::start`] before the services start
//! (a node that is not bonded, or whose record is not on chain, is not started; meanwhile its
//! API answers 503 with the step it is at).

use alloy::{
    eips::BlockId,
    primitives::{keccak256, Address, Bytes},
    providers::DynProvider,
    sol_types::SolCall,
};
use kms_contracts::{describe_contract_error, StakingEscrow};

use crate::{
    api::Gate,
    settings::{DaemonError, Settings},
    store::DutyRecord,
    tx::TxSender,
};

fn contract(e: &alloy::contract::Error) -> DaemonError {
    DaemonError::Chain(describe_contract_error(e))
}

/// Checks that the worker is bonded to the configured staker, and accepts the staker's pending
/// proposal if that is all that is missing (bonding takes the worker's consent).
pub(crate) async fn accept_bond(
    provider: &DynProvider,
    sender: &TxSender<DynProvider>,
    settings: &Settings,
    gate: &Gate,
) -> Result<(), DaemonError> {
    let worker = settings.worker.address();
    let escrow = StakingEscrow::new(settings.deployment.staking_escrow, provider);
    let bonded_to = || async {
        escrow
            .stakerOf(worker)
            .block(BlockId::latest())
            .call()
            .await
            .map_err(|e| contract(&e))
    };
    let not_bonded = |bonded_to| DaemonError::NotBonded {
        worker,
        staker: settings.staker,
        bonded_to,
    };
    let current = bonded_to().await?;
    if current == settings.staker {
        return Ok(());
    }
    let proposed = escrow
        .pendingWorker(settings.staker)
        .block(BlockId::latest())
        .call()
        .await
        .map_err(|e| contract(&e))?;
    if !current.is_zero() || proposed != worker {
        return Err(not_bonded(current));
    }
    let input = StakingEscrow::acceptWorkerCall {
        staker: settings.staker,
    }
    .abi_encode();
    // A later proposal of the same worker comes after another (un)bonding: a new duty.
    let bonded_period = worker_bonded_period(provider, settings).await?;
    let duty = format!("accept-bond/{}/{bonded_period}", settings.staker);
    run_setup_tx(
        sender,
        &duty,
        settings.deployment.staking_escrow,
        input,
        "accepting the bond",
        gate,
    )
    .await?;
    tracing::info!(staker = %settings.staker, "bond to the staker accepted");
    match bonded_to().await? {
        staker if staker == settings.staker => Ok(()),
        other => Err(not_bonded(other)),
    }
}

/// The period the staker's current worker was bonded in: part of the start-up duties' keys, so
/// that a duty of an earlier bond is never mistaken for one of this bond.
async fn worker_bonded_period(
    provider: &DynProvider,
    settings: &Settings,
) -> Result<u32, DaemonError> {
    Ok(
        StakingEscrow::new(settings.deployment.staking_escrow, provider)
            .getStakerInfo(settings.staker)
            .block(BlockId::latest())
            .call()
            .await
            .map_err(|e| contract(&e))?
            .workerBondedPeriod
            .saturating_to(),
    )
}

/// Sends a start-up transaction through the exactly-once sender and waits, however long it
/// takes, for it to be `confirmations` deep: an idle devnet mines a block only with a
/// transaction, and giving up would only make the next start wait for the same transaction.
/// Meanwhile the API's 503 says which transaction the node waits for.
async fn run_setup_tx(
    sender: &TxSender<DynProvider>,
    duty: &str,
    to: Address,
    input: Vec<u8>,
    what: &str,
    gate: &Gate,
) -> Result<(), DaemonError> {
    loop {
        match sender.run(duty, to, input.clone().into()).await {
            Ok(DutyRecord::Done { .. }) => return Ok(()),
            Ok(other) => return Err(DaemonError::Chain(format!("{what} failed: {other:?}"))),
            Err(crate::tx::TxError::Pending(tx_hash)) => {
                let phase = format!(
                    "{what}: waiting for transaction {tx_hash} to be {} blocks deep (a chain \
                     that mines only on transactions, like an idle anvil, needs more blocks; \
                     `confirmations` in the node's configuration sets the depth)",
                    sender.confirmations()
                );
                tracing::warn!(%phase, "still starting");
                gate.set_phase(phase);
            }
            Err(e) => return Err(DaemonError::Chain(format!("{what}: {e}"))),
        }
    }
}

/// Publishes the node record (URL, Umbral key) unless the chain has exactly it already.
pub(crate) async fn publish_node_record(
    provider: &DynProvider,
    sender: &TxSender<DynProvider>,
    settings: &Settings,
    url: &str,
    gate: &Gate,
) -> Result<(), DaemonError> {
    let escrow = StakingEscrow::new(settings.deployment.staking_escrow, provider);
    let key = Bytes::from(
        settings
            .umbral
            .public_key()
            .to_compressed_bytes()
            .into_vec(),
    );
    let current = escrow
        .nodeRecordOf(settings.staker)
        .block(BlockId::latest())
        .call()
        .await
        .map_err(|e| contract(&e))?;
    if current.url == url && current.umbralPublicKey == key {
        return Ok(());
    }
    let input = StakingEscrow::publishNodeRecordCall {
        url: url.to_owned(),
        umbralPublicKey: key.clone(),
    }
    .abi_encode();
    // One duty per distinct record: a restart with the same record resumes the same transaction.
    let mut preimage = url.as_bytes().to_vec();
    preimage.extend_from_slice(&key);
    // Bonding a worker clears the record: the bonding period tells a cleared record from ours.
    let bonded_period = worker_bonded_period(provider, settings).await?;
    let duty = format!(
        "record/{}/{bonded_period}",
        &keccak256(&preimage).to_string()[2..18]
    );
    gate.set_phase("publishing the node record");
    run_setup_tx(
        sender,
        &duty,
        settings.deployment.staking_escrow,
        input,
        "publishing the node record",
        gate,
    )
    .await?;
    tracing::info!(url, "node record published");
    Ok(())
}

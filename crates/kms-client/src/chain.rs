//! Transactions and their errors: every transaction is simulated with `eth_call` before it is
//! sent, and the contracts' custom errors are turned into sentences.
//!
//! Why simulate first: alloy's provider caches nonces, and a `send()` that fails at gas
//! estimation has already taken one, so the account's next transaction would wait forever for
//! the missing nonce. The simulation also yields the decoded custom error, which a failed gas
//! estimate does not always carry.

use std::time::Duration;

use alloy::{
    contract::{CallBuilder, CallDecoder},
    primitives::B256,
    providers::Provider,
    rpc::types::TransactionReceipt,
};
use kms_contracts::{
    Adjudicator::AdjudicatorErrors, PolicyManager::PolicyManagerErrors,
    StakingEscrow::StakingEscrowErrors,
};

/// Why something on chain failed.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The RPC endpoint failed or could not be reached.
    #[error("{what}: the RPC endpoint failed: {reason} (check --rpc-url / ETH_RPC_URL and that the endpoint is up)")]
    Rpc {
        /// What was being done.
        what: String,
        /// The transport's error.
        reason: String,
    },
    /// The call reverts; `reason` is the decoded custom error when there is one.
    #[error("{what} would revert: {reason}")]
    Reverted {
        /// What was being done.
        what: String,
        /// Why, in words.
        reason: String,
    },
    /// The transaction was sent but its receipt could not be had.
    #[error("{what}: transaction {tx} was sent but its receipt did not come: {reason}; check it with `cast receipt {tx}` before trying again")]
    Receipt {
        /// What was being done.
        what: String,
        /// The transaction hash.
        tx: B256,
        /// Why.
        reason: String,
    },
    /// The transaction was mined and failed.
    #[error("{what}: transaction {tx} was mined but reverted (the chain changed since the simulation; try again)")]
    Failed {
        /// What was being done.
        what: String,
        /// The transaction hash.
        tx: B256,
    },
    /// The receipt lacks the event the transaction must emit.
    #[error("{what}: transaction {tx} succeeded but emitted no {event} event (is the deployments file right?)")]
    MissingEvent {
        /// What was being done.
        what: String,
        /// The transaction hash.
        tx: B256,
        /// The event.
        event: &'static str,
    },
    /// The provider, the deployment and the file at hand disagree on the chain or contracts.
    #[error("{0}")]
    Mismatch(String),
}

impl ChainError {
    pub(crate) fn rpc(what: impl Into<String>, error: impl std::fmt::Display) -> Self {
        Self::Rpc {
            what: what.into(),
            reason: error.to_string(),
        }
    }
}

/// Turns a contract call's error into a [`ChainError`]: a revert, with its custom error decoded
/// by `describe`, or a transport failure.
pub(crate) fn call_error(
    what: &str,
    error: &alloy::contract::Error,
    describe: fn(&alloy::contract::Error) -> Option<String>,
) -> ChainError {
    if let Some(reason) = describe(error) {
        return ChainError::Reverted {
            what: what.to_owned(),
            reason,
        };
    }
    match error.as_revert_data() {
        Some(data) => ChainError::Reverted {
            what: what.to_owned(),
            reason: if data.is_empty() {
                "no reason given".to_owned()
            } else {
                format!("undecoded revert data {data}")
            },
        },
        None => ChainError::rpc(what, error),
    }
}

/// The first `E` event `receipt` holds, or [`ChainError::MissingEvent`] for `what`.
pub(crate) fn event_of<E: alloy::sol_types::SolEvent>(
    what: &str,
    receipt: &TransactionReceipt,
) -> Result<E, ChainError> {
    receipt
        .decoded_log::<E>()
        .map(|log| log.data)
        .ok_or(ChainError::MissingEvent {
            what: what.into(),
            tx: receipt.transaction_hash,
            event: E::SIGNATURE,
        })
}

/// Simulates `call`, then sends it and waits up to `timeout` for a successful receipt; a revert
/// is described by `describe` (e.g. [`any_revert`]).
pub async fn transact<P, D>(
    what: &str,
    call: CallBuilder<P, D>,
    describe: fn(&alloy::contract::Error) -> Option<String>,
    timeout: Duration,
) -> Result<TransactionReceipt, ChainError>
where
    P: Provider,
    D: CallDecoder,
{
    if let Err(e) = call.call().await {
        return Err(call_error(what, &e, describe));
    }
    let pending = call
        .send()
        .await
        .map_err(|e| call_error(what, &e, describe))?;
    let tx = *pending.tx_hash();
    tracing::info!(%what, %tx, "transaction sent");
    let receipt = pending
        .with_timeout(Some(timeout))
        .get_receipt()
        .await
        .map_err(|e| ChainError::Receipt {
            what: what.to_owned(),
            tx,
            reason: e.to_string(),
        })?;
    if !receipt.status() {
        return Err(ChainError::Failed {
            what: what.to_owned(),
            tx,
        });
    }
    Ok(receipt)
}

pub use kms_contracts::errors::{
    describe_adjudicator_error, describe_policy_manager_error, describe_staking_escrow_error,
};

/// Any KMS contract's custom error in words (for [`transact`]).
pub fn any_revert(error: &alloy::contract::Error) -> Option<String> {
    error
        .as_revert_data()
        .and_then(|data| kms_contracts::decode_revert(&data))
}

pub(crate) fn policy_manager_revert(error: &alloy::contract::Error) -> Option<String> {
    error
        .as_decoded_interface_error::<PolicyManagerErrors>()
        .map(|e| describe_policy_manager_error(&e))
}

pub(crate) fn adjudicator_revert(error: &alloy::contract::Error) -> Option<String> {
    if let Some(e) = error.as_decoded_interface_error::<AdjudicatorErrors>() {
        return Some(describe_adjudicator_error(&e));
    }
    error
        .as_decoded_interface_error::<StakingEscrowErrors>()
        .map(|e| describe_staking_escrow_error(&e))
}

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
    primitives::{Address, B256, U256},
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

/// Simulates `call`, then sends it and waits up to `timeout` for a successful receipt.
pub(crate) async fn transact<P, D>(
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

fn ends(timestamp: U256) -> String {
    format!("Unix time {timestamp}")
}

/// The `PolicyManager`'s custom errors in words, with what to do about them.
pub fn describe_policy_manager_error(error: &PolicyManagerErrors) -> String {
    use PolicyManagerErrors as E;
    match error {
        E::PolicyManager_PolicyExists(e) => format!(
            "policy {} already exists: grant again (a new policy id is drawn each time)",
            e.policyId
        ),
        E::PolicyManager_PolicyNotFound(e) => format!(
            "no policy {} on this PolicyManager: check the policy file's chainId and policyManager",
            e.policyId
        ),
        E::PolicyManager_ZeroAddress(e) => format!("the {} address must not be zero", e.name),
        E::PolicyManager_InvalidEnd(e) => format!(
            "the end time {} must be after the chain's time ({}) and fit in 32 bits",
            ends(e.endTimestamp),
            ends(e.nowTimestamp)
        ),
        E::PolicyManager_InvalidNodeCount(e) => format!(
            "{} nodes: a policy takes 1 to {}",
            e.count, e.maxNodes
        ),
        E::PolicyManager_NodesNotSorted(e) => format!(
            "the node list is not strictly ascending at index {}",
            e.index
        ),
        E::PolicyManager_InvalidPayment(e) => format!(
            "the payment {} wei is not a positive multiple of {} nodes x {} periods (a period may have just begun: plan again)",
            e.value, e.nodes, e.periods
        ),
        E::PolicyManager_FeeRateTooHigh(e) => {
            format!("the fee rate {} wei does not fit in 80 bits", e.feeRate)
        }
        E::PolicyManager_FeeRateBelowNodeMinimum(e) => format!(
            "node {} asks at least {} wei per period, the policy offers {}: raise the fee rate or plan again",
            e.node, e.minFeeRate, e.feeRate
        ),
        E::PolicyManager_NodeNotEligible(e) => format!(
            "node {} has no stake locked through period {} or no worker: plan again, or end the policy sooner",
            e.node, e.lastPeriod
        ),
        E::PolicyManager_CallerNotPolicyOwner(e) => format!(
            "only the policy's owner {} may do this, not {}: use the owner's key",
            e.owner, e.caller
        ),
        E::PolicyManager_AlreadyRevoked(e) => {
            if e.node == Address::ZERO {
                format!("policy {} is already revoked", e.policyId)
            } else {
                format!(
                    "node {}'s arrangement of policy {} is already revoked",
                    e.node, e.policyId
                )
            }
        }
        E::PolicyManager_PolicyEnded(e) => format!(
            "policy {} ended at {}: nothing left to revoke (use refund for unworked periods)",
            e.policyId,
            ends(e.endTimestamp)
        ),
        E::PolicyManager_NodeNotInPolicy(e) => {
            format!("node {} is not in policy {}", e.node, e.policyId)
        }
        E::PolicyManager_NodesMismatch(e) => format!(
            "the node list does not match policy {}'s: use the policy file grant wrote",
            e.policyId
        ),
        E::PolicyManager_NothingToPay(_) => {
            "nothing to pay: no unworked settled period to refund yet (try after the current period ends)".to_owned()
        }
        E::PolicyManager_TransferFailed(e) => format!(
            "sending {} wei to {} failed (a contract that refuses ETH?)",
            e.amount, e.recipient
        ),
        other => format!("{other:?}"),
    }
}

/// The `Adjudicator`'s custom errors in words.
pub fn describe_adjudicator_error(error: &AdjudicatorErrors) -> String {
    use AdjudicatorErrors as E;
    match error {
        E::Adjudicator_MalformedEvidence(e) => format!(
            "the evidence is malformed ({}): it was not built from a node's answer",
            e.what
        ),
        E::Adjudicator_AlreadyEvaluated(e) => format!(
            "this cfrag was already evaluated (evidence hash {}): nothing more to report",
            e.evidenceHash
        ),
        E::Adjudicator_PolicyNotFound(e) => format!(
            "no policy {} on the PolicyManager the Adjudicator uses: wrong chain or deployment?",
            e.policyId
        ),
        E::Adjudicator_KfragSignatureMismatch(e) => format!(
            "the cfrag's kfrag was not signed by the policy's kfrag signer {} (recovered {}): the fault cannot be proven on chain",
            e.expected, e.recovered
        ),
        E::Adjudicator_InvalidWorkerSignature(_) => {
            "the worker signature is not a valid low-s 65-byte signature".to_owned()
        }
        E::Adjudicator_UnknownWorker(e) => format!(
            "{} is not a bonded worker: the node may have changed workers since it answered",
            e.signer
        ),
        other => format!("{other:?}"),
    }
}

/// The `StakingEscrow`'s custom errors (the Adjudicator's slash calls it).
pub fn describe_staking_escrow_error(error: &StakingEscrowErrors) -> String {
    format!("{error:?}")
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

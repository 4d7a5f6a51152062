//! Turning a revert into a message a person can act on: the custom error's name and arguments,
//! decoded with the ABI of every KMS contract (and of the OpenZeppelin code they inherit).

use alloy::{
    contract,
    primitives::{Address, Bytes, U256},
    sol_types::{Revert, SolError, SolInterface},
    transports::{RpcError, TransportErrorKind},
};

use crate::bindings::{
    Adjudicator::AdjudicatorErrors, KMSToken::KMSTokenErrors, PolicyManager::PolicyManagerErrors,
    StakingEscrow::StakingEscrowErrors,
};

/// `Outer(Inner { .. })` → `Inner { .. }`: the sol! enums wrap each error in a same-named variant.
fn unwrap_variant(debug: String) -> String {
    match debug.split_once('(') {
        Some((variant, rest)) if rest.starts_with(variant) && rest.ends_with(')') => {
            rest[..rest.len() - 1].to_owned()
        }
        _ => debug,
    }
}

/// The custom error (or `Error(string)` reason) in `data`: in words with what to do for the
/// `PolicyManager` and the `Adjudicator` (what users meet), else its name and arguments, e.g.
/// `StakingEscrow_AlreadyCommitted { period: 5 }`; `None` if no KMS contract declares it.
pub fn decode_revert(data: &[u8]) -> Option<String> {
    if let Ok(e) = StakingEscrowErrors::abi_decode(data) {
        return Some(describe_staking_escrow_error(&e));
    }
    if let Ok(e) = PolicyManagerErrors::abi_decode(data) {
        return Some(describe_policy_manager_error(&e));
    }
    if let Ok(e) = AdjudicatorErrors::abi_decode(data) {
        return Some(describe_adjudicator_error(&e));
    }
    if let Ok(e) = KMSTokenErrors::abi_decode(data) {
        return Some(unwrap_variant(format!("{e:?}")));
    }
    Revert::abi_decode(data).ok().map(|r| r.reason)
}

fn describe(data: Option<Bytes>, fallback: String) -> String {
    match data {
        Some(data) if data.is_empty() => "reverted without a reason".to_owned(),
        Some(data) => match decode_revert(&data) {
            Some(decoded) => format!("reverted: {decoded}"),
            None => format!("reverted with unknown data {data}"),
        },
        None => fallback,
    }
}

/// A contract call's error, with its revert decoded when there is one.
pub fn describe_contract_error(err: &contract::Error) -> String {
    describe(err.as_revert_data(), err.to_string())
}

/// An RPC error (e.g. of `eth_estimateGas`), with its revert decoded when there is one.
pub fn describe_rpc_error(err: &RpcError<TransportErrorKind>) -> String {
    describe(
        err.as_error_resp().and_then(|p| p.as_revert_data()),
        err.to_string(),
    )
}

/// The revert data of an RPC error, if the node returned any.
pub fn rpc_revert_data(err: &RpcError<TransportErrorKind>) -> Option<Bytes> {
    err.as_error_resp().and_then(|p| p.as_revert_data())
}

fn ends(timestamp: U256) -> String {
    format!("Unix time {timestamp}")
}

/// The `PolicyManager`'s custom errors in words, with what to do about them.
pub fn describe_policy_manager_error(error: &PolicyManagerErrors) -> String {
    use PolicyManagerErrors as E;
    match error {
        E::PolicyManager_PolicyExists(e) => format!(
            "policy {} already exists: grant again (a new salt is drawn each time)",
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
        E::Adjudicator_WorkerNotBondedInPeriod(e) => format!(
            "the answer's signer {} was not the worker of staker {} in period {}: the answer cannot be held against that stake",
            e.worker, e.staker, e.period
        ),
        E::Adjudicator_EvidenceExpired(e) => format!(
            "the answer was given in period {}, more than {} periods before the current period {}: too old to judge",
            e.period, e.window, e.currentPeriod
        ),
        E::Adjudicator_PeriodInFuture(e) => format!(
            "the answer names period {}, after the current period {}: report it once that period has started",
            e.period, e.currentPeriod
        ),
        E::Adjudicator_NotCommitted(e) => format!(
            "no commitment {} by this account: commit to the evidence first (commitEvidence), then report from a later block",
            e.commitment
        ),
        E::Adjudicator_RevealTooEarly(e) => format!(
            "the commitment was made in block {}: report from a later block",
            e.committedBlock
        ),
        E::Adjudicator_InvestigatorIsCulprit(e) => format!(
            "{} is the accused staker or one of its workers: another account must report and be paid",
            e.investigator
        ),
        E::Adjudicator_ZeroBeneficiary(_) => {
            "the report names the zero address to be paid: name the account that is to receive the reward"
                .to_owned()
        }
        other => format!("{other:?}"),
    }
}

/// The `StakingEscrow`'s custom errors (the Adjudicator's slash calls it).
pub fn describe_staking_escrow_error(error: &StakingEscrowErrors) -> String {
    unwrap_variant(format!("{error:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::{Adjudicator, StakingEscrow};
    use alloy::primitives::U256;

    #[test]
    fn decodes_custom_errors_and_reasons() {
        let data = StakingEscrow::StakingEscrow_AlreadyCommitted {
            period: U256::from(5),
        }
        .abi_encode();
        assert_eq!(
            decode_revert(&data).as_deref(),
            Some("StakingEscrow_AlreadyCommitted { period: 5 }")
        );
        let reason = Revert::from("nope").abi_encode();
        assert_eq!(decode_revert(&reason).as_deref(), Some("nope"));
        assert_eq!(decode_revert(&[1, 2, 3, 4]), None);
    }

    #[test]
    fn describes_the_adjudicator_errors_in_words() {
        let data = Adjudicator::Adjudicator_ZeroBeneficiary {}.abi_encode();
        assert_eq!(
            decode_revert(&data).as_deref(),
            Some("the report names the zero address to be paid: name the account that is to receive the reward")
        );
        let culprit = Address::repeat_byte(0x11);
        let data = Adjudicator::Adjudicator_InvestigatorIsCulprit {
            investigator: culprit,
        }
        .abi_encode();
        assert!(decode_revert(&data)
            .is_some_and(|text| text.starts_with(&format!("{culprit} is the accused staker"))));
    }
}

//! Turning a revert into a message a person can act on: the custom error's name and arguments,
//! decoded with the ABI of every KMS contract (and of the OpenZeppelin code they inherit).

use alloy::{
    contract,
    primitives::Bytes,
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

/// The custom error (or `Error(string)` reason) in `data`, e.g.
/// `StakingEscrow_AlreadyCommitted { period: 5 }`; `None` if no KMS contract declares it.
pub fn decode_revert(data: &[u8]) -> Option<String> {
    if let Ok(e) = StakingEscrowErrors::abi_decode(data) {
        return Some(unwrap_variant(format!("{e:?}")));
    }
    if let Ok(e) = PolicyManagerErrors::abi_decode(data) {
        return Some(unwrap_variant(format!("{e:?}")));
    }
    if let Ok(e) = AdjudicatorErrors::abi_decode(data) {
        return Some(unwrap_variant(format!("{e:?}")));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::StakingEscrow;
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
}

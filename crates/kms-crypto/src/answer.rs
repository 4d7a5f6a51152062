//! The node's signed answer: for every capsule fragment a node returns, its worker (the Ethereum
//! key bonded to its stake) signs
//!
//! ```text
//! answer_digest = keccak256(abi.encodePacked(
//!     "KMS_CFRAG_ANSWER_V2", uint256 chainId, address adjudicator, address staker,
//!     uint256 period, bytes16 policyId, capsuleSimple, cfragSimple))
//! ```
//!
//! with EIP-191 (`personal_sign` of the 32-byte digest), so that the Adjudicator can hold the
//! node to the cfrag bytes it returned. The answer names the stake that answers for it and the
//! period it was given in: the Adjudicator slashes that stake only if the signer was its worker in
//! that period, and only while the period is within the evidence window. Rebonding the worker
//! afterwards neither dodges the blame nor moves it to another stake.

use alloy::primitives::{keccak256, Address, Signature, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::SignerSync;

use crate::secp256k1::HALF_N;
use crate::umbral::{check_len, layout, UmbralError};

/// The domain tag that starts the packed answer (19 ASCII bytes, no length prefix).
pub const ANSWER_TAG: &[u8; 19] = b"KMS_CFRAG_ANSWER_V2";

/// Length of a worker signature: `r (32) | s (32) | v (1)`, `v` in {27, 28}.
pub const SIGNATURE_LEN: usize = 65;

/// Who answers, where, when and for which policy: everything of an answer's digest but the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerContext {
    /// The chain the Adjudicator runs on.
    pub chain_id: u64,
    /// The Adjudicator that judges the answer.
    pub adjudicator: Address,
    /// The stake that answers for it (the node's staker, the address policies name).
    pub staker: Address,
    /// The period the answer is given in (`block.timestamp / secondsPerPeriod`).
    pub period: u64,
    /// The policy whose kfrag re-encrypted the capsule.
    pub policy_id: [u8; 16],
}

/// Errors of the answer signature.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// The capsule or the cfrag does not have its `to_bytes_simple` length.
    #[error(transparent)]
    Bytes(#[from] UmbralError),
    /// The signature is not 65 bytes.
    #[error("worker signature: expected {SIGNATURE_LEN} bytes, got {0}")]
    SignatureLength(usize),
    /// The signature's `v` byte is not 27 or 28 (the only values the EVM's `ecrecover` takes).
    #[error("worker signature: v must be 27 or 28, got {0}")]
    SignatureV(u8),
    /// The signature's `s` is above `n / 2`: OpenZeppelin's `ECDSA.tryRecover` refuses such a
    /// (malleable) signature, so the Adjudicator does too.
    #[error("worker signature: s is above n / 2 (not a low-s signature)")]
    SignatureS,
    /// No address can be recovered from the signature (r or s out of range, no point for r).
    #[error("worker signature: {0}")]
    Recover(#[from] alloy::primitives::SignatureError),
    /// The signer failed.
    #[error("signing the answer: {0}")]
    Sign(#[from] alloy::signers::Error),
}

/// `keccak256("KMS_CFRAG_ANSWER_V2" || uint256(chain_id) || adjudicator || staker ||
/// uint256(period) || policy_id || capsule_simple || cfrag_simple)`: the packed concatenation,
/// with `chain_id` and `period` as 32 big-endian bytes, the addresses as their 20 bytes, and no
/// length prefixes. The lengths are not checked here (see [`sign_answer`]).
pub fn answer_digest(context: &AnswerContext, capsule_simple: &[u8], cfrag_simple: &[u8]) -> B256 {
    let mut packed = Vec::with_capacity(
        ANSWER_TAG.len() + 32 + 20 + 20 + 32 + 16 + capsule_simple.len() + cfrag_simple.len(),
    );
    packed.extend_from_slice(ANSWER_TAG);
    packed.extend_from_slice(&U256::from(context.chain_id).to_be_bytes::<32>());
    packed.extend_from_slice(context.adjudicator.as_slice());
    packed.extend_from_slice(context.staker.as_slice());
    packed.extend_from_slice(&U256::from(context.period).to_be_bytes::<32>());
    packed.extend_from_slice(&context.policy_id);
    packed.extend_from_slice(capsule_simple);
    packed.extend_from_slice(cfrag_simple);
    keccak256(packed)
}

/// The id `PolicyManager.createPolicy` gives the policy `creator` creates with `salt`:
/// `bytes16(keccak256(abi.encodePacked(creator, salt)))` (`PolicyManager.policyIdOf`).
pub fn policy_id_of(creator: Address, salt: [u8; 16]) -> [u8; 16] {
    let mut packed = [0u8; 36];
    packed[..20].copy_from_slice(creator.as_slice());
    packed[20..].copy_from_slice(&salt);
    let mut id = [0u8; 16];
    id.copy_from_slice(&keccak256(packed)[..16]);
    id
}

fn check_answer(capsule_simple: &[u8], cfrag_simple: &[u8]) -> Result<(), UmbralError> {
    check_len("capsule", capsule_simple, layout::CAPSULE_LEN)?;
    check_len("cfrag", cfrag_simple, layout::CFRAG_LEN)
}

/// Signs the answer with the worker key: EIP-191 over the 32-byte [`answer_digest`]
/// (`keccak256("\x19Ethereum Signed Message:\n32" || digest)`). `Signature::as_bytes()` gives
/// the 65 bytes `r | s | v` with `v` in {27, 28} that go into the evidence.
pub fn sign_answer(
    worker: &PrivateKeySigner,
    context: &AnswerContext,
    capsule_simple: &[u8],
    cfrag_simple: &[u8],
) -> Result<Signature, AnswerError> {
    check_answer(capsule_simple, cfrag_simple)?;
    let digest = answer_digest(context, capsule_simple, cfrag_simple);
    Ok(worker.sign_message_sync(digest.as_slice())?)
}

/// Recovers the address that signed the answer, as the Adjudicator does with OpenZeppelin's
/// `ECDSA.tryRecover`: 65 bytes, a low `s` (at most `n / 2`), `v` 27 or 28, and an `ecrecover`
/// that succeeds; any failure is the contract's `Adjudicator_InvalidWorkerSignature`.
pub fn recover_answer_signer(
    context: &AnswerContext,
    capsule_simple: &[u8],
    cfrag_simple: &[u8],
    signature: &[u8],
) -> Result<Address, AnswerError> {
    check_answer(capsule_simple, cfrag_simple)?;
    let raw: &[u8; SIGNATURE_LEN] = signature
        .try_into()
        .map_err(|_| AnswerError::SignatureLength(signature.len()))?;
    if U256::from_be_slice(&raw[32..64]) > HALF_N {
        return Err(AnswerError::SignatureS);
    }
    let v = raw[64];
    if v != 27 && v != 28 {
        return Err(AnswerError::SignatureV(v));
    }
    let signature = Signature::from_raw_array(raw)?;
    let digest = answer_digest(context, capsule_simple, cfrag_simple);
    Ok(signature.recover_address_from_msg(digest.as_slice())?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use alloy::primitives::{eip191_hash_message, hex};

    fn context() -> AnswerContext {
        AnswerContext {
            chain_id: 31337,
            adjudicator: Address::repeat_byte(0xad),
            staker: Address::repeat_byte(0x5a),
            period: 0x0102_0304,
            policy_id: [0x33; 16],
        }
    }

    #[test]
    fn digest_is_the_packed_concatenation() {
        let capsule = [0x11u8; 98];
        let cfrag = [0x22u8; 359];
        let policy_id = [0x33u8; 16];
        let mut packed = b"KMS_CFRAG_ANSWER_V2".to_vec();
        let mut chain = [0u8; 32];
        chain[30..].copy_from_slice(&31337u16.to_be_bytes());
        packed.extend_from_slice(&chain);
        packed.extend_from_slice(&[0xad; 20]);
        packed.extend_from_slice(&[0x5a; 20]);
        let mut period = [0u8; 32];
        period[28..].copy_from_slice(&[1, 2, 3, 4]);
        packed.extend_from_slice(&period);
        packed.extend_from_slice(&policy_id);
        packed.extend_from_slice(&capsule);
        packed.extend_from_slice(&cfrag);
        assert_eq!(packed.len(), 19 + 32 + 20 + 20 + 32 + 16 + 98 + 359);
        assert_eq!(
            answer_digest(&context(), &capsule, &cfrag),
            keccak256(&packed)
        );
    }

    #[test]
    fn sign_and_recover() {
        // anvil's first account.
        let key = hex!("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80");
        let worker = PrivateKeySigner::from_slice(&key).unwrap();
        let capsule = [0x11u8; 98];
        let cfrag = [0x22u8; 359];
        let signature = sign_answer(&worker, &context(), &capsule, &cfrag).unwrap();
        let bytes = signature.as_bytes();
        assert!(bytes[64] == 27 || bytes[64] == 28);

        // EIP-191 of the 32-byte digest, checked independently of alloy's helper.
        let digest = answer_digest(&context(), &capsule, &cfrag);
        let mut prefixed = b"\x19Ethereum Signed Message:\n32".to_vec();
        prefixed.extend_from_slice(digest.as_slice());
        assert_eq!(keccak256(&prefixed), eip191_hash_message(digest));
        assert_eq!(
            signature
                .recover_address_from_prehash(&keccak256(&prefixed))
                .unwrap(),
            worker.address()
        );

        let recovered = recover_answer_signer(&context(), &capsule, &cfrag, &bytes).unwrap();
        assert_eq!(recovered, worker.address());

        // Another chain, adjudicator, staker or period, or other bytes: another address.
        let others = [
            AnswerContext {
                chain_id: 1,
                ..context()
            },
            AnswerContext {
                adjudicator: Address::ZERO,
                ..context()
            },
            AnswerContext {
                staker: worker.address(),
                ..context()
            },
            AnswerContext {
                period: context().period + 1,
                ..context()
            },
            AnswerContext {
                policy_id: [0x34; 16],
                ..context()
            },
        ];
        for other in others {
            assert_ne!(
                recover_answer_signer(&other, &capsule, &cfrag, &bytes).unwrap(),
                worker.address(),
                "{other:?}"
            );
        }
        let mut other = cfrag;
        other[0] ^= 1;
        assert_ne!(
            recover_answer_signer(&context(), &capsule, &other, &bytes).unwrap(),
            worker.address()
        );

        // A high s (n - s, with the other recovery bit) recovers the same key with plain
        // ecrecover, but OpenZeppelin refuses it.
        let mut high_s = bytes;
        let s = crate::secp256k1::N - U256::from_be_slice(&bytes[32..64]);
        high_s[32..64].copy_from_slice(&s.to_be_bytes::<32>());
        high_s[64] = if bytes[64] == 27 { 28 } else { 27 };
        let flipped = Signature::from_raw_array(&high_s).unwrap();
        assert_eq!(
            flipped.recover_address_from_msg(digest.as_slice()).unwrap(),
            worker.address()
        );
        assert!(matches!(
            recover_answer_signer(&context(), &capsule, &cfrag, &high_s),
            Err(AnswerError::SignatureS)
        ));

        // v must be 27/28; 65 bytes; the right lengths.
        let mut zero_one = bytes;
        zero_one[64] -= 27;
        assert!(matches!(
            recover_answer_signer(&context(), &capsule, &cfrag, &zero_one),
            Err(AnswerError::SignatureV(_))
        ));
        assert!(matches!(
            recover_answer_signer(&context(), &capsule, &cfrag, &bytes[..64]),
            Err(AnswerError::SignatureLength(64))
        ));
        assert!(matches!(
            sign_answer(&worker, &context(), &capsule[..97], &cfrag),
            Err(AnswerError::Bytes(_))
        ));
    }
}

//! Signed revocation orders: the policy owner's EIP-712 signature of
//! `Revocation(bytes16 policyId,address node,uint64 deadline)` in the `PolicyManager`'s domain
//! (`docs/client.md#signed-revocations`).
//!
//! One order does three things: the nodes it names refuse the policy from the moment they hold it
//! (`POST /v1/policies/{id}/revocation`, no transaction), they hand it to anyone who asks (`GET`),
//! and anyone can carry it out on chain (`PolicyManager.revokeBySignature`), which refunds the
//! owner. The node, the client and the contract check the same digest and the same signature
//! rules, all from here on the Rust side.

use alloy::{
    primitives::{Address, FixedBytes, B256, U256},
    signers::{Signature, Signer},
    sol,
    sol_types::{eip712_domain, Eip712Domain, SolStruct},
};
use serde::{Deserialize, Serialize};

use crate::{
    secp256k1::HALF_N,
    wire::{decode_hex, encode_hex, WireError},
};

/// The EIP-712 domain's `name` (the contract's `eip712Domain()`).
pub const DOMAIN_NAME: &str = "KMS PolicyManager";
/// The EIP-712 domain's `version`.
pub const DOMAIN_VERSION: &str = "1";
/// The length of a signature: `r ‖ s ‖ v`.
pub const SIGNATURE_LEN: usize = 65;

sol! {
    /// The signed struct, field for field the contract's `REVOCATION_TYPEHASH`.
    #[derive(Debug, PartialEq, Eq)]
    struct Revocation {
        bytes16 policyId;
        address node;
        uint64 deadline;
    }
}

/// An order that cannot be made or does not hold.
#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    /// The signature is not `r ‖ s ‖ v`, 65 bytes.
    #[error("signature: expected {SIGNATURE_LEN} bytes (r | s | v), got {0}")]
    SignatureLength(usize),
    /// A high `s`: the contract (OpenZeppelin's `ECDSA`) refuses malleable signatures.
    #[error(
        "signature: s is above n/2 (a malleable signature the contract refuses): normalize it"
    )]
    SignatureS,
    /// `v` other than 27 or 28.
    #[error("signature: v must be 27 or 28, got {0}")]
    SignatureV(u8),
    /// No key recovers from the signature.
    #[error("signature: no signer recovers from it: {0}")]
    Unrecoverable(String),
    /// The signer could not sign.
    #[error("signing the revocation order: {0}")]
    Sign(String),
}

/// The EIP-712 domain of the `PolicyManager` at `policy_manager` on chain `chain_id`.
pub fn domain(chain_id: u64, policy_manager: Address) -> Eip712Domain {
    eip712_domain! {
        name: DOMAIN_NAME,
        version: DOMAIN_VERSION,
        chain_id: chain_id,
        verifying_contract: policy_manager,
    }
}

/// Where an order is valid: the chain and the `PolicyManager` (the domain's last two fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderDomain {
    /// The chain id.
    pub chain_id: u64,
    /// The `PolicyManager`.
    pub policy_manager: Address,
}

/// A revocation order, as the owner signed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevocationOrder {
    /// The policy.
    pub policy_id: [u8; 16],
    /// The node (staker) whose arrangement is revoked; zero for the whole policy.
    pub node: Address,
    /// The last second (Unix time, the block's timestamp) it may be carried out on chain.
    pub deadline: u64,
    /// The owner's signature of [`RevocationOrder::digest`]: `r ‖ s ‖ v`, `v` 27 or 28.
    pub signature: [u8; SIGNATURE_LEN],
}

impl RevocationOrder {
    /// The digest the owner signs (`PolicyManager.revocationTypedDataHash`).
    pub fn digest_of(
        domain: OrderDomain,
        policy_id: [u8; 16],
        node: Address,
        deadline: u64,
    ) -> B256 {
        Revocation {
            policyId: FixedBytes(policy_id),
            node,
            deadline,
        }
        .eip712_signing_hash(&self::domain(domain.chain_id, domain.policy_manager))
    }

    /// This order's digest in `domain`.
    pub fn digest(&self, domain: OrderDomain) -> B256 {
        Self::digest_of(domain, self.policy_id, self.node, self.deadline)
    }

    /// Signs the order with `owner` (the policy owner's key; any other key's order is refused
    /// by the nodes and the contract).
    pub async fn sign<S: Signer + ?Sized>(
        owner: &S,
        domain: OrderDomain,
        policy_id: [u8; 16],
        node: Address,
        deadline: u64,
    ) -> Result<Self, RevocationError> {
        let digest = Self::digest_of(domain, policy_id, node, deadline);
        let signature = owner
            .sign_hash(&digest)
            .await
            .map_err(|e| RevocationError::Sign(e.to_string()))?
            // A signer may return a high s; the contract takes the low one only.
            .normalized_s();
        Ok(Self {
            policy_id,
            node,
            deadline,
            signature: signature.as_bytes(),
        })
    }

    /// Whether it revokes the whole policy (rather than one node's arrangement).
    pub fn is_whole_policy(&self) -> bool {
        self.node == Address::ZERO
    }

    /// Whether it revokes what `staker` serves: the whole policy or `staker`'s arrangement.
    pub fn covers(&self, staker: Address) -> bool {
        self.is_whole_policy() || self.node == staker
    }

    /// The address that signed the order in `domain`, under the contract's rules (OpenZeppelin
    /// `ECDSA.tryRecover`: low `s`, `v` 27 or 28). The order holds if it is the policy's owner.
    pub fn signer(&self, domain: OrderDomain) -> Result<Address, RevocationError> {
        let signature = contract_signature(&self.signature)?;
        signature
            .recover_address_from_prehash(&self.digest(domain))
            .map_err(|e| RevocationError::Unrecoverable(e.to_string()))
    }
}

/// A 65-byte `r ‖ s ‖ v` signature as the contract takes it, or why not.
fn contract_signature(raw: &[u8]) -> Result<Signature, RevocationError> {
    let raw: &[u8; SIGNATURE_LEN] = raw
        .try_into()
        .map_err(|_| RevocationError::SignatureLength(raw.len()))?;
    if U256::from_be_slice(&raw[32..64]) > HALF_N {
        return Err(RevocationError::SignatureS);
    }
    let v = raw[64];
    if v != 27 && v != 28 {
        return Err(RevocationError::SignatureV(v));
    }
    Signature::from_raw_array(raw).map_err(|e| RevocationError::Unrecoverable(e.to_string()))
}

/// An order as JSON (`POST /v1/policies/{id}/revocation`'s body, an element of the `GET`'s
/// `orders`, and the file `kms policy revoke --offline --save` writes):
/// `{"policyId": "0x<16 bytes>", "node": "0x<20 bytes>", "deadline": <Unix seconds>,
/// "signature": "0x<65 bytes>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RevocationOrderBody {
    /// The policy id, hex.
    pub policy_id: String,
    /// The node, or the zero address for the whole policy.
    pub node: Address,
    /// Unix seconds.
    pub deadline: u64,
    /// `r ‖ s ‖ v`, hex.
    pub signature: String,
}

impl From<&RevocationOrder> for RevocationOrderBody {
    fn from(order: &RevocationOrder) -> Self {
        Self {
            policy_id: encode_hex(&order.policy_id),
            node: order.node,
            deadline: order.deadline,
            signature: encode_hex(&order.signature),
        }
    }
}

impl RevocationOrderBody {
    /// The order, its fields decoded (the signature is checked by [`RevocationOrder::signer`]).
    pub fn decode(&self) -> Result<RevocationOrder, WireError> {
        let policy_id = decode_hex("policyId", &self.policy_id)?;
        let policy_id = <[u8; 16]>::try_from(policy_id.as_slice()).map_err(|_| WireError {
            field: "policyId".into(),
            reason: format!("expected 16 bytes, got {}", policy_id.len()),
        })?;
        let signature = decode_hex("signature", &self.signature)?;
        let signature =
            <[u8; SIGNATURE_LEN]>::try_from(signature.as_slice()).map_err(|_| WireError {
                field: "signature".into(),
                reason: format!(
                    "expected {SIGNATURE_LEN} bytes (r | s | v), got {}",
                    signature.len()
                ),
            })?;
        Ok(RevocationOrder {
            policy_id,
            node: self.node,
            deadline: self.deadline,
            signature,
        })
    }
}

/// What a node answers to an order it took (`POST /v1/policies/{id}/revocation`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevocationAccepted {
    /// The policy id, hex.
    pub policy_id: String,
    /// Whether the node kept it now (`false`: it held this very order already).
    pub created: bool,
}

/// The orders a node holds for a policy (`GET /v1/policies/{id}/revocation`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevocationOrders {
    /// The orders, the whole-policy one first.
    pub orders: Vec<RevocationOrderBody>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use alloy::{primitives::hex, signers::local::PrivateKeySigner};

    /// The test vector of `docs/client.md#signed-revocations` (also checked against the
    /// contract by `test/unit/SignedRevocation.t.sol`).
    fn vector_domain() -> OrderDomain {
        OrderDomain {
            chain_id: 31337,
            policy_manager: "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"
                .parse()
                .unwrap(),
        }
    }

    const POLICY: [u8; 16] = hex!("5f0c8a4d0e2b1c3d4e5f60718293a4b5");
    const DEADLINE: u64 = 1_767_225_600;

    fn owner() -> PrivateKeySigner {
        "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
            .parse()
            .unwrap()
    }

    #[tokio::test]
    async fn the_documented_vector_is_reproduced() {
        let whole =
            RevocationOrder::sign(&owner(), vector_domain(), POLICY, Address::ZERO, DEADLINE)
                .await
                .unwrap();
        assert_eq!(
            whole.digest(vector_domain()),
            B256::from(hex!(
                "821fd2681af625fdee4c3d17a1ff9f84fe0f296816a4001e1dcc2aa26e44f0bd"
            ))
        );
        assert_eq!(
            whole.signature,
            hex!(
                "6ed62ced21e2e8022d50f694ceb3994d38170a60fefd12e1ba7c21016d0e732d"
                "5f1149bc564729de6d79cf72ca2bee86fcdc689d93899c8bd05549e930df78e3"
                "1b"
            )
        );
        let node: Address = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
            .parse()
            .unwrap();
        let one = RevocationOrder::sign(&owner(), vector_domain(), POLICY, node, DEADLINE)
            .await
            .unwrap();
        assert_eq!(
            one.digest(vector_domain()),
            B256::from(hex!(
                "02915539f4ded432235e96f313112b08c9b4ac87969a77db2345b1154e36b7fc"
            ))
        );
        assert_eq!(one.signature[64], 0x1c);
        assert_eq!(one.signer(vector_domain()).unwrap(), owner().address());
        assert!(one.covers(node) && !one.covers(Address::with_last_byte(1)));
        assert!(whole.is_whole_policy() && whole.covers(node));
    }

    #[tokio::test]
    async fn an_order_holds_in_its_own_domain_only() {
        let order =
            RevocationOrder::sign(&owner(), vector_domain(), POLICY, Address::ZERO, DEADLINE)
                .await
                .unwrap();
        let other_chain = OrderDomain {
            chain_id: 1,
            ..vector_domain()
        };
        assert_ne!(order.signer(other_chain).unwrap(), owner().address());
        let changed = RevocationOrder {
            deadline: DEADLINE + 1,
            ..order
        };
        assert_ne!(changed.signer(vector_domain()).unwrap(), owner().address());
    }

    #[tokio::test]
    async fn signatures_the_contract_refuses_are_refused() {
        let order =
            RevocationOrder::sign(&owner(), vector_domain(), POLICY, Address::ZERO, DEADLINE)
                .await
                .unwrap();
        // The same signature with s' = n - s and v flipped recovers the same key: the contract
        // refuses it, and so must the node.
        let mut high = order;
        let s = U256::from_be_slice(&order.signature[32..64]);
        high.signature[32..64].copy_from_slice(&(crate::secp256k1::N - s).to_be_bytes::<32>());
        high.signature[64] ^= 0x1b ^ 0x1c;
        assert!(matches!(
            high.signer(vector_domain()),
            Err(RevocationError::SignatureS)
        ));
        let mut v = order;
        v.signature[64] = 1;
        assert!(matches!(
            v.signer(vector_domain()),
            Err(RevocationError::SignatureV(1))
        ));
    }

    #[tokio::test]
    async fn the_json_body_round_trips_and_names_bad_fields() {
        let order =
            RevocationOrder::sign(&owner(), vector_domain(), POLICY, Address::ZERO, DEADLINE)
                .await
                .unwrap();
        let body = RevocationOrderBody::from(&order);
        let json = serde_json::to_string(&body).unwrap();
        assert!(
            json.contains("\"policyId\":\"0x5f0c8a4d0e2b1c3d4e5f60718293a4b5\""),
            "{json}"
        );
        let back: RevocationOrderBody = serde_json::from_str(&json).unwrap();
        assert_eq!(back.decode().unwrap(), order);
        let short = RevocationOrderBody {
            signature: "0x1234".into(),
            ..body
        };
        let err = short.decode().unwrap_err();
        assert_eq!(err.field, "signature");
    }
}

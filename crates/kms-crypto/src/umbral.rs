//! Small helpers around umbral-pre 0.11: the layout of `to_bytes_simple`, parsing it back, and
//! the Ethereum address of an umbral key.

use alloy::primitives::{hex, keccak256, Address};
use serde_json::json;
use umbral_pre::{Capsule, CapsuleFrag, PublicKey};

/// Byte layout of `Capsule::to_bytes_simple` and `CapsuleFrag::to_bytes_simple` (umbral-pre
/// 0.11). Points are compressed (33 bytes), scalars big-endian (32 bytes).
pub mod layout {
    use core::ops::Range;

    /// Length of `Capsule::to_bytes_simple`.
    pub const CAPSULE_LEN: usize = 98;
    /// Capsule point `E`.
    pub const E: Range<usize> = 0..33;
    /// Capsule point `V`.
    pub const V: Range<usize> = 33..66;
    /// Capsule signature (scalar).
    pub const CAPSULE_SIGNATURE: Range<usize> = 66..98;

    /// Length of `CapsuleFrag::to_bytes_simple`.
    pub const CFRAG_LEN: usize = 359;
    /// `E1 = rk * E`.
    pub const E1: Range<usize> = 0..33;
    /// `V1 = rk * V`.
    pub const V1: Range<usize> = 33..66;
    /// The kfrag id (32 bytes).
    pub const KFRAG_ID: Range<usize> = 66..98;
    /// The kfrag's precursor point.
    pub const PRECURSOR: Range<usize> = 98..131;
    /// Proof point `E2 = t * E`.
    pub const E2: Range<usize> = 131..164;
    /// Proof point `V2 = t * V`.
    pub const V2: Range<usize> = 164..197;
    /// Kfrag commitment `U1 = rk * U`.
    pub const U1: Range<usize> = 197..230;
    /// Kfrag proof of knowledge `U2 = t * U`.
    pub const U2: Range<usize> = 230..263;
    /// Proof scalar `z = rk * h + t`.
    pub const Z: Range<usize> = 263..295;
    /// The kfrag signature's `r`.
    pub const KFRAG_SIGNATURE_R: Range<usize> = 295..327;
    /// The kfrag signature's `s`.
    pub const KFRAG_SIGNATURE_S: Range<usize> = 327..359;
}

/// umbral's `Parameters::u`, compressed (hash-to-curve of `POINT_U` with DST `PARAMETERS`).
pub const U_COMPRESSED: [u8; 33] =
    hex!("03079390d0fbe220fc34aab8ecbf49098098036820fadb98c03143e55db8ec73cd");

/// Errors of the byte-level helpers.
#[derive(Debug, thiserror::Error)]
pub enum UmbralError {
    /// A byte string has the wrong length.
    #[error("{what}: expected {expected} bytes, got {got}")]
    Length {
        /// What was parsed.
        what: &'static str,
        /// The expected length.
        expected: usize,
        /// The actual length.
        got: usize,
    },
    /// umbral-pre rejected the value (a point not on the curve, a scalar out of range, a capsule
    /// whose own signature does not verify, ...).
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was parsed.
        what: &'static str,
        /// umbral-pre's message.
        reason: String,
    },
}

pub(crate) fn check_len(
    what: &'static str,
    bytes: &[u8],
    expected: usize,
) -> Result<(), UmbralError> {
    if bytes.len() == expected {
        Ok(())
    } else {
        Err(UmbralError::Length {
            what,
            expected,
            got: bytes.len(),
        })
    }
}

/// The Ethereum address of an umbral public key: the last 20 bytes of `keccak256(x || y)`.
///
/// For Alice's kfrag signer (`Signer::verifying_key()`), this is what the PolicyManager records
/// as the policy's `kfragSigner`, and what the Adjudicator recovers from the kfrag signature.
pub fn ethereum_address(public_key: &PublicKey) -> Address {
    // 0x04 || x || y
    let uncompressed = public_key.to_uncompressed_bytes();
    let xy = uncompressed.get(1..).unwrap_or_default();
    Address::from_slice(&keccak256(xy)[12..])
}

/// umbral's kfrag signature message with both keys signed (`generate_kfrags(.., true, true)`):
/// `kfrag_id (32) || U1 (33) || precursor (33) || 0x01 || delegating key (33) || 0x01 ||
/// receiving key (33)`. The kfrag signature in a cfrag is ECDSA over `sha256` of it.
pub fn kfrag_signature_message(
    kfrag_id: &[u8],
    u1: &[u8],
    precursor: &[u8],
    delegating_key: &[u8],
    receiving_key: &[u8],
) -> Vec<u8> {
    let mut message = Vec::with_capacity(32 + 33 * 4 + 2);
    message.extend_from_slice(kfrag_id);
    message.extend_from_slice(u1);
    message.extend_from_slice(precursor);
    message.push(1);
    message.extend_from_slice(delegating_key);
    message.push(1);
    message.extend_from_slice(receiving_key);
    message
}

fn hex0x(bytes: &[u8]) -> String {
    hex::encode_prefixed(bytes)
}

/// Parses `Capsule::to_bytes_simple` back (umbral has no such function; this goes through its
/// serde format). Fails if the capsule's own signature does not verify.
pub fn capsule_from_bytes_simple(bytes: &[u8]) -> Result<Capsule, UmbralError> {
    use layout::*;
    check_len("capsule", bytes, CAPSULE_LEN)?;
    let value = json!({
        "point_e": hex0x(&bytes[E]),
        "point_v": hex0x(&bytes[V]),
        "signature": hex0x(&bytes[CAPSULE_SIGNATURE]),
    });
    let capsule: Capsule = serde_json::from_value(value).map_err(|err| UmbralError::Invalid {
        what: "capsule",
        reason: err.to_string(),
    })?;
    canonical("capsule", &capsule.to_bytes_simple(), bytes)?;
    Ok(capsule)
}

/// umbral's point parser also takes other SEC1 tags (`0x05`, compact): only the encoding
/// `to_bytes_simple` gives back is accepted.
fn canonical(what: &'static str, encoded: &[u8], bytes: &[u8]) -> Result<(), UmbralError> {
    if encoded == bytes {
        Ok(())
    } else {
        Err(UmbralError::Invalid {
            what,
            reason: "not the canonical to_bytes_simple encoding".into(),
        })
    }
}

/// Parses `CapsuleFrag::to_bytes_simple` back (umbral has no such function; this goes through its
/// serde format). Only checks that every point is on the curve and every scalar in range: the
/// result still has to go through `CapsuleFrag::verify`.
pub fn cfrag_from_bytes_simple(bytes: &[u8]) -> Result<CapsuleFrag, UmbralError> {
    use layout::*;
    check_len("cfrag", bytes, CFRAG_LEN)?;
    let value = json!({
        "point_e1": hex0x(&bytes[E1]),
        "point_v1": hex0x(&bytes[V1]),
        "kfrag_id": hex0x(&bytes[KFRAG_ID]),
        "precursor": hex0x(&bytes[PRECURSOR]),
        "proof": {
            "point_e2": hex0x(&bytes[E2]),
            "point_v2": hex0x(&bytes[V2]),
            "kfrag_commitment": hex0x(&bytes[U1]),
            "kfrag_pok": hex0x(&bytes[U2]),
            "signature": hex0x(&bytes[Z]),
            "kfrag_signature": hex0x(&bytes[KFRAG_SIGNATURE_R.start..KFRAG_SIGNATURE_S.end]),
        },
    });
    let cfrag: CapsuleFrag = serde_json::from_value(value).map_err(|err| UmbralError::Invalid {
        what: "cfrag",
        reason: err.to_string(),
    })?;
    canonical("cfrag", &cfrag.to_bytes_simple(), bytes)?;
    Ok(cfrag)
}

/// A deterministic Umbral scenario for this crate's unit tests: Alice, the kfrag signer, Bob, a
/// capsule for Alice's key, and the cfrag of the first of `shares` kfrags.
#[cfg(test)]
pub(crate) struct TestScenario {
    pub alice: umbral_pre::SecretKey,
    pub signer: umbral_pre::Signer,
    pub bob: umbral_pre::SecretKey,
    pub capsule: Capsule,
    pub cfrag: CapsuleFrag,
}

#[cfg(test)]
impl TestScenario {
    #[allow(clippy::unwrap_used)]
    pub(crate) fn new(seed: u64, threshold: usize, shares: usize) -> Self {
        use rand_chacha::ChaCha20Rng;
        use rand_core::SeedableRng;
        use umbral_pre::{
            encrypt_with_rng, generate_kfrags_with_rng, reencrypt_with_rng, SecretKey, Signer,
        };
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let alice = SecretKey::random_with_rng(&mut rng);
        let signer = Signer::new(SecretKey::random_with_rng(&mut rng));
        let bob = SecretKey::random_with_rng(&mut rng);
        let (capsule, _) = encrypt_with_rng(&mut rng, &alice.public_key(), b"hello").unwrap();
        let kfrags = generate_kfrags_with_rng(
            &mut rng,
            &alice,
            &bob.public_key(),
            &signer,
            threshold,
            shares,
            true,
            true,
        );
        let cfrag = reencrypt_with_rng(&mut rng, &capsule, kfrags[0].clone()).unverify();
        Self {
            alice,
            signer,
            bob,
            capsule,
            cfrag,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use alloy::signers::local::PrivateKeySigner;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use umbral_pre::{Parameters, SecretKey};

    #[test]
    fn u_constant_is_umbrals() {
        let u = Parameters::new().u;
        let json = serde_json::to_value(u).unwrap();
        assert_eq!(json.as_str().unwrap(), hex0x(&U_COMPRESSED));
    }

    #[test]
    fn ethereum_address_matches_alloy() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        for _ in 0..4 {
            let sk = SecretKey::random_with_rng(&mut rng);
            let bytes = sk.to_be_bytes();
            let signer = PrivateKeySigner::from_slice(bytes.as_secret()).unwrap();
            assert_eq!(ethereum_address(&sk.public_key()), signer.address());
        }
    }

    #[test]
    fn bytes_simple_roundtrip() {
        let TestScenario { capsule, cfrag, .. } = TestScenario::new(2, 2, 3);

        let capsule_back = capsule_from_bytes_simple(&capsule.to_bytes_simple()).unwrap();
        assert_eq!(capsule_back, capsule);
        let cfrag_back = cfrag_from_bytes_simple(&cfrag.to_bytes_simple()).unwrap();
        assert_eq!(cfrag_back, cfrag);

        assert!(matches!(
            cfrag_from_bytes_simple(&[0u8; 10]),
            Err(UmbralError::Length { got: 10, .. })
        ));
        // Not a compressed-point tag (uncompressed, compact, identity).
        for (range, tag) in [(layout::E1, 0x04), (layout::E1, 0x05), (layout::U2, 0x00)] {
            let mut bad = cfrag.to_bytes_simple().to_vec();
            bad[range][0] = tag;
            assert!(matches!(
                cfrag_from_bytes_simple(&bad),
                Err(UmbralError::Invalid { .. })
            ));
        }
        let mut bad_capsule = capsule.to_bytes_simple().to_vec();
        bad_capsule[97] ^= 1;
        assert!(capsule_from_bytes_simple(&bad_capsule).is_err());
    }
}

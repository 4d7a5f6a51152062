//! Who encrypted: Enrico's sender key signs what he encrypts (signed streams, message sessions
//! and messages), and Bob accepts data only from the senders he trusts.
//!
//! Anyone who knows a policy's public key can encrypt to it, and every Bob of a policy ends up
//! holding the data keys he decrypts with: neither can tell Bob who made the data. A signature by
//! a key Bob trusts can. The signatures are umbral-pre's own (`umbral_pre::Signer`): ECDSA over
//! secp256k1 of the SHA-256 digest of the signed bytes, written as 64 bytes `r || s` (big-endian,
//! `s` in the lower half of the group order, as every signer here makes them and every verifier
//! requires), so that any umbral-pre binding signs and verifies them. Each format signs bytes that
//! start with its own domain tag, so that a signature made for one purpose never verifies for
//! another.
//!
//! Enrico's key derives from his master secret
//! ([`kms_crypto::keys::MasterSecret::sender_key`]); Alice records the keys of the senders she
//! authorizes in the policy file ([`crate::PolicyFile::senders`]), and Bob trusts those
//! ([`TrustedSenders::of_policy`]) and any he adds.

use umbral_pre::{PublicKey, SecretKey, Signature, Signer};

use crate::policy::PolicyFile;

/// Bytes of a signature: `r || s`, big-endian.
pub const SIGNATURE_SIZE: usize = 64;

/// Bytes of a sender's public key: compressed SEC1.
pub const SENDER_KEY_SIZE: usize = 33;

/// Enrico's signing key. Its `Debug` does not show the secret.
#[derive(Clone)]
pub struct SenderKey {
    signer: Signer,
    public_key: PublicKey,
}

impl SenderKey {
    /// The sender key with this secret (for a derived one, see
    /// [`kms_crypto::keys::MasterSecret::sender_key`]).
    pub fn new(secret: SecretKey) -> Self {
        let public_key = secret.public_key();
        Self {
            signer: Signer::new(secret),
            public_key,
        }
    }

    /// A fresh random sender key (tests, throw-away senders).
    pub fn random() -> Self {
        Self::new(SecretKey::random())
    }

    /// The public key Bob trusts.
    pub fn public_key(&self) -> PublicKey {
        self.public_key
    }

    /// The public key's 33 compressed bytes, as the formats carry it.
    pub fn public_key_bytes(&self) -> [u8; SENDER_KEY_SIZE] {
        public_key_bytes(&self.public_key)
    }

    /// Signs `message` (hashed with SHA-256): 64 bytes `r || s`, low `s`.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_SIZE] {
        let mut signature = [0u8; SIGNATURE_SIZE];
        signature.copy_from_slice(&self.signer.sign(message).to_be_bytes());
        signature
    }
}

impl std::fmt::Debug for SenderKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SenderKey({})",
            kms_crypto::wire::encode_public_key(&self.public_key)
        )
    }
}

/// Whether `signature` (64 bytes `r || s`) is `sender`'s over `message`. A high `s` is refused.
pub fn verify(sender: &PublicKey, message: &[u8], signature: &[u8; SIGNATURE_SIZE]) -> bool {
    Signature::try_from_be_bytes(signature).is_ok_and(|s| s.verify(sender, message))
}

/// A public key's 33 compressed bytes.
pub fn public_key_bytes(key: &PublicKey) -> [u8; SENDER_KEY_SIZE] {
    let mut bytes = [0u8; SENDER_KEY_SIZE];
    bytes.copy_from_slice(&key.to_compressed_bytes());
    bytes
}

/// The senders Bob accepts data from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedSenders {
    keys: Vec<PublicKey>,
}

impl TrustedSenders {
    /// Exactly these senders.
    pub fn new(keys: impl IntoIterator<Item = PublicKey>) -> Self {
        let mut trusted = Self::default();
        for key in keys {
            trusted.add(key);
        }
        trusted
    }

    /// The senders the policy's owner authorized ([`PolicyFile::senders`]).
    pub fn of_policy(policy: &PolicyFile) -> Self {
        Self::new(policy.senders.iter().copied())
    }

    /// Trusts one more sender (once).
    pub fn add(&mut self, key: PublicKey) {
        if !self.keys.contains(&key) {
            self.keys.push(key);
        }
    }

    /// Whether data signed by `key` is accepted.
    pub fn contains(&self, key: &PublicKey) -> bool {
        self.keys.contains(key)
    }

    /// The trusted keys, in the order they were added.
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// Whether no sender is trusted (then nothing signed is accepted).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys as `0x…` hex, comma-separated (for error messages).
    pub fn describe(&self) -> String {
        if self.keys.is_empty() {
            return "none".into();
        }
        self.keys
            .iter()
            .map(kms_crypto::wire::encode_public_key)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use k256::elliptic_curve::{ops::Reduce, PrimeField};

    use super::*;

    #[test]
    fn signatures_verify_only_for_their_key_and_bytes() {
        let enrico = SenderKey::random();
        let other = SenderKey::random();
        let signature = enrico.sign(b"message");
        assert!(verify(&enrico.public_key(), b"message", &signature));
        assert!(!verify(&enrico.public_key(), b"messagE", &signature));
        assert!(!verify(&other.public_key(), b"message", &signature));
        let mut flipped = signature;
        flipped[10] ^= 1;
        assert!(!verify(&enrico.public_key(), b"message", &flipped));
        assert!(!verify(&enrico.public_key(), b"message", &[0u8; 64]));
    }

    /// ECDSA's malleability: `(r, n - s)` verifies as well as `(r, s)` for plain ECDSA; the
    /// formats require the low `s`, so that a signature's bytes are unique.
    #[test]
    fn a_high_s_is_refused() {
        let enrico = SenderKey::random();
        let signature = enrico.sign(b"message");
        let mut s_bytes = k256::FieldBytes::default();
        s_bytes.copy_from_slice(&signature[32..]);
        let s = <k256::Scalar as Reduce<k256::U256>>::reduce_bytes(&s_bytes);
        let mut high = signature;
        high[32..].copy_from_slice(&(-s).to_repr());
        assert!(verify(&enrico.public_key(), b"message", &signature));
        assert!(!verify(&enrico.public_key(), b"message", &high));
    }

    #[test]
    fn trusted_senders_hold_each_key_once() {
        let (a, b) = (SenderKey::random(), SenderKey::random());
        let mut trusted = TrustedSenders::new([a.public_key(), a.public_key()]);
        assert_eq!(trusted.keys().len(), 1);
        assert!(trusted.contains(&a.public_key()) && !trusted.contains(&b.public_key()));
        trusted.add(b.public_key());
        assert!(trusted.contains(&b.public_key()));
        assert!(TrustedSenders::default().is_empty());
        assert_eq!(TrustedSenders::default().describe(), "none");
    }
}

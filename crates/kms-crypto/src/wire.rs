//! The JSON bodies of the node's HTTP API (see `docs/node.md`).
//!
//! umbral-pre objects travel as base64 (standard alphabet, padded) of their default
//! (MessagePack) serialization, so that any umbral-pre binding can produce and read them; public
//! keys are `0x` + hex of their 33-byte compressed form, addresses and signatures `0x` + hex.
//! Field names are camelCase.
//!
//! The types here only carry strings; the `decode` methods turn them into umbral-pre values and
//! say which field is wrong when one is.

use alloy::primitives::{hex, Address};
use base64::{engine::general_purpose::STANDARD, Engine as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use umbral_pre::{Capsule, DefaultDeserialize, DefaultSerialize, KeyFrag, PublicKey, Signature};

/// The domain tag that starts the message Bob signs for a re-encryption request.
pub const REENCRYPT_TAG: &[u8; 16] = b"KMS_REENCRYPT_V1";

/// The domain tag of the message Alice's kfrag signer signs for each kfrag upload.
pub const KFRAG_UPLOAD_TAG: &[u8; 19] = b"KMS_KFRAG_UPLOAD_V1";

/// A field of a request body that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct WireError {
    /// The JSON field (with an index for array elements, e.g. `capsules[2]`).
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl WireError {
    fn new(field: impl Into<String>, reason: impl ToString) -> Self {
        Self {
            field: field.into(),
            reason: reason.to_string(),
        }
    }
}

/// Base64 (standard, padded) of `bytes`.
pub fn encode_b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes the base64 (standard, padded) `value` of `field`.
pub fn decode_b64(field: &str, value: &str) -> Result<Vec<u8>, WireError> {
    STANDARD
        .decode(value)
        .map_err(|e| WireError::new(field, format!("invalid base64: {e}")))
}

/// `0x` + hex of `bytes`.
pub fn encode_hex(bytes: &[u8]) -> String {
    hex::encode_prefixed(bytes)
}

/// Decodes the hex `value` of `field` (`0x` prefix optional).
pub fn decode_hex(field: &str, value: &str) -> Result<Vec<u8>, WireError> {
    hex::decode(value).map_err(|e| WireError::new(field, format!("invalid hex: {e}")))
}

/// `0x` + hex of the 33-byte compressed form of `key`.
pub fn encode_public_key(key: &PublicKey) -> String {
    encode_hex(&key.to_compressed_bytes())
}

/// Decodes a public key given as hex of its 33-byte compressed form.
pub fn decode_public_key(field: &str, value: &str) -> Result<PublicKey, WireError> {
    let bytes = decode_hex(field, value)?;
    if bytes.len() != 33 {
        return Err(WireError::new(
            field,
            format!(
                "expected a 33-byte compressed key, got {} bytes",
                bytes.len()
            ),
        ));
    }
    PublicKey::try_from_compressed_bytes(&bytes)
        .map_err(|e| WireError::new(field, format!("not a secp256k1 point: {e}")))
}

/// Deserializes an umbral-pre object from its default serialization.
pub fn decode_umbral<T>(field: &str, bytes: &[u8]) -> Result<T, WireError>
where
    T: for<'de> DefaultDeserialize<'de>,
{
    T::from_bytes(bytes).map_err(|e| WireError::new(field, format!("not a valid encoding: {e}")))
}

/// `POST /v1/policies/{id}/kfrag`: Alice hands the node its key fragment.
///
/// `(capsule, ciphertext) = umbral_pre::encrypt(node_umbral_pk, kfrag.to_bytes())`: the plaintext
/// is the `KeyFrag`'s default serialization, encrypted to the node's Umbral key (see
/// [`NodeInfo::umbral_public_key`]). The three keys are those the kfrag was generated with and
/// must have been signed into it (`generate_kfrags(.., sign_delegating_key: true,
/// sign_receiving_key: true)`). The kfrag signer signs the upload ([`kfrag_upload_message`]), so
/// it is bound to its policy and its node: nobody who sees it can store it under another policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KfragUpload {
    /// Base64 of the `Capsule`.
    pub capsule: String,
    /// Base64 of the ciphertext.
    pub ciphertext: String,
    /// Alice's delegating public key (hex, 33 bytes).
    pub delegating_key: String,
    /// Bob's receiving public key (hex, 33 bytes): the only key re-encryption requests are
    /// accepted from.
    pub receiving_key: String,
    /// The kfrag signer's public key (hex, 33 bytes); its Ethereum address must be the policy's
    /// `kfragSigner` on chain.
    pub verifying_key: String,
    /// Hex of the 64-byte umbral-pre `Signature` (`to_be_bytes`) by the kfrag signer over
    /// [`kfrag_upload_message`].
    pub signature: String,
}

/// The message the kfrag signer signs for an upload: `"KMS_KFRAG_UPLOAD_V1" || policy_id (16) ||
/// node staker (20) || delegating key (33) || receiving key (33) || sha256(capsule) ||
/// sha256(ciphertext)`, the keys compressed and the capsule as its default serialization (the
/// bytes base64-encoded in the upload). The encrypted kfrag stands for the kfrag: only the node
/// can decrypt it, and nobody else can make another encryption of the same kfrag.
pub fn kfrag_upload_message(
    policy_id: [u8; 16],
    node: Address,
    delegating_key: &PublicKey,
    receiving_key: &PublicKey,
    capsule: &[u8],
    ciphertext: &[u8],
) -> Vec<u8> {
    let mut message = Vec::with_capacity(19 + 16 + 20 + 33 + 33 + 32 + 32);
    message.extend_from_slice(KFRAG_UPLOAD_TAG);
    message.extend_from_slice(&policy_id);
    message.extend_from_slice(node.as_slice());
    message.extend_from_slice(&delegating_key.to_compressed_bytes());
    message.extend_from_slice(&receiving_key.to_compressed_bytes());
    message.extend_from_slice(&Sha256::digest(capsule));
    message.extend_from_slice(&Sha256::digest(ciphertext));
    message
}

/// A [`KfragUpload`] with its fields decoded.
#[derive(Debug, Clone)]
pub struct DecodedKfragUpload {
    /// The capsule the kfrag is encrypted under.
    pub capsule: Capsule,
    /// The encrypted kfrag.
    pub ciphertext: Vec<u8>,
    /// Alice's delegating key.
    pub delegating_key: PublicKey,
    /// Bob's receiving key.
    pub receiving_key: PublicKey,
    /// The kfrag signer's key.
    pub verifying_key: PublicKey,
    /// The capsule's bytes, as uploaded (what the signature covers).
    pub capsule_bytes: Vec<u8>,
    /// The kfrag signer's signature of the upload.
    pub signature: Signature,
}

impl DecodedKfragUpload {
    /// Whether the kfrag signer signed this upload for `policy_id` and the node `node`: checked
    /// before anything is decrypted or stored.
    pub fn is_signed_for(&self, policy_id: [u8; 16], node: Address) -> bool {
        let message = kfrag_upload_message(
            policy_id,
            node,
            &self.delegating_key,
            &self.receiving_key,
            &self.capsule_bytes,
            &self.ciphertext,
        );
        self.signature.verify(&self.verifying_key, &message)
    }
}

impl KfragUpload {
    /// Seals `kfrag` for one node (Alice's side): encrypts it to the node's Umbral key and signs
    /// the upload for `policy_id` and the node's staker with the kfrag signer.
    pub fn seal(
        kfrag: &umbral_pre::VerifiedKeyFrag,
        node_umbral_pk: &PublicKey,
        node: Address,
        policy_id: [u8; 16],
        (delegating_key, receiving_key): (&PublicKey, &PublicKey),
        kfrag_signer: &umbral_pre::Signer,
    ) -> Result<Self, WireError> {
        let failed = |e: &dyn std::fmt::Display| WireError::new("kfrag", e.to_string());
        let plaintext = kfrag.to_bytes().map_err(|e| failed(&e))?;
        let (capsule, ciphertext) =
            umbral_pre::encrypt(node_umbral_pk, &plaintext).map_err(|e| failed(&e))?;
        let capsule = capsule.to_bytes().map_err(|e| failed(&e))?;
        let message = kfrag_upload_message(
            policy_id,
            node,
            delegating_key,
            receiving_key,
            &capsule,
            &ciphertext,
        );
        Ok(Self {
            capsule: encode_b64(&capsule),
            ciphertext: encode_b64(&ciphertext),
            delegating_key: encode_public_key(delegating_key),
            receiving_key: encode_public_key(receiving_key),
            verifying_key: encode_public_key(&kfrag_signer.verifying_key()),
            signature: encode_hex(&kfrag_signer.sign(&message).to_be_bytes()),
        })
    }

    /// Decodes every field.
    pub fn decode(&self) -> Result<DecodedKfragUpload, WireError> {
        let capsule_bytes = decode_b64("capsule", &self.capsule)?;
        let signature = decode_hex("signature", &self.signature)?;
        Ok(DecodedKfragUpload {
            capsule: decode_umbral("capsule", &capsule_bytes)?,
            ciphertext: decode_b64("ciphertext", &self.ciphertext)?,
            delegating_key: decode_public_key("delegatingKey", &self.delegating_key)?,
            receiving_key: decode_public_key("receivingKey", &self.receiving_key)?,
            verifying_key: decode_public_key("verifyingKey", &self.verifying_key)?,
            capsule_bytes,
            signature: Signature::try_from_be_bytes(&signature)
                .map_err(|e| WireError::new("signature", e))?,
        })
    }
}

/// Verifies a decrypted kfrag for an upload: it verifies with the three keys, and both the
/// delegating and the receiving key are signed into it (a kfrag that does not sign a key would
/// verify with any key in its place: it is refused).
pub fn verify_uploaded_kfrag(
    kfrag: &KeyFrag,
    verifying_key: &PublicKey,
    delegating_key: &PublicKey,
    receiving_key: &PublicKey,
) -> Result<umbral_pre::VerifiedKeyFrag, String> {
    let verified = kfrag
        .clone()
        .verify(verifying_key, Some(delegating_key), Some(receiving_key))
        .map_err(|(e, _)| format!("the kfrag does not verify with the given keys: {e}"))?;
    // Another key in each place must fail: then that key is signed in.
    let other = umbral_pre::SecretKey::random().public_key();
    if kfrag
        .clone()
        .verify(verifying_key, Some(&other), Some(receiving_key))
        .is_ok()
    {
        return Err(
            "the kfrag does not sign the delegating key: generate it with sign_delegating_key"
                .into(),
        );
    }
    if kfrag
        .clone()
        .verify(verifying_key, Some(delegating_key), Some(&other))
        .is_ok()
    {
        return Err(
            "the kfrag does not sign the receiving key: generate it with sign_receiving_key".into(),
        );
    }
    Ok(verified)
}

/// The answer to an accepted [`KfragUpload`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KfragAccepted {
    /// The policy id (`0x` + 32 hex digits).
    pub policy_id: String,
    /// Whether this upload stored the kfrag (false: the same kfrag was already stored).
    pub created: bool,
}

/// `POST /v1/policies/{id}/reencrypt`: Bob asks for capsule fragments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReencryptRequest {
    /// Base64 of each `Capsule`.
    pub capsules: Vec<String>,
    /// When Bob signed the request, in Unix seconds.
    pub timestamp: u64,
    /// Hex of 16 random bytes, fresh for each request: two requests for the same capsules
    /// within a second are two messages (the node refuses a message it has served).
    pub nonce: String,
    /// Hex of the 64-byte umbral-pre `Signature` (`to_be_bytes`) by Bob's receiving key over
    /// [`reencrypt_message`].
    pub signature: String,
}

/// `sha256` over the capsules, each as its u32 big-endian length then its bytes.
pub fn capsules_digest<B: AsRef<[u8]>>(capsules: &[B]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for capsule in capsules {
        let bytes = capsule.as_ref();
        // Capsules are far below 4 GiB; a longer one could not be in a bounded body anyway.
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        hasher.update(len.to_be_bytes());
        hasher.update(bytes);
    }
    hasher.finalize().into()
}

/// The message Bob signs: `"KMS_REENCRYPT_V1" || policy_id (16) || node staker (20) ||
/// timestamp (8, big-endian) || nonce (16) || capsules_digest(capsules)`, the capsules as their
/// default serialization (the bytes that are base64-encoded in the request).
pub fn reencrypt_message<B: AsRef<[u8]>>(
    policy_id: [u8; 16],
    node: Address,
    timestamp: u64,
    nonce: [u8; 16],
    capsules: &[B],
) -> Vec<u8> {
    let mut message = Vec::with_capacity(16 + 16 + 20 + 8 + 16 + 32);
    message.extend_from_slice(REENCRYPT_TAG);
    message.extend_from_slice(&policy_id);
    message.extend_from_slice(node.as_slice());
    message.extend_from_slice(&timestamp.to_be_bytes());
    message.extend_from_slice(&nonce);
    message.extend_from_slice(&capsules_digest(capsules));
    message
}

impl ReencryptRequest {
    /// Builds and signs a request (Bob's side), with a fresh random nonce.
    pub fn sign(
        receiving_sk: &umbral_pre::SecretKey,
        policy_id: [u8; 16],
        node: Address,
        timestamp: u64,
        capsules: &[Vec<u8>],
    ) -> Self {
        let mut nonce = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
        let message = reencrypt_message(policy_id, node, timestamp, nonce, capsules);
        let signature = umbral_pre::Signer::new(receiving_sk.clone()).sign(&message);
        Self {
            capsules: capsules.iter().map(|c| encode_b64(c)).collect(),
            timestamp,
            nonce: encode_hex(&nonce),
            signature: encode_hex(&signature.to_be_bytes()),
        }
    }

    /// The nonce.
    pub fn decode_nonce(&self) -> Result<[u8; 16], WireError> {
        let bytes = decode_hex("nonce", &self.nonce)?;
        <[u8; 16]>::try_from(bytes.as_slice())
            .map_err(|_| WireError::new("nonce", format!("expected 16 bytes, got {}", bytes.len())))
    }

    /// The raw bytes of each capsule (what the signature covers).
    pub fn capsule_bytes(&self) -> Result<Vec<Vec<u8>>, WireError> {
        self.capsules
            .iter()
            .enumerate()
            .map(|(i, c)| decode_b64(&format!("capsules[{i}]"), c))
            .collect()
    }

    /// The signature.
    pub fn decode_signature(&self) -> Result<Signature, WireError> {
        let bytes = decode_hex("signature", &self.signature)?;
        Signature::try_from_be_bytes(&bytes).map_err(|e| WireError::new("signature", e))
    }
}

/// One capsule fragment of a [`ReencryptResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedCFrag {
    /// Base64 of the `VerifiedCapsuleFrag`'s default serialization (deserialize it as a
    /// `CapsuleFrag` and verify it).
    pub cfrag: String,
    /// `0x` + hex of the worker's 65-byte signature `r | s | v` (see
    /// `kms_crypto::answer::sign_answer`) over the answer: the chain, the Adjudicator, the node's
    /// staker, `period`, the policy, and the capsule's and the cfrag's `to_bytes_simple`.
    pub signature: String,
    /// The period the node answered in (by its view of the chain's time): the answer names it,
    /// and the Adjudicator judges it for `evidenceWindow` periods after.
    pub period: u64,
}

/// The answer to a [`ReencryptRequest`]: one cfrag per capsule, in the request's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReencryptResponse {
    /// The capsule fragments.
    pub cfrags: Vec<SignedCFrag>,
}

/// `GET /v1/node`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    /// The staker this node serves (the address policies name).
    pub staker: Address,
    /// The worker address that signs every cfrag.
    pub worker: Address,
    /// The node's Umbral public key (hex, 33 bytes): kfrags are encrypted to it.
    pub umbral_public_key: String,
    /// The chain the node serves.
    pub chain_id: u64,
    /// The node's software version.
    pub version: String,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// How many kfrags the node holds.
    pub kfrags: u64,
    /// Seconds since the API started.
    pub uptime_seconds: u64,
    /// Confirmed policies naming this node that the chain follower has recorded.
    pub policies: u64,
    /// The last block the chain follower applied (`None` before its first step).
    pub cursor_block: Option<u64>,
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Why the request failed.
    pub error: String,
}

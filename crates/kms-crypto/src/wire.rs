//! The JSON bodies of the node's HTTP API (see `docs/node.md`).
//!
//! umbral-pre objects travel as base64 (standard alphabet, padded) of their default
//! (MessagePack) serialization, so that any umbral-pre binding can produce and read them; public
//! keys are `0x` + hex of their 33-byte compressed form, addresses and signatures `0x` + hex.
//! Field names are camelCase.
//!
//! The types here only carry strings; the `decode` methods turn them into umbral-pre values and
//! say which field is wrong when one is.
//!
//! Both halves of each signed message live here, so the protocol reads in one file and the
//! node's and the client's handlers keep only statuses, limits, replays and chain checks:
//!
//! - a kfrag upload: Alice [`KfragUpload::seal`]s it; the node [`KfragUpload::decode`]s it,
//!   checks [`DecodedKfragUpload::check_signed_for`] and [`DecodedKfragUpload::open`]s it;
//! - a re-encryption request: Bob [`ReencryptRequest::sign`]s it; the node checks the signature
//!   over [`reencrypt_message`];
//! - a cfrag answer: the node's worker [`SignedCFrag::sign`]s it; Bob
//!   [`SignedCFrag::decode`]s it and [`DecodedCFrag::verify_and_recover`]s it.

use alloy::primitives::{hex, Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use base64::{engine::general_purpose::STANDARD, Engine as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use umbral_pre::{
    Capsule, CapsuleFrag, DefaultDeserialize, DefaultSerialize, KeyFrag, PublicKey, Signature,
    VerifiedCapsuleFrag,
};

use crate::answer::{recover_answer_signer, sign_answer, AnswerContext, AnswerError};

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

/// An error whose type a dependency does not export (umbral-pre's MessagePack errors).
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a kfrag could not be sealed for a node (Alice's side).
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The kfrag could not be serialized.
    #[error("kfrag: {0}")]
    Serialize(BoxError),
    /// The kfrag could not be encrypted to the node's key.
    #[error("kfrag: {0}")]
    Encrypt(umbral_pre::EncryptionError),
}

/// Why a node refuses to open a kfrag upload (the node's side): every variant is the
/// uploader's fault but [`KfragUploadError::Reserialize`].
#[derive(Debug, thiserror::Error)]
pub enum KfragUploadError {
    /// The upload is not signed by its verifying key for this policy and this node.
    #[error("signature: not by the kfrag signer over this upload for this policy and node")]
    NotSignedForThisNode,
    /// The ciphertext does not decrypt with the node's Umbral key.
    #[error("the kfrag does not decrypt with this node's Umbral key: {0}")]
    Decrypt(umbral_pre::DecryptionError),
    /// The plaintext is no `KeyFrag`.
    #[error("the plaintext is no KeyFrag: {0}")]
    NotAKeyFrag(BoxError),
    /// The kfrag could not be serialized again (the node's fault, not the uploader's).
    #[error("{0}")]
    Reserialize(BoxError),
    /// The kfrag does not verify with the upload's three keys.
    #[error("the kfrag does not verify with the given keys: {0}")]
    DoesNotVerify(umbral_pre::KeyFragVerificationError),
    /// The kfrag verifies with any delegating key: it was generated without
    /// `sign_delegating_key`.
    #[error("the kfrag does not sign the delegating key: generate it with sign_delegating_key")]
    DelegatingKeyNotSigned,
    /// The kfrag verifies with any receiving key: it was generated without `sign_receiving_key`.
    #[error("the kfrag does not sign the receiving key: generate it with sign_receiving_key")]
    ReceivingKeyNotSigned,
}

/// A kfrag a node opened from an upload: verified, with the keys it verifies with.
#[derive(Debug, Clone)]
pub struct OpenedKfrag {
    /// The kfrag's default serialization, as the node re-serialized it (what it stores).
    pub kfrag_bytes: Vec<u8>,
    /// The kfrag, verified.
    pub kfrag: umbral_pre::VerifiedKeyFrag,
    /// Alice's delegating key.
    pub delegating_key: PublicKey,
    /// Bob's receiving key.
    pub receiving_key: PublicKey,
    /// The kfrag signer's key.
    pub verifying_key: PublicKey,
}

impl DecodedKfragUpload {
    /// Whether the kfrag signer signed this upload for `policy_id` and the node `node`: checked
    /// before anything is decrypted or stored.
    pub fn check_signed_for(
        &self,
        policy_id: [u8; 16],
        node: Address,
    ) -> Result<(), KfragUploadError> {
        let message = kfrag_upload_message(
            policy_id,
            node,
            &self.delegating_key,
            &self.receiving_key,
            &self.capsule_bytes,
            &self.ciphertext,
        );
        if self.signature.verify(&self.verifying_key, &message) {
            Ok(())
        } else {
            Err(KfragUploadError::NotSignedForThisNode)
        }
    }

    /// Opens the upload (the node's side, after [`check_signed_for`](Self::check_signed_for)):
    /// decrypts the kfrag with the node's Umbral key and verifies it
    /// ([`verify_uploaded_kfrag`]). Blocking (curve arithmetic).
    pub fn open(
        self,
        node_umbral_sk: &umbral_pre::SecretKey,
    ) -> Result<OpenedKfrag, KfragUploadError> {
        let plaintext =
            umbral_pre::decrypt_original(node_umbral_sk, &self.capsule, &self.ciphertext)
                .map_err(KfragUploadError::Decrypt)?;
        let kfrag =
            KeyFrag::from_bytes(&plaintext).map_err(|e| KfragUploadError::NotAKeyFrag(e.into()))?;
        let kfrag_bytes = kfrag
            .to_bytes()
            .map_err(|e| KfragUploadError::Reserialize(e.into()))?;
        let verified = verify_uploaded_kfrag(
            &kfrag,
            &self.verifying_key,
            &self.delegating_key,
            &self.receiving_key,
        )?;
        Ok(OpenedKfrag {
            kfrag_bytes: kfrag_bytes.into_vec(),
            kfrag: verified,
            delegating_key: self.delegating_key,
            receiving_key: self.receiving_key,
            verifying_key: self.verifying_key,
        })
    }
}

impl KfragUpload {
    /// Seals `kfrag` for one node (Alice's side): encrypts it to the node's Umbral key and signs
    /// the upload for `policy_id` and the node's staker with the kfrag signer. The node opens it
    /// with [`decode`](Self::decode), [`DecodedKfragUpload::check_signed_for`] and
    /// [`DecodedKfragUpload::open`].
    pub fn seal(
        kfrag: &umbral_pre::VerifiedKeyFrag,
        node_umbral_pk: &PublicKey,
        node: Address,
        policy_id: [u8; 16],
        (delegating_key, receiving_key): (&PublicKey, &PublicKey),
        kfrag_signer: &umbral_pre::Signer,
    ) -> Result<Self, SealError> {
        let plaintext = kfrag
            .to_bytes()
            .map_err(|e| SealError::Serialize(e.into()))?;
        let (capsule, ciphertext) =
            umbral_pre::encrypt(node_umbral_pk, &plaintext).map_err(SealError::Encrypt)?;
        let capsule = capsule
            .to_bytes()
            .map_err(|e| SealError::Serialize(e.into()))?;
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
) -> Result<umbral_pre::VerifiedKeyFrag, KfragUploadError> {
    let verified = kfrag
        .clone()
        .verify(verifying_key, Some(delegating_key), Some(receiving_key))
        .map_err(|(e, _)| KfragUploadError::DoesNotVerify(e))?;
    // Another key in each place must fail: then that key is signed in.
    let other = umbral_pre::SecretKey::random().public_key();
    if kfrag
        .clone()
        .verify(verifying_key, Some(&other), Some(receiving_key))
        .is_ok()
    {
        return Err(KfragUploadError::DelegatingKeyNotSigned);
    }
    if kfrag
        .clone()
        .verify(verifying_key, Some(delegating_key), Some(&other))
        .is_ok()
    {
        return Err(KfragUploadError::ReceivingKeyNotSigned);
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

/// Why a node could not sign a cfrag answer (the node's side; never the client's fault).
#[derive(Debug, thiserror::Error)]
pub enum SignCFragError {
    /// The cfrag could not be serialized.
    #[error("{0}")]
    Serialize(BoxError),
    /// The worker could not sign.
    #[error(transparent)]
    Answer(#[from] AnswerError),
}

/// Why Bob does not count a [`SignedCFrag`] (Bob's side).
#[derive(Debug, thiserror::Error)]
pub enum CFragAnswerError {
    /// The cfrag's base64 or its encoding is invalid.
    #[error("the cfrag does not decode: {0}")]
    CFragEncoding(BoxError),
    /// The signature's hex is invalid.
    #[error("the signature does not decode: {0}")]
    SignatureEncoding(WireError),
    /// The answer's signature is valid but not by the node's worker.
    #[error("the answer is signed by {signer}, not by the node's worker {worker}")]
    WrongSigner {
        /// Who signed.
        signer: Address,
        /// The node's worker.
        worker: Address,
    },
    /// No address can be recovered from the signature as the Adjudicator recovers it.
    #[error("the answer's signature is invalid: {0}")]
    InvalidSignature(AnswerError),
    /// Signed by the node's worker, and the cfrag fails verification: the answer may be
    /// evidence against the node.
    #[error("the cfrag fails verification ({})", .0.error)]
    SignedButWrong(Box<WrongCFrag>),
}

/// A cfrag that the node's worker signed and that fails verification.
#[derive(Debug, Clone)]
pub struct WrongCFrag {
    /// The cfrag, as answered.
    pub cfrag: CapsuleFrag,
    /// Why it fails verification.
    pub error: umbral_pre::CapsuleFragVerificationError,
    /// The worker's 65-byte signature over the answer.
    pub signature: Vec<u8>,
}

/// A [`SignedCFrag`] with its fields decoded, not checked yet.
#[derive(Debug, Clone)]
pub struct DecodedCFrag {
    /// The cfrag.
    pub cfrag: CapsuleFrag,
    /// The worker's signature (the length is checked with the signature).
    pub signature: Vec<u8>,
    /// The period the answer names.
    pub period: u64,
}

impl SignedCFrag {
    /// Signs the answer `cfrag` for `capsule` with the node's worker (the node's side), naming
    /// `context.period`. Bob checks it with [`decode`](Self::decode) and
    /// [`DecodedCFrag::verify_and_recover`].
    pub fn sign(
        worker: &PrivateKeySigner,
        context: &AnswerContext,
        capsule: &Capsule,
        cfrag: &CapsuleFrag,
    ) -> Result<Self, SignCFragError> {
        let cfrag_simple = cfrag.to_bytes_simple();
        let cfrag_bytes = cfrag
            .to_bytes()
            .map_err(|e| SignCFragError::Serialize(e.into()))?;
        let signature = sign_answer(worker, context, &capsule.to_bytes_simple(), &cfrag_simple)?;
        Ok(Self {
            cfrag: encode_b64(&cfrag_bytes),
            signature: encode_hex(&signature.as_bytes()),
            period: context.period,
        })
    }

    /// Decodes the cfrag and the signature.
    pub fn decode(&self) -> Result<DecodedCFrag, CFragAnswerError> {
        let cfrag = decode_b64("cfrag", &self.cfrag)
            .map_err(|e| CFragAnswerError::CFragEncoding(e.into()))
            .and_then(|bytes| {
                CapsuleFrag::from_bytes(&bytes)
                    .map_err(|e| CFragAnswerError::CFragEncoding(e.into()))
            })?;
        let signature = decode_hex("signature", &self.signature)
            .map_err(CFragAnswerError::SignatureEncoding)?;
        Ok(DecodedCFrag {
            cfrag,
            signature,
            period: self.period,
        })
    }
}

impl DecodedCFrag {
    /// Bob's check of one answer for `capsule`: the signature recovers (as the Adjudicator
    /// recovers it) to the node's `worker` over `context` (whose period must be the answer's),
    /// and the cfrag verifies against the capsule and the policy's three keys. A cfrag signed by
    /// the worker that fails verification is [`CFragAnswerError::SignedButWrong`].
    pub fn verify_and_recover(
        self,
        context: &AnswerContext,
        worker: Address,
        capsule: &Capsule,
        verifying_key: &PublicKey,
        delegating_key: &PublicKey,
        receiving_key: &PublicKey,
    ) -> Result<VerifiedCapsuleFrag, CFragAnswerError> {
        let signer = recover_answer_signer(
            context,
            &capsule.to_bytes_simple(),
            &self.cfrag.to_bytes_simple(),
            &self.signature,
        )
        .map_err(CFragAnswerError::InvalidSignature)?;
        if signer != worker {
            return Err(CFragAnswerError::WrongSigner { signer, worker });
        }
        self.cfrag
            .verify(capsule, verifying_key, delegating_key, receiving_key)
            .map_err(|(error, cfrag)| {
                CFragAnswerError::SignedButWrong(Box::new(WrongCFrag {
                    cfrag,
                    error,
                    signature: self.signature,
                }))
            })
    }
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
    /// The most capsules the node re-encrypts in one request (its `[limits] max_capsules`):
    /// clients split larger retrievals into requests of this many. A node older than this field
    /// takes [`DEFAULT_MAX_CAPSULES_PER_REQUEST`].
    #[serde(default = "default_max_capsules_per_request")]
    pub max_capsules_per_request: u32,
}

/// The most capsules per re-encryption request of a node that does not say
/// ([`NodeInfo::max_capsules_per_request`]), and the nodes' default limit.
pub const DEFAULT_MAX_CAPSULES_PER_REQUEST: u32 = 64;

fn default_max_capsules_per_request() -> u32 {
    DEFAULT_MAX_CAPSULES_PER_REQUEST
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
    /// The chain head the node last read (`None` before the first read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_block: Option<u64>,
    /// Milliseconds since the node last read the chain head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_age_ms: Option<u64>,
    /// Why re-encryption requests are refused with 503 now, if they are (no head read yet, the
    /// last read older than the node's bound, catching up with the chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusing: Option<String>,
    /// The node's version (the `kms` crate's).
    #[serde(default)]
    pub version: String,
    /// The chain id it serves.
    #[serde(default)]
    pub chain_id: u64,
    /// The staker it serves.
    #[serde(default)]
    pub staker: Address,
    /// Its worker (pays the duties' transactions, signs the answers).
    #[serde(default)]
    pub worker: Address,
    /// Blocks between the head the node read and its follower's cursor (the confirmation depth,
    /// plus any lag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_blocks: Option<u64>,
    /// Re-encryption requests answered (200) since the start.
    #[serde(default)]
    pub requests_served: u64,
    /// Capsules re-encrypted since the start.
    #[serde(default)]
    pub reencryptions: u64,
    /// The node's standing on chain as its duties last read it (absent until their first read,
    /// and on a node that runs no duties).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standing: Option<StandingStatus>,
    /// What the operator should act on, in words (empty: nothing).
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// The node's standing on chain, in [`NodeStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StandingStatus {
    /// The block it was read at.
    pub block: u64,
    /// Seconds since it was read.
    pub age_seconds: u64,
    /// The chain's period then.
    pub current_period: u64,
    /// The last period the staker committed to (`None`: never).
    pub last_committed_period: Option<u64>,
    /// The period the next commitment is for.
    pub next_commitment_period: u64,
    /// The time (Unix seconds) it must be mined by.
    pub next_commitment_due_by: u64,
    /// Whether the staker has committed to it already.
    pub committed_next: bool,
    /// The worker's balance, in wei (a decimal string: it exceeds 2^53).
    pub worker_balance_wei: String,
    /// Below this balance (wei, decimal) the worker is low: 14 periods of duties at the gas
    /// price then.
    pub low_balance_below_wei: String,
    /// Whether the worker's balance is low.
    pub low_balance: bool,
    /// Duty transactions sent and not yet settled.
    pub pending_duties: u64,
}

/// `POST /v1/evidence`'s answer, and `GET /v1/evidence/{id}`: where the filing of a piece of
/// evidence stands on the node that accepted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvidenceStatus {
    /// The evidence id: `keccak256(capsule || cfrag)`, the Adjudicator's evidence hash.
    pub id: B256,
    /// `pending` (accepted, commitment not yet mined), `committed` (the reveal follows from a
    /// later block), `slashed`, `correct` (evaluated, nothing slashed), `evaluatedElsewhere`
    /// (another investigator's report was evaluated first) or `refused` (with `reason`).
    pub state: String,
    /// The staker accused.
    pub staker: Address,
    /// Who is paid the investigator reward.
    pub beneficiary: Address,
    /// `relayed` or `audit`.
    pub source: String,
    /// The reveal transaction, once evaluated by this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_hash: Option<B256>,
    /// The verdict's name, once evaluated by this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// Tokens slashed, once evaluated by this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub penalty: Option<U256>,
    /// Tokens paid to the beneficiary, once evaluated by this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward: Option<U256>,
    /// Why it was refused (the contract's reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One peer's audit answers in one period, as this node saw them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Availability {
    /// Answers whose every cfrag verified.
    pub served: u64,
    /// Answers with a cfrag that failed verification.
    pub wrong: u64,
    /// Requests refused with an HTTP error status (the last one in `last_status`).
    pub refused: u64,
    /// Requests that got no answer in time, or no connection.
    pub timed_out: u64,
    /// Answers not as the API specifies.
    pub invalid: u64,
    /// The last HTTP error status.
    pub last_status: Option<u16>,
    /// The last failure's reason.
    pub last_failure: Option<String>,
    /// When the last answer was recorded (chain time).
    pub last_at: u64,
}

impl Availability {
    /// Every request recorded.
    pub fn total(&self) -> u64 {
        // Saturating: the counts of a peer's view are another node's word.
        [self.wrong, self.refused, self.timed_out, self.invalid]
            .into_iter()
            .fold(self.served, u64::saturating_add)
    }

    /// Adds `other`'s counts (its last answer wins if later).
    pub fn add(&mut self, other: &Availability) {
        self.served = self.served.saturating_add(other.served);
        self.wrong = self.wrong.saturating_add(other.wrong);
        self.refused = self.refused.saturating_add(other.refused);
        self.timed_out = self.timed_out.saturating_add(other.timed_out);
        self.invalid = self.invalid.saturating_add(other.invalid);
        if other.last_at >= self.last_at {
            self.last_at = other.last_at;
            if other.last_status.is_some() {
                self.last_status = other.last_status;
            }
            if other.last_failure.is_some() {
                self.last_failure.clone_from(&other.last_failure);
            }
        }
    }
}

/// One staker as `GET /v1/network` shows it: the chain's view, and what this node's audits saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerView {
    /// The staker.
    pub staker: Address,
    /// Its bonded worker (zero: none).
    pub worker: Address,
    /// Its node's URL, from its node record.
    pub url: String,
    /// Tokens staked (`StakerView.value`), in token units.
    pub stake: U256,
    /// Tokens locked in the current period.
    pub locked_now: U256,
    /// The last period it committed to (0: never).
    pub last_committed_period: u64,
    /// Its audit answers in `fromPeriod..=currentPeriod`, summed, as this node saw them (`None`:
    /// never audited by this node in those periods).
    pub availability: Option<Availability>,
}

/// `GET /v1/network`: every staker with a node record, and this node's audit record of each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkView {
    /// The chain.
    pub chain_id: u64,
    /// The staker of the node answering.
    pub node: Address,
    /// The block the stakers were read at (0: not read yet).
    pub block: u64,
    /// The period of that block.
    pub current_period: u64,
    /// The first period the availability covers.
    pub from_period: u64,
    /// The stakers, in the escrow's order.
    pub peers: Vec<PeerView>,
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Why the request failed.
    pub error: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use alloy::primitives::hex;
    use umbral_pre::{generate_kfrags, reencrypt, SecretKey, Signer, VerifiedKeyFrag};

    const POLICY: [u8; 16] = [0x42; 16];
    const NODE: Address = Address::repeat_byte(0x5a);

    struct Policy {
        alice: SecretKey,
        bob: SecretKey,
        signer: Signer,
    }

    impl Policy {
        fn new() -> Self {
            Self {
                alice: SecretKey::random(),
                bob: SecretKey::random(),
                signer: Signer::new(SecretKey::random()),
            }
        }

        fn kfrag(&self, sign_delegating: bool, sign_receiving: bool) -> VerifiedKeyFrag {
            let bob = self.bob.public_key();
            generate_kfrags(
                &self.alice,
                &bob,
                &self.signer,
                1,
                1,
                sign_delegating,
                sign_receiving,
            )
            .into_vec()
            .remove(0)
        }

        fn seal(&self, kfrag: &VerifiedKeyFrag, node_pk: &PublicKey) -> KfragUpload {
            let keys = (&self.alice.public_key(), &self.bob.public_key());
            KfragUpload::seal(kfrag, node_pk, NODE, POLICY, keys, &self.signer).unwrap()
        }
    }

    #[test]
    fn a_sealed_kfrag_opens_for_its_node_only() {
        let (policy, node) = (Policy::new(), SecretKey::random());
        let kfrag = policy.kfrag(true, true);
        let upload = policy.seal(&kfrag, &node.public_key()).decode().unwrap();

        upload.check_signed_for(POLICY, NODE).unwrap();
        assert!(matches!(
            upload.check_signed_for(POLICY, Address::repeat_byte(1)),
            Err(KfragUploadError::NotSignedForThisNode)
        ));
        assert!(matches!(
            upload.check_signed_for([0; 16], NODE),
            Err(KfragUploadError::NotSignedForThisNode)
        ));
        assert!(matches!(
            upload.clone().open(&SecretKey::random()),
            Err(KfragUploadError::Decrypt(_))
        ));
        let opened = upload.open(&node).unwrap();
        assert_eq!(opened.kfrag_bytes, kfrag.to_bytes().unwrap().into_vec());
        assert_eq!(opened.receiving_key, policy.bob.public_key());
    }

    #[test]
    fn a_kfrag_that_does_not_sign_both_keys_is_refused() {
        let (policy, node) = (Policy::new(), SecretKey::random());
        for (kfrag, refused) in [
            (
                policy.kfrag(false, true),
                "does not sign the delegating key",
            ),
            (policy.kfrag(true, false), "does not sign the receiving key"),
        ] {
            let upload = policy.seal(&kfrag, &node.public_key()).decode().unwrap();
            let error = upload.open(&node).unwrap_err();
            assert!(error.to_string().contains(refused), "{error}");
        }
    }

    #[test]
    fn a_signed_cfrag_is_checked_against_its_worker_and_keys() {
        let policy = Policy::new();
        // anvil's first two accounts.
        let worker = PrivateKeySigner::from_slice(&hex!(
            "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
        ))
        .unwrap();
        let other = PrivateKeySigner::from_slice(&hex!(
            "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
        ))
        .unwrap();
        let context = AnswerContext {
            chain_id: 31337,
            adjudicator: Address::repeat_byte(0xad),
            staker: NODE,
            period: 7,
            policy_id: POLICY,
        };
        let (capsule, _) = umbral_pre::encrypt(&policy.alice.public_key(), b"hi").unwrap();
        let cfrag = reencrypt(&capsule, policy.kfrag(true, true)).unverify();
        let check = |answer: &SignedCFrag, worker: Address| {
            answer.decode().unwrap().verify_and_recover(
                &context,
                worker,
                &capsule,
                &policy.signer.verifying_key(),
                &policy.alice.public_key(),
                &policy.bob.public_key(),
            )
        };

        let answer = SignedCFrag::sign(&worker, &context, &capsule, &cfrag).unwrap();
        assert_eq!(answer.period, 7);
        check(&answer, worker.address()).unwrap();
        assert!(matches!(
            check(&answer, other.address()),
            Err(CFragAnswerError::WrongSigner { signer, .. }) if signer == worker.address()
        ));

        // Another cfrag of the same capsule, signed by the worker: provably wrong.
        let wrong = reencrypt(&capsule, Policy::new().kfrag(true, true)).unverify();
        let answer = SignedCFrag::sign(&worker, &context, &capsule, &wrong).unwrap();
        match check(&answer, worker.address()) {
            Err(CFragAnswerError::SignedButWrong(signed)) => assert_eq!(signed.cfrag, wrong),
            other => panic!("expected a signed wrong cfrag, got {other:?}"),
        }

        let mut garbled = answer.clone();
        garbled.cfrag = "!".into();
        assert!(matches!(
            garbled.decode(),
            Err(CFragAnswerError::CFragEncoding(_))
        ));
    }
}

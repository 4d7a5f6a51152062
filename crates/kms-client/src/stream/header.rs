//! The header of an encrypted file: parsing, writing, the sender's signature and the trust check.

use std::io::Read;

use umbral_pre::{Capsule, DefaultDeserialize, DefaultSerialize, PublicKey};

use super::{
    pipeline::read_full, StreamError, KEY_COMMITMENT_SIZE, MAGIC, MAGIC_V1, MAX_HEADER_FIELD,
    MAX_SEGMENT_CHUNKS, NONCE_PREFIX_SIZE,
};
use crate::sender::{self, SenderKey, TrustedSenders, SENDER_KEY_SIZE, SIGNATURE_SIZE};

/// Domain separation of the header's signature: the sender signs
/// `HEADER_SIGNATURE_TAG || every header byte before the signature`.
const HEADER_SIGNATURE_TAG: &[u8] = b"KMSENC02 header";

/// The format version of an encrypted file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `KMSENC01`: unsigned, anyone who knows the policy's public key could have made it.
    V1,
    /// `KMSENC02`: signed by its sender, header and every segment.
    V2,
}

impl Version {
    /// The file's first 8 bytes.
    pub fn magic(self) -> &'static [u8; 8] {
        match self {
            Self::V1 => MAGIC_V1,
            Self::V2 => MAGIC,
        }
    }
}

/// What only a signed (`KMSENC02`) header has.
#[derive(Debug, Clone, Copy)]
pub(super) struct Signed {
    /// Chunks per segment, 1 to [`MAX_SEGMENT_CHUNKS`].
    pub(super) segment_chunks: u16,
    /// The sender's public key.
    pub(super) sender: PublicKey,
}

/// The header of an encrypted file: what is needed to recover the data key, who signed it, and
/// the bytes every chunk is bound to.
#[derive(Debug, Clone)]
pub struct Header {
    version: Version,
    capsule: Capsule,
    encrypted_key: Vec<u8>,
    nonce_prefix: [u8; NONCE_PREFIX_SIZE],
    key_commitment: [u8; KEY_COMMITMENT_SIZE],
    signed: Option<Signed>,
    bytes: Vec<u8>,
}

impl Header {
    /// The fields common to both versions, written after `version`'s magic.
    fn unsigned(
        version: Version,
        capsule: Capsule,
        encrypted_key: Vec<u8>,
        nonce_prefix: [u8; NONCE_PREFIX_SIZE],
        key_commitment: [u8; KEY_COMMITMENT_SIZE],
    ) -> Result<Self, StreamError> {
        let capsule_bytes = capsule
            .to_bytes()
            .map_err(|e| StreamError::Umbral(format!("serializing the capsule: {e}")))?;
        let mut bytes = Vec::with_capacity(512);
        bytes.extend_from_slice(version.magic());
        put_field(&mut bytes, "capsule", &capsule_bytes)?;
        put_field(&mut bytes, "encrypted key", &encrypted_key)?;
        bytes.extend_from_slice(&nonce_prefix);
        bytes.extend_from_slice(&key_commitment);
        Ok(Self {
            version,
            capsule,
            encrypted_key,
            nonce_prefix,
            key_commitment,
            signed: None,
            bytes,
        })
    }

    /// A `KMSENC01` header (tests only: this version writes signed files).
    #[cfg(test)]
    pub(super) fn new_v1(
        capsule: Capsule,
        encrypted_key: Vec<u8>,
        nonce_prefix: [u8; NONCE_PREFIX_SIZE],
        key_commitment: [u8; KEY_COMMITMENT_SIZE],
    ) -> Result<Self, StreamError> {
        Self::unsigned(
            Version::V1,
            capsule,
            encrypted_key,
            nonce_prefix,
            key_commitment,
        )
    }

    /// A `KMSENC02` header, signed by `sender`.
    pub(super) fn new_signed(
        capsule: Capsule,
        encrypted_key: Vec<u8>,
        nonce_prefix: [u8; NONCE_PREFIX_SIZE],
        key_commitment: [u8; KEY_COMMITMENT_SIZE],
        segment_chunks: u16,
        sender: &SenderKey,
    ) -> Result<Self, StreamError> {
        let mut header = Self::unsigned(
            Version::V2,
            capsule,
            encrypted_key,
            nonce_prefix,
            key_commitment,
        )?;
        header
            .bytes
            .extend_from_slice(&segment_chunks.to_be_bytes());
        header.bytes.extend_from_slice(&sender.public_key_bytes());
        let signature = sender.sign(&signed_message(&header.bytes));
        header.bytes.extend_from_slice(&signature);
        header.signed = Some(Signed {
            segment_chunks,
            sender: sender.public_key(),
        });
        Ok(header)
    }

    /// The file's format version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Who signed the file (`None` for an unsigned `KMSENC01` file). Only a key Bob trusts
    /// means anything: check with [`Header::check_sender`].
    pub fn sender(&self) -> Option<&PublicKey> {
        self.signed.as_ref().map(|s| &s.sender)
    }

    /// Chunks per signed segment (`None` for an unsigned `KMSENC01` file).
    pub fn segment_chunks(&self) -> Option<u16> {
        self.signed.map(|s| s.segment_chunks)
    }

    /// Whether a reader accepts this file: signed by one of `trusted` (the header's signature
    /// was verified when it was read), or unsigned and `allow_unsigned`. Returns the sender.
    /// Call it before asking nodes for anything: an untrusted file is refused whatever its key.
    pub fn check_sender(
        &self,
        trusted: &TrustedSenders,
        allow_unsigned: bool,
    ) -> Result<Option<PublicKey>, StreamError> {
        match &self.signed {
            Some(signed) if trusted.contains(&signed.sender) => Ok(Some(signed.sender)),
            Some(signed) => Err(StreamError::UntrustedSender {
                sender: kms_crypto::wire::encode_public_key(&signed.sender),
                trusted: trusted.describe(),
            }),
            None if allow_unsigned => Ok(None),
            None => Err(StreamError::Unsigned),
        }
    }

    /// The signed header's own fields (`None` for `KMSENC01`).
    pub(super) fn signed(&self) -> Option<Signed> {
        self.signed
    }

    /// The Umbral capsule of the data key: Bob asks the policy's nodes to re-encrypt it.
    pub fn capsule(&self) -> &Capsule {
        &self.capsule
    }

    /// The data key encrypted with Umbral's DEM under the capsule.
    pub fn encrypted_key(&self) -> &[u8] {
        &self.encrypted_key
    }

    /// The random prefix of every chunk nonce.
    pub fn nonce_prefix(&self) -> [u8; NONCE_PREFIX_SIZE] {
        self.nonce_prefix
    }

    /// The key commitment (see [`super::DataKey::commitment`]).
    pub fn key_commitment(&self) -> [u8; KEY_COMMITMENT_SIZE] {
        self.key_commitment
    }

    /// The header's bytes as written: the associated data of every chunk.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The header's length in bytes (where the payload starts).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a header holds at least its magic.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// What the sender signs for a header whose bytes before the signature are `unsigned`.
fn signed_message(unsigned: &[u8]) -> Vec<u8> {
    [HEADER_SIGNATURE_TAG, unsigned].concat()
}

/// Appends a u32 big-endian length and the bytes.
fn put_field(out: &mut Vec<u8>, field: &'static str, bytes: &[u8]) -> Result<(), StreamError> {
    let len = u32::try_from(bytes.len())
        .ok()
        .filter(|len| (1..=MAX_HEADER_FIELD).contains(len))
        .ok_or_else(|| StreamError::HeaderField {
            field,
            reason: format!("{} bytes, must be 1 to {MAX_HEADER_FIELD}", bytes.len()),
        })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// Reads the header of an encrypted file, and nothing past it: `reader` is left at the payload's
/// first byte, ready for [`super::decrypt_stream_with_key`]. A signed header's signature is
/// verified here ([`StreamError::BadHeaderSignature`]); whether its sender is trusted is
/// [`Header::check_sender`]'s question.
pub fn read_header<R: Read + ?Sized>(reader: &mut R) -> Result<Header, StreamError> {
    // The chunks are bound to the header's bytes as read, not to a re-encoding of the parsed
    // values: any change to them, even one umbral would parse the same, fails authentication.
    let mut bytes = Vec::with_capacity(512);
    let magic = read_field(reader, &mut bytes, MAGIC.len(), "magic")?;
    let version = match magic {
        m if m == MAGIC => Version::V2,
        m if m == MAGIC_V1 => Version::V1,
        m if m.starts_with(b"KMSENC") => {
            return Err(StreamError::UnsupportedVersion {
                found: String::from_utf8_lossy(m).into_owned(),
            })
        }
        m => return Err(StreamError::BadMagic { found: m.to_vec() }),
    };
    let capsule_bytes = read_length_prefixed(reader, &mut bytes, "capsule")?;
    let capsule = Capsule::from_bytes(capsule_bytes).map_err(|e| StreamError::HeaderField {
        field: "capsule",
        reason: format!("not an Umbral capsule: {e}"),
    })?;
    let encrypted_key = read_length_prefixed(reader, &mut bytes, "encrypted key")?.to_vec();
    let nonce_prefix = read_array(reader, &mut bytes, "nonce prefix")?;
    let key_commitment = read_array(reader, &mut bytes, "key commitment")?;
    let signed = match version {
        Version::V1 => None,
        Version::V2 => Some(read_signature(reader, &mut bytes)?),
    };
    Ok(Header {
        version,
        capsule,
        encrypted_key,
        nonce_prefix,
        key_commitment,
        signed,
        bytes,
    })
}

/// Reads a signed header's last fields and verifies its signature over `bytes`.
fn read_signature<R: Read + ?Sized>(
    reader: &mut R,
    bytes: &mut Vec<u8>,
) -> Result<Signed, StreamError> {
    let segment_chunks = u16::from_be_bytes(read_array(reader, bytes, "segment size")?);
    if !(1..=MAX_SEGMENT_CHUNKS).contains(&segment_chunks) {
        return Err(StreamError::HeaderField {
            field: "segment size",
            reason: format!("{segment_chunks} chunks, must be 1 to {MAX_SEGMENT_CHUNKS}"),
        });
    }
    let key: [u8; SENDER_KEY_SIZE] = read_array(reader, bytes, "sender key")?;
    let sender =
        PublicKey::try_from_compressed_bytes(&key).map_err(|e| StreamError::HeaderField {
            field: "sender key",
            reason: format!("not a compressed secp256k1 point: {e}"),
        })?;
    let signed_len = bytes.len();
    let signature: [u8; SIGNATURE_SIZE] = read_array(reader, bytes, "header signature")?;
    if !sender::verify(&sender, &signed_message(&bytes[..signed_len]), &signature) {
        return Err(StreamError::BadHeaderSignature {
            sender: kms_crypto::wire::encode_public_key(&sender),
        });
    }
    Ok(Signed {
        segment_chunks,
        sender,
    })
}

/// Reads `len` bytes of the header onto `bytes` and returns them.
fn read_field<'a, R: Read + ?Sized>(
    reader: &mut R,
    bytes: &'a mut Vec<u8>,
    len: usize,
    field: &'static str,
) -> Result<&'a [u8], StreamError> {
    let start = bytes.len();
    bytes.resize(start + len, 0);
    if read_full(reader, &mut bytes[start..])? < len {
        return Err(StreamError::TruncatedHeader { field });
    }
    Ok(&bytes[start..])
}

/// Reads a fixed-size field of the header onto `bytes` and returns it.
fn read_array<const N: usize, R: Read + ?Sized>(
    reader: &mut R,
    bytes: &mut Vec<u8>,
    field: &'static str,
) -> Result<[u8; N], StreamError> {
    let mut array = [0u8; N];
    array.copy_from_slice(read_field(reader, bytes, N, field)?);
    Ok(array)
}

/// Reads a u32 big-endian length (1 to [`MAX_HEADER_FIELD`]) and that many bytes.
fn read_length_prefixed<'a, R: Read + ?Sized>(
    reader: &mut R,
    bytes: &'a mut Vec<u8>,
    field: &'static str,
) -> Result<&'a [u8], StreamError> {
    let len = u32::from_be_bytes(read_array(reader, bytes, field)?);
    if !(1..=MAX_HEADER_FIELD).contains(&len) {
        return Err(StreamError::HeaderField {
            field,
            reason: format!("declared length {len}, must be 1 to {MAX_HEADER_FIELD}"),
        });
    }
    read_field(reader, bytes, len as usize, field)
}

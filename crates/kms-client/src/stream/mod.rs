//! Streaming encryption of payloads of any size in bounded memory, signed by their sender
//! (Enrico's side), and their decryption (Alice's or Bob's side). The byte layout is in
//! `docs/client.md`.
//!
//! A random 32-byte data key is encrypted to the policy's public key with Umbral
//! (`umbral_pre::encrypt`); the capsule and that ciphertext open the header, which the sender
//! signs. The payload follows in chunks of [`CHUNK_SIZE`] bytes, each sealed with
//! ChaCha20-Poly1305 in the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár: the nonce
//! carries the chunk's index and a last-chunk flag) with the whole header as associated data. So a
//! chunk cannot be moved (reordering), dropped at the end (truncation), added after the final one
//! (extension), or moved to another file (the header differs), without failing authentication.
//!
//! The chunks alone do not say who made them: every Bob of the policy ends up holding the data
//! key, and Poly1305 is not collision-resistant to whoever knows the key, so a Bob could make
//! other chunks that another Bob's key opens. So the format ([`MAGIC`], `KMSENC02`) groups the
//! chunks in segments of up to [`MAX_SEGMENT_CHUNKS`] and follows each segment with a record
//! holding the sender's signature over the SHA-256 digests of its sealed chunks: content is
//! accepted only if a sender the reader trusts signed it ([`Header::check_sender`]).
//!
//! Decryption releases a segment only after its signature and every one of its tags verified:
//! on an error, what was written is exactly the segments before the failing one, all authentic;
//! the caller must still discard it (write to a temporary file and rename on success), since the
//! payload as a whole was not. A segment is the unit of streaming playback: [`EncryptOptions`]
//! chooses its size, from one chunk (64 KiB released at a time, one signature per chunk) to 32
//! (2 MiB); the default, [`DEFAULT_SEGMENT_CHUNKS`], is 1 MiB.
//!
//! Files of the unsigned first format (`KMSENC01`) are still read, but only when the caller
//! allows it ([`DecryptOptions::allow_unsigned`]): anyone who knows a policy's public key could
//! have made one.
//!
//! Memory is bounded whatever the payload's size: two batches of segments in flight (about
//! 8 MiB on two cores, 32 MiB at most), processed in parallel while the calling thread reads and
//! writes (see [`default_threads`]).

mod chunk;
mod header;
mod pipeline;
mod signed;
#[cfg(test)]
mod tests;
mod v1;

use std::io::{self, Read, Write};

use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use umbral_pre::{
    decrypt_original, decrypt_reencrypted, PublicKey, ReencryptionError, SecretKey,
    VerifiedCapsuleFrag,
};
use zeroize::Zeroizing;

use crate::sender::{SenderKey, TrustedSenders};

pub use header::{read_header, Header, Version};

/// The first 8 bytes of every file this version writes; the last two digits are the format's
/// version.
pub const MAGIC: &[u8; 8] = b"KMSENC02";

/// The magic of the first, unsigned format, still read with
/// [`DecryptOptions::allow_unsigned`].
pub const MAGIC_V1: &[u8; 8] = b"KMSENC01";

/// Plaintext bytes per chunk (the final chunk may be shorter, or empty for an empty payload).
pub const CHUNK_SIZE: usize = 64 * 1024;

/// The Poly1305 tag that follows each chunk's ciphertext.
pub const TAG_SIZE: usize = 16;

/// Bytes of the random nonce prefix stored in the header.
pub const NONCE_PREFIX_SIZE: usize = 7;

/// Bytes of a data key.
pub const DATA_KEY_SIZE: usize = 32;

/// Bytes of the key commitment stored in the header.
pub const KEY_COMMITMENT_SIZE: usize = 32;

/// The largest capsule or encrypted key a header may declare: both are about a hundred bytes,
/// and a reader must not allocate whatever a corrupted length says.
pub const MAX_HEADER_FIELD: u32 = 1024;

/// The most chunks a signed segment may hold (2 MiB of plaintext): bounds the reader's memory.
pub const MAX_SEGMENT_CHUNKS: u16 = 32;

/// Chunks per signed segment unless chosen otherwise: 1 MiB released at a time, one signature
/// per MiB (well under 1% of the time it takes to seal it).
pub const DEFAULT_SEGMENT_CHUNKS: u16 = 16;

/// The record after each segment's chunks: `u32` segment index and the sender's 64-byte
/// signature.
pub const RECORD_SIZE: usize = 4 + crate::sender::SIGNATURE_SIZE;

/// A sealed chunk of full size.
const SEALED_CHUNK: usize = CHUNK_SIZE + TAG_SIZE;

/// Why a payload could not be encrypted or decrypted.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Reading the input or writing the output failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The input does not start with [`MAGIC`] nor any other version of it.
    #[error("not a KMS encrypted file (it starts with {found:02x?}, not \"KMSENC02\"): encrypt it with `kms encrypt` first")]
    BadMagic {
        /// The first bytes of the input.
        found: Vec<u8>,
    },
    /// The input is a KMS encrypted file of another format version.
    #[error("encrypted file format {found:?} is not supported by this version (it reads \"KMSENC02\" and \"KMSENC01\"): upgrade kms")]
    UnsupportedVersion {
        /// The input's magic.
        found: String,
    },
    /// The input ends inside the header.
    #[error("the file ends inside its header (while reading the {field}): it is truncated")]
    TruncatedHeader {
        /// The header field being read.
        field: &'static str,
    },
    /// A header field is malformed.
    #[error(
        "the header's {field} is invalid: {reason}; the file is corrupted or was not made by kms"
    )]
    HeaderField {
        /// The header field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The header's signature does not verify under the sender key the header names.
    #[error("the header's signature does not verify under the sender key it names ({sender}): the header was altered, or re-signed by another key; do not trust this file, get it from its sender again")]
    BadHeaderSignature {
        /// The sender key the header names (`0x…`).
        sender: String,
    },
    /// The file is signed, but not by a sender the reader trusts.
    #[error("the file was encrypted by sender {sender}, who is not among the trusted senders ({trusted}): if you know this sender, trust its key (`kms retrieve --sender {sender}`, or ask the policy's owner to add it to the policy file's senders)")]
    UntrustedSender {
        /// The header's sender key (`0x…`).
        sender: String,
        /// The trusted keys (`0x…`, comma-separated), or `none`.
        trusted: String,
    },
    /// The file is of the unsigned first format and the reader did not allow it.
    #[error("the file is KMSENC01, an unsigned format: anyone who knows the policy's public key could have made it. If you trust its origin, decrypt it with `--allow-unsigned` (library: `DecryptOptions::allow_unsigned`); to convert it, have its sender re-encrypt the plaintext with `kms encrypt`, which signs")]
    Unsigned,
    /// The payload ends after authentic data without its final part.
    #[error("the file is truncated: it ends after chunk {chunks} without its final chunk (get a complete copy)")]
    Truncated {
        /// How many complete authentic chunks it holds.
        chunks: u64,
    },
    /// A chunk fails authentication.
    #[error("chunk {chunk} (at byte {offset} of the file) fails authentication: the file was modified or corrupted inside that chunk (get an intact copy)")]
    Tampered {
        /// The chunk's index, from 0.
        chunk: u64,
        /// Where the chunk starts in the encrypted file (the header included).
        offset: u64,
    },
    /// A segment's chunks open with the data key, but the sender's signature does not cover
    /// them: someone else who holds the data key (another recipient) made or changed them, or
    /// the segment's record was damaged.
    #[error("segment {segment} (at byte {offset} of the file) is not what the sender signed: its chunks decrypt with the data key, but the sender's signature does not cover them, so someone else who holds the data key (another recipient of the policy) made or changed them, or the segment's signature record was damaged. Do not trust this file; get it from its sender again")]
    Forged {
        /// The segment's index, from 0.
        segment: u64,
        /// Where the segment starts in the encrypted file.
        offset: u64,
    },
    /// An authentic segment or chunk is in another one's place.
    #[error("{unit} {found} is where {unit} {expected} belongs (at byte {offset} of the file): the file's parts were reordered (get an intact copy)")]
    Reordered {
        /// `"segment"` or `"chunk"`.
        unit: &'static str,
        /// The index that belongs at this place.
        expected: u64,
        /// The index of what is there.
        found: u64,
        /// Where it starts in the encrypted file.
        offset: u64,
    },
    /// Data follows the final chunk.
    #[error("data follows the final chunk {chunk}: the file was extended after encryption")]
    TrailingData {
        /// The index of the final chunk.
        chunk: u64,
    },
    /// The key does not open this file.
    #[error("wrong key: {0}")]
    WrongKey(String),
    /// The capsule fragments do not open the capsule.
    #[error("the capsule fragments do not open this file's capsule: {0} (they must be verified cfrags of this very capsule, at least the policy's threshold of them)")]
    Reencryption(String),
    /// Umbral could not encrypt the data key.
    #[error("could not encrypt the data key with Umbral: {0}")]
    Umbral(String),
    /// The payload has more chunks than the 32-bit chunk counter can number (256 TiB).
    #[error("the payload exceeds the format's limit of 2^32 chunks of 64 KiB: split it")]
    TooLarge,
    /// An option is out of its range.
    #[error("invalid option: {0}")]
    BadOption(String),
}

/// A payload's data key. Zeroed when dropped; its `Debug` does not show it.
pub struct DataKey(Zeroizing<[u8; DATA_KEY_SIZE]>);

impl DataKey {
    /// A fresh random key.
    pub fn random() -> Self {
        let mut key = Zeroizing::new([0u8; DATA_KEY_SIZE]);
        OsRng.fill_bytes(key.as_mut());
        Self(key)
    }

    /// The key with these bytes.
    pub fn from_bytes(bytes: [u8; DATA_KEY_SIZE]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; DATA_KEY_SIZE] {
        &self.0
    }

    /// `sha256("KMSENC0x key commitment" || key)` for the format `version`: lets a reader tell
    /// a wrong key from a modified chunk, and binds the file to one key (ChaCha20-Poly1305
    /// alone does not).
    pub fn commitment(&self, version: Version) -> [u8; KEY_COMMITMENT_SIZE] {
        let mut hasher = Sha256::new();
        hasher.update(version.magic());
        hasher.update(b" key commitment");
        hasher.update(self.0.as_ref());
        hasher.finalize().into()
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// What a stream operation processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamStats {
    /// Bytes of the header.
    pub header_bytes: u64,
    /// Bytes of plaintext read (encryption) or written (decryption).
    pub plaintext_bytes: u64,
    /// Bytes of the payload (sealed chunks and segment records), the header excluded.
    pub payload_bytes: u64,
    /// Chunks sealed or opened.
    pub chunks: u64,
    /// Signed segments (0 for an unsigned `KMSENC01` file).
    pub segments: u64,
}

impl StreamStats {
    /// The encrypted file's total size.
    pub fn encrypted_bytes(&self) -> u64 {
        self.header_bytes + self.payload_bytes
    }
}

/// How [`encrypt_stream_with_options`] encrypts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncryptOptions {
    /// Threads sealing and signing, the calling thread included; 0 or 1 does everything on the
    /// calling thread.
    pub threads: usize,
    /// Chunks per signed segment, 1 to [`MAX_SEGMENT_CHUNKS`]: what a reader releases at a
    /// time. Fewer lower the latency of streaming playback (a reader waits for a whole segment)
    /// and cost one signature (writer) and one verification (reader) per segment.
    pub segment_chunks: u16,
}

impl Default for EncryptOptions {
    fn default() -> Self {
        Self {
            threads: default_threads(),
            segment_chunks: DEFAULT_SEGMENT_CHUNKS,
        }
    }
}

/// How [`decrypt_stream_with_options`] decrypts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecryptOptions {
    /// Threads verifying and opening, the calling thread included; 0 or 1 does everything on
    /// the calling thread.
    pub threads: usize,
    /// Also accept unsigned `KMSENC01` files (whoever knows the policy's public key could have
    /// made one): only for files whose origin the caller trusts otherwise.
    pub allow_unsigned: bool,
}

impl Default for DecryptOptions {
    fn default() -> Self {
        Self {
            threads: default_threads(),
            allow_unsigned: false,
        }
    }
}

/// Encrypts everything `reader` yields to `policy_pk` (the policy's delegating public key),
/// signed by `sender`, and writes the encrypted file to `writer`, in bounded memory, with the
/// default [`EncryptOptions`].
///
/// A fresh random data key and nonce prefix are drawn for each call. `writer` is not flushed
/// here beyond what `write_all` does: wrap a file in a `BufWriter` only if you also flush it.
pub fn encrypt_stream<R: Read + ?Sized, W: Write + ?Sized>(
    policy_pk: &PublicKey,
    sender: &SenderKey,
    reader: &mut R,
    writer: &mut W,
) -> Result<StreamStats, StreamError> {
    encrypt_stream_with_options(
        policy_pk,
        sender,
        reader,
        writer,
        &EncryptOptions::default(),
    )
}

/// [`encrypt_stream`] with explicit options.
pub fn encrypt_stream_with_options<R: Read + ?Sized, W: Write + ?Sized>(
    policy_pk: &PublicKey,
    sender: &SenderKey,
    reader: &mut R,
    writer: &mut W,
    options: &EncryptOptions,
) -> Result<StreamStats, StreamError> {
    if !(1..=MAX_SEGMENT_CHUNKS).contains(&options.segment_chunks) {
        return Err(StreamError::BadOption(format!(
            "{} chunks per segment: must be 1 to {MAX_SEGMENT_CHUNKS}",
            options.segment_chunks
        )));
    }
    let (data_key, header) = new_key(policy_pk, |key, capsule, encrypted_key, nonce_prefix| {
        Header::new_signed(
            capsule,
            encrypted_key,
            nonce_prefix,
            key.commitment(Version::V2),
            options.segment_chunks,
            sender,
        )
    })?;
    signed::encrypt(&data_key, &header, sender, reader, writer, options.threads)
}

/// A fresh data key encrypted to `policy_pk`, a fresh nonce prefix, and the header `make`
/// builds of them.
fn new_key(
    policy_pk: &PublicKey,
    make: impl FnOnce(
        &DataKey,
        umbral_pre::Capsule,
        Vec<u8>,
        [u8; NONCE_PREFIX_SIZE],
    ) -> Result<Header, StreamError>,
) -> Result<(DataKey, Header), StreamError> {
    let data_key = DataKey::random();
    let (capsule, encrypted_key) = umbral_pre::encrypt(policy_pk, data_key.as_bytes())
        .map_err(|e| StreamError::Umbral(e.to_string()))?;
    let mut nonce_prefix = [0u8; NONCE_PREFIX_SIZE];
    OsRng.fill_bytes(&mut nonce_prefix);
    let header = make(&data_key, capsule, encrypted_key.into_vec(), nonce_prefix)?;
    Ok((data_key, header))
}

/// Threads [`encrypt_stream`] and [`decrypt_stream_with_key`] use: the machine's
/// parallelism, at most 8 (ChaCha20-Poly1305 and SHA-256 together run at about 1 GB/s per
/// core; beyond that the disk is the limit).
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

/// Checks that the opened data key is the header's.
fn committed_key(plaintext: &[u8], header: &Header) -> Result<DataKey, StreamError> {
    let bytes: [u8; DATA_KEY_SIZE] =
        plaintext.try_into().map_err(|_| StreamError::HeaderField {
            field: "encrypted key",
            reason: format!(
                "decrypts to {} bytes, not a {DATA_KEY_SIZE}-byte key",
                plaintext.len()
            ),
        })?;
    let key = DataKey::from_bytes(bytes);
    if key.commitment(header.version()) != header.key_commitment() {
        return Err(StreamError::HeaderField {
            field: "key commitment",
            reason: "does not match the encrypted data key".into(),
        });
    }
    Ok(key)
}

/// Alice opens the data key of a file encrypted to her own policy key, with the delegating
/// secret key of the policy's label.
pub fn open_data_key_original(
    delegating_sk: &SecretKey,
    header: &Header,
) -> Result<DataKey, StreamError> {
    let plaintext = Zeroizing::new(
        decrypt_original(delegating_sk, header.capsule(), header.encrypted_key())
            .map_err(|e| {
                StreamError::WrongKey(format!(
                    "this delegating key does not open the file's data key ({e}): use the key of the label the file was encrypted to"
                ))
            })?
            .into_vec(),
    );
    committed_key(&plaintext, header)
}

/// Bob opens the data key with his receiving secret key, the policy's delegating public key and
/// at least `threshold` verified capsule fragments of the header's capsule (see
/// [`crate::retrieve`]).
pub fn open_data_key_reencrypted(
    receiving_sk: &SecretKey,
    delegating_pk: &PublicKey,
    header: &Header,
    verified_cfrags: impl IntoIterator<Item = VerifiedCapsuleFrag>,
) -> Result<DataKey, StreamError> {
    let plaintext = decrypt_reencrypted(
        receiving_sk,
        delegating_pk,
        header.capsule(),
        verified_cfrags,
        header.encrypted_key(),
    )
    .map_err(|e| match e {
        ReencryptionError::OnOpen(e) => StreamError::Reencryption(e.to_string()),
        ReencryptionError::OnDecryption(e) => StreamError::WrongKey(format!(
            "the re-encrypted data key does not decrypt ({e}): the receiving key or the policy's delegating key is not the one the policy was made with"
        )),
    })?;
    let plaintext = Zeroizing::new(plaintext.into_vec());
    committed_key(&plaintext, header)
}

/// Decrypts the payload that follows `header` in `reader` (see [`read_header`]) and writes the
/// plaintext to `writer`, in bounded memory, with the default [`DecryptOptions`]: the file must
/// be signed by one of `trusted` (checked again here, even if the caller did with
/// [`Header::check_sender`]).
///
/// Nothing of a segment is written before its signature and tags verify, and segments are
/// written in order up to the first that fails. On an error, `writer` holds the authentic
/// segments before the failing one; discard it all the same.
pub fn decrypt_stream_with_key<R: Read + ?Sized, W: Write + ?Sized>(
    data_key: &DataKey,
    header: &Header,
    trusted: &TrustedSenders,
    reader: &mut R,
    writer: &mut W,
) -> Result<StreamStats, StreamError> {
    decrypt_stream_with_options(
        data_key,
        header,
        trusted,
        reader,
        writer,
        &DecryptOptions::default(),
    )
}

/// [`decrypt_stream_with_key`] with explicit options.
pub fn decrypt_stream_with_options<R: Read + ?Sized, W: Write + ?Sized>(
    data_key: &DataKey,
    header: &Header,
    trusted: &TrustedSenders,
    reader: &mut R,
    writer: &mut W,
    options: &DecryptOptions,
) -> Result<StreamStats, StreamError> {
    header.check_sender(trusted, options.allow_unsigned)?;
    if data_key.commitment(header.version()) != header.key_commitment() {
        return Err(StreamError::WrongKey(
            "this data key is not the one the file was encrypted with".into(),
        ));
    }
    match header.signed() {
        Some(signed) => signed::decrypt(data_key, header, signed, reader, writer, options.threads),
        None => v1::decrypt(data_key, header, reader, writer, options.threads),
    }
}

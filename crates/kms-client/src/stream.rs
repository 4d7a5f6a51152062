//! Streaming encryption of payloads of any size in bounded memory (Enrico's side), and its
//! decryption (Alice's or Bob's side). The byte layout is in `docs/client.md`.
//!
//! A random 32-byte data key is encrypted to the policy's public key with Umbral
//! (`umbral_pre::encrypt`); the capsule and that ciphertext open the header. The payload follows
//! in chunks of [`CHUNK_SIZE`] bytes, each sealed with ChaCha20-Poly1305 in the STREAM
//! construction (Hoang, Reyhanitabar, Rogaway, Vizár: the nonce carries the chunk's index and a
//! last-chunk flag) with the whole header as associated data. So a chunk cannot be moved
//! (reordering), dropped at the end (truncation), added after the final one (extension), or
//! moved to another file (the header differs), without failing authentication.
//!
//! Decryption authenticates each chunk before it writes any of it: on an error, what was written
//! is exactly the chunks before the failing one, all authentic; the caller must still discard it
//! (write to a temporary file and rename on success), since the payload as a whole was not.
//!
//! Memory is bounded whatever the payload's size: two batches of chunks in flight (4 MiB on two
//! cores, 16 MiB at most), sealed or opened in parallel while the calling thread reads and
//! writes (see [`default_threads`]).

use std::{
    io::{self, Read, Write},
    sync::Mutex,
};

use chacha20poly1305::{aead::AeadInPlace, ChaCha20Poly1305, Key, KeyInit, Nonce, Tag};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use umbral_pre::{
    decrypt_original, decrypt_reencrypted, Capsule, DefaultDeserialize, DefaultSerialize,
    PublicKey, ReencryptionError, SecretKey, VerifiedCapsuleFrag,
};
use zeroize::Zeroizing;

/// The first 8 bytes of every encrypted file; the last two digits are the format's version.
pub const MAGIC: &[u8; 8] = b"KMSENC01";

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

/// Domain separation of the key commitment: `sha256(KEY_COMMITMENT_TAG || data_key)`.
const KEY_COMMITMENT_TAG: &[u8] = b"KMSENC01 key commitment";

/// A sealed chunk of full size.
const SEALED_CHUNK: usize = CHUNK_SIZE + TAG_SIZE;

/// Why a payload could not be encrypted or decrypted.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Reading the input or writing the output failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The input does not start with [`MAGIC`] nor any other version of it.
    #[error("not a KMS encrypted file (it starts with {found:02x?}, not \"KMSENC01\"): encrypt it with `kms encrypt` first")]
    BadMagic {
        /// The first bytes of the input.
        found: Vec<u8>,
    },
    /// The input is a KMS encrypted file of another format version.
    #[error("encrypted file format {found:?} is not supported by this version (it reads \"KMSENC01\"): upgrade kms")]
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
    /// The payload ends after an authentic chunk that is not the final one.
    #[error("the file is truncated: it ends after chunk {chunks} without its final chunk (get a complete copy)")]
    Truncated {
        /// How many authentic chunks it holds.
        chunks: u64,
    },
    /// A chunk fails authentication.
    #[error("chunk {chunk} (at byte {offset} of the file) fails authentication: the file was modified, corrupted or cut inside that chunk")]
    Tampered {
        /// The chunk's index, from 0.
        chunk: u64,
        /// Where the chunk starts in the encrypted file (the header included).
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

    /// `sha256("KMSENC01 key commitment" || key)`: lets a reader tell a wrong key from a
    /// modified chunk, and binds the file to one key (ChaCha20-Poly1305 alone does not).
    pub fn commitment(&self) -> [u8; KEY_COMMITMENT_SIZE] {
        let mut hasher = Sha256::new();
        hasher.update(KEY_COMMITMENT_TAG);
        hasher.update(self.0.as_ref());
        hasher.finalize().into()
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// The header of an encrypted file: what is needed to recover the data key, and the bytes every
/// chunk is bound to.
#[derive(Debug, Clone)]
pub struct Header {
    capsule: Capsule,
    encrypted_key: Vec<u8>,
    nonce_prefix: [u8; NONCE_PREFIX_SIZE],
    key_commitment: [u8; KEY_COMMITMENT_SIZE],
    bytes: Vec<u8>,
}

impl Header {
    fn new(
        capsule: Capsule,
        encrypted_key: Vec<u8>,
        nonce_prefix: [u8; NONCE_PREFIX_SIZE],
        key_commitment: [u8; KEY_COMMITMENT_SIZE],
    ) -> Result<Self, StreamError> {
        let capsule_bytes = capsule
            .to_bytes()
            .map_err(|e| StreamError::Umbral(format!("serializing the capsule: {e}")))?;
        let mut bytes = Vec::with_capacity(
            MAGIC.len()
                + 8
                + capsule_bytes.len()
                + encrypted_key.len()
                + NONCE_PREFIX_SIZE
                + KEY_COMMITMENT_SIZE,
        );
        bytes.extend_from_slice(MAGIC);
        put_field(&mut bytes, "capsule", &capsule_bytes)?;
        put_field(&mut bytes, "encrypted key", &encrypted_key)?;
        bytes.extend_from_slice(&nonce_prefix);
        bytes.extend_from_slice(&key_commitment);
        Ok(Self {
            capsule,
            encrypted_key,
            nonce_prefix,
            key_commitment,
            bytes,
        })
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

    /// The key commitment (see [`DataKey::commitment`]).
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

/// What a stream operation processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamStats {
    /// Bytes of the header.
    pub header_bytes: u64,
    /// Bytes of plaintext read (encryption) or written (decryption).
    pub plaintext_bytes: u64,
    /// Bytes of the sealed payload (ciphertext and tags), the header excluded.
    pub payload_bytes: u64,
    /// Chunks sealed or opened.
    pub chunks: u64,
}

impl StreamStats {
    /// The encrypted file's total size.
    pub fn encrypted_bytes(&self) -> u64 {
        self.header_bytes + self.payload_bytes
    }
}

/// Reads until `buf` is full or the input ends; returns how much was read.
fn read_full<R: Read + ?Sized>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads one byte to learn whether the input has more; `None` at its end.
fn peek_byte<R: Read + ?Sized>(reader: &mut R) -> io::Result<Option<u8>> {
    let mut one = [0u8; 1];
    Ok((read_full(reader, &mut one)? == 1).then_some(one[0]))
}

/// The nonce of chunk `counter`: `prefix (7) || counter (u32 big-endian) || last (0x01 for the
/// final chunk, else 0x00)`.
fn chunk_nonce(prefix: &[u8; NONCE_PREFIX_SIZE], counter: u32, last: bool) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce[..NONCE_PREFIX_SIZE].copy_from_slice(prefix);
    nonce[NONCE_PREFIX_SIZE..11].copy_from_slice(&counter.to_be_bytes());
    nonce[11] = u8::from(last);
    Nonce::from(nonce)
}

/// Encrypts everything `reader` yields to `policy_pk` (the policy's delegating public key) and
/// writes the encrypted file to `writer`, in bounded memory, sealing chunks on
/// [`default_threads`] threads.
///
/// A fresh random data key and nonce prefix are drawn for each call. `writer` is not flushed
/// here beyond what `write_all` does: wrap a file in a `BufWriter` only if you also flush it.
pub fn encrypt_stream<R: Read + ?Sized, W: Write + ?Sized>(
    policy_pk: &PublicKey,
    reader: &mut R,
    writer: &mut W,
) -> Result<StreamStats, StreamError> {
    encrypt_stream_with_threads(policy_pk, reader, writer, default_threads())
}

/// [`encrypt_stream`] with `threads` threads sealing chunks, the calling thread included; 0 or
/// 1 does everything on the calling thread.
pub fn encrypt_stream_with_threads<R: Read + ?Sized, W: Write + ?Sized>(
    policy_pk: &PublicKey,
    reader: &mut R,
    writer: &mut W,
    threads: usize,
) -> Result<StreamStats, StreamError> {
    let data_key = DataKey::random();
    let (capsule, encrypted_key) = umbral_pre::encrypt(policy_pk, data_key.as_bytes())
        .map_err(|e| StreamError::Umbral(e.to_string()))?;
    let mut nonce_prefix = [0u8; NONCE_PREFIX_SIZE];
    OsRng.fill_bytes(&mut nonce_prefix);
    let header = Header::new(
        capsule,
        encrypted_key.into_vec(),
        nonce_prefix,
        data_key.commitment(),
    )?;
    writer.write_all(header.as_bytes())?;
    let cipher = ChaCha20Poly1305::new(&Key::from(*data_key.as_bytes()));
    let aad = header.as_bytes();
    let mut stats = StreamStats {
        header_bytes: header.len() as u64,
        ..StreamStats::default()
    };
    let seal = |slot: &mut Slot| {
        slot.outcome = u32::try_from(slot.index)
            .map_err(|_| StreamError::TooLarge)
            .and_then(|counter| {
                let nonce = chunk_nonce(&nonce_prefix, counter, slot.last);
                cipher
                    .encrypt_in_place_detached(&nonce, aad, &mut slot.buf[..slot.len])
                    .map(|tag| slot.tag.copy_from_slice(&tag))
                    .map_err(|_| StreamError::TooLarge)
            });
    };
    let emit = |writer: &mut W, slot: &mut Slot| -> Result<(), StreamError> {
        std::mem::replace(&mut slot.outcome, Ok(()))?;
        writer.write_all(&slot.buf[..slot.len])?;
        writer.write_all(&slot.tag)?;
        stats.plaintext_bytes += slot.len as u64;
        stats.payload_bytes += (slot.len + TAG_SIZE) as u64;
        stats.chunks += 1;
        Ok(())
    };
    pipeline(reader, writer, CHUNK_SIZE, threads, seal, emit)?;
    Ok(stats)
}

/// Threads [`encrypt_stream`] and [`decrypt_stream_with_key`] use: the machine's
/// parallelism, at most 8 (ChaCha20-Poly1305 runs at about 1 GB/s per core; beyond that the
/// disk is the limit).
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

/// Chunks per thread in a batch: large enough that a helper thread's start-up (tens of
/// microseconds, once per batch) is small against sealing 1 MiB, small enough to keep memory
/// bounded (two batches: 2 x 8 threads x 16 x 64 KiB = 16 MiB at most).
const CHUNKS_PER_WORKER: usize = 16;

/// One chunk in flight.
struct Slot {
    /// The chunk as read (plaintext when sealing, ciphertext and tag when opening), then
    /// transformed in place.
    buf: Vec<u8>,
    /// Bytes of `buf` in use.
    len: usize,
    /// Whether the input ends with this chunk.
    last: bool,
    /// The chunk's index in the payload.
    index: u64,
    /// The tag made when sealing.
    tag: [u8; TAG_SIZE],
    /// What processing the chunk gave.
    outcome: Result<(), StreamError>,
}

/// The reading side of the pipeline: chunks of `size` bytes, the last one shorter (or full and
/// followed by the end), with one byte of look-ahead to tell.
struct ChunkReader<'a, R: ?Sized> {
    reader: &'a mut R,
    size: usize,
    carry: Option<u8>,
    next_index: u64,
    done: bool,
}

impl<R: Read + ?Sized> ChunkReader<'_, R> {
    /// Fills the slots in order until they are all used or the input ends; returns how many
    /// hold a chunk.
    fn fill(&mut self, slots: &mut [Slot]) -> io::Result<usize> {
        let mut count = 0;
        for slot in slots.iter_mut() {
            if self.done {
                break;
            }
            let mut filled = 0;
            if let Some(byte) = self.carry.take() {
                slot.buf[0] = byte;
                filled = 1;
            }
            filled += read_full(self.reader, &mut slot.buf[filled..self.size])?;
            let last = if filled < self.size {
                true
            } else {
                self.carry = peek_byte(self.reader)?;
                self.carry.is_none()
            };
            slot.len = filled;
            slot.last = last;
            slot.index = self.next_index;
            // Until `process` says otherwise: a slot that was somehow skipped is never emitted.
            slot.outcome = Err(StreamError::Io(io::Error::other("chunk not processed")));
            self.next_index += 1;
            self.done = last;
            count += 1;
        }
        Ok(count)
    }
}

/// Reads `reader` in chunks of `chunk_size` bytes, runs `process` on each (on `threads`
/// threads, the calling one included) and hands them to `emit` in order.
///
/// With threads, two batches of slots alternate: while helper threads process one, the calling
/// thread emits the previous one and reads the next into the same buffers, then helps with the
/// processing; so reading, writing and the cipher overlap.
fn pipeline<R, W, P, E>(
    reader: &mut R,
    writer: &mut W,
    chunk_size: usize,
    threads: usize,
    process: P,
    mut emit: E,
) -> Result<(), StreamError>
where
    R: Read + ?Sized,
    W: Write + ?Sized,
    P: Fn(&mut Slot) + Sync,
    E: FnMut(&mut W, &mut Slot) -> Result<(), StreamError>,
{
    let batch = threads.max(1) * CHUNKS_PER_WORKER;
    let new_batch = || -> Vec<Slot> {
        (0..batch)
            .map(|_| Slot {
                buf: vec![0u8; chunk_size],
                len: 0,
                last: false,
                index: 0,
                tag: [0u8; TAG_SIZE],
                outcome: Ok(()),
            })
            .collect()
    };
    let mut chunks = ChunkReader {
        reader,
        size: chunk_size,
        carry: None,
        next_index: 0,
        done: false,
    };
    let mut current = new_batch();
    if threads <= 1 {
        loop {
            let count = chunks.fill(&mut current)?;
            for slot in &mut current[..count] {
                process(slot);
                emit(writer, slot)?;
            }
            if chunks.done {
                return Ok(());
            }
        }
    }

    let mut other = new_batch();
    let mut current_count = chunks.fill(&mut current)?;
    let mut pending = 0; // processed slots of `other` not emitted yet
    loop {
        let current_done = chunks.done;
        // The slots of the batch, handed out one at a time to whichever thread is free: the
        // calling thread joins in once its reading and writing is done.
        let queue = Mutex::new(current[..current_count].iter_mut());
        let work = || loop {
            let next = match queue.lock() {
                Ok(mut slots) => slots.next(),
                // Only a panicking worker poisons it, and the scope re-raises that panic.
                Err(_) => None,
            };
            match next {
                Some(slot) => process(slot),
                None => break,
            }
        };
        let next_count = std::thread::scope(|scope| {
            for _ in 1..threads {
                scope.spawn(work);
            }
            let io = (|| {
                for slot in &mut other[..pending] {
                    emit(writer, slot)?;
                }
                if current_done {
                    Ok(0)
                } else {
                    chunks.fill(&mut other).map_err(StreamError::from)
                }
            })();
            work();
            io
        })?;
        if current_done {
            for slot in &mut current[..current_count] {
                emit(writer, slot)?;
            }
            return Ok(());
        }
        std::mem::swap(&mut current, &mut other);
        pending = current_count;
        current_count = next_count;
    }
}

/// Reads the header of an encrypted file, and nothing past it: `reader` is left at the payload's
/// first byte, ready for [`decrypt_stream_with_key`].
pub fn read_header<R: Read + ?Sized>(reader: &mut R) -> Result<Header, StreamError> {
    // The chunks are bound to the header's bytes as read, not to a re-encoding of the parsed
    // values: any change to them, even one umbral would parse the same, fails authentication.
    let mut bytes = Vec::with_capacity(256);
    let magic = read_field(reader, &mut bytes, MAGIC.len(), "magic")?;
    if magic != MAGIC {
        if magic.starts_with(b"KMSENC") {
            return Err(StreamError::UnsupportedVersion {
                found: String::from_utf8_lossy(magic).into_owned(),
            });
        }
        return Err(StreamError::BadMagic {
            found: magic.to_vec(),
        });
    }
    let capsule_bytes = read_length_prefixed(reader, &mut bytes, "capsule")?;
    let capsule = Capsule::from_bytes(capsule_bytes).map_err(|e| StreamError::HeaderField {
        field: "capsule",
        reason: format!("not an Umbral capsule: {e}"),
    })?;
    let encrypted_key = read_length_prefixed(reader, &mut bytes, "encrypted key")?.to_vec();
    let mut nonce_prefix = [0u8; NONCE_PREFIX_SIZE];
    nonce_prefix.copy_from_slice(read_field(
        reader,
        &mut bytes,
        NONCE_PREFIX_SIZE,
        "nonce prefix",
    )?);
    let mut key_commitment = [0u8; KEY_COMMITMENT_SIZE];
    key_commitment.copy_from_slice(read_field(
        reader,
        &mut bytes,
        KEY_COMMITMENT_SIZE,
        "key commitment",
    )?);
    Ok(Header {
        capsule,
        encrypted_key,
        nonce_prefix,
        key_commitment,
        bytes,
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

/// Reads a u32 big-endian length (1 to [`MAX_HEADER_FIELD`]) and that many bytes.
fn read_length_prefixed<'a, R: Read + ?Sized>(
    reader: &mut R,
    bytes: &'a mut Vec<u8>,
    field: &'static str,
) -> Result<&'a [u8], StreamError> {
    let mut len = [0u8; 4];
    len.copy_from_slice(read_field(reader, bytes, 4, field)?);
    let len = u32::from_be_bytes(len);
    if !(1..=MAX_HEADER_FIELD).contains(&len) {
        return Err(StreamError::HeaderField {
            field,
            reason: format!("declared length {len}, must be 1 to {MAX_HEADER_FIELD}"),
        });
    }
    read_field(reader, bytes, len as usize, field)
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
    if key.commitment() != header.key_commitment {
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
        decrypt_original(delegating_sk, &header.capsule, &header.encrypted_key)
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
        &header.capsule,
        verified_cfrags,
        &header.encrypted_key,
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
/// plaintext to `writer`, in bounded memory, opening chunks on [`default_threads`] threads.
///
/// Nothing of a chunk is written before its tag verifies, and chunks are written in order up
/// to the first that fails. On an error, `writer` holds the authentic chunks before the failing
/// one; discard it all the same.
pub fn decrypt_stream_with_key<R: Read + ?Sized, W: Write + ?Sized>(
    data_key: &DataKey,
    header: &Header,
    reader: &mut R,
    writer: &mut W,
) -> Result<StreamStats, StreamError> {
    decrypt_stream_with_threads(data_key, header, reader, writer, default_threads())
}

/// [`decrypt_stream_with_key`] with `threads` threads opening chunks, the calling thread
/// included; 0 or 1 does everything on the calling thread.
pub fn decrypt_stream_with_threads<R: Read + ?Sized, W: Write + ?Sized>(
    data_key: &DataKey,
    header: &Header,
    reader: &mut R,
    writer: &mut W,
    threads: usize,
) -> Result<StreamStats, StreamError> {
    if data_key.commitment() != header.key_commitment {
        return Err(StreamError::WrongKey(
            "this data key is not the one the file was encrypted with".into(),
        ));
    }
    let cipher = ChaCha20Poly1305::new(&Key::from(*data_key.as_bytes()));
    let aad = header.as_bytes();
    let prefix = header.nonce_prefix;
    let header_len = header.len() as u64;
    let open_slot = |slot: &mut Slot| {
        slot.outcome = open_chunk(&cipher, &prefix, aad, header_len, slot);
    };
    let mut stats = StreamStats {
        header_bytes: header_len,
        ..StreamStats::default()
    };
    let emit = |writer: &mut W, slot: &mut Slot| -> Result<(), StreamError> {
        std::mem::replace(&mut slot.outcome, Ok(()))?;
        let plaintext = slot.len - TAG_SIZE;
        writer.write_all(&slot.buf[..plaintext])?;
        stats.plaintext_bytes += plaintext as u64;
        stats.payload_bytes += slot.len as u64;
        stats.chunks += 1;
        Ok(())
    };
    pipeline(reader, writer, SEALED_CHUNK, threads, open_slot, emit)?;
    Ok(stats)
}

/// Opens one sealed chunk in place, or says why it does not open: tampered, or authentic but
/// out of place (the stream was cut after it, or extended after it).
fn open_chunk(
    cipher: &ChaCha20Poly1305,
    prefix: &[u8; NONCE_PREFIX_SIZE],
    aad: &[u8],
    header_len: u64,
    slot: &mut Slot,
) -> Result<(), StreamError> {
    let chunk = slot.index;
    let offset = header_len.saturating_add(chunk.saturating_mul(SEALED_CHUNK as u64));
    let counter = u32::try_from(chunk).map_err(|_| StreamError::TooLarge)?;
    let filled = slot.len;
    if filled < TAG_SIZE {
        // Not even a tag: the stream was cut at (or just after) a chunk boundary.
        return Err(if filled == 0 {
            StreamError::Truncated { chunks: chunk }
        } else {
            StreamError::Tampered { chunk, offset }
        });
    }
    let (body, tag) = slot.buf[..filled].split_at_mut(filled - TAG_SIZE);
    let mut tag_bytes = [0u8; TAG_SIZE];
    tag_bytes.copy_from_slice(tag);
    let tag = Tag::from(tag_bytes);
    // The tag is checked before any byte is decrypted (chacha20poly1305 verifies, then applies
    // the keystream), so a failed attempt leaves `body` as read for the next one.
    let mut open = |last: bool| {
        cipher
            .decrypt_in_place_detached(&chunk_nonce(prefix, counter, last), aad, body, &tag)
            .is_ok()
    };
    if slot.last {
        if open(true) {
            return Ok(());
        }
        // A full chunk sealed as a middle one: what followed it was cut off.
        if filled == SEALED_CHUNK && open(false) {
            return Err(StreamError::Truncated { chunks: chunk + 1 });
        }
        return Err(StreamError::Tampered { chunk, offset });
    }
    if open(false) {
        return Ok(());
    }
    if open(true) {
        return Err(StreamError::TrailingData { chunk });
    }
    Err(StreamError::Tampered { chunk, offset })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use umbral_pre::{generate_kfrags, reencrypt, Signer};

    fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut bytes = vec![0u8; len];
        rng.fill_bytes(&mut bytes);
        bytes
    }

    fn encrypt(sk: &SecretKey, plaintext: &[u8]) -> (Vec<u8>, StreamStats) {
        let mut out = Vec::new();
        let stats = encrypt_stream(&sk.public_key(), &mut &plaintext[..], &mut out).unwrap();
        (out, stats)
    }

    /// Decrypts on the calling thread, on one worker and on three: all must agree (output and
    /// outcome); returns the sequential result.
    fn decrypt(sk: &SecretKey, file: &[u8]) -> (Vec<u8>, Result<StreamStats, StreamError>) {
        let run = |threads| {
            let mut reader = file;
            let header = read_header(&mut reader).unwrap();
            let key = open_data_key_original(sk, &header).unwrap();
            let mut out = Vec::new();
            let result = decrypt_stream_with_threads(&key, &header, &mut reader, &mut out, threads);
            (out, result)
        };
        let (out, result) = run(0);
        for threads in [1, 3] {
            let (other_out, other_result) = run(threads);
            assert!(other_out == out, "threads {threads}: other output");
            assert_eq!(
                format!("{other_result:?}"),
                format!("{result:?}"),
                "threads {threads}"
            );
        }
        (out, result)
    }

    /// A reader that hands out at most 7 bytes per call, to exercise the read loops.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(7).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn roundtrips() {
        let sk = SecretKey::random();
        for (i, len) in [
            0,
            1,
            CHUNK_SIZE - 1,
            CHUNK_SIZE,
            CHUNK_SIZE + 1,
            3 * CHUNK_SIZE,
            5 * 1024 * 1024 + 123,
        ]
        .into_iter()
        .enumerate()
        {
            let plaintext = random_bytes(len, i as u64);
            let mut file = Vec::new();
            let stats = encrypt_stream_with_threads(
                &sk.public_key(),
                &mut &plaintext[..],
                &mut file,
                [0, 1, 3][i % 3],
            )
            .unwrap();
            let chunks = (len / CHUNK_SIZE + usize::from(len % CHUNK_SIZE != 0)).max(1) as u64;
            assert_eq!(stats.chunks, chunks, "len {len}");
            assert_eq!(stats.plaintext_bytes, len as u64);
            assert_eq!(stats.encrypted_bytes(), file.len() as u64);
            assert_eq!(
                file.len() as u64,
                stats.header_bytes + len as u64 + chunks * TAG_SIZE as u64
            );
            let (out, result) = decrypt(&sk, &file);
            let opened = result.unwrap();
            assert!(out == plaintext, "len {len}");
            assert_eq!(opened, stats);
        }
    }

    #[test]
    fn small_reads_and_writes_give_the_same_result() {
        let sk = SecretKey::random();
        let plaintext = random_bytes(2 * CHUNK_SIZE + 5, 9);
        let mut file = Vec::new();
        encrypt_stream(&sk.public_key(), &mut Trickle(&plaintext), &mut file).unwrap();
        let mut reader = Trickle(&file);
        let header = read_header(&mut reader).unwrap();
        let key = open_data_key_original(&sk, &header).unwrap();
        let mut out = Vec::new();
        decrypt_stream_with_key(&key, &header, &mut reader, &mut out).unwrap();
        assert!(out == plaintext);
    }

    #[test]
    fn header_layout() {
        let sk = SecretKey::random();
        let (file, stats) = encrypt(&sk, b"hello");
        assert_eq!(&file[..8], MAGIC);
        let capsule_len = u32::from_be_bytes(file[8..12].try_into().unwrap()) as usize;
        let capsule = Capsule::from_bytes(&file[12..12 + capsule_len]).unwrap();
        let at = 12 + capsule_len;
        let key_len = u32::from_be_bytes(file[at..at + 4].try_into().unwrap()) as usize;
        // umbral's DEM: 24-byte nonce, the 32-byte key, 16-byte tag.
        assert_eq!(key_len, 24 + 32 + 16);
        let header_len = at + 4 + key_len + NONCE_PREFIX_SIZE + KEY_COMMITMENT_SIZE;
        assert_eq!(stats.header_bytes, header_len as u64);
        let header = read_header(&mut &file[..]).unwrap();
        assert_eq!(header.capsule(), &capsule);
        assert_eq!(header.as_bytes(), &file[..header_len]);
        assert_eq!(file.len(), header_len + 5 + TAG_SIZE);
    }

    #[test]
    fn tampering_is_detected_and_nothing_of_the_bad_chunk_is_written() {
        let sk = SecretKey::random();
        let plaintext = random_bytes(4 * CHUNK_SIZE + 100, 1);
        let (file, stats) = encrypt(&sk, &plaintext);
        let header_len = stats.header_bytes as usize;
        for chunk in 0..5u64 {
            let offset = header_len + chunk as usize * SEALED_CHUNK;
            for delta in [0, 1000, SEALED_CHUNK - 1] {
                let at = (offset + delta).min(file.len() - 1);
                let mut bad = file.clone();
                bad[at] ^= 0x40;
                let (out, result) = decrypt(&sk, &bad);
                match result {
                    Err(StreamError::Tampered {
                        chunk: c,
                        offset: o,
                    }) => {
                        assert_eq!((c, o), (chunk, offset as u64));
                    }
                    other => panic!("chunk {chunk} +{delta}: {other:?}"),
                }
                // Exactly the chunks before the bad one were written.
                assert!(
                    out == plaintext[..chunk as usize * CHUNK_SIZE],
                    "chunk {chunk}"
                );
            }
        }
        // A header byte (inside the encrypted key or the nonce prefix): every chunk is bound
        // to the header, so the first one fails.
        let mut bad = file.clone();
        bad[header_len - KEY_COMMITMENT_SIZE - 1] ^= 1;
        let (out, result) = decrypt(&sk, &bad);
        assert!(matches!(
            result,
            Err(StreamError::Tampered { chunk: 0, .. })
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn truncation_reordering_and_extension_are_detected() {
        let sk = SecretKey::random();
        let plaintext = random_bytes(3 * CHUNK_SIZE + 10, 2);
        let (file, stats) = encrypt(&sk, &plaintext);
        let header_len = stats.header_bytes as usize;
        let chunk_at = |i: usize| header_len + i * SEALED_CHUNK;

        // Cut at a chunk boundary: authentic chunks, but no final one.
        for kept in 0..=3 {
            let (out, result) = decrypt(&sk, &file[..chunk_at(kept)]);
            assert!(
                matches!(result, Err(StreamError::Truncated { chunks }) if chunks == kept as u64),
                "{kept}: {result:?}"
            );
            // The last chunk read is authentic but not final: it is not written either.
            assert!(
                out == plaintext[..kept.saturating_sub(1) * CHUNK_SIZE],
                "{kept}"
            );
        }
        // Cut inside a chunk, or inside the last tag.
        for cut in [chunk_at(1) + 10, chunk_at(1) + 5, file.len() - 1] {
            let (_, result) = decrypt(&sk, &file[..cut]);
            assert!(
                matches!(result, Err(StreamError::Tampered { .. })),
                "{cut}: {result:?}"
            );
        }

        // Chunks 0 and 1 swapped.
        let mut swapped = file[..header_len].to_vec();
        swapped.extend_from_slice(&file[chunk_at(1)..chunk_at(2)]);
        swapped.extend_from_slice(&file[chunk_at(0)..chunk_at(1)]);
        swapped.extend_from_slice(&file[chunk_at(2)..]);
        let (out, result) = decrypt(&sk, &swapped);
        assert!(matches!(
            result,
            Err(StreamError::Tampered { chunk: 0, .. })
        ));
        assert!(out.is_empty());

        // A byte appended after the final (short) chunk.
        let mut extended = file.clone();
        extended.push(0);
        let (_, result) = decrypt(&sk, &extended);
        assert!(result.is_err(), "{result:?}");

        // A payload of exactly two chunks, then a copy of its final chunk appended.
        let plaintext = random_bytes(2 * CHUNK_SIZE, 3);
        let (file, stats) = encrypt(&sk, &plaintext);
        let header_len = stats.header_bytes as usize;
        let mut extended = file.clone();
        extended.extend_from_slice(&file[header_len + SEALED_CHUNK..]);
        let (out, result) = decrypt(&sk, &extended);
        assert!(
            matches!(result, Err(StreamError::TrailingData { chunk: 1 })),
            "{result:?}"
        );
        assert!(out == plaintext[..CHUNK_SIZE]);
        // Its final chunk dropped: chunk 0 is authentic but not final.
        let (_, result) = decrypt(&sk, &file[..header_len + SEALED_CHUNK]);
        assert!(matches!(result, Err(StreamError::Truncated { chunks: 1 })));
    }

    #[test]
    fn errors_in_later_batches() {
        // 40 chunks: several batches at every thread count.
        let sk = SecretKey::random();
        let plaintext = random_bytes(40 * CHUNK_SIZE - 3, 6);
        let mut file = Vec::new();
        let stats =
            encrypt_stream_with_threads(&sk.public_key(), &mut &plaintext[..], &mut file, 2)
                .unwrap();
        assert_eq!(stats.chunks, 40);
        let header_len = stats.header_bytes as usize;
        for chunk in [17usize, 33, 39] {
            let mut bad = file.clone();
            bad[header_len + chunk * SEALED_CHUNK + 5] ^= 1;
            let (out, result) = decrypt(&sk, &bad);
            assert!(
                matches!(result, Err(StreamError::Tampered { chunk: c, .. }) if c == chunk as u64),
                "{chunk}: {result:?}"
            );
            assert!(out == plaintext[..chunk * CHUNK_SIZE], "{chunk}");
        }
        let (_, result) = decrypt(&sk, &file[..header_len + 20 * SEALED_CHUNK]);
        assert!(matches!(result, Err(StreamError::Truncated { chunks: 20 })));
        let (out, result) = decrypt(&sk, &file);
        assert_eq!(result.unwrap(), stats);
        assert!(out == plaintext);
    }

    #[test]
    fn chunks_of_another_file_do_not_fit() {
        let sk = SecretKey::random();
        let plaintext = random_bytes(CHUNK_SIZE + 1, 4);
        let (a, sa) = encrypt(&sk, &plaintext);
        let (b, _) = encrypt(&sk, &plaintext);
        // b's header with a's payload: another key and another header.
        let mut mixed = b[..b.len() - sa.payload_bytes as usize].to_vec();
        mixed.extend_from_slice(&a[sa.header_bytes as usize..]);
        let (_, result) = decrypt(&sk, &mixed);
        assert!(matches!(
            result,
            Err(StreamError::Tampered { chunk: 0, .. })
        ));
    }

    #[test]
    fn wrong_keys_are_named() {
        let sk = SecretKey::random();
        let (file, _) = encrypt(&sk, b"secret");
        let mut reader = &file[..];
        let header = read_header(&mut reader).unwrap();
        let err = open_data_key_original(&SecretKey::random(), &header).unwrap_err();
        assert!(matches!(err, StreamError::WrongKey(_)), "{err}");
        let err =
            decrypt_stream_with_key(&DataKey::random(), &header, &mut reader, &mut Vec::new())
                .unwrap_err();
        assert!(matches!(err, StreamError::WrongKey(_)), "{err}");
    }

    #[test]
    fn bad_headers() {
        let sk = SecretKey::random();
        let (file, _) = encrypt(&sk, b"x");
        let err = read_header(&mut &b"PK\x03\x04 not ours"[..]).unwrap_err();
        assert!(matches!(err, StreamError::BadMagic { .. }), "{err}");
        let mut v2 = file.clone();
        v2[7] = b'2';
        let err = read_header(&mut &v2[..]).unwrap_err();
        assert!(
            matches!(err, StreamError::UnsupportedVersion { .. }),
            "{err}"
        );
        for cut in [0, 5, 10, 40, 150] {
            let err = read_header(&mut &file[..cut]).unwrap_err();
            assert!(
                matches!(err, StreamError::TruncatedHeader { .. }),
                "{cut}: {err}"
            );
        }
        let mut huge = file.clone();
        huge[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        let err = read_header(&mut &huge[..]).unwrap_err();
        assert!(
            matches!(
                err,
                StreamError::HeaderField {
                    field: "capsule",
                    ..
                }
            ),
            "{err}"
        );
        let mut garbage = file.clone();
        garbage[12..20].copy_from_slice(&[0xff; 8]);
        let err = read_header(&mut &garbage[..]).unwrap_err();
        assert!(
            matches!(
                err,
                StreamError::HeaderField {
                    field: "capsule",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn bob_opens_with_cfrags() {
        let alice = SecretKey::random();
        let bob = SecretKey::random();
        let signer = Signer::new(SecretKey::random());
        let kfrags = generate_kfrags(&alice, &bob.public_key(), &signer, 2, 3, true, true);
        let plaintext = random_bytes(CHUNK_SIZE * 2 + 3, 5);
        let (file, _) = encrypt(&alice, &plaintext);
        let mut reader = &file[..];
        let header = read_header(&mut reader).unwrap();
        let cfrags: Vec<_> = kfrags
            .iter()
            .map(|k| reencrypt(header.capsule(), k.clone()))
            .collect();

        // One cfrag is not enough.
        let err = open_data_key_reencrypted(
            &bob,
            &alice.public_key(),
            &header,
            cfrags[..1].iter().cloned(),
        )
        .unwrap_err();
        assert!(matches!(err, StreamError::Reencryption(_)), "{err}");

        let key = open_data_key_reencrypted(
            &bob,
            &alice.public_key(),
            &header,
            cfrags[1..].iter().cloned(),
        )
        .unwrap();
        let mut out = Vec::new();
        decrypt_stream_with_key(&key, &header, &mut reader, &mut out).unwrap();
        assert!(out == plaintext);
    }
}

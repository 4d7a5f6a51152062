//! One chunk sealed or opened: ChaCha20-Poly1305 under the data key, the STREAM nonce, the
//! header as associated data. The same in both format versions.
//!
//! Two implementations of the same AEAD: ring's (assembly, about 2.5 times the pure-Rust
//! crate's speed on x86-64) seals, and opens where a failure ends the reading; the pure-Rust
//! `chacha20poly1305` opens where a failed attempt is followed by another on the same bytes
//! (telling tampering from reordering, and `KMSENC01`'s final-flag guess), since it checks the
//! tag before writing, while ring may overwrite the bytes of a failed attempt.

use chacha20poly1305::{aead::AeadInPlace, ChaCha20Poly1305, Key, KeyInit, Nonce, Tag};
use ring::aead::{Aad, LessSafeKey, UnboundKey, CHACHA20_POLY1305};

use super::{DataKey, Header, StreamError, CHUNK_SIZE, NONCE_PREFIX_SIZE, SEALED_CHUNK, TAG_SIZE};

/// The data key's cipher, bound to one file's header.
pub(super) struct ChunkCipher<'a> {
    fast: LessSafeKey,
    careful: ChaCha20Poly1305,
    prefix: [u8; NONCE_PREFIX_SIZE],
    aad: &'a [u8],
}

impl<'a> ChunkCipher<'a> {
    pub(super) fn new(data_key: &DataKey, header: &'a Header) -> Self {
        let key = data_key.as_bytes();
        Self {
            fast: LessSafeKey::new(
                // A 32-byte key is ChaCha20-Poly1305's only length: this cannot fail.
                UnboundKey::new(&CHACHA20_POLY1305, key.as_slice())
                    .unwrap_or_else(|_| unreachable!("a ChaCha20-Poly1305 key is 32 bytes")),
            ),
            careful: ChaCha20Poly1305::new(&Key::from(*key)),
            prefix: header.nonce_prefix(),
            aad: header.as_bytes(),
        }
    }

    /// Seals chunk `chunk` in place: `sealed` holds the plaintext then [`TAG_SIZE`] bytes of
    /// room, where the tag goes.
    pub(super) fn seal(
        &self,
        chunk: u64,
        last: bool,
        sealed: &mut [u8],
    ) -> Result<(), StreamError> {
        let nonce = chunk_nonce(&self.prefix, counter(chunk)?, last);
        let (body, tag) = sealed.split_at_mut(sealed.len() - TAG_SIZE);
        let made = self
            .fast
            .seal_in_place_separate_tag(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                Aad::from(self.aad),
                body,
            )
            // Only a plaintext beyond 256 GiB fails, and a chunk is 64 KiB.
            .map_err(|_| StreamError::TooLarge)?;
        tag.copy_from_slice(made.as_ref());
        Ok(())
    }

    /// Opens `sealed` (ciphertext then tag) in place if it is chunk `chunk` with this `last`
    /// flag. On failure the bytes of `sealed` are unspecified: for a reader that stops there
    /// (use [`Self::try_open`] to try again on the same bytes). The plaintext is the first
    /// `sealed.len() - TAG_SIZE` bytes.
    pub(super) fn open(&self, chunk: u64, last: bool, sealed: &mut [u8]) -> bool {
        let Ok(counter) = counter(chunk) else {
            return false;
        };
        if sealed.len() < TAG_SIZE {
            return false;
        }
        self.fast
            .open_in_place(
                ring::aead::Nonce::assume_unique_for_key(chunk_nonce(&self.prefix, counter, last)),
                Aad::from(self.aad),
                sealed,
            )
            .is_ok()
    }

    /// [`Self::open`], leaving `sealed` as it was when it fails, for another attempt.
    pub(super) fn try_open(&self, chunk: u64, last: bool, sealed: &mut [u8]) -> bool {
        let Ok(counter) = counter(chunk) else {
            return false;
        };
        let Some(split) = sealed.len().checked_sub(TAG_SIZE) else {
            return false;
        };
        let (body, tag) = sealed.split_at_mut(split);
        let mut tag_bytes = [0u8; TAG_SIZE];
        tag_bytes.copy_from_slice(tag);
        // The tag is checked before any byte is decrypted (chacha20poly1305 verifies, then
        // applies the keystream), so a failed attempt leaves `body` as read for the next one.
        self.careful
            .decrypt_in_place_detached(
                &Nonce::from(chunk_nonce(&self.prefix, counter, last)),
                self.aad,
                body,
                &Tag::from(tag_bytes),
            )
            .is_ok()
    }
}

/// The 32-bit counter of chunk `chunk`, if it has one.
fn counter(chunk: u64) -> Result<u32, StreamError> {
    u32::try_from(chunk).map_err(|_| StreamError::TooLarge)
}

/// The nonce of chunk `counter`: `prefix (7) || counter (u32 big-endian) || last (0x01 for the
/// final chunk, else 0x00)`.
fn chunk_nonce(prefix: &[u8; NONCE_PREFIX_SIZE], counter: u32, last: bool) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[..NONCE_PREFIX_SIZE].copy_from_slice(prefix);
    nonce[NONCE_PREFIX_SIZE..11].copy_from_slice(&counter.to_be_bytes());
    nonce[11] = u8::from(last);
    nonce
}

/// Seals in place the `len` bytes of plaintext a unit holds, read in chunks [`SEALED_CHUNK`]
/// bytes apart (see [`super::pipeline::Layout`]), numbered from `first_chunk`; the final one is
/// sealed as the payload's last if `last`. Returns the sealed chunks' bytes and how many there
/// are (at least one: an empty payload is one empty chunk).
pub(super) fn seal_chunks(
    cipher: &ChunkCipher<'_>,
    buf: &mut [u8],
    len: usize,
    first_chunk: u64,
    last: bool,
) -> Result<(usize, usize), StreamError> {
    let chunks = len.div_ceil(CHUNK_SIZE).max(1);
    for i in 0..chunks {
        let plaintext = (len - i * CHUNK_SIZE).min(CHUNK_SIZE);
        let start = i * SEALED_CHUNK;
        cipher.seal(
            first_chunk + i as u64,
            last && i + 1 == chunks,
            &mut buf[start..start + plaintext + TAG_SIZE],
        )?;
    }
    Ok((len + chunks * TAG_SIZE, chunks))
}

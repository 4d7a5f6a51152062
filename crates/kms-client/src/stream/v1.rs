//! The unsigned first format, `KMSENC01`: chunks only, no segments. Read for compatibility (when
//! the caller allows unsigned files); written by tests only.

use std::io::{Read, Write};

use super::{
    chunk::ChunkCipher,
    pipeline::{pipeline, Layout, Slot},
    DataKey, Header, StreamError, StreamStats, SEALED_CHUNK, TAG_SIZE,
};

/// Decrypts a `KMSENC01` payload: each chunk is written once its tag verified.
pub(super) fn decrypt<R: Read + ?Sized, W: Write + ?Sized>(
    data_key: &DataKey,
    header: &Header,
    reader: &mut R,
    writer: &mut W,
    threads: usize,
) -> Result<StreamStats, StreamError> {
    let cipher = ChunkCipher::new(data_key, header);
    let header_len = header.len() as u64;
    let process = |slot: &mut Slot| {
        slot.outcome = open_chunk(&cipher, header_len, slot).map(|()| slot.len - TAG_SIZE);
    };
    let mut stats = StreamStats {
        header_bytes: header_len,
        ..StreamStats::default()
    };
    let emit = |writer: &mut W, slot: &mut Slot, plaintext: usize| -> Result<(), StreamError> {
        writer.write_all(&slot.buf[..plaintext])?;
        stats.plaintext_bytes += plaintext as u64;
        stats.payload_bytes += slot.len as u64;
        stats.chunks += 1;
        Ok(())
    };
    let layout = Layout::contiguous(SEALED_CHUNK, 1);
    pipeline(reader, writer, layout, threads, process, emit)?;
    Ok(stats)
}

/// Opens one sealed chunk in place, or says why it does not open: tampered, or authentic but
/// out of place (the stream was cut after it, or extended after it).
fn open_chunk(
    cipher: &ChunkCipher<'_>,
    header_len: u64,
    slot: &mut Slot,
) -> Result<(), StreamError> {
    let chunk = slot.index;
    let offset = header_len.saturating_add(chunk.saturating_mul(SEALED_CHUNK as u64));
    let filled = slot.len;
    if filled < TAG_SIZE {
        // Not even a tag: the stream was cut at (or just after) a chunk boundary.
        return Err(if filled == 0 {
            StreamError::Truncated { chunks: chunk }
        } else {
            StreamError::Tampered { chunk, offset }
        });
    }
    let sealed = &mut slot.buf[..filled];
    if slot.last {
        if cipher.try_open(chunk, true, sealed) {
            return Ok(());
        }
        // A full chunk sealed as a middle one: what followed it was cut off.
        if filled == SEALED_CHUNK && cipher.try_open(chunk, false, sealed) {
            return Err(StreamError::Truncated { chunks: chunk + 1 });
        }
        return Err(StreamError::Tampered { chunk, offset });
    }
    if cipher.try_open(chunk, false, sealed) {
        return Ok(());
    }
    if cipher.try_open(chunk, true, sealed) {
        return Err(StreamError::TrailingData { chunk });
    }
    Err(StreamError::Tampered { chunk, offset })
}

/// Writes a `KMSENC01` file, as the previous version did (tests of the read path).
#[cfg(test)]
pub(super) fn encrypt<R: Read + ?Sized, W: Write + ?Sized>(
    policy_pk: &umbral_pre::PublicKey,
    reader: &mut R,
    writer: &mut W,
    threads: usize,
) -> Result<StreamStats, StreamError> {
    use super::{chunk::seal_chunks, Version, CHUNK_SIZE};

    let (data_key, header) =
        super::new_key(policy_pk, |key, capsule, encrypted_key, nonce_prefix| {
            Header::new_v1(
                capsule,
                encrypted_key,
                nonce_prefix,
                key.commitment(Version::V1),
            )
        })?;
    writer.write_all(header.as_bytes())?;
    let cipher = ChunkCipher::new(&data_key, &header);
    let process = |slot: &mut Slot| {
        slot.outcome = seal_chunks(&cipher, &mut slot.buf, slot.len, slot.index, slot.last)
            .map(|(sealed, _)| sealed);
    };
    let mut stats = StreamStats {
        header_bytes: header.len() as u64,
        ..StreamStats::default()
    };
    let emit = |writer: &mut W, slot: &mut Slot, sealed: usize| -> Result<(), StreamError> {
        writer.write_all(&slot.buf[..sealed])?;
        stats.plaintext_bytes += slot.len as u64;
        stats.payload_bytes += sealed as u64;
        stats.chunks += 1;
        Ok(())
    };
    let layout = Layout {
        piece: CHUNK_SIZE,
        ..Layout::contiguous(SEALED_CHUNK, 1)
    };
    pipeline(reader, writer, layout, threads, process, emit)?;
    Ok(stats)
}

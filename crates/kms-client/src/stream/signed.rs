//! The signed format, `KMSENC02`: the chunks grouped in segments, each followed by a record that
//! holds the sender's signature over the digests of its sealed chunks.
//!
//! A segment is the pipeline's unit: a worker thread seals, hashes and signs a whole segment
//! (writer), or hashes it, verifies its signature and opens its chunks (reader), so the
//! signatures cost no more wall time than the cipher's share of a core.

use std::{
    io::{Read, Write},
    ops::Range,
};

use sha2::{Digest, Sha256};
use umbral_pre::PublicKey;

use super::{
    chunk::{seal_chunks, ChunkCipher},
    header::Signed,
    pipeline::{pipeline, Layout, Slot},
    DataKey, Header, StreamError, StreamStats, CHUNK_SIZE, RECORD_SIZE, SEALED_CHUNK, TAG_SIZE,
};
use crate::sender::{self, SenderKey, SIGNATURE_SIZE};

/// Domain separation of the segments' signatures.
const SEGMENT_SIGNATURE_TAG: &[u8] = b"KMSENC02 segment";

/// How many places inside a failing segment the reader tries as the end of a shorter final
/// segment (to tell data appended after it from damage): bounds the work a crafted segment can
/// cause on the error path.
const MAX_RECORD_CANDIDATES: usize = 16;

/// A segment's chunk digests: `BLAKE3(ciphertext_i || tag_i)`, 32 bytes.
type Digests = Vec<[u8; 32]>;

/// What the sender signs for segment `segment`: `"KMSENC02 segment" || sha256(H) || u32
/// segment || u8 last || d_0 || ... || d_k`.
fn segment_message(
    header_digest: &[u8; 32],
    segment: u32,
    last: bool,
    digests: &[[u8; 32]],
) -> Vec<u8> {
    let mut message = Vec::with_capacity(SEGMENT_SIGNATURE_TAG.len() + 32 + 5 + 32 * digests.len());
    message.extend_from_slice(SEGMENT_SIGNATURE_TAG);
    message.extend_from_slice(header_digest);
    message.extend_from_slice(&segment.to_be_bytes());
    message.push(u8::from(last));
    for digest in digests {
        message.extend_from_slice(digest);
    }
    message
}

/// Where each sealed chunk lies in `payload` bytes of a segment's chunks: all full but the
/// final one.
fn chunk_ranges(payload: usize) -> impl Iterator<Item = Range<usize>> {
    (0..payload.div_ceil(SEALED_CHUNK))
        .map(move |i| i * SEALED_CHUNK..((i + 1) * SEALED_CHUNK).min(payload))
}

/// The digests of the sealed chunks in `sealed`.
///
/// BLAKE3 rather than SHA-256: every payload byte is hashed once more besides the cipher's
/// pass, and on the reference machine (SHA-NI) SHA-256 runs at 1.8 GB/s per core against 6.4
/// GB/s for BLAKE3, with ChaCha20-Poly1305 at 1.4 GB/s: SHA-256 made signed streams 40% slower
/// than unsigned, BLAKE3 about 10% (README, Benchmarks). The cost is portability: WebCrypto has
/// no BLAKE3, so a browser client needs a library (`@noble/hashes` has it; so do Python's
/// `blake3` and Go's `lukechampine.com/blake3`).
fn digests(sealed: &[u8]) -> Digests {
    chunk_ranges(sealed.len())
        .map(|range| *blake3::hash(&sealed[range]).as_bytes())
        .collect()
}

/// A stored segment of `len` bytes, if it can be one: the bytes of its chunks (before the
/// record) and how many chunks they are.
fn shape(len: usize) -> Option<(usize, usize)> {
    let payload = len.checked_sub(RECORD_SIZE)?;
    let chunks = payload.div_ceil(SEALED_CHUNK);
    let last = payload.checked_sub(chunks.checked_sub(1)? * SEALED_CHUNK)?;
    (last >= TAG_SIZE).then_some((payload, chunks))
}

/// The layout of segments of `segment_chunks` chunks, as stored.
fn stored_size(segment_chunks: usize) -> usize {
    segment_chunks * SEALED_CHUNK + RECORD_SIZE
}

/// Seals, signs and writes the payload after `header` (already made for `data_key`).
pub(super) fn encrypt<R: Read + ?Sized, W: Write + ?Sized>(
    data_key: &DataKey,
    header: &Header,
    sender: &SenderKey,
    reader: &mut R,
    writer: &mut W,
    threads: usize,
) -> Result<StreamStats, StreamError> {
    let segment_chunks = usize::from(header.segment_chunks().unwrap_or(1));
    writer.write_all(header.as_bytes())?;
    let cipher = ChunkCipher::new(data_key, header);
    let header_digest: [u8; 32] = Sha256::digest(header.as_bytes()).into();
    let seal = |slot: &mut Slot| -> Result<usize, StreamError> {
        let segment = u32::try_from(slot.index).map_err(|_| StreamError::TooLarge)?;
        let first_chunk = slot.index * segment_chunks as u64;
        let (sealed, _) = seal_chunks(&cipher, &mut slot.buf, slot.len, first_chunk, slot.last)?;
        let message = segment_message(
            &header_digest,
            segment,
            slot.last,
            &digests(&slot.buf[..sealed]),
        );
        let record = &mut slot.buf[sealed..sealed + RECORD_SIZE];
        record[..4].copy_from_slice(&segment.to_be_bytes());
        record[4..].copy_from_slice(&sender.sign(&message));
        Ok(sealed + RECORD_SIZE)
    };
    let process = |slot: &mut Slot| slot.outcome = seal(slot);
    let mut stats = StreamStats {
        header_bytes: header.len() as u64,
        ..StreamStats::default()
    };
    let emit = |writer: &mut W, slot: &mut Slot, stored: usize| -> Result<(), StreamError> {
        writer.write_all(&slot.buf[..stored])?;
        stats.plaintext_bytes += slot.len as u64;
        stats.payload_bytes += stored as u64;
        stats.chunks += slot.len.div_ceil(CHUNK_SIZE).max(1) as u64;
        stats.segments += 1;
        Ok(())
    };
    let layout = Layout {
        pieces: segment_chunks,
        piece: CHUNK_SIZE,
        stride: SEALED_CHUNK,
        ..Layout::contiguous(stored_size(segment_chunks), segment_chunks)
    };
    pipeline(reader, writer, layout, threads, process, emit)?;
    Ok(stats)
}

/// Verifies and decrypts the payload after a signed `header`, segment by segment.
pub(super) fn decrypt<R: Read + ?Sized, W: Write + ?Sized>(
    data_key: &DataKey,
    header: &Header,
    signed: Signed,
    reader: &mut R,
    writer: &mut W,
    threads: usize,
) -> Result<StreamStats, StreamError> {
    let segment_chunks = usize::from(signed.segment_chunks);
    let reader_of = SegmentReader {
        cipher: ChunkCipher::new(data_key, header),
        header_digest: Sha256::digest(header.as_bytes()).into(),
        sender: signed.sender,
        segment_chunks,
        header_len: header.len() as u64,
    };
    let process = |slot: &mut Slot| slot.outcome = reader_of.open(slot);
    let mut stats = StreamStats {
        header_bytes: header.len() as u64,
        ..StreamStats::default()
    };
    let emit = |writer: &mut W, slot: &mut Slot, payload: usize| -> Result<(), StreamError> {
        for range in chunk_ranges(payload) {
            let plaintext = range.start..range.end - TAG_SIZE;
            stats.plaintext_bytes += plaintext.len() as u64;
            stats.chunks += 1;
            writer.write_all(&slot.buf[plaintext])?;
        }
        stats.payload_bytes += slot.len as u64;
        stats.segments += 1;
        Ok(())
    };
    let layout = Layout::contiguous(stored_size(segment_chunks), segment_chunks);
    pipeline(reader, writer, layout, threads, process, emit)?;
    Ok(stats)
}

/// What checking a segment needs.
struct SegmentReader<'a> {
    cipher: ChunkCipher<'a>,
    header_digest: [u8; 32],
    sender: PublicKey,
    segment_chunks: usize,
    header_len: u64,
}

impl SegmentReader<'_> {
    /// Checks the segment a slot holds and opens its chunks in place; returns the bytes of its
    /// chunks. Nothing is opened unless the signature verified.
    fn open(&self, slot: &mut Slot) -> Result<usize, StreamError> {
        let segment = slot.index;
        let (last, first_chunk) = (slot.last, segment * self.segment_chunks as u64);
        let unit = &mut slot.buf[..slot.len];
        if let Some((payload, _)) = shape(unit.len()) {
            let digests = digests(&unit[..payload]);
            if record_index(unit, payload) == segment
                && self.signed(unit, payload, &digests, segment, last)
            {
                let ranges: Vec<_> = chunk_ranges(payload).collect();
                let count = ranges.len();
                for (i, range) in ranges.into_iter().enumerate() {
                    let chunk = first_chunk + i as u64;
                    if !self
                        .cipher
                        .open(chunk, last && i + 1 == count, &mut unit[range.clone()])
                    {
                        // Signed, yet not sealed as its place says: the sender's own doing.
                        return Err(StreamError::Tampered {
                            chunk,
                            offset: self.offset(segment, range.start),
                        });
                    }
                }
                return Ok(payload);
            }
        }
        Err(self.diagnose(unit, segment, last))
    }

    /// Whether the record after `payload` bytes of chunks holds the sender's signature of them as
    /// segment `segment`, final or not.
    fn signed(
        &self,
        unit: &[u8],
        payload: usize,
        digests: &[[u8; 32]],
        segment: u64,
        last: bool,
    ) -> bool {
        let Ok(segment) = u32::try_from(segment) else {
            return false;
        };
        let mut signature = [0u8; SIGNATURE_SIZE];
        signature.copy_from_slice(&unit[payload + 4..payload + RECORD_SIZE]);
        sender::verify(
            &self.sender,
            &segment_message(&self.header_digest, segment, last, digests),
            &signature,
        )
    }

    /// Where byte `at` of segment `segment` lies in the file.
    fn offset(&self, segment: u64, at: usize) -> u64 {
        let stored = stored_size(self.segment_chunks) as u64;
        self.header_len
            .saturating_add(segment.saturating_mul(stored))
            .saturating_add(at as u64)
    }

    /// Why a segment failed (the error path only: it tries the other explanations in turn).
    fn diagnose(&self, unit: &mut [u8], segment: u64, at_end: bool) -> StreamError {
        let first_chunk = segment * self.segment_chunks as u64;
        let shape = shape(unit.len());
        let mut record_here = false;
        if let Some((payload, chunks)) = shape {
            // The record where the structure puts it, signed for another place.
            let digests = digests(&unit[..payload]);
            let found = record_index(unit, payload);
            record_here = found == segment;
            for (index, last) in [(segment, !at_end), (found, at_end), (found, !at_end)] {
                if (index, last) == (segment, at_end)
                    || !self.signed(unit, payload, &digests, index, last)
                {
                    continue;
                }
                let chunks = chunks as u64;
                return if index != segment {
                    StreamError::Reordered {
                        unit: "segment",
                        expected: segment,
                        found: index,
                        offset: self.offset(segment, 0),
                    }
                } else if at_end {
                    // Signed as a middle segment, and nothing follows it.
                    StreamError::Truncated {
                        chunks: first_chunk + chunks,
                    }
                } else {
                    StreamError::TrailingData {
                        chunk: first_chunk + chunks - 1,
                    }
                };
            }
        }
        if let Some(chunks) = self.final_segment_within(unit, segment) {
            return StreamError::TrailingData {
                chunk: first_chunk + chunks as u64 - 1,
            };
        }
        // Chunk by chunk: where the structure puts them, or, if it cannot be a segment, as many
        // full chunks as there are and what remains.
        let ranges: Vec<Range<usize>> = match shape {
            Some((payload, _)) => chunk_ranges(payload).collect(),
            None => chunk_ranges(unit.len()).collect(),
        };
        let count = ranges.len();
        for (i, range) in ranges.into_iter().enumerate() {
            let chunk = first_chunk + i as u64;
            let last = at_end && shape.is_some() && i + 1 == count;
            // A copy: `try_open` decrypts in place when it succeeds.
            let mut sealed = unit[range.clone()].to_vec();
            if self.cipher.try_open(chunk, last, &mut sealed) {
                continue;
            }
            if let Some(error) = self.misplaced(&mut sealed, chunk, segment, last, range.start) {
                return error;
            }
            if at_end && !record_here {
                // The file ends inside this segment, before its record: cut off. A full chunk
                // whose end was taken for a record is complete.
                let rest = range.start..unit.len();
                let whole = rest.len() == SEALED_CHUNK
                    && self.cipher.try_open(chunk, false, &mut unit[rest].to_vec());
                return StreamError::Truncated {
                    chunks: chunk + u64::from(whole),
                };
            }
            return StreamError::Tampered {
                chunk,
                offset: self.offset(segment, range.start),
            };
        }
        if shape.is_none() {
            return StreamError::Truncated {
                chunks: first_chunk + count as u64,
            };
        }
        // Every chunk opens with the data key, yet the sender did not sign them.
        StreamError::Forged {
            segment,
            offset: self.offset(segment, 0),
        }
    }

    /// Whether a chunk that does not open at its place (`chunk`, `last`) is another chunk of
    /// its segment, or itself with the other final flag.
    fn misplaced(
        &self,
        sealed: &mut [u8],
        chunk: u64,
        segment: u64,
        last: bool,
        at: usize,
    ) -> Option<StreamError> {
        let first = segment * self.segment_chunks as u64;
        for other in first..first + self.segment_chunks as u64 {
            for flag in [false, true] {
                if (other, flag) == (chunk, last) || !self.cipher.try_open(other, flag, sealed) {
                    continue;
                }
                return Some(if other != chunk {
                    StreamError::Reordered {
                        unit: "chunk",
                        expected: chunk,
                        found: other,
                        offset: self.offset(segment, at),
                    }
                } else if flag {
                    StreamError::TrailingData { chunk }
                } else {
                    StreamError::Truncated { chunks: chunk + 1 }
                });
            }
        }
        None
    }

    /// If `unit` starts with a complete final segment `segment` shorter than itself (data was
    /// appended after the file's end), how many chunks it has.
    fn final_segment_within(&self, unit: &[u8], segment: u64) -> Option<usize> {
        let index = u32::try_from(segment).ok()?.to_be_bytes();
        // The record's index is where a shorter segment's record would start; the signature
        // decides. The place the structure gives was tried already.
        let end = unit.len().checked_sub(RECORD_SIZE)?;
        (TAG_SIZE..end)
            .filter(|&payload| unit[payload..payload + 4] == index)
            .filter_map(|payload| shape(payload + RECORD_SIZE))
            .take(MAX_RECORD_CANDIDATES)
            .find(|&(payload, _)| {
                self.signed(unit, payload, &digests(&unit[..payload]), segment, true)
            })
            .map(|(_, chunks)| chunks)
    }
}

/// The segment index in the record after `payload` bytes of chunks.
fn record_index(unit: &[u8], payload: usize) -> u64 {
    let mut index = [0u8; 4];
    index.copy_from_slice(&unit[payload..payload + 4]);
    u64::from(u32::from_be_bytes(index))
}

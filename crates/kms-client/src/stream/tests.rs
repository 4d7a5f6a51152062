#![allow(clippy::unwrap_used)]

use std::io::{self, Read};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use umbral_pre::{generate_kfrags, reencrypt, Capsule, DefaultDeserialize, SecretKey, Signer};

use super::chunk::ChunkCipher;
use super::*;

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut bytes = vec![0u8; len];
    rng.fill_bytes(&mut bytes);
    bytes
}

/// Alice's policy key, Enrico's sender key, and Bob's trust in Enrico.
struct Setup {
    policy: SecretKey,
    enrico: SenderKey,
    trusted: TrustedSenders,
}

impl Setup {
    fn new() -> Self {
        let enrico = SenderKey::random();
        Self {
            policy: SecretKey::random(),
            trusted: TrustedSenders::new([enrico.public_key()]),
            enrico,
        }
    }

    fn encrypt_with(
        &self,
        plaintext: &[u8],
        segment_chunks: u16,
        threads: usize,
    ) -> (Vec<u8>, StreamStats) {
        let mut out = Vec::new();
        let options = EncryptOptions {
            threads,
            segment_chunks,
        };
        let stats = encrypt_stream_with_options(
            &self.policy.public_key(),
            &self.enrico,
            &mut &plaintext[..],
            &mut out,
            &options,
        )
        .unwrap();
        (out, stats)
    }

    fn encrypt(&self, plaintext: &[u8], segment_chunks: u16) -> (Vec<u8>, StreamStats) {
        self.encrypt_with(plaintext, segment_chunks, 2)
    }

    /// Decrypts on the calling thread, on one worker, on two and on three: all must agree
    /// (output and outcome); returns the sequential result.
    fn decrypt(&self, file: &[u8]) -> (Vec<u8>, Result<StreamStats, StreamError>) {
        let run = |threads| {
            let mut reader = file;
            let header = read_header(&mut reader).unwrap();
            let key = open_data_key_original(&self.policy, &header).unwrap();
            let mut out = Vec::new();
            let options = DecryptOptions {
                threads,
                allow_unsigned: true,
            };
            let result = decrypt_stream_with_options(
                &key,
                &header,
                &self.trusted,
                &mut reader,
                &mut out,
                &options,
            );
            (out, result)
        };
        let (out, result) = run(0);
        for threads in [1, 2, 3] {
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

    fn data_key(&self, file: &[u8]) -> (Header, DataKey) {
        let header = read_header(&mut &file[..]).unwrap();
        let key = open_data_key_original(&self.policy, &header).unwrap();
        (header, key)
    }
}

fn chunks_of(len: usize) -> u64 {
    len.div_ceil(CHUNK_SIZE).max(1) as u64
}

/// Where segment `s` starts, for segments of `sc` chunks.
fn segment_at(header_len: usize, sc: usize, s: usize) -> usize {
    header_len + s * (sc * SEALED_CHUNK + RECORD_SIZE)
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
    let setup = Setup::new();
    let cases = [
        (0, 16),
        (1, 16),
        (CHUNK_SIZE - 1, 16),
        (CHUNK_SIZE, 16),
        (CHUNK_SIZE + 1, 16),
        (3 * CHUNK_SIZE, 1),
        (3 * CHUNK_SIZE + 7, 1),
        (4 * CHUNK_SIZE, 2),
        (5 * CHUNK_SIZE + 9, 2),
        (16 * CHUNK_SIZE, 16),
        (40 * CHUNK_SIZE + 123, 16),
        (70 * CHUNK_SIZE - 5, 32),
        (64 * CHUNK_SIZE, 32),
    ];
    for (i, (len, sc)) in cases.into_iter().enumerate() {
        let plaintext = random_bytes(len, i as u64);
        let (file, stats) = setup.encrypt_with(&plaintext, sc, [0, 1, 2, 3][i % 4]);
        let chunks = chunks_of(len);
        let segments = chunks.div_ceil(u64::from(sc));
        assert_eq!(
            (stats.chunks, stats.segments),
            (chunks, segments),
            "len {len}"
        );
        assert_eq!(stats.plaintext_bytes, len as u64);
        assert_eq!(stats.encrypted_bytes(), file.len() as u64);
        assert_eq!(
            file.len() as u64,
            stats.header_bytes
                + len as u64
                + chunks * TAG_SIZE as u64
                + segments * RECORD_SIZE as u64
        );
        let (out, result) = setup.decrypt(&file);
        assert_eq!(result.unwrap(), stats, "len {len}");
        assert!(out == plaintext, "len {len}");
    }
}

#[test]
fn thread_counts_write_the_same_layout() {
    let setup = Setup::new();
    let plaintext = random_bytes(20 * CHUNK_SIZE + 3, 7);
    let sizes: Vec<_> = [0, 1, 2, 3]
        .into_iter()
        .map(|threads| setup.encrypt_with(&plaintext, 4, threads).0.len())
        .collect();
    assert!(sizes.windows(2).all(|w| w[0] == w[1]), "{sizes:?}");
}

#[test]
fn small_reads_and_writes_give_the_same_result() {
    let setup = Setup::new();
    let plaintext = random_bytes(2 * CHUNK_SIZE + 5, 9);
    let mut file = Vec::new();
    encrypt_stream(
        &setup.policy.public_key(),
        &setup.enrico,
        &mut Trickle(&plaintext),
        &mut file,
    )
    .unwrap();
    let mut reader = Trickle(&file);
    let header = read_header(&mut reader).unwrap();
    let key = open_data_key_original(&setup.policy, &header).unwrap();
    let mut out = Vec::new();
    decrypt_stream_with_key(&key, &header, &setup.trusted, &mut reader, &mut out).unwrap();
    assert!(out == plaintext);
}

#[test]
fn header_layout() {
    let setup = Setup::new();
    let (file, stats) = setup.encrypt(b"hello", 5);
    assert_eq!(&file[..8], MAGIC);
    let capsule_len = u32::from_be_bytes(file[8..12].try_into().unwrap()) as usize;
    let capsule = Capsule::from_bytes(&file[12..12 + capsule_len]).unwrap();
    let at = 12 + capsule_len;
    let key_len = u32::from_be_bytes(file[at..at + 4].try_into().unwrap()) as usize;
    // umbral's DEM: 24-byte nonce, the 32-byte key, 16-byte tag.
    assert_eq!(key_len, 24 + 32 + 16);
    let at = at + 4 + key_len + NONCE_PREFIX_SIZE + KEY_COMMITMENT_SIZE;
    assert_eq!(&file[at..at + 2], &5u16.to_be_bytes());
    assert_eq!(&file[at + 2..at + 35], &setup.enrico.public_key_bytes());
    let header_len = at + 35 + 64;
    assert_eq!(stats.header_bytes, header_len as u64);
    let signed = [b"KMSENC02 header".as_slice(), &file[..at + 35]].concat();
    let signature: [u8; 64] = file[at + 35..header_len].try_into().unwrap();
    assert!(crate::sender::verify(
        &setup.enrico.public_key(),
        &signed,
        &signature
    ));

    let header = read_header(&mut &file[..]).unwrap();
    assert_eq!(header.capsule(), &capsule);
    assert_eq!(header.as_bytes(), &file[..header_len]);
    assert_eq!(header.version(), Version::V2);
    assert_eq!(header.sender(), Some(&setup.enrico.public_key()));
    assert_eq!(header.segment_chunks(), Some(5));
    let key = open_data_key_original(&setup.policy, &header).unwrap();
    let mut commitment = Sha256::new();
    commitment.update(b"KMSENC02 key commitment");
    commitment.update(key.as_bytes());
    assert_eq!(
        header.key_commitment(),
        <[u8; 32]>::from(commitment.finalize())
    );

    // One segment: the chunk, then the record over sha256(H), index 0, last, the digest.
    let chunk = &file[header_len..header_len + 5 + TAG_SIZE];
    let record = &file[header_len + 5 + TAG_SIZE..];
    assert_eq!(record.len(), RECORD_SIZE);
    assert_eq!(&record[..4], &[0, 0, 0, 0]);
    let message = [
        b"KMSENC02 segment".as_slice(),
        &Sha256::digest(&file[..header_len]),
        &[0, 0, 0, 0, 1],
        blake3::hash(chunk).as_bytes(),
    ]
    .concat();
    let signature: [u8; 64] = record[4..].try_into().unwrap();
    assert!(crate::sender::verify(
        &setup.enrico.public_key(),
        &message,
        &signature
    ));
}

/// A file of 5 segments of 2 chunks (the last one short), and its plaintext.
fn five_segments(setup: &Setup) -> (Vec<u8>, Vec<u8>, usize) {
    let plaintext = random_bytes(9 * CHUNK_SIZE + 100, 1);
    let (file, stats) = setup.encrypt(&plaintext, 2);
    assert_eq!(stats.segments, 5);
    (file, plaintext, stats.header_bytes as usize)
}

#[test]
fn a_modified_byte_is_tampering_and_nothing_of_its_segment_is_written() {
    let setup = Setup::new();
    let (file, plaintext, header_len) = five_segments(&setup);
    for chunk in 0..10usize {
        let (segment, i) = (chunk / 2, chunk % 2);
        let offset = segment_at(header_len, 2, segment) + i * SEALED_CHUNK;
        for delta in [0, 1000, SEALED_CHUNK - 1] {
            let at = offset + delta;
            if chunk == 9 && delta > 100 {
                continue; // the final chunk is short
            }
            let mut bad = file.clone();
            bad[at] ^= 0x40;
            let (out, result) = setup.decrypt(&bad);
            match result {
                Err(StreamError::Tampered {
                    chunk: c,
                    offset: o,
                }) => {
                    assert_eq!((c, o), (chunk as u64, offset as u64));
                }
                other => panic!("chunk {chunk} +{delta}: {other:?}"),
            }
            // Exactly the segments before the bad one were written.
            assert!(
                out == plaintext[..segment * 2 * CHUNK_SIZE],
                "chunk {chunk}"
            );
        }
    }
}

#[test]
fn a_modified_record_or_header_is_refused() {
    let setup = Setup::new();
    let (file, plaintext, header_len) = five_segments(&setup);
    // A byte of a record's signature, or of its index: the chunks still open with the data key,
    // but no signature covers them.
    for (segment, delta) in [(0, 3), (1, 10), (2, 60)] {
        let record = segment_at(header_len, 2, segment + 1) - RECORD_SIZE;
        let mut bad = file.clone();
        bad[record + delta] ^= 1;
        let (out, result) = setup.decrypt(&bad);
        assert!(
            matches!(result, Err(StreamError::Forged { segment: s, .. }) if s == segment as u64),
            "{segment}: {result:?}"
        );
        assert!(out == plaintext[..segment * 2 * CHUNK_SIZE]);
    }
    // Any byte of the header: its signature.
    for at in [
        0usize,
        9,
        30,
        header_len - 100,
        header_len - 70,
        header_len - 1,
    ] {
        let mut bad = file.clone();
        bad[at] ^= 1;
        let result = read_header(&mut &bad[..]);
        assert!(
            matches!(
                result,
                Err(StreamError::BadHeaderSignature { .. }
                    | StreamError::BadMagic { .. }
                    | StreamError::UnsupportedVersion { .. }
                    | StreamError::HeaderField { .. })
            ),
            "{at}: {result:?}"
        );
    }
    let mut bad = file.clone();
    bad[header_len - 100] ^= 1; // inside the sender key's neighbours: the key commitment
    assert!(matches!(
        read_header(&mut &bad[..]),
        Err(StreamError::BadHeaderSignature { .. })
    ));
}

#[test]
fn truncation_is_detected_at_every_kind_of_cut() {
    let setup = Setup::new();
    let (file, plaintext, header_len) = five_segments(&setup);
    let at = |s| segment_at(header_len, 2, s);
    // At a segment boundary: an authentic segment, signed as not final.
    for kept in 1..=4 {
        let (out, result) = setup.decrypt(&file[..at(kept)]);
        assert!(
            matches!(result, Err(StreamError::Truncated { chunks }) if chunks == 2 * kept as u64),
            "{kept}: {result:?}"
        );
        // The last segment read is authentic but not final: not written either.
        assert!(out == plaintext[..(kept - 1) * 2 * CHUNK_SIZE], "{kept}");
    }
    // Nothing after the header.
    let (out, result) = setup.decrypt(&file[..header_len]);
    assert!(
        matches!(result, Err(StreamError::Truncated { chunks: 0 })),
        "{result:?}"
    );
    assert!(out.is_empty());
    // At a chunk boundary inside a segment, and inside chunks and records.
    for (cut, chunks) in [
        (at(1) + SEALED_CHUNK, 3),
        (at(0) + SEALED_CHUNK, 1),
        (at(2) + 10, 4),
        (at(2) + SEALED_CHUNK + 70, 5),
        (at(3) - 1, 5),
        (at(3) - 40, 5),
        (file.len() - 1, 9),
        (file.len() - 60, 9),
    ] {
        let (_, result) = setup.decrypt(&file[..cut]);
        assert!(
            matches!(result, Err(StreamError::Truncated { chunks: c }) if c == chunks),
            "{cut}: {result:?}"
        );
    }
}

#[test]
fn reordering_is_detected() {
    let setup = Setup::new();
    let (file, plaintext, header_len) = five_segments(&setup);
    let at = |s| segment_at(header_len, 2, s);
    // Segments 1 and 2 swapped: each is authentic, signed for the other's place.
    let mut swapped = file[..at(1)].to_vec();
    swapped.extend_from_slice(&file[at(2)..at(3)]);
    swapped.extend_from_slice(&file[at(1)..at(2)]);
    swapped.extend_from_slice(&file[at(3)..]);
    let (out, result) = setup.decrypt(&swapped);
    assert!(
        matches!(
            result,
            Err(StreamError::Reordered {
                unit: "segment",
                expected: 1,
                found: 2,
                ..
            })
        ),
        "{result:?}"
    );
    assert!(out == plaintext[..2 * CHUNK_SIZE]);
    // Segment 0 dropped: segment 1 at place 0.
    let mut dropped = file[..header_len].to_vec();
    dropped.extend_from_slice(&file[at(1)..]);
    let (_, result) = setup.decrypt(&dropped);
    assert!(
        matches!(
            result,
            Err(StreamError::Reordered {
                unit: "segment",
                expected: 0,
                found: 1,
                ..
            })
        ),
        "{result:?}"
    );
    // Chunks 2 and 3 (segment 1's) swapped.
    let mut swapped = file[..at(1)].to_vec();
    swapped.extend_from_slice(&file[at(1) + SEALED_CHUNK..at(1) + 2 * SEALED_CHUNK]);
    swapped.extend_from_slice(&file[at(1)..at(1) + SEALED_CHUNK]);
    swapped.extend_from_slice(&file[at(1) + 2 * SEALED_CHUNK..]);
    let (out, result) = setup.decrypt(&swapped);
    assert!(
        matches!(
            result,
            Err(StreamError::Reordered {
                unit: "chunk",
                expected: 2,
                found: 3,
                ..
            })
        ),
        "{result:?}"
    );
    assert!(out == plaintext[..2 * CHUNK_SIZE]);
}

#[test]
fn extension_is_detected() {
    let setup = Setup::new();
    let (file, _, header_len) = five_segments(&setup);
    // Bytes after a short final segment, a few or a whole segment's worth.
    for extra in [1usize, 67, 68, 500, 3 * SEALED_CHUNK] {
        let mut extended = file.clone();
        extended.extend(std::iter::repeat_n(0xa5, extra));
        let (out, result) = setup.decrypt(&extended);
        assert!(
            matches!(result, Err(StreamError::TrailingData { chunk: 9 })),
            "{extra}: {result:?}"
        );
        assert_eq!(out.len(), 8 * CHUNK_SIZE);
    }
    // After a full final segment: a copy of its last segment.
    let plaintext = random_bytes(4 * CHUNK_SIZE, 3);
    let (file, stats) = setup.encrypt(&plaintext, 2);
    let mut extended = file.clone();
    extended.extend_from_slice(&file[segment_at(stats.header_bytes as usize, 2, 1)..]);
    let (out, result) = setup.decrypt(&extended);
    assert!(
        matches!(result, Err(StreamError::TrailingData { chunk: 3 })),
        "{result:?}"
    );
    assert!(out == plaintext[..2 * CHUNK_SIZE]);
    let _ = header_len;
}

/// Bob holds the data key: he can seal chunks that open, but cannot sign them as Enrico.
#[test]
fn a_recipient_holding_the_data_key_cannot_forge() {
    let setup = Setup::new();
    let (file, plaintext, header_len) = five_segments(&setup);
    let at = |s| segment_at(header_len, 2, s);
    let (header, key) = setup.data_key(&file);
    let cipher = ChunkCipher::new(&key, &header);

    // Chunk 3 (segment 1) re-sealed with other content: a valid tag, Enrico's record kept.
    let mut forged = file.clone();
    let chunk = &mut forged[at(1) + SEALED_CHUNK..at(1) + 2 * SEALED_CHUNK];
    assert!(cipher.open(3, false, chunk));
    chunk[..CHUNK_SIZE].copy_from_slice(&[b'!'; CHUNK_SIZE]);
    cipher.seal(3, false, chunk).unwrap();
    let (out, result) = setup.decrypt(&forged);
    assert!(
        matches!(result, Err(StreamError::Forged { segment: 1, .. })),
        "{result:?}"
    );
    assert!(out == plaintext[..2 * CHUNK_SIZE], "nothing of segment 1");

    // A new final segment spliced in place of the last two: chunks sealed at their places, and
    // a record copied from Enrico's, or signed by Bob's own key.
    for bob_signs in [false, true] {
        let mut spliced = file[..at(3)].to_vec();
        let mut sealed = vec![b'?'; 100 + TAG_SIZE];
        cipher.seal(6, true, &mut sealed).unwrap();
        spliced.extend_from_slice(&sealed);
        let mut record = file[file.len() - RECORD_SIZE..].to_vec();
        record[..4].copy_from_slice(&3u32.to_be_bytes());
        if bob_signs {
            record[4..].copy_from_slice(&SenderKey::random().sign(b"anything"));
        }
        spliced.extend_from_slice(&record);
        let (out, result) = setup.decrypt(&spliced);
        assert!(
            matches!(result, Err(StreamError::Forged { segment: 3, .. })),
            "{bob_signs}: {result:?}"
        );
        assert!(out == plaintext[..6 * CHUNK_SIZE]);
    }
}

#[test]
fn only_trusted_senders_are_accepted() {
    let setup = Setup::new();
    let (file, _, _) = five_segments(&setup);
    let header = read_header(&mut &file[..]).unwrap();
    assert_eq!(
        header.check_sender(&setup.trusted, false).unwrap(),
        Some(setup.enrico.public_key())
    );
    // Mallory encrypts to the same policy with his own key: a valid file, an untrusted sender.
    let mallory = SenderKey::random();
    let mut theirs = Vec::new();
    encrypt_stream(
        &setup.policy.public_key(),
        &mallory,
        &mut &b"hi"[..],
        &mut theirs,
    )
    .unwrap();
    let mut reader = &theirs[..];
    let header = read_header(&mut reader).unwrap();
    let err = header.check_sender(&setup.trusted, true).unwrap_err();
    assert!(matches!(err, StreamError::UntrustedSender { .. }), "{err}");
    assert!(err.to_string().contains(&setup.trusted.describe()));
    // decrypt_stream_with_key checks again.
    let key = open_data_key_original(&setup.policy, &header).unwrap();
    let err = decrypt_stream_with_key(&key, &header, &setup.trusted, &mut reader, &mut Vec::new())
        .unwrap_err();
    assert!(matches!(err, StreamError::UntrustedSender { .. }), "{err}");
    assert!(matches!(
        header.check_sender(&TrustedSenders::default(), false),
        Err(StreamError::UntrustedSender { .. })
    ));
}

#[test]
fn a_header_re_signed_by_another_key_is_refused() {
    let setup = Setup::new();
    let (file, _, header_len) = five_segments(&setup);
    let mallory = SenderKey::random();
    let sign_at = header_len - 64;
    let key_at = sign_at - 33;
    // Re-signed by Mallory, Enrico's key kept: the signature does not verify.
    let mut resigned = file.clone();
    let signature = mallory.sign(&[b"KMSENC02 header".as_slice(), &file[..sign_at]].concat());
    resigned[sign_at..header_len].copy_from_slice(&signature);
    let err = read_header(&mut &resigned[..]).unwrap_err();
    assert!(
        matches!(err, StreamError::BadHeaderSignature { .. }),
        "{err}"
    );
    // Mallory's key put in and signed: a valid header, an untrusted sender.
    let mut replaced = file.clone();
    replaced[key_at..sign_at].copy_from_slice(&mallory.public_key_bytes());
    let signature = mallory.sign(&[b"KMSENC02 header".as_slice(), &replaced[..sign_at]].concat());
    replaced[sign_at..header_len].copy_from_slice(&signature);
    let header = read_header(&mut &replaced[..]).unwrap();
    let err = header.check_sender(&setup.trusted, false).unwrap_err();
    assert!(matches!(err, StreamError::UntrustedSender { .. }), "{err}");
    // Even if Bob trusted Mallory too, Enrico's chunks are bound to Enrico's header.
    let mut both = setup.trusted.clone();
    both.add(mallory.public_key());
    let mut reader = &replaced[header_len..];
    let key = open_data_key_original(&setup.policy, &header).unwrap();
    let err =
        decrypt_stream_with_key(&key, &header, &both, &mut reader, &mut Vec::new()).unwrap_err();
    assert!(
        matches!(err, StreamError::Tampered { chunk: 0, .. }),
        "{err}"
    );
}

#[test]
fn errors_are_distinct() {
    // One of each refusal, by variant: none of them is another's.
    let names = [
        StreamError::Tampered {
            chunk: 0,
            offset: 0,
        },
        StreamError::Truncated { chunks: 0 },
        StreamError::Reordered {
            unit: "chunk",
            expected: 0,
            found: 1,
            offset: 0,
        },
        StreamError::TrailingData { chunk: 0 },
        StreamError::Forged {
            segment: 0,
            offset: 0,
        },
        StreamError::BadHeaderSignature {
            sender: "0x".into(),
        },
        StreamError::UntrustedSender {
            sender: "0x".into(),
            trusted: "none".into(),
        },
        StreamError::Unsigned,
    ]
    .map(|e| std::mem::discriminant(&e));
    for (i, a) in names.iter().enumerate() {
        assert!(names[i + 1..].iter().all(|b| a != b));
    }
}

#[test]
fn wrong_keys_and_options_are_named() {
    let setup = Setup::new();
    let (file, _) = setup.encrypt(b"secret", 16);
    let mut reader = &file[..];
    let header = read_header(&mut reader).unwrap();
    let err = open_data_key_original(&SecretKey::random(), &header).unwrap_err();
    assert!(matches!(err, StreamError::WrongKey(_)), "{err}");
    let err = decrypt_stream_with_key(
        &DataKey::random(),
        &header,
        &setup.trusted,
        &mut reader,
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(matches!(err, StreamError::WrongKey(_)), "{err}");
    for segment_chunks in [0, 33] {
        let options = EncryptOptions {
            threads: 1,
            segment_chunks,
        };
        let err = encrypt_stream_with_options(
            &setup.policy.public_key(),
            &setup.enrico,
            &mut &b""[..],
            &mut Vec::new(),
            &options,
        )
        .unwrap_err();
        assert!(matches!(err, StreamError::BadOption(_)), "{err}");
    }
}

#[test]
fn bad_headers() {
    let setup = Setup::new();
    let (file, _) = setup.encrypt(b"x", 16);
    let err = read_header(&mut &b"PK\x03\x04 not ours"[..]).unwrap_err();
    assert!(matches!(err, StreamError::BadMagic { .. }), "{err}");
    let mut v3 = file.clone();
    v3[7] = b'3';
    let err = read_header(&mut &v3[..]).unwrap_err();
    assert!(
        matches!(err, StreamError::UnsupportedVersion { .. }),
        "{err}"
    );
    for cut in [0, 5, 10, 40, 150, file.len() - RECORD_SIZE - 17 - 1] {
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
    let header_len = file.len() - RECORD_SIZE - 17;
    let mut segments = file.clone();
    segments[header_len - 99..header_len - 97].copy_from_slice(&0u16.to_be_bytes());
    let err = read_header(&mut &segments[..]).unwrap_err();
    assert!(
        matches!(
            err,
            StreamError::HeaderField {
                field: "segment size",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn bob_opens_with_cfrags() {
    let setup = Setup::new();
    let bob = SecretKey::random();
    let signer = Signer::new(SecretKey::random());
    let kfrags = generate_kfrags(&setup.policy, &bob.public_key(), &signer, 2, 3, true, true);
    let plaintext = random_bytes(CHUNK_SIZE * 2 + 3, 5);
    let (file, _) = setup.encrypt(&plaintext, 16);
    let mut reader = &file[..];
    let header = read_header(&mut reader).unwrap();
    let cfrags: Vec<_> = kfrags
        .iter()
        .map(|k| reencrypt(header.capsule(), k.clone()))
        .collect();
    let err = open_data_key_reencrypted(
        &bob,
        &setup.policy.public_key(),
        &header,
        cfrags[..1].iter().cloned(),
    )
    .unwrap_err();
    assert!(matches!(err, StreamError::Reencryption(_)), "{err}");
    let key = open_data_key_reencrypted(
        &bob,
        &setup.policy.public_key(),
        &header,
        cfrags[1..].iter().cloned(),
    )
    .unwrap();
    let mut out = Vec::new();
    decrypt_stream_with_key(&key, &header, &setup.trusted, &mut reader, &mut out).unwrap();
    assert!(out == plaintext);
}

// The unsigned first format: read only when allowed, with its own checks.

fn encrypt_v1(setup: &Setup, plaintext: &[u8], threads: usize) -> (Vec<u8>, StreamStats) {
    let mut out = Vec::new();
    let stats = v1::encrypt(
        &setup.policy.public_key(),
        &mut &plaintext[..],
        &mut out,
        threads,
    )
    .unwrap();
    (out, stats)
}

#[test]
fn v1_files_are_read_only_when_allowed() {
    let setup = Setup::new();
    let plaintext = random_bytes(3 * CHUNK_SIZE + 10, 2);
    let (file, stats) = encrypt_v1(&setup, &plaintext, 2);
    assert_eq!(&file[..8], MAGIC_V1);
    let mut reader = &file[..];
    let header = read_header(&mut reader).unwrap();
    assert_eq!((header.version(), header.sender()), (Version::V1, None));
    let key = open_data_key_original(&setup.policy, &header).unwrap();
    let err = decrypt_stream_with_key(&key, &header, &setup.trusted, &mut reader, &mut Vec::new())
        .unwrap_err();
    assert!(matches!(err, StreamError::Unsigned), "{err}");
    assert!(err.to_string().contains("--allow-unsigned"), "{err}");
    assert!(err.to_string().contains("kms encrypt"), "{err}");
    let (out, result) = setup.decrypt(&file);
    assert_eq!(result.unwrap(), stats);
    assert!(out == plaintext);
}

#[test]
fn v1_attacks_are_still_detected() {
    let setup = Setup::new();
    let plaintext = random_bytes(3 * CHUNK_SIZE + 10, 2);
    let (file, stats) = encrypt_v1(&setup, &plaintext, 3);
    let header_len = stats.header_bytes as usize;
    let chunk_at = |i: usize| header_len + i * SEALED_CHUNK;
    let mut bad = file.clone();
    bad[chunk_at(2) + 7] ^= 1;
    let (out, result) = setup.decrypt(&bad);
    assert!(
        matches!(result, Err(StreamError::Tampered { chunk: 2, .. })),
        "{result:?}"
    );
    assert!(out == plaintext[..2 * CHUNK_SIZE]);
    for kept in 0..=3 {
        let (_, result) = setup.decrypt(&file[..chunk_at(kept)]);
        assert!(
            matches!(result, Err(StreamError::Truncated { chunks }) if chunks == kept as u64),
            "{kept}: {result:?}"
        );
    }
    let mut swapped = file[..header_len].to_vec();
    swapped.extend_from_slice(&file[chunk_at(1)..chunk_at(2)]);
    swapped.extend_from_slice(&file[chunk_at(0)..chunk_at(1)]);
    swapped.extend_from_slice(&file[chunk_at(2)..]);
    let (_, result) = setup.decrypt(&swapped);
    assert!(matches!(
        result,
        Err(StreamError::Tampered { chunk: 0, .. })
    ));
    let (file, stats) = encrypt_v1(&setup, &plaintext[..2 * CHUNK_SIZE], 0);
    let mut extended = file.clone();
    extended.extend_from_slice(&file[stats.header_bytes as usize + SEALED_CHUNK..]);
    let (_, result) = setup.decrypt(&extended);
    assert!(
        matches!(result, Err(StreamError::TrailingData { chunk: 1 })),
        "{result:?}"
    );
}

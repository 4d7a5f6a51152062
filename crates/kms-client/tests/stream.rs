//! The stream format from the outside: the committed test vectors (`tests/fixtures/stream/`, see
//! `docs/client.md`) decrypt, and a 1 GiB signed stream encrypts and decrypts in bounded memory.

use std::{
    io::{Read, Write},
    process::Command,
};

use anyhow::{ensure, Context, Result};
use kms_client::{
    stream::{self, DecryptOptions, StreamError, Version},
    SenderKey, TrustedSenders,
};
use kms_crypto::keys::MasterSecret;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use serde_json::Value;
use umbral_pre::SecretKey;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/stream");

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The test vectors' keys and plaintext: all from fixed seeds.
fn policy_key() -> SecretKey {
    MasterSecret::from_seed([1; 32]).delegating_key("test vector")
}

fn enrico() -> SenderKey {
    SenderKey::new(MasterSecret::from_seed([2; 32]).sender_key())
}

/// Byte `i` is `i mod 251`: one chunk and 5 bytes.
fn vector_plaintext() -> Vec<u8> {
    (0..stream::CHUNK_SIZE + 5)
        .map(|i| (i % 251) as u8)
        .collect()
}

/// Decrypts a vector file with the policy's secret key; returns the plaintext and the data key.
fn open(
    file: &[u8],
    trusted: &TrustedSenders,
    allow_unsigned: bool,
) -> Result<(Vec<u8>, String), StreamError> {
    let mut reader = file;
    let header = stream::read_header(&mut reader)?;
    let key = stream::open_data_key_original(&policy_key(), &header)?;
    let mut out = Vec::new();
    let options = DecryptOptions {
        allow_unsigned,
        ..DecryptOptions::default()
    };
    stream::decrypt_stream_with_options(&key, &header, trusted, &mut reader, &mut out, &options)?;
    Ok((out, hex(key.as_bytes())))
}

#[test]
fn test_vectors_decrypt() -> Result<()> {
    let vectors: Value = serde_json::from_str(&std::fs::read_to_string(format!(
        "{FIXTURES}/vectors.json"
    ))?)?;
    let policy = policy_key();
    ensure!(vectors["policySecretKey"] == hex(&policy.to_be_bytes().as_secret()[..]));
    ensure!(vectors["policyPublicKey"] == hex(&policy.public_key().to_compressed_bytes()));
    ensure!(vectors["senderPublicKey"] == hex(&enrico().public_key_bytes()));
    let trusted = TrustedSenders::new([enrico().public_key()]);

    let v2 = std::fs::read(format!("{FIXTURES}/v2.kms"))?;
    let header = stream::read_header(&mut &v2[..])?;
    ensure!(header.version() == Version::V2);
    ensure!(header.segment_chunks() == Some(1));
    let (plaintext, key) = open(&v2, &trusted, false)?;
    ensure!(plaintext == vector_plaintext(), "v2 plaintext");
    ensure!(vectors["v2"]["dataKey"] == key, "v2 data key {key}");
    let other = TrustedSenders::new([SenderKey::random().public_key()]);
    ensure!(matches!(
        open(&v2, &other, false),
        Err(StreamError::UntrustedSender { .. })
    ));

    // Written by the previous version (KMSENC01): read only when unsigned files are allowed.
    let v1 = std::fs::read(format!("{FIXTURES}/v1.kms"))?;
    ensure!(matches!(
        open(&v1, &trusted, false),
        Err(StreamError::Unsigned)
    ));
    let (plaintext, key) = open(&v1, &trusted, true)?;
    ensure!(plaintext == vector_plaintext(), "v1 plaintext");
    ensure!(vectors["v1"]["dataKey"] == key, "v1 data key {key}");
    Ok(())
}

/// Rewrites `v2.kms` and `vectors.json` (umbral-pre signs with random nonces and the data key is
/// random: each run makes another valid file, so the committed one is only rewritten on purpose):
/// `KMS_WRITE_VECTORS=1 cargo test -p kms-client --test stream -- --ignored write_test_vectors`.
#[test]
#[ignore = "rewrites the committed test vectors"]
fn write_test_vectors() -> Result<()> {
    if std::env::var_os("KMS_WRITE_VECTORS").is_none() {
        return Ok(());
    }
    let policy = policy_key();
    let mut v2 = Vec::new();
    let options = stream::EncryptOptions {
        segment_chunks: 1,
        ..Default::default()
    };
    stream::encrypt_stream_with_options(
        &policy.public_key(),
        &enrico(),
        &mut &vector_plaintext()[..],
        &mut v2,
        &options,
    )?;
    std::fs::write(format!("{FIXTURES}/v2.kms"), &v2)?;
    let key_of = |file: &[u8]| -> Result<String> {
        let header = stream::read_header(&mut &file[..])?;
        Ok(hex(
            stream::open_data_key_original(&policy, &header)?.as_bytes()
        ))
    };
    let v1 = std::fs::read(format!("{FIXTURES}/v1.kms"))?;
    let vectors = serde_json::json!({
        "about": "docs/client.md, Test vectors: the policy key is MasterSecret::from_seed([1; 32]).delegating_key(\"test vector\"), the sender key MasterSecret::from_seed([2; 32]).sender_key(); the plaintext is 65,541 bytes, byte i = i mod 251",
        "policySecretKey": hex(&policy.to_be_bytes().as_secret()[..]),
        "policyPublicKey": hex(&policy.public_key().to_compressed_bytes()),
        "senderPublicKey": hex(&enrico().public_key_bytes()),
        "plaintextBytes": vector_plaintext().len(),
        "v1": { "file": "v1.kms", "dataKey": key_of(&v1)? },
        "v2": { "file": "v2.kms", "dataKey": key_of(&v2)?, "segmentChunks": 1 },
    });
    std::fs::write(
        format!("{FIXTURES}/vectors.json"),
        serde_json::to_string_pretty(&vectors)? + "\n",
    )?;
    Ok(())
}

/// Cycles through one random MiB, `left` bytes in all.
struct Cycle {
    block: Vec<u8>,
    at: usize,
    left: u64,
}

impl Cycle {
    fn new(bytes: u64) -> Self {
        let mut block = vec![0u8; 1 << 20];
        ChaCha20Rng::seed_from_u64(3).fill_bytes(&mut block);
        Self {
            block,
            at: 0,
            left: bytes,
        }
    }
}

impl Read for Cycle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf
            .len()
            .min(self.block.len() - self.at)
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        buf[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at = (self.at + n) % self.block.len();
        self.left -= n as u64;
        Ok(n)
    }
}

/// Checks what it is written against the same cycle, keeping nothing.
struct Expect(Cycle);

impl Write for Expect {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut expected = vec![0u8; buf.len()];
        let mut filled = 0;
        while filled < buf.len() {
            match self.0.read(&mut expected[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        if expected[..filled] != *buf {
            return Err(std::io::Error::other("the decrypted stream differs"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const GIB: u64 = 1 << 30;
const CHILD: &str = "KMS_STREAM_RSS_CHILD";

/// 1 GiB encrypted into a pipe while the other end decrypts it, in a child process (this test's
/// binary again) whose peak resident memory must stay under 64 MiB.
#[test]
fn a_gib_signed_stream_in_bounded_memory() -> Result<()> {
    if std::env::var_os(CHILD).is_some() {
        return encrypt_and_decrypt_a_gib();
    }
    let output = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "a_gib_signed_stream_in_bounded_memory",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let peak_kib: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("peak RSS KiB: "))
        .context("the child did not report its peak RSS")?
        .trim()
        .parse()?;
    println!("{stdout}");
    ensure!(
        peak_kib <= 64 * 1024,
        "peak RSS {peak_kib} KiB, over 64 MiB"
    );
    Ok(())
}

fn encrypt_and_decrypt_a_gib() -> Result<()> {
    let policy = SecretKey::random();
    let enrico = SenderKey::random();
    let trusted = TrustedSenders::new([enrico.public_key()]);
    let (mut from_enrico, mut to_bob) = std::io::pipe()?;
    let policy_pk = policy.public_key();
    let started = std::time::Instant::now();
    let writer = std::thread::spawn(move || {
        stream::encrypt_stream(&policy_pk, &enrico, &mut Cycle::new(GIB), &mut to_bob)
    });
    let header = stream::read_header(&mut from_enrico)?;
    let key = stream::open_data_key_original(&policy, &header)?;
    let mut expect = Expect(Cycle::new(GIB));
    let stats =
        stream::decrypt_stream_with_key(&key, &header, &trusted, &mut from_enrico, &mut expect)?;
    let sealed = writer
        .join()
        .map_err(|_| anyhow::anyhow!("encryption panicked"))??;
    ensure!(stats.plaintext_bytes == GIB && sealed.plaintext_bytes == GIB);
    ensure!(stats.payload_bytes == sealed.payload_bytes);
    let status = std::fs::read_to_string("/proc/self/status")?;
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .context("no VmHWM in /proc/self/status")?
        .trim()
        .trim_end_matches("kB")
        .trim();
    println!(
        "1 GiB in {:.1} s, {} segments",
        started.elapsed().as_secs_f64(),
        stats.segments
    );
    println!("peak RSS KiB: {peak}");
    Ok(())
}

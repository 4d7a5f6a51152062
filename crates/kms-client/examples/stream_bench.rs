//! Throughput of the signed streaming format (KMSENC02), file to file:
//!
//! ```sh
//! cargo run --release -p kms-client --example stream_bench -- [MiB (1024)] [threads (default)] [dir (tmp) | mem]
//! ```
//!
//! Writes a pseudo-random input file of that size, encrypts it to a second file, decrypts that
//! to a third, checks the third equals the first, and prints MB/s for each direction. Run it
//! under `/usr/bin/time -v` for the peak memory. With `mem` instead of a directory, the same in
//! memory (the encrypted payload in a `Vec`, the plaintext to `io::sink`): the format's own
//! speed, to compare with `openssl speed -evp chacha20-poly1305`. Also times one segment
//! signature and one verification (the per-segment cost of the streaming trade-off).

use std::{
    error::Error,
    fs::File,
    io::{BufReader, Read, Write},
    time::Instant,
};

use kms_client::{
    sender,
    stream::{self, DecryptOptions, EncryptOptions},
    SenderKey, TrustedSenders,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use umbral_pre::SecretKey;

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mib: u64 = args.first().map_or(Ok(1024), |a| a.parse())?;
    let threads: usize = args
        .get(1)
        .map_or(Ok(stream::default_threads()), |a| a.parse())?;
    let enrico = SenderKey::random();
    let trusted = TrustedSenders::new([enrico.public_key()]);
    let encrypt_options = EncryptOptions {
        threads,
        ..EncryptOptions::default()
    };
    let decrypt_options = DecryptOptions {
        threads,
        ..DecryptOptions::default()
    };
    let (sign_us, verify_us) = signature_costs(&enrico);
    println!("segment signature: sign {sign_us:.0} µs, verify {verify_us:.0} µs");
    if args.get(2).map(String::as_str) == Some("mem") {
        return in_memory(mib, &enrico, &trusted, &encrypt_options, &decrypt_options);
    }
    let dir = match args.get(2) {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    };
    let (input, encrypted, output) = (
        dir.path().join("input"),
        dir.path().join("input.kms"),
        dir.path().join("output"),
    );

    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut block = vec![0u8; 1 << 20];
    let mut file = File::create(&input)?;
    for _ in 0..mib {
        rng.fill_bytes(&mut block);
        file.write_all(&block)?;
    }
    file.sync_all()?;
    let bytes = mib * (1 << 20);
    let rate = |seconds: f64| bytes as f64 / seconds / 1e6;

    let alice = SecretKey::random();
    let start = Instant::now();
    let mut writer = File::create(&encrypted)?;
    let stats = stream::encrypt_stream_with_options(
        &alice.public_key(),
        &enrico,
        &mut File::open(&input)?,
        &mut writer,
        &encrypt_options,
    )?;
    drop(writer);
    let seconds = start.elapsed().as_secs_f64();
    let encrypt_rate = rate(seconds);
    println!(
        "encrypt: {mib} MiB in {seconds:.3} s = {encrypt_rate:.0} MB/s ({} chunks, {} segments, {threads} threads)",
        stats.chunks, stats.segments
    );

    let start = Instant::now();
    let mut reader = File::open(&encrypted)?;
    let header = stream::read_header(&mut reader)?;
    let key = stream::open_data_key_original(&alice, &header)?;
    let mut writer = File::create(&output)?;
    stream::decrypt_stream_with_options(
        &key,
        &header,
        &trusted,
        &mut reader,
        &mut writer,
        &decrypt_options,
    )?;
    drop(writer);
    let seconds = start.elapsed().as_secs_f64();
    let decrypt_rate = rate(seconds);
    println!("decrypt: {mib} MiB in {seconds:.3} s = {decrypt_rate:.0} MB/s");

    let (mut a, mut b) = (
        BufReader::new(File::open(&input)?),
        BufReader::new(File::open(&output)?),
    );
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = read_full(&mut a, &mut x)?;
        let m = read_full(&mut b, &mut y)?;
        if n != m || x[..n] != y[..m] {
            return Err("the decrypted file differs from the input".into());
        }
        if n == 0 {
            break;
        }
    }
    println!("roundtrip ok");
    // One line for scripts (script/bench): the rates and this process's peak resident memory.
    println!(
        "json: {{\"mib\": {mib}, \"threads\": {threads}, \"encryptMBps\": {encrypt_rate:.1}, \"decryptMBps\": {decrypt_rate:.1}, \"segmentChunks\": {}, \"signMicros\": {sign_us:.0}, \"verifyMicros\": {verify_us:.0}, \"peakRssMiB\": {}}}",
        encrypt_options.segment_chunks,
        peak_rss_mib().map_or("null".to_owned(), |m| format!("{m:.1}"))
    );
    Ok(())
}

/// This process's peak resident set (Linux `VmHWM`), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Cycles through one random MiB, `total` bytes in all.
struct Cycle {
    block: Vec<u8>,
    at: usize,
    left: u64,
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

/// Microseconds to sign, and to verify, one segment's message (16 digests).
fn signature_costs(enrico: &SenderKey) -> (f64, f64) {
    let message = vec![7u8; 16 + 32 + 5 + 16 * 32];
    let rounds = 200;
    let start = Instant::now();
    let mut signature = [0u8; 64];
    for _ in 0..rounds {
        signature = enrico.sign(&message);
    }
    let sign = start.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
    let start = Instant::now();
    for _ in 0..rounds {
        assert!(sender::verify(&enrico.public_key(), &message, &signature));
    }
    let verify = start.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
    (sign, verify)
}

fn in_memory(
    mib: u64,
    enrico: &SenderKey,
    trusted: &TrustedSenders,
    encrypt_options: &EncryptOptions,
    decrypt_options: &DecryptOptions,
) -> Result<(), Box<dyn Error>> {
    let threads = encrypt_options.threads;
    let bytes = mib * (1 << 20);
    let rate = |seconds: f64| bytes as f64 / seconds / 1e6;
    let mut block = vec![0u8; 1 << 20];
    ChaCha20Rng::seed_from_u64(1).fill_bytes(&mut block);
    let mut input = Cycle {
        block,
        at: 0,
        left: bytes,
    };
    let alice = SecretKey::random();
    let start = Instant::now();
    stream::encrypt_stream_with_options(
        &alice.public_key(),
        enrico,
        &mut input,
        &mut std::io::sink(),
        encrypt_options,
    )?;
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "encrypt (memory): {mib} MiB in {seconds:.3} s = {:.0} MB/s ({threads} threads)",
        rate(seconds)
    );
    // Untimed: the encrypted payload to decrypt (first writes to fresh memory are page faults,
    // not the format's cost).
    input.left = bytes;
    let mut encrypted = Vec::with_capacity(usize::try_from(bytes)? + (1 << 20) + 1024);
    stream::encrypt_stream_with_options(
        &alice.public_key(),
        enrico,
        &mut input,
        &mut encrypted,
        encrypt_options,
    )?;
    let start = Instant::now();
    let mut reader = &encrypted[..];
    let header = stream::read_header(&mut reader)?;
    let key = stream::open_data_key_original(&alice, &header)?;
    let stats = stream::decrypt_stream_with_options(
        &key,
        &header,
        trusted,
        &mut reader,
        &mut std::io::sink(),
        decrypt_options,
    )?;
    let decrypt_seconds = start.elapsed().as_secs_f64();
    println!(
        "decrypt (memory): {mib} MiB in {decrypt_seconds:.3} s = {:.0} MB/s",
        rate(decrypt_seconds)
    );
    if stats.plaintext_bytes != bytes {
        return Err("decrypted a different length".into());
    }
    println!(
        "json: {{\"mib\": {mib}, \"threads\": {threads}, \"encryptMBps\": {:.1}, \"decryptMBps\": {:.1}, \"segmentChunks\": {}}}",
        rate(seconds),
        rate(decrypt_seconds),
        encrypt_options.segment_chunks
    );
    Ok(())
}

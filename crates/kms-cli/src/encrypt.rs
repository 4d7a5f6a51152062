//! Enrico's `kms encrypt`: a file of any size to a policy's public key, streaming, signed with
//! his sender key.

use std::{
    fs::File,
    io::{BufReader, Read},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use clap::Args;
use kms_client::{
    stream::{self, EncryptOptions},
    PolicyFile, SenderKey,
};
use kms_crypto::wire;
use umbral_pre::PublicKey;

use crate::files::{load_master_secret, progress, write_atomically};

/// `kms encrypt`.
#[derive(Debug, Args)]
pub struct EncryptArgs {
    /// The policy's public key (hex), or a policy file.
    #[arg(long)]
    pub policy_key: String,
    /// Enrico's Umbral master secret (`kms keys new`): the file is signed with its sender key,
    /// which Bob must trust (the policy file's senders, or `kms retrieve --sender`).
    #[arg(long)]
    pub umbral: PathBuf,
    /// Chunks of 64 KiB per signed segment, 1 to 32: what a reader releases at a time. Fewer
    /// lower the latency of streaming playback, at one more signature per segment.
    #[arg(long, default_value_t = stream::DEFAULT_SEGMENT_CHUNKS,
          value_parser = clap::value_parser!(u16).range(1..=i64::from(stream::MAX_SEGMENT_CHUNKS)))]
    pub segment_chunks: u16,
    /// The file to encrypt (`-` for stdin).
    pub input: PathBuf,
    /// The encrypted file to write (`-` for stdout).
    pub output: PathBuf,
}

impl EncryptArgs {
    /// Encrypts `input` to the policy key into `output` (written whole or not at all).
    pub fn run(self) -> Result<()> {
        let key = policy_key(&self.policy_key)?;
        let sender = SenderKey::new(load_master_secret(&self.umbral)?.sender_key());
        let options = EncryptOptions {
            segment_chunks: self.segment_chunks,
            ..EncryptOptions::default()
        };
        let total = if self.input.as_os_str() == "-" {
            None
        } else {
            Some(
                std::fs::metadata(&self.input)
                    .with_context(|| format!("cannot read {}", self.input.display()))?
                    .len(),
            )
        };
        let bar = progress(total, "encrypting");
        let mut input: Box<dyn Read> = if self.input.as_os_str() == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            Box::new(File::open(&self.input)?)
        };
        let mut input = bar.wrap_read(BufReader::new(&mut input));
        let stats = write_atomically(&self.output, |out| {
            Ok(stream::encrypt_stream_with_options(
                &key, &sender, &mut input, out, &options,
            )?)
        })?;
        bar.finish_and_clear();
        eprintln!(
            "encrypted {} bytes to {}, signed by sender {}",
            stats.plaintext_bytes,
            self.output.display(),
            wire::encode_public_key(&sender.public_key())
        );
        Ok(())
    }
}

/// `--policy-key`: a hex public key, or the policy file holding it.
pub(crate) fn policy_key(value: &str) -> Result<PublicKey> {
    if value.starts_with("0x") || (value.len() == 66 && !Path::new(value).exists()) {
        return wire::decode_public_key("--policy-key", value)
            .context("--policy-key: 0x + 33 bytes hex, or a policy file");
    }
    Ok(PolicyFile::load(value)?.delegating_key)
}

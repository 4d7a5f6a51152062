//! Bob's `kms retrieve` (re-encryptions from the policy's nodes, verified, then the file
//! decrypted) and `kms report` (a wrong cfrag's evidence filed with the Adjudicator).

use std::{fs::File, io::BufReader, path::PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use kms_client::{
    stream::{self, DecryptOptions},
    Fault, PolicyFile, RetrieveError, RetrieveOptions, TrustedSenders,
};
use kms_crypto::wire;

use crate::{
    error::CliError,
    files::{load_master_secret, progress, write_atomically},
    opts::{Account, ChainOpts},
};

/// `kms retrieve`.
#[derive(Debug, Args)]
pub struct RetrieveArgs {
    /// The policy file Alice gave.
    #[arg(long)]
    pub policy: PathBuf,
    /// Bob's Umbral master secret.
    #[arg(long)]
    pub umbral: PathBuf,
    /// Ask every node and check every answer, instead of stopping at the threshold.
    #[arg(long)]
    pub audit: bool,
    /// File the evidence of any wrong cfrag with the Adjudicator (needs an account).
    #[arg(long)]
    pub report: bool,
    /// Also trust this sender key (hex, 33 bytes; repeatable), besides the policy file's
    /// senders.
    #[arg(long = "sender", value_name = "KEY")]
    pub senders: Vec<String>,
    /// Accept an unsigned KMSENC01 file (anyone who knows the policy's public key could have
    /// made it): only if you trust where it came from.
    #[arg(long)]
    pub allow_unsigned: bool,
    /// The encrypted file.
    pub input: PathBuf,
    /// Where to write the plaintext (written whole or not at all).
    pub output: PathBuf,
    /// The chain and deployment to use.
    #[command(flatten)]
    pub chain: ChainOpts,
}

impl RetrieveArgs {
    /// Retrieves the cfrags of `input`'s capsule, saves (and with `--report` files) the evidence
    /// of wrong ones, and decrypts into `output`.
    pub async fn run(self) -> Result<()> {
        let bob = load_master_secret(&self.umbral)?;
        let policy = PolicyFile::load(&self.policy)?;
        let mut input = BufReader::new(
            File::open(&self.input)
                .with_context(|| format!("cannot open {}", self.input.display()))?,
        );
        let header = stream::read_header(&mut input).with_context(|| {
            format!(
                "{} is not a KMS-encrypted file, or not an intact one",
                self.input.display()
            )
        })?;
        // Who made the file, before asking any node: an untrusted file is refused whatever.
        let trusted = trusted_senders(&policy, &self.senders)?;
        let sender = header
            .check_sender(&trusted, self.allow_unsigned)
            .with_context(|| format!("{} is refused", self.input.display()))?;
        match sender {
            Some(key) => eprintln!("signed by sender {}", wire::encode_public_key(&key)),
            None => eprintln!(
                "warning: {} is unsigned (KMSENC01): accepted because of --allow-unsigned",
                self.input.display()
            ),
        }
        let account = if self.report {
            Account::Required
        } else {
            Account::Optional
        };
        let (chain, client) = self.chain.client(account).await?;
        let options = RetrieveOptions {
            audit_all: self.audit || self.report,
            ..Default::default()
        };
        let result = client
            .retrieve(
                &policy,
                &bob.receiving_key(),
                std::slice::from_ref(header.capsule()),
                &options,
            )
            .await;
        let (cfrags, faults) = match result {
            Ok(retrieval) => (Some(retrieval.cfrags), retrieval.faults),
            Err(RetrieveError::NotEnoughCFrags { faults, .. })
                if !faults.is_empty() && self.report =>
            {
                (None, faults)
            }
            Err(e @ RetrieveError::NotEnoughCFrags { .. }) => {
                return Err(CliError::NotEnough(e.to_string()).into())
            }
            Err(e) => return Err(CliError::from(e).into()),
        };
        for (i, fault) in faults.iter().enumerate() {
            let path = PathBuf::from(format!("{}.fault-{i}.json", self.output.display()));
            fault.save(&path)?;
            eprintln!(
                "node {} returned a wrong cfrag ({}); evidence saved to {}",
                fault.staker,
                fault.reason,
                path.display()
            );
            if self.report {
                let outcome = client
                    .report(fault, chain.account()?)
                    .await
                    .map_err(CliError::from)?;
                eprintln!(
                    "reported: verdict {:?}, {} slashed, {} to you",
                    outcome.verdict, outcome.penalty, outcome.reward
                );
            }
        }
        let cfrags = cfrags
            .and_then(|c| c.into_iter().next())
            .ok_or_else(|| CliError::NotEnough("not enough valid cfrags to decrypt".into()))?;
        let key = stream::open_data_key_reencrypted(
            &bob.receiving_key(),
            &policy.delegating_key,
            &header,
            cfrags,
        )?;
        let total = std::fs::metadata(&self.input)?.len();
        let bar = progress(Some(total), "decrypting");
        let mut reader = bar.wrap_read(input);
        let stats = write_atomically(&self.output, |out| {
            Ok(stream::decrypt_stream_with_options(
                &key,
                &header,
                &trusted,
                &mut reader,
                out,
                &DecryptOptions {
                    allow_unsigned: self.allow_unsigned,
                    ..DecryptOptions::default()
                },
            )?)
        })?;
        bar.finish_and_clear();
        eprintln!(
            "decrypted {} bytes to {}",
            stats.plaintext_bytes,
            self.output.display()
        );
        Ok(())
    }
}

/// The policy file's senders and the `--sender` keys.
pub(crate) fn trusted_senders(policy: &PolicyFile, senders: &[String]) -> Result<TrustedSenders> {
    let mut trusted = TrustedSenders::of_policy(policy);
    for key in senders {
        trusted.add(
            wire::decode_public_key("--sender", key)
                .context("--sender must be a sender key: 0x + 33 bytes hex (`kms keys show`)")?,
        );
    }
    Ok(trusted)
}

/// `kms report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The evidence file `kms retrieve` saved.
    pub evidence: PathBuf,
    /// The chain and deployment to use.
    #[command(flatten)]
    pub chain: ChainOpts,
}

impl ReportArgs {
    /// Files the evidence with the Adjudicator and prints the verdict.
    pub async fn run(self) -> Result<()> {
        let fault = Fault::load(&self.evidence)?;
        let (chain, client) = self.chain.client(Account::Required).await?;
        let outcome = client
            .report(&fault, chain.account()?)
            .await
            .map_err(CliError::from)?;
        println!(
            "verdict {:?}: staker {} slashed {} KMS units, {} to you ({})",
            outcome.verdict, outcome.staker, outcome.penalty, outcome.reward, outcome.tx_hash
        );
        Ok(())
    }
}

//! Bob's `kms retrieve` (re-encryptions from the policy's nodes, verified, then the file
//! decrypted) and `kms report` (a wrong cfrag's evidence filed with the Adjudicator).

use std::{fs::File, io::BufReader, path::PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use kms_client::{stream, Fault, PolicyFile, RetrieveError, RetrieveOptions};

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
        let header = stream::read_header(&mut input)
            .with_context(|| format!("{} is not a KMS-encrypted file", self.input.display()))?;
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
            Ok(stream::decrypt_stream_with_key(
                &key,
                &header,
                &mut reader,
                out,
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

//! Alice's `kms policy ...`, Enrico's `kms encrypt`, Bob's `kms retrieve` and `kms report`.

use std::{
    fs::File,
    io::{BufReader, BufWriter, IsTerminal, Read, Write},
    path::{Path, PathBuf},
};

use alloy::{
    primitives::{Address, U256},
    providers::Provider,
    rpc::types::Filter,
    sol_types::SolEvent,
};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use kms_client::{
    stream, Client, Fault, GrantRequest, HttpConfig, PolicyFile, RetrieveError, RetrieveOptions,
};
use kms_contracts::PolicyManager;
use kms_crypto::{keys::MasterSecret, wire};
use serde_json::json;
use umbral_pre::PublicKey;

use crate::{
    common::{format_eth, parse_wei, print_json, Chain, ChainArgs, WalletArgs},
    error::CliError,
};

/// `kms policy ...`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Grant Bob access: sample nodes by stake, pay the policy on chain, upload each node's
    /// kfrag, write the policy file Bob decrypts with.
    ///
    /// Example:
    ///   kms policy grant --umbral alice/umbral.json --label photos --bob 0x02ab… \
    ///     --threshold 3 --shares 5 --expires 30 --fee-rate 1gwei --out photos.policy.json \
    ///     --keystore alice/account.json --password-file pw
    ///
    /// `--expires` is a number of periods from now, or a UTC date (2027-01-31 or
    /// 2027-01-31T12:00:00Z).
    Grant(GrantArgs),
    /// Revoke a policy: nodes stop serving it from the next block; the unearned fee is refunded.
    ///
    /// Example: kms policy revoke --policy photos.policy.json
    Revoke {
        /// The policy file.
        #[arg(long)]
        policy: PathBuf,
    },
    /// Collect the refund of periods nodes did not commit to.
    ///
    /// Example: kms policy refund --policy photos.policy.json
    Refund {
        /// The policy file.
        #[arg(long)]
        policy: PathBuf,
    },
    /// The policies an owner created, with their state on chain.
    ///
    /// Example: kms policy list --owner 0xAlice --json
    List {
        /// The owner (default: the signing account).
        #[arg(long)]
        owner: Option<Address>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// `kms policy grant`.
#[derive(Debug, Args)]
pub struct GrantArgs {
    /// Alice's Umbral master secret (`kms keys new`).
    #[arg(long)]
    pub umbral: PathBuf,
    /// The policy label: the delegating key is derived from it.
    #[arg(long)]
    pub label: String,
    /// Bob's receiving key (hex, 33 bytes; `kms keys show` prints it).
    #[arg(long)]
    pub bob: String,
    /// Cfrags Bob needs (m).
    #[arg(long)]
    pub threshold: usize,
    /// Nodes holding a kfrag (n).
    #[arg(long)]
    pub shares: usize,
    /// Periods from now, or a UTC date.
    #[arg(long)]
    pub expires: String,
    /// Wei per node and period (or `1gwei`, `0.001ether`).
    #[arg(long)]
    pub fee_rate: String,
    /// Seed of the node sampling (same seed, same chain state: same nodes).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where to write the policy file.
    #[arg(long)]
    pub out: PathBuf,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub yes: bool,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// `kms encrypt`.
#[derive(Debug, Args)]
pub struct EncryptArgs {
    /// The policy's public key (hex), or a policy file.
    #[arg(long)]
    pub policy_key: String,
    /// The file to encrypt (`-` for stdin).
    pub input: PathBuf,
    /// The encrypted file to write (`-` for stdout).
    pub output: PathBuf,
}

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
}

fn master(path: &Path) -> Result<MasterSecret> {
    MasterSecret::load(path).with_context(|| {
        format!(
            "cannot read the Umbral key file {} (create one with `kms keys new`)",
            path.display()
        )
    })
}

async fn client(
    chain: &ChainArgs,
    wallet: &WalletArgs,
    needs_account: bool,
) -> Result<(Chain, Client<alloy::providers::DynProvider>)> {
    let signer = if needs_account {
        Some(wallet.require()?)
    } else {
        wallet.signer()?
    };
    let chain = Chain::connect(chain, signer).await?;
    let client = Client::connect(
        chain.provider.clone(),
        chain.deployment.clone(),
        HttpConfig::default(),
    )
    .await?;
    Ok((chain, client))
}

/// Runs a `kms policy` command.
pub async fn run(command: PolicyCommand, chain: ChainArgs, wallet: WalletArgs) -> Result<()> {
    match command {
        PolicyCommand::Grant(args) => grant(args, &chain, &wallet).await,
        PolicyCommand::Revoke { policy } => {
            let (_, client) = client(&chain, &wallet, true).await?;
            let file = PolicyFile::load(&policy)?;
            let refunded = client.revoke(&file).await.map_err(CliError::from)?;
            println!(
                "revoked {}; refunded {} ETH",
                file.policy_id_hex(),
                format_eth(refunded.amount)
            );
            Ok(())
        }
        PolicyCommand::Refund { policy } => {
            let (_, client) = client(&chain, &wallet, true).await?;
            let file = PolicyFile::load(&policy)?;
            let refunded = client.refund(&file).await.map_err(CliError::from)?;
            println!(
                "refunded {} ETH for {}",
                format_eth(refunded.amount),
                file.policy_id_hex()
            );
            Ok(())
        }
        PolicyCommand::List { owner, json } => {
            let (chain, _) = client(&chain, &wallet, false).await?;
            let owner = match owner {
                Some(owner) => owner,
                None => chain
                    .account
                    .context("pass --owner ADDRESS (or an account)")?,
            };
            list(&chain, owner, json).await
        }
    }
}

/// `--expires`: periods from now, or a UTC date, as an end timestamp.
fn end_timestamp(expires: &str, now: u64, seconds_per_period: u64) -> Result<u64> {
    let expires = expires.trim();
    let periods = expires.strip_suffix("periods").unwrap_or(expires).trim();
    if let Ok(periods) = periods.parse::<u64>() {
        if periods == 0 {
            bail!("--expires: at least 1 period");
        }
        // Periods are whole: the policy ends at the boundary `periods` periods ahead.
        return Ok((now / seconds_per_period + periods) * seconds_per_period);
    }
    let timestamp = parse_utc(expires).with_context(|| {
        format!("--expires {expires:?}: give a number of periods (30) or a UTC date (2027-01-31 or 2027-01-31T12:00:00Z)")
    })?;
    if timestamp <= now {
        bail!("--expires {expires}: that is in the past (chain time {now})");
    }
    Ok(timestamp)
}

/// `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SSZ` as Unix seconds.
fn parse_utc(text: &str) -> Result<u64> {
    let (date, time) = match text.split_once('T') {
        Some((date, time)) => (
            date,
            Some(
                time.strip_suffix('Z')
                    .context("times are UTC: end with Z")?,
            ),
        ),
        None => (text, None),
    };
    let parts: Vec<&str> = date.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        bail!("not a date");
    };
    let (y, m, d): (i64, i64, i64) = (y.parse()?, m.parse()?, d.parse()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        bail!("not a date");
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = match time {
        Some(time) => {
            let hms: Vec<u64> = time.split(':').map(str::parse).collect::<Result<_, _>>()?;
            let [h, mi, s] = hms.as_slice() else {
                bail!("not a time");
            };
            if *h > 23 || *mi > 59 || *s > 60 {
                bail!("not a time");
            }
            h * 3600 + mi * 60 + s
        }
        None => 0,
    };
    u64::try_from(days * 86_400)
        .map(|d| d + seconds)
        .context("before 1970")
}

async fn grant(args: GrantArgs, chain_args: &ChainArgs, wallet: &WalletArgs) -> Result<()> {
    let alice = master(&args.umbral)?;
    let bob = wire::decode_public_key("--bob", &args.bob)
        .context("--bob must be Bob's receiving key: 0x + 33 bytes hex (`kms keys show`)")?;
    if args.out.exists() {
        bail!(
            "{} exists already: choose another --out",
            args.out.display()
        );
    }
    let (chain, client) = client(chain_args, wallet, true).await?;
    let owner = chain.account()?;
    let now = chain
        .provider
        .get_block_by_number(Default::default())
        .await?
        .context("no latest block")?
        .header
        .timestamp;
    let end = end_timestamp(&args.expires, now, chain.deployment.seconds_per_period)?;
    let request = GrantRequest {
        label: args.label.clone(),
        owner,
        creator: owner,
        delegating_key: alice.delegating_key(&args.label).public_key(),
        verifying_key: alice.signing_key().public_key(),
        receiving_key: bob,
        threshold: args.threshold,
        shares: args.shares,
        end_timestamp: end,
        fee_rate: parse_wei(&args.fee_rate)?,
        seed: args.seed.unwrap_or_else(rand_seed),
        salt: None,
    };
    let plan = client.plan_grant(&request).await.map_err(|e| match e {
        kms_client::GrantError::Sampling(e) => CliError::NotEnough(e.to_string()),
        e => CliError::from(e),
    })?;
    eprintln!(
        "policy {} for label {:?}",
        plan.policy.policy_id_hex(),
        args.label
    );
    eprintln!(
        "  {}-of-{} nodes, {} periods, ends {}",
        args.threshold, args.shares, plan.periods, end
    );
    for node in &plan.policy.nodes {
        eprintln!("  node {}  {}", node.staker, node.url);
    }
    eprintln!(
        "  total fee {} ETH ({} wei/period x {} nodes x {} periods)",
        format_eth(plan.total_fee),
        request.fee_rate,
        args.shares,
        plan.periods
    );
    if !args.yes && !confirm("pay and grant?")? {
        bail!("not confirmed: nothing was sent (pass --yes to skip the question)");
    }
    let outcome = client
        .execute_grant(
            &plan,
            &alice.delegating_key(&args.label),
            &alice.signing_key(),
        )
        .await
        .map_err(CliError::from)?;
    outcome.policy.save(&args.out)?;
    for upload in &outcome.uploads {
        match &upload.result {
            Ok(_) => eprintln!("  kfrag -> {}: stored", upload.node.staker),
            Err(e) => eprintln!("  kfrag -> {}: FAILED: {e}", upload.node.staker),
        }
    }
    if args.json {
        print_json(&json!({
            "policyId": outcome.policy.policy_id_hex(),
            "policyFile": args.out,
            "policyKey": wire::encode_public_key(&outcome.policy.delegating_key),
            "paidWei": outcome.paid.to_string(),
            "tx": outcome.tx_hash,
            "uploaded": outcome.uploaded(),
        }))?;
    } else {
        println!("policy file  {}", args.out.display());
        println!(
            "policy key   {}   (Enrico encrypts to it)",
            wire::encode_public_key(&outcome.policy.delegating_key)
        );
        println!(
            "paid         {} ETH ({})",
            format_eth(outcome.paid),
            outcome.tx_hash
        );
    }
    if !outcome.is_usable() {
        bail!(
            "only {} of {} nodes took their kfrag, fewer than the threshold {}: revoke (`kms policy revoke --policy {}`) and grant again",
            outcome.uploaded(),
            args.shares,
            args.threshold,
            args.out.display()
        );
    }
    Ok(())
}

fn rand_seed() -> u64 {
    use rand_core::{OsRng, RngCore};
    OsRng.next_u64()
}

fn confirm(question: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("{question} needs a terminal to answer: pass --yes");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

async fn list(chain: &Chain, owner: Address, json: bool) -> Result<()> {
    let d = &chain.deployment;
    let filter = Filter::new()
        .address(d.policy_manager)
        .event_signature(PolicyManager::PolicyCreated::SIGNATURE_HASH)
        .topic2(owner.into_word())
        .from_block(d.start_block);
    let manager = d.policy_manager(&chain.provider);
    let mut policies = Vec::new();
    for log in chain.provider.get_logs(&filter).await? {
        let event = log.log_decode::<PolicyManager::PolicyCreated>()?.inner.data;
        let view = manager.getPolicy(event.policyId).call().await?;
        policies.push((event, view));
    }
    let now = chain
        .provider
        .get_block_by_number(Default::default())
        .await?
        .context("no latest block")?
        .header
        .timestamp;
    let state = |view: &PolicyManager::PolicyView| {
        if view.revoked {
            "revoked"
        } else if view.endTimestamp <= U256::from(now) {
            "expired"
        } else {
            "active"
        }
    };
    if json {
        return print_json(&json!(policies
            .iter()
            .map(|(event, view)| json!({
                "policyId": event.policyId,
                "state": state(view),
                "endTimestamp": view.endTimestamp.to_string(),
                "feeRate": view.feeRate.to_string(),
                "nodes": event.nodes,
            }))
            .collect::<Vec<_>>()));
    }
    if policies.is_empty() {
        println!("no policies created by {owner}");
    }
    for (event, view) in &policies {
        println!(
            "{}  {:<8} ends {}  {} nodes  {} wei/period",
            event.policyId,
            state(view),
            view.endTimestamp,
            event.nodes.len(),
            view.feeRate
        );
    }
    Ok(())
}

fn progress(total: Option<u64>, what: &str) -> ProgressBar {
    let bar = match total {
        Some(total) => ProgressBar::new(total),
        None => ProgressBar::new_spinner(),
    };
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_owned());
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar
}

/// `kms encrypt`.
pub fn encrypt(args: EncryptArgs) -> Result<()> {
    let key = policy_key(&args.policy_key)?;
    let total = if args.input.as_os_str() == "-" {
        None
    } else {
        Some(
            std::fs::metadata(&args.input)
                .with_context(|| format!("cannot read {}", args.input.display()))?
                .len(),
        )
    };
    let bar = progress(total, "encrypting");
    let mut input: Box<dyn Read> = if args.input.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(File::open(&args.input)?)
    };
    let mut input = bar.wrap_read(BufReader::new(&mut input));
    let stats = write_atomically(&args.output, |out| {
        Ok(stream::encrypt_stream(&key, &mut input, out)?)
    })?;
    bar.finish_and_clear();
    eprintln!(
        "encrypted {} bytes to {}",
        stats.plaintext_bytes,
        args.output.display()
    );
    Ok(())
}

fn policy_key(value: &str) -> Result<PublicKey> {
    if value.starts_with("0x") || (value.len() == 66 && !Path::new(value).exists()) {
        return wire::decode_public_key("--policy-key", value)
            .context("--policy-key: 0x + 33 bytes hex, or a policy file");
    }
    Ok(PolicyFile::load(value)?.delegating_key)
}

/// Writes through `write` into a temporary file next to `path`, renamed over it only when
/// everything succeeded: a failed decryption leaves no partial plaintext. `-` is stdout.
fn write_atomically<T>(path: &Path, write: impl FnOnce(&mut dyn Write) -> Result<T>) -> Result<T> {
    if path.as_os_str() == "-" {
        let stdout = std::io::stdout();
        let mut out = BufWriter::new(stdout.lock());
        let result = write(&mut out)?;
        out.flush()?;
        return Ok(result);
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write into {}", dir.display()))?;
    let result = {
        let mut out = BufWriter::new(temp.as_file_mut());
        let result = write(&mut out)?;
        out.flush()?;
        result
    };
    temp.as_file().sync_all()?;
    temp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(result)
}

/// `kms retrieve`.
pub async fn retrieve(args: RetrieveArgs, chain: ChainArgs, wallet: WalletArgs) -> Result<()> {
    let bob = master(&args.umbral)?;
    let policy = PolicyFile::load(&args.policy)?;
    let mut input = BufReader::new(
        File::open(&args.input).with_context(|| format!("cannot open {}", args.input.display()))?,
    );
    let header = stream::read_header(&mut input)
        .with_context(|| format!("{} is not a KMS-encrypted file", args.input.display()))?;
    let (chain_view, client) = client(&chain, &wallet, args.report).await?;
    let options = RetrieveOptions {
        audit_all: args.audit || args.report,
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
        Err(RetrieveError::NotEnoughCFrags { faults, .. }) if !faults.is_empty() && args.report => {
            (None, faults)
        }
        Err(e @ RetrieveError::NotEnoughCFrags { .. }) => {
            return Err(CliError::NotEnough(e.to_string()).into())
        }
        Err(e) => return Err(CliError::from(e).into()),
    };
    for (i, fault) in faults.iter().enumerate() {
        let path = PathBuf::from(format!("{}.fault-{i}.json", args.output.display()));
        fault.save(&path)?;
        eprintln!(
            "node {} returned a wrong cfrag ({}); evidence saved to {}",
            fault.staker,
            fault.reason,
            path.display()
        );
        if args.report {
            let outcome = client
                .report(fault, chain_view.account()?)
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
    let total = std::fs::metadata(&args.input)?.len();
    let bar = progress(Some(total), "decrypting");
    let mut reader = bar.wrap_read(input);
    let stats = write_atomically(&args.output, |out| {
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
        args.output.display()
    );
    Ok(())
}

/// `kms report`.
pub async fn report(evidence: PathBuf, chain: ChainArgs, wallet: WalletArgs) -> Result<()> {
    let fault = Fault::load(&evidence)?;
    let (chain, client) = client(&chain, &wallet, true).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_in_periods_or_dates() {
        assert_eq!(end_timestamp("3", 7_200 + 5, 3_600).ok(), Some(5 * 3_600));
        assert_eq!(end_timestamp("3periods", 0, 60).ok(), Some(180));
        assert_eq!(parse_utc("1970-01-02").ok(), Some(86_400));
        assert_eq!(parse_utc("2000-03-01T00:00:01Z").ok(), Some(951_868_801));
        assert!(parse_utc("2000-13-01").is_err());
        assert!(end_timestamp("1970-01-02", 100_000, 60).is_err(), "past");
        assert!(end_timestamp("0", 0, 60).is_err());
        assert!(end_timestamp("soon", 0, 60).is_err());
    }
}

//! Alice's `kms policy ...`: grant, revoke, refund and list policies.

use std::{
    io::{IsTerminal, Write},
    path::{Path, PathBuf},
};

use alloy::{
    primitives::{Address, U256},
    providers::{DynProvider, Provider},
    rpc::types::Filter,
    sol_types::SolEvent,
};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use kms_client::{
    revocation::{self, RevocationOrderBody},
    Client, GrantError, GrantRequest, NodeClient, PolicyFile, Refunded,
};
use kms_contracts::PolicyManager;
use kms_crypto::wire;
use serde_json::json;

use crate::{
    common::{chain_now, format_eth, parse_wei, print_json},
    error::CliError,
    files::load_master_secret,
    opts::Chain,
    opts::{Account, ChainOpts},
};

/// `kms policy ...`: the subcommand, and the chain and account they share.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: PolicySubcommand,
    /// The chain and deployment to use.
    #[command(flatten)]
    pub chain: ChainOpts,
}

impl PolicyArgs {
    /// Runs the subcommand.
    pub async fn run(self) -> Result<()> {
        match self.command {
            PolicySubcommand::Grant(args) => args.run(&self.chain).await,
            PolicySubcommand::Revoke(args) => args.run(&self.chain).await,
            PolicySubcommand::Extend(args) => args.run(&self.chain).await,
            PolicySubcommand::Refund(args) => args.run(&self.chain).await,
            PolicySubcommand::List(args) => args.run(&self.chain).await,
        }
    }
}

/// `kms policy ...`.
#[derive(Debug, Subcommand)]
pub enum PolicySubcommand {
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
    /// Revoke a policy: nodes refuse it from the revocation's block on (the command waits for
    /// them to read it); the unearned fee is refunded.
    ///
    /// Example: kms policy revoke --policy photos.policy.json   (one node: --node 0xSTAKER)
    Revoke(RevokeArgs),
    /// Extend a live policy to a later end, paying the added periods for every node still
    /// serving it; the policy file is updated (hand it to Bob again).
    ///
    /// Example: kms policy extend --policy photos.policy.json --by 10   (or --expires 2027-06-30)
    Extend(ExtendArgs),
    /// Collect the refund of periods nodes did not commit to.
    ///
    /// Example: kms policy refund --policy photos.policy.json
    Refund(RefundArgs),
    /// The policies an owner created, with their state on chain.
    ///
    /// Example: kms policy list --owner 0xAlice --json
    List(ListArgs),
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
    /// A sender key authorized to encrypt to the policy (hex, 33 bytes; `kms keys show` prints
    /// it), recorded in the policy file: Bob accepts data signed by these. Repeat it for
    /// several senders; without it, Alice's own sender key is the only one.
    #[arg(long = "sender", value_name = "KEY")]
    pub senders: Vec<String>,
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

impl GrantArgs {
    /// Samples the nodes, shows the plan, and (confirmed) pays, uploads the kfrags and writes
    /// the policy file.
    pub async fn run(self, chain: &ChainOpts) -> Result<()> {
        let alice = load_master_secret(&self.umbral)?;
        let bob = wire::decode_public_key("--bob", &self.bob)
            .context("--bob must be Bob's receiving key: 0x + 33 bytes hex (`kms keys show`)")?;
        if self.out.exists() {
            bail!(
                "{} exists already: choose another --out",
                self.out.display()
            );
        }
        let senders = if self.senders.is_empty() {
            vec![alice.sender_key().public_key()]
        } else {
            self.senders
                .iter()
                .map(|key| wire::decode_public_key("--sender", key))
                .collect::<Result<Vec<_>, _>>()
                .context("--sender must be a sender key: 0x + 33 bytes hex (`kms keys show`)")?
        };
        let (chain, client) = chain.client(Account::Required).await?;
        let owner = chain.account()?;
        let now = chain_now(&chain.provider).await?;
        let end = end_timestamp(&self.expires, now, chain.deployment.seconds_per_period)?;
        let request = GrantRequest {
            label: self.label.clone(),
            owner,
            creator: owner,
            delegating_key: alice.delegating_key(&self.label).public_key(),
            verifying_key: alice.signing_key().public_key(),
            receiving_key: bob,
            senders,
            threshold: self.threshold,
            shares: self.shares,
            end_timestamp: end,
            fee_rate: parse_wei(&self.fee_rate)?,
            seed: self.seed.unwrap_or_else(rand_seed),
            salt: None,
        };
        let plan = client.plan_grant(&request).await.map_err(|e| match e {
            GrantError::Sampling(e) => CliError::NotEnough(e.to_string()),
            e => CliError::from(e),
        })?;
        eprintln!(
            "policy {} for label {:?}",
            plan.policy.policy_id_hex(),
            self.label
        );
        eprintln!(
            "  {}-of-{} nodes, {} periods, ends {}",
            self.threshold, self.shares, plan.periods, end
        );
        for node in &plan.policy.nodes {
            eprintln!("  node {}  {}", node.staker, node.url);
        }
        eprintln!(
            "  total fee {} ETH ({} wei/period x {} nodes x {} periods)",
            format_eth(plan.total_fee),
            request.fee_rate,
            self.shares,
            plan.periods
        );
        if !self.yes && !confirm("pay and grant?")? {
            bail!("not confirmed: nothing was sent (pass --yes to skip the question)");
        }
        let outcome = client
            .execute_grant(
                &plan,
                &alice.delegating_key(&self.label),
                &alice.signing_key(),
            )
            .await
            .map_err(CliError::from)?;
        outcome.policy.save(&self.out)?;
        for upload in &outcome.uploads {
            match &upload.result {
                Ok(_) => eprintln!("  kfrag -> {}: stored", upload.node.staker),
                Err(e) => eprintln!("  kfrag -> {}: FAILED: {e}", upload.node.staker),
            }
        }
        if self.json {
            print_json(&json!({
                "policyId": outcome.policy.policy_id_hex(),
                "policyFile": self.out,
                "policyKey": wire::encode_public_key(&outcome.policy.delegating_key),
                "paidWei": outcome.paid.to_string(),
                "tx": outcome.tx_hash,
                "uploaded": outcome.uploaded(),
            }))?;
        } else {
            println!("policy file  {}", self.out.display());
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
                self.shares,
                self.threshold,
                self.out.display()
            );
        }
        Ok(())
    }
}

/// How long `kms policy revoke` waits for the policy's nodes to read the revocation's block.
const REVOCATION_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// `kms policy revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The policy file.
    #[arg(long)]
    pub policy: PathBuf,
    /// Revoke only this node's part (its staker address): the refund is what it has not
    /// earned, it refuses the policy from the revocation's block, the other nodes keep serving.
    #[arg(long, value_name = "ADDRESS")]
    pub node: Option<Address>,
    /// Revoke with no transaction: sign a revocation order with the owner's key and send it to
    /// the nodes, which refuse the policy from their answer on (no RPC endpoint needed). The
    /// refund follows when the order is carried out on chain: by a later `kms policy revoke`
    /// from any account (the nodes hand the order to anyone).
    #[arg(long)]
    pub offline: bool,
    /// With --offline: the last second (Unix time) the order may be carried out on chain.
    /// Default: the policy file's end, after which there is nothing left to refund.
    #[arg(long, requires = "offline", value_name = "UNIX_SECONDS")]
    pub deadline: Option<u64>,
    /// With --offline: also write the signed order to this file (JSON), for whoever will carry
    /// it out (`kms policy revoke --order FILE`).
    #[arg(long, requires = "offline", value_name = "FILE")]
    pub save_order: Option<PathBuf>,
    /// Carry out the owner's signed order in this file (from `--offline --save-order`), instead
    /// of the ones the policy's nodes hand out. Any account may; the refund goes to the owner.
    #[arg(long, conflicts_with = "offline", value_name = "FILE")]
    pub order: Option<PathBuf>,
}

impl RevokeArgs {
    /// Revokes the policy (or one node's part) and prints the refund: as the owner, or by the
    /// owner's signed order (carried out by any account), or signs and sends such an order.
    pub async fn run(self, chain: &ChainOpts) -> Result<()> {
        if self.offline {
            return self.send_order(chain).await;
        }
        let (connected, client) = chain.client(Account::Required).await?;
        let file = PolicyFile::load(&self.policy)?;
        let account = connected
            .account
            .context("this command sends a transaction: pass an account")?;
        if account != file.owner || self.order.is_some() {
            return self.settle_order(&client, &file, account).await;
        }
        let refunded = match self.node {
            Some(node) => client.revoke_node(&file, node).await,
            None => client.revoke(&file).await,
        }
        .map_err(CliError::from)?;
        announce_revocation(&client, &file, self.node, &refunded, "").await;
        Ok(())
    }

    /// `--offline`: signs the order and hands it to the nodes it concerns.
    async fn send_order(&self, chain: &ChainOpts) -> Result<()> {
        let file = PolicyFile::load(&self.policy)?;
        let owner = chain.wallet.signer()?.context(
            "signing the revocation order needs the policy owner's key: pass --keystore FILE \
             --password-file FILE (or --private-key)",
        )?;
        let now = unix_now();
        let deadline = self.deadline.unwrap_or(file.end_timestamp);
        if deadline <= now {
            bail!(
                "the deadline {deadline} has passed (now {now}): the order could never be carried \
                 out; pass a later --deadline (the policy file says it ends at {}; after an \
                 extension, the chain's end is later)",
                file.end_timestamp
            );
        }
        let order = revocation::sign_order(&file, &owner, self.node, deadline).await?;
        if let Some(path) = &self.save_order {
            let body = RevocationOrderBody::from(&order);
            std::fs::write(path, serde_json::to_string_pretty(&body)? + "\n")
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        let nodes = NodeClient::new(chain.http_config())?;
        let deliveries = revocation::send_order(&nodes, &file, &order).await;
        let scope = scope_of(&file, self.node);
        let refusing = deliveries.iter().filter(|d| d.refuses()).count();
        println!(
            "signed an order revoking {scope}, valid on chain until {deadline}; refused by {refusing} \
             of {} node(s), with no transaction",
            deliveries.len()
        );
        for delivery in deliveries.iter().filter(|d| !d.refuses()) {
            if let Err(e) = &delivery.outcome {
                eprintln!(
                    "warning: {} ({}) did not take the order: {e}",
                    delivery.staker, delivery.url
                );
            }
        }
        if let Some(path) = &self.save_order {
            println!("order saved to {}", path.display());
        }
        let node_arg = self.node.map_or(String::new(), |n| format!(" --node {n}"));
        if refusing < deliveries.len() {
            bail!(
                "{} node(s) did not take the order and still serve the policy: run the same \
                 command again (a node keeps an order once), or revoke on chain now with \
                 `kms policy revoke --policy {}{node_arg}`",
                deliveries.len() - refusing,
                self.policy.display()
            );
        }
        println!(
            "the refund follows once the order is carried out on chain, from any account: \
             `kms policy revoke --policy {}{node_arg}`",
            self.policy.display()
        );
        Ok(())
    }

    /// Carries out the owner's signed order (the `--order` file's, or the nodes'): any account
    /// may, the owner is refunded.
    async fn settle_order(
        &self,
        client: &Client<DynProvider>,
        file: &PolicyFile,
        account: Address,
    ) -> Result<()> {
        let orders = match &self.order {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let body: RevocationOrderBody = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a revocation order", path.display()))?;
                vec![body
                    .decode()
                    .with_context(|| format!("{} is not a revocation order", path.display()))?]
            }
            None => client.fetch_orders(file).await,
        };
        let now = chain_now(client.provider()).await?;
        let wanted = self.node.unwrap_or(Address::ZERO);
        let scope = scope_of(file, self.node);
        let Some(order) = orders
            .iter()
            .find(|o| o.policy_id == file.policy_id && o.node == wanted && o.deadline >= now)
        else {
            let source = self.order.as_ref().map_or_else(
                || "no node of the policy hands out".to_owned(),
                |p| format!("{} is not", p.display()),
            );
            bail!(
                "{account} is not the policy's owner ({}), and {source} a signed order revoking \
                 {scope} that can still be carried out: ask the owner to sign one (`kms policy \
                 revoke --offline`), or to revoke herself",
                file.owner
            );
        };
        let refunded = client
            .settle_order(file, order)
            .await
            .map_err(CliError::from)?;
        let how = format!(
            " by the owner's signed order (refund sent to the owner {})",
            file.owner
        );
        announce_revocation(client, file, self.node, &refunded, &how).await;
        Ok(())
    }
}

/// "the whole policy" or "node X's part", for messages.
fn scope_of(file: &PolicyFile, node: Option<Address>) -> String {
    match node {
        Some(node) => format!("node {node}'s part of {}", file.policy_id_hex()),
        None => format!("the whole policy {}", file.policy_id_hex()),
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Prints a revocation's refund, then waits (a little) for the nodes it concerns to read its
/// block, and says which refuse from it.
async fn announce_revocation(
    client: &Client<DynProvider>,
    file: &PolicyFile,
    node: Option<Address>,
    refunded: &Refunded,
    how: &str,
) {
    let Some(node) = node else {
        println!(
            "revoked {} in block {}{how}; refunded {} ETH",
            file.policy_id_hex(),
            refunded.block,
            format_eth(refunded.amount)
        );
        // In force at a node from its first read of that block: say which nodes are there.
        let heads = client
            .wait_for_nodes_at(file, refunded.block, REVOCATION_WAIT)
            .await;
        let behind: Vec<String> = heads
            .iter()
            .filter_map(|node| match &node.head {
                Ok(Some(head)) if *head >= refunded.block => None,
                Ok(head) => Some(format!(
                    "{} ({}): has read block {} only",
                    node.staker,
                    node.url,
                    head.map_or("none".into(), |h| h.to_string())
                )),
                Err(e) => Some(format!("{} ({}): {e}", node.staker, node.url)),
            })
            .collect();
        println!(
            "refused by {} of {} nodes from block {}",
            heads.len() - behind.len(),
            heads.len(),
            refunded.block
        );
        for node in behind {
            eprintln!("warning: not yet in force at {node}; it refuses once it reads the block");
        }
        return;
    };
    println!(
        "revoked node {node} of {} in block {}{how}; refunded {} ETH",
        file.policy_id_hex(),
        refunded.block,
        format_eth(refunded.amount)
    );
    let Some(policy_node) = file.nodes.iter().find(|n| n.staker == node) else {
        return;
    };
    let head = client
        .wait_for_node_at(policy_node, refunded.block, REVOCATION_WAIT)
        .await;
    match &head.head {
        Ok(Some(read)) if *read >= refunded.block => println!(
            "refused by node {node} from block {}; the other {} nodes keep serving",
            refunded.block,
            file.nodes.len() - 1
        ),
        Ok(read) => eprintln!(
            "warning: not yet in force at {node} ({}): it has read block {} only; it refuses \
             once it reads block {}",
            head.url,
            read.map_or("none".into(), |h| h.to_string()),
            refunded.block
        ),
        Err(e) => eprintln!(
            "warning: cannot tell whether {node} ({}) has read block {}: {e}",
            head.url, refunded.block
        ),
    }
}

/// `kms policy extend`.
#[derive(Debug, Args)]
pub struct ExtendArgs {
    /// The policy file (rewritten with the new end).
    #[arg(long)]
    pub policy: PathBuf,
    /// Periods to add after the policy's current end.
    #[arg(long, conflicts_with = "expires", value_parser = clap::value_parser!(u64).range(1..))]
    pub by: Option<u64>,
    /// The new end, as for `kms policy grant`: periods from now, or a UTC date.
    #[arg(long)]
    pub expires: Option<String>,
}

impl ExtendArgs {
    /// Extends the policy, pays, and rewrites the policy file.
    pub async fn run(self, chain: &ChainOpts) -> Result<()> {
        let (client, mut file) = client_and_policy(chain, &self.policy).await?;
        let seconds_per_period = client.deployment().seconds_per_period.max(1);
        let end = match (self.by, &self.expires) {
            (Some(periods), None) => file
                .end_timestamp
                .saturating_add(periods.saturating_mul(seconds_per_period)),
            (None, Some(expires)) => {
                let now = chain_now(client.provider()).await?;
                end_timestamp(expires, now, seconds_per_period)?
            }
            _ => bail!("pass --by PERIODS (after the current end) or --expires (the new end)"),
        };
        let extended = client.extend(&file, end).await.map_err(CliError::from)?;
        file.end_timestamp = extended.end_timestamp;
        file.save(&self.policy)?;
        println!(
            "extended {} to {} (last period {}) in block {}; paid {} ETH; {} updated: hand it \
             to Bob again",
            file.policy_id_hex(),
            extended.end_timestamp,
            extended.last_period,
            extended.block,
            format_eth(extended.paid),
            self.policy.display()
        );
        Ok(())
    }
}

/// `kms policy refund`.
#[derive(Debug, Args)]
pub struct RefundArgs {
    /// The policy file.
    #[arg(long)]
    pub policy: PathBuf,
}

impl RefundArgs {
    /// Collects the refund and prints it.
    pub async fn run(self, chain: &ChainOpts) -> Result<()> {
        let (client, file) = client_and_policy(chain, &self.policy).await?;
        let refunded = client.refund(&file).await.map_err(CliError::from)?;
        println!(
            "refunded {} ETH for {}",
            format_eth(refunded.amount),
            file.policy_id_hex()
        );
        Ok(())
    }
}

/// A client with the account, and the policy file its owner sends a transaction about.
async fn client_and_policy(
    chain: &ChainOpts,
    policy: &Path,
) -> Result<(Client<DynProvider>, PolicyFile)> {
    let (_, client) = chain.client(Account::Required).await?;
    Ok((client, PolicyFile::load(policy)?))
}

/// `kms policy list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The owner (default: the signing account).
    #[arg(long)]
    pub owner: Option<Address>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

impl ListArgs {
    /// Lists the owner's policies.
    pub async fn run(self, chain: &ChainOpts) -> Result<()> {
        let (chain, _) = chain.client(Account::Optional).await?;
        let owner = match self.owner {
            Some(owner) => owner,
            None => chain
                .account
                .context("pass --owner ADDRESS (or an account)")?,
        };
        list(&chain, owner, self.json).await
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

/// Prints the policies `owner` created, with their state now.
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
    let now = chain_now(&chain.provider).await?;
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

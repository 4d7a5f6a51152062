//! The devnet itself: anvil with the contracts, staked miners and their nodes, in one process.

use std::{path::PathBuf, time::Duration};

use alloy::{
    network::TransactionBuilder,
    primitives::{utils::parse_units, Address, U256},
    providers::{DynProvider, Provider, ProviderBuilder},
    rpc::types::TransactionRequest,
    signers::local::PrivateKeySigner,
};
use anyhow::{bail, ensure, Context, Result};
use kms_contracts::devchain::{ChainOptions, DevChain};
use kms_crypto::keys::{private_key_hex, MasterSecret};
use kms_node::{
    api::AllowedOrigins, audit::AuditConfig, Behaviour, DutyConfig, Limits, RunningNode, Settings,
};

use super::DevnetArgs;
use crate::common::{format_tokens, send};

/// Anvil's dev accounts: 0 deploys and holds the tokens, 1..=nodes stake, then Alice and Bob.
pub const DEPLOYER: usize = 0;

/// One miner of the devnet.
#[derive(Debug)]
pub struct Miner {
    /// The staker (an anvil dev account).
    pub staker: Address,
    /// The staker's key.
    pub staker_key: PrivateKeySigner,
    /// The worker (a fresh key, funded with ETH for gas).
    pub worker: PrivateKeySigner,
    /// The tokens it staked.
    pub stake: U256,
    /// Whether it answers with wrong cfrags.
    pub faulty: bool,
    /// What its node runs with (listening on the address it bound): enough to restart it.
    pub settings: Settings,
    /// The running node.
    pub node: RunningNode,
}

impl Miner {
    /// Stops the node, then starts it again on the same store and address with `duties`.
    pub async fn restart(self, duties: DutyConfig) -> Result<Self> {
        let Self {
            staker,
            staker_key,
            worker,
            stake,
            faulty,
            settings,
            node,
        } = self;
        node.shutdown().await;
        let settings = Settings { duties, ..settings };
        let node = kms_node::start(settings.clone())
            .await
            .with_context(|| format!("restarting the node of {staker}"))?;
        Ok(Self {
            staker,
            staker_key,
            worker,
            stake,
            faulty,
            settings,
            node,
        })
    }
}

/// The duties of a devnet node: the defaults, but no audits. Audits pay policy fees and can
/// report the faulty node at any time, which would change what the demo checks to the wei; the
/// demo turns them on for its audit step only (a node's own configuration has them on).
fn devnet_duties() -> DutyConfig {
    DutyConfig {
        audit: AuditConfig {
            budget_per_period: U256::ZERO,
            ..AuditConfig::default()
        },
        ..DutyConfig::default()
    }
}

/// A running devnet.
#[derive(Debug)]
pub struct Devnet {
    /// The chain (dropping it stops anvil).
    pub chain: DevChain,
    /// The miners, in staker-account order.
    pub miners: Vec<Miner>,
    /// Where the nodes' stores are.
    pub dir: PathBuf,
    /// Kept alive so the temporary directory outlives the nodes.
    _tempdir: Option<tempfile::TempDir>,
    /// The deployments file, relative to the repository root.
    pub deployments_file: String,
}

impl Devnet {
    /// A provider signing with anvil dev account `index`.
    pub fn provider(&self, index: usize) -> Result<DynProvider> {
        Ok(self.chain.provider(index)?)
    }

    /// Stops miner `index`'s node (0-based) and starts it again on the same store with
    /// `duties`. A miner whose node fails to start again is left out of `miners`.
    pub async fn restart_node(&mut self, index: usize, duties: DutyConfig) -> Result<()> {
        ensure!(index < self.miners.len(), "no node {}", index + 1);
        let miner = self.miners.remove(index);
        let miner = miner.restart(duties).await?;
        self.miners.insert(index, miner);
        Ok(())
    }

    /// Stops every node, then anvil.
    pub async fn shutdown(self) {
        for miner in self.miners {
            miner.node.shutdown().await;
        }
        drop(self.chain);
    }
}

/// The most miners a devnet runs: anvil's dev accounts less the deployer, Alice and Bob.
pub(crate) const MAX_NODES: usize = 7;

/// Starts anvil, deploys, stakes `args.nodes` miners with growing stakes (so that the reward
/// formula's weighting shows), and starts their nodes.
pub async fn start(args: &DevnetArgs) -> Result<Devnet> {
    start_with_node_rpc(args, &[]).await
}

/// [`start`], but node `i` (0-based) reaches the chain at `node_rpc_urls[i]` where one is given,
/// instead of anvil's WebSocket endpoint: benchmarks put an RPC proxy there (to delay the nodes'
/// calls and count them; `kms_node::test_utils::RpcProxy`). A node on an `http://` URL polls
/// for new blocks (every 200 ms here) instead of subscribing. Everything else (deployment,
/// staking, Alice's and Bob's accounts) still talks to anvil directly.
pub async fn start_with_node_rpc(args: &DevnetArgs, node_rpc_urls: &[String]) -> Result<Devnet> {
    // Anvil's 10 dev accounts: the deployer (0), the stakers (1..=nodes), then Alice and Bob.
    if args.nodes == 0 || args.nodes > MAX_NODES {
        bail!(
            "--nodes must be 1 to {MAX_NODES} (anvil has 10 dev accounts: the deployer, Alice and \
             Bob take three)"
        );
    }
    let deployments_file = args.deployments_file.clone();
    eprintln!(
        "starting anvil on port {} and deploying the contracts",
        args.port
    );
    let chain = DevChain::start_on(ChainOptions {
        port: Some(args.port),
        seconds_per_period: args.seconds_per_period,
        parameters: Vec::new(),
        deployments_file: Some(deployments_file.clone()),
    })
    .await
    .with_context(|| {
        format!(
            "could not start the devnet chain (is port {} free? is `npm ci` done?)",
            args.port
        )
    })?;
    let (dir, tempdir) = match &args.dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let tempdir = tempfile::tempdir()?;
            (tempdir.path().to_owned(), Some(tempdir))
        }
    };
    let d = chain.deployment().clone();
    let as_deployer = chain.provider(DEPLOYER)?;
    let token = d.token(&as_deployer);
    let mut miners = Vec::new();
    for i in 1..=args.nodes {
        let staker_key = chain.signer(i)?;
        let staker = staker_key.address();
        let worker = PrivateKeySigner::random();
        // Stakes of 1x, 2x, ... the minimum: the rewards split in these proportions.
        let stake = d.min_stake * U256::from(i);
        fund_eth(&as_deployer, worker.address()).await?;
        send(
            &format!("tokens for staker {i}"),
            token.transfer(staker, stake),
        )
        .await?;
        let as_staker = chain.provider(i)?;
        send(
            &format!("approve {i}"),
            d.token(&as_staker).approve(d.staking_escrow, stake),
        )
        .await?;
        send(
            &format!("deposit {i}"),
            d.staking_escrow(&as_staker)
                .deposit(stake, U256::from(d.min_lock_periods)),
        )
        .await?;
        send(
            &format!("propose worker {i}"),
            d.staking_escrow(&as_staker).bondWorker(worker.address()),
        )
        .await?;
        let as_worker = ProviderBuilder::new()
            .wallet(worker.clone())
            .connect_http(chain.endpoint_url());
        send(
            &format!("worker {i} accepts"),
            d.staking_escrow(&as_worker).acceptWorker(staker),
        )
        .await?;
        let faulty = (args.faulty_node || args.demo) && i == args.nodes && args.nodes > 1;
        let node_dir = dir.join(format!("node-{i}"));
        std::fs::create_dir_all(&node_dir)?;
        let port = match args.node_port {
            0 => 0,
            first => first
                .checked_add(i as u16 - 1)
                .context("--node-port too high for this many nodes")?,
        };
        let listen = format!("127.0.0.1:{port}").parse()?;
        // As `kms node init` makes it: a self-signed certificate for the node's address, which
        // the node pins in its published URL and every client checks.
        let tls = if args.plain_http {
            None
        } else {
            let (cert, key) = kms_node::tls::generate_self_signed(&["127.0.0.1".into()])?;
            Some(kms_node::tls::TlsIdentity::from_pem(
                &cert,
                &key,
                kms_node::tls::TlsKind::SelfSigned,
            )?)
        };
        let mut settings = Settings {
            rpc_url: node_rpc_urls
                .get(i - 1)
                .cloned()
                .unwrap_or_else(|| format!("ws://127.0.0.1:{}", args.port)),
            deployment: d.clone(),
            staker,
            worker: worker.clone(),
            umbral: MasterSecret::random().node_key(),
            listen,
            public_url: None,
            tls,
            store_path: node_dir.join("node.redb"),
            // Anvil mines a block per transaction only: acting at depth 0 keeps the demo moving.
            confirmations: 0,
            poll_interval: Duration::from_millis(200),
            max_log_range: 2000,
            duties: devnet_duties(),
            limits: Limits::default(),
            behaviour: if faulty {
                Behaviour::WrongCFrags
            } else {
                Behaviour::Honest
            },
            // Browser apps (the TypeScript SDK's demo page) call the nodes from their own origin.
            cors: AllowedOrigins::Any,
        };
        let node = kms_node::start(settings.clone())
            .await
            .with_context(|| format!("starting node {i}"))?;
        // A restart binds the same port: the published node record stays true.
        settings.listen = node.local_addr();
        miners.push(Miner {
            staker,
            staker_key,
            worker,
            stake,
            faulty,
            settings,
            node,
        });
    }
    Ok(Devnet {
        chain,
        miners,
        dir,
        _tempdir: tempdir,
        deployments_file,
    })
}

/// Sends 10 ETH to `to` for gas.
async fn fund_eth(from: &DynProvider, to: Address) -> Result<()> {
    let value: U256 = parse_units("10", 18)?.get_absolute();
    let tx = TransactionRequest::default().with_to(to).with_value(value);
    let receipt = from.send_transaction(tx).await?.get_receipt().await?;
    if !receipt.status() {
        bail!("funding {to} failed");
    }
    Ok(())
}

/// Prints where everything is.
pub fn print(devnet: &Devnet) -> Result<()> {
    let d = devnet.chain.deployment();
    println!();
    println!("KMS devnet");
    println!("  rpc             {}", devnet.chain.endpoint_url());
    println!("  chain id        {}", d.chain_id);
    println!("  deployments     {}", devnet.deployments_file);
    println!("  token           {}", d.token);
    println!("  staking escrow  {}", d.staking_escrow);
    println!("  policy manager  {}", d.policy_manager);
    println!("  adjudicator     {}", d.adjudicator);
    println!("  period          {} s", d.seconds_per_period);
    println!("  node stores     {}", devnet.dir.display());
    println!();
    println!(
        "  {:<4} {:<42} {:<42} {:<24} {:>10}",
        "node", "staker", "worker", "url", "stake KMS"
    );
    for (i, m) in devnet.miners.iter().enumerate() {
        println!(
            "  {:<4} {:<42} {:<42} {:<24} {:>10}{}",
            i + 1,
            m.staker.to_string(),
            m.worker.address().to_string(),
            m.node.public_url(),
            format_tokens(m.stake),
            if m.faulty { "  (faulty)" } else { "" }
        );
    }
    println!();
    println!("  dev accounts (anvil's well-known keys; never use them elsewhere):");
    for (role, index) in [
        ("deployer", DEPLOYER),
        ("alice", alice_index(devnet)),
        ("bob", bob_index(devnet)),
    ] {
        let signer = devnet.chain.signer(index)?;
        println!(
            "  {role:<9} {}  {}",
            signer.address(),
            private_key_hex(&signer)
        );
    }
    for (i, m) in devnet.miners.iter().enumerate() {
        println!(
            "  staker {:<2} {}  {}",
            i + 1,
            m.staker,
            private_key_hex(&m.staker_key)
        );
    }
    Ok(())
}

/// Alice's dev account.
pub fn alice_index(devnet: &Devnet) -> usize {
    devnet.miners.len() + 1
}

/// Bob's dev account.
pub fn bob_index(devnet: &Devnet) -> usize {
    devnet.miners.len() + 2
}

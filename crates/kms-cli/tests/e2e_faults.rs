//! End to end under faults: real nodes as separate processes (`kms node run`) on a real anvil,
//! killed with SIGKILL at random points, with anvil restarted under them, and with reorgs
//! shallower than their confirmation depth.
//!
//! - `a_3_of_5_policy_survives_two_killed_nodes`: Bob decrypts with `kms retrieve` while two of
//!   the five nodes are SIGKILLed, and again once they are back and two others are killed.
//! - `sigkill_during_uploads_and_catch_up_loses_nothing_and_repeats_no_duty`: 20+ SIGKILLs at
//!   random points (seeded: `KMS_E2E_SEED=<seed>` replays a run) during kfrag uploads, the
//!   follower's catch-up and the duties; after each, every acknowledged kfrag is in the store and
//!   every transaction the worker sent is a recorded duty; at the end Bob decrypts with every
//!   policy, the follower has every policy, one commitment per period, and the worker's nonce is
//!   the number of settled duty transactions.
//! - `nodes_reconnect_and_catch_up_after_anvil_restarts`: anvil restarted (`--state`, same port)
//!   under a ws:// node and an http:// node.
//! - `a_shallow_reorg_neither_commits_twice_nor_keeps_a_vanished_policy`: `anvil_reorg` of depth 2
//!   under a node acting at depth 3.
//! - `sigkill_while_audit_evidence_is_filed_slashes_once_per_evidence`: an auditing node (a
//!   `kms node run` process) audits two in-process peers, one answering wrong cfrags, and is
//!   SIGKILLed at seeded random points after its audit policy is created and while each round's
//!   evidence is committed and revealed; at the end every evidence it recorded is evaluated by
//!   exactly one reveal of its own (one `CFragEvaluated` and one commitment each, the violations
//!   and rewards to match), its audit policy was created once, and every transaction its worker
//!   sent is one recorded duty that succeeded.
//!
//! `KMS_E2E_NODE_LOG` sets the nodes' `RUST_LOG` (default `info`); each node's log is printed
//! when it fails to start or stop.

#![allow(clippy::unwrap_used)]

mod support;

use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex as StdMutex,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use alloy::{
    primitives::{Address, FixedBytes, B256, U256},
    providers::{ext::AnvilApi, DynProvider, Provider},
    rpc::types::Filter,
    sol_types::SolEvent,
};
use anyhow::{bail, ensure, Context, Result};
use kms_client::{
    retrieve::{retrieve_from, AnswerTerms, RetrieveOptions},
    HttpConfig, NodeClient, NodeError, PolicyFile, PolicyNode,
};
use kms_contracts::{
    test_utils::{
        accounts::{ALICE, DEPLOYER, STAKER, WORKER},
        ChainOptions, TestChain,
    },
    Adjudicator, PolicyManager,
};
use kms_crypto::{
    test_utils::PolicyKeys,
    wire::{decode_public_key, Availability, KfragUpload, NetworkView},
};
use kms_node::test_utils::local_settings;
use kms_node::{
    store::{AuditState, EvidenceState},
    Behaviour, DutyRecord, RunningNode, Settings, Store,
};
use serde_json::Value;
use support::{http_get, NodeOptions, NodeProcess, KMS};
use tokio::sync::Mutex;
use umbral_pre::{decrypt_reencrypted, encrypt, PublicKey};

/// Periods long enough that no test crosses a boundary by itself; tests travel in time.
const SECONDS_PER_PERIOD: u64 = 3600;
/// A generous bound for anything that takes a few blocks.
const WAIT: Duration = Duration::from_secs(60);

/// The tests share two cores with everything else: one at a time keeps their timing honest.
static SERIAL: Mutex<()> = Mutex::const_new(());

// ---------------------------------------------------------------------------------------------
// The chain
// ---------------------------------------------------------------------------------------------

/// A chain with the contracts, a directory for the nodes, their deployments and password files.
struct Net {
    chain: TestChain,
    dir: tempfile::TempDir,
    deployments: PathBuf,
    password: PathBuf,
}

impl Net {
    async fn start(port: Option<u16>, anvil_args: &[&str]) -> Result<Self> {
        let chain = TestChain::start_with_anvil_args(
            ChainOptions {
                port,
                seconds_per_period: SECONDS_PER_PERIOD,
                ..ChainOptions::default()
            },
            anvil_args,
        )
        .await?;
        let dir = tempfile::tempdir()?;
        let deployments = dir.path().join("deployments.json");
        std::fs::write(&deployments, chain.deployment().to_json())?;
        let password = dir.path().join("password");
        // Password files must be private, like key files.
        kms_crypto::keys::write_secret_file(&password, b"correct horse\n")?;
        Ok(Self {
            chain,
            dir,
            deployments,
            password,
        })
    }

    fn reader(&self) -> DynProvider {
        self.chain.read_provider()
    }

    fn key(&self, index: usize) -> Result<String> {
        Ok(alloy::hex::encode_prefixed(
            self.chain.signer(index)?.to_bytes(),
        ))
    }

    /// Stakes the minimum for `staker` with `worker` proposed (the node accepts the bond when it
    /// starts: a recorded duty like its other transactions), and sets up its node.
    async fn node(
        &self,
        name: &str,
        staker: usize,
        worker: usize,
        options: &NodeOptions,
    ) -> Result<NodeProcess> {
        self.staked_node(name, staker, worker, options, false).await
    }

    /// [`Net::node`], or with the bond accepted by the worker at once (`accepted`): one worker
    /// transaction that is no duty of the node's, for tests that need the node bonded before it
    /// ever runs.
    async fn staked_node(
        &self,
        name: &str,
        staker: usize,
        worker: usize,
        options: &NodeOptions,
        accepted: bool,
    ) -> Result<NodeProcess> {
        let d = self.chain.deployment();
        let (amount, periods) = (d.min_stake, U256::from(d.min_lock_periods));
        self.chain
            .stake_and_propose(DEPLOYER, staker, worker, amount, periods)
            .await?;
        if accepted {
            self.chain.accept_bond(staker, worker).await?;
        }
        NodeProcess::init(
            name,
            &self.dir.path().join(name),
            &self.deployments,
            &self.password,
            self.chain.address(staker)?,
            &self.key(worker)?,
            options,
        )
    }

    fn http(&self) -> String {
        self.chain.endpoint_url().to_string()
    }

    fn ws(&self) -> String {
        self.chain.ws_endpoint()
    }
}

fn node_options(rpc_url: String, confirmations: u64) -> NodeOptions {
    NodeOptions {
        rpc_url,
        confirmations,
        poll_interval_ms: 100,
        max_log_range: 2000,
        prune: true,
        audits: false,
    }
}

async fn last_committed(chain: &TestChain, staker: Address) -> Result<u64> {
    let reader = chain.read_provider();
    let info = chain
        .deployment()
        .staking_escrow(&reader)
        .getStakerInfo(staker)
        .call()
        .await?;
    Ok(info.lastCommittedPeriod.to::<u64>())
}

/// Waits until `staker` has committed to the period after the current one.
async fn wait_committed(chain: &TestChain, staker: Address) -> Result<u64> {
    let deadline = Instant::now() + WAIT;
    loop {
        let next = chain.current_period().await? + 1;
        if last_committed(chain, staker).await? >= next {
            return Ok(next);
        }
        ensure!(
            Instant::now() < deadline,
            "{staker} did not commit to period {next}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// No period has two commitments of `staker`.
async fn one_commitment_per_period(chain: &TestChain, staker: Address) -> Result<usize> {
    let all = chain.commitments(staker).await?;
    let mut seen = HashSet::new();
    for (period, tx) in &all {
        ensure!(
            seen.insert(*period),
            "two commitments to period {period} (the second in {tx}): {all:?}"
        );
    }
    Ok(all.len())
}

/// Mines a block every `every` until dropped; pausable. Errors (anvil restarting) are ignored.
struct Miner {
    paused: Arc<Mutex<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl Miner {
    fn start(provider: DynProvider, every: Duration) -> Self {
        let paused = Arc::new(Mutex::new(false));
        let flag = paused.clone();
        let task = tokio::spawn(async move {
            loop {
                {
                    let paused = flag.lock().await;
                    if !*paused {
                        let _ = provider.anvil_mine(Some(1), None).await;
                    }
                }
                tokio::time::sleep(every).await;
            }
        });
        Self { paused, task }
    }

    /// Returns once no block is being mined and none will be until `resume`.
    async fn pause(&self) {
        *self.paused.lock().await = true;
    }

    async fn resume(&self) {
        *self.paused.lock().await = false;
    }
}

impl Drop for Miner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// Alice and Bob
// ---------------------------------------------------------------------------------------------

/// Alice's keys (one delegating key and kfrag signer for every policy) and Bob's.
struct Keys(PolicyKeys);

impl std::ops::Deref for Keys {
    type Target = PolicyKeys;

    fn deref(&self) -> &PolicyKeys {
        &self.0
    }
}

impl Keys {
    fn new() -> Self {
        Self(PolicyKeys::random())
    }

    /// Bob's view of a policy of `nodes` (ascending), for `retrieve_from`.
    fn policy_file(
        &self,
        chain: &TestChain,
        policy_id: [u8; 16],
        threshold: usize,
        nodes: Vec<PolicyNode>,
    ) -> PolicyFile {
        let d = chain.deployment();
        PolicyFile {
            chain_id: d.chain_id,
            policy_manager: d.policy_manager,
            policy_id,
            label: "e2e".into(),
            owner: Address::repeat_byte(1),
            delegating_key: self.delegating.public_key(),
            verifying_key: self.signer.public_key(),
            receiving_key: self.bob.public_key(),
            senders: Vec::new(),
            threshold,
            shares: nodes.len(),
            end_timestamp: u64::from(u32::MAX),
            fee_rate: U256::from(1),
            nodes,
        }
    }

    /// Bob asks the policy's nodes, verifies the cfrags and decrypts a fresh message.
    async fn bob_decrypts(
        &self,
        chain: &TestChain,
        client: &NodeClient,
        policy: &PolicyFile,
    ) -> Result<()> {
        let workers = policy.nodes.iter().map(|n| n.worker);
        let terms = AnswerTerms::read(&chain.read_provider(), chain.deployment(), workers).await?;
        let message = format!("for bob under {}", policy.policy_id_hex());
        let (capsule, ciphertext) = encrypt(&policy.delegating_key, message.as_bytes())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let retrieval = retrieve_from(
            client,
            policy,
            &policy.nodes,
            &self.bob,
            std::slice::from_ref(&capsule),
            &RetrieveOptions {
                terms,
                ..Default::default()
            },
        )
        .await?;
        let cfrags = retrieval.cfrags.into_iter().next().context("no cfrags")?;
        let plaintext = decrypt_reencrypted(
            &self.bob,
            &policy.delegating_key,
            &capsule,
            cfrags,
            &ciphertext,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        ensure!(plaintext.as_ref() == message.as_bytes(), "wrong plaintext");
        Ok(())
    }
}

/// What Bob needs to know of a node.
async fn policy_node(client: &NodeClient, node: &NodeProcess) -> Result<PolicyNode> {
    let info = client.node_info(&node.url()).await?;
    Ok(PolicyNode {
        staker: info.staker,
        worker: info.worker,
        url: node.url(),
        umbral_public_key: decode_public_key("umbralPublicKey", &info.umbral_public_key)?,
    })
}

/// Alice creates the policy of `salt` naming `nodes` (ascending) for `periods` periods, paying
/// 1 gwei per node and period; returns its id (`policyIdOf(alice, salt)`) and the block it is
/// in. Retried if a period ends in between (the payment would no longer match).
async fn create_policy(
    chain: &TestChain,
    alice: usize,
    salt: [u8; 16],
    kfrag_signer: Address,
    nodes: &[Address],
    periods: u64,
) -> Result<([u8; 16], u64)> {
    let as_alice = chain.provider(alice)?;
    let id = kms_crypto::policy_id_of(chain.address(alice)?, salt);
    let manager = chain.deployment().policy_manager(&as_alice);
    let mut last_error = None;
    for _ in 0..3 {
        let end = (chain.current_period().await? + periods) * SECONDS_PER_PERIOD;
        let value = U256::from(1_000_000_000u64 * periods * nodes.len() as u64);
        let sent = manager
            .createPolicy(
                FixedBytes(salt),
                chain.address(alice)?,
                kfrag_signer,
                U256::from(end),
                nodes.to_vec(),
            )
            .value(value)
            .send()
            .await;
        match sent {
            Ok(pending) => {
                let receipt = pending.get_receipt().await?;
                ensure!(receipt.status(), "createPolicy reverted");
                return Ok((id, receipt.block_number.context("no block number")?));
            }
            Err(e) => last_error = Some(e),
        }
    }
    bail!("createPolicy failed: {last_error:?}")
}

// ---------------------------------------------------------------------------------------------
// The worker's transactions
// ---------------------------------------------------------------------------------------------

/// Checks that every transaction the worker ever sent is the transaction of one recorded duty:
/// the worker's nonce is the number of recorded transactions that are on chain, and no two
/// records share a transaction. With `settled`, also that none is still waiting (`sent`) and
/// the nonce is the number of `done`/`failed` records with a transaction.
/// `outside`: how many of the worker's transactions were sent by the test, not the node.
async fn duties_match_nonce(
    chain: &TestChain,
    store: &Store,
    worker: Address,
    settled: bool,
    outside: u64,
) -> Result<u64> {
    let reader = chain.read_provider();
    let nonce = reader.get_transaction_count(worker).await? - outside;
    let records = store.duties()?;
    let mut hashes = HashSet::new();
    let mut on_chain = 0;
    let mut settled_txs = 0;
    let mut waiting = Vec::new();
    for (key, record) in &records {
        let tx_hash = match record {
            DutyRecord::Done { tx_hash, .. } | DutyRecord::Failed { tx_hash, .. }
                if !tx_hash.is_zero() =>
            {
                settled_txs += 1;
                *tx_hash
            }
            DutyRecord::Sent { tx_hash, .. } => {
                waiting.push(key.clone());
                *tx_hash
            }
            _ => continue,
        };
        ensure!(
            hashes.insert(tx_hash),
            "transaction {tx_hash} recorded twice: {records:?}"
        );
        if let Some(receipt) = reader.get_transaction_receipt(tx_hash).await? {
            ensure!(
                receipt.from == worker,
                "{key}: {tx_hash} is not the worker's"
            );
            on_chain += 1;
        }
    }
    ensure!(
        on_chain == nonce,
        "the worker sent {nonce} transactions, {on_chain} of them recorded: {records:#?}"
    );
    if settled {
        // Nothing here reverts on chain or takes the worker's nonces: a failed duty would be a
        // second transaction for something done already.
        let failed: Vec<_> = records
            .iter()
            .filter(|(_, r)| matches!(r, DutyRecord::Failed { .. }))
            .collect();
        ensure!(failed.is_empty(), "failed duty transactions: {failed:?}");
        ensure!(
            waiting.is_empty(),
            "duties still waiting for their transaction: {waiting:?} in {records:#?}"
        );
        ensure!(
            settled_txs == nonce,
            "worker nonce {nonce}, {settled_txs} settled duty transactions: {records:#?}"
        );
    }
    Ok(nonce)
}

/// The duties whose transaction is not settled yet, if any.
fn duties_waiting(store: &Store) -> Result<Option<String>> {
    let waiting: Vec<String> = store
        .duties()?
        .into_iter()
        .filter(|(_, r)| matches!(r, DutyRecord::Sent { .. }))
        .map(|(k, _)| k)
        .collect();
    Ok((!waiting.is_empty()).then(|| format!("duties waiting: {waiting:?}")))
}

/// Stops `node` (SIGTERM) and opens its store until `done` holds of it, restarting the node in
/// between: a running node's store cannot be opened.
async fn stop_when(
    node: &mut NodeProcess,
    what: &str,
    mut done: impl FnMut(&Store) -> Result<Option<String>>,
) -> Result<Store> {
    let deadline = Instant::now() + WAIT;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        node.stop()?;
        let store = node.open_store()?;
        let missing = match done(&store)? {
            None => return Ok(store),
            Some(missing) => missing,
        };
        ensure!(
            Instant::now() < deadline,
            "{}: timed out waiting for {what}: {missing}; log:\n{}",
            node.name,
            node.log_tail(40)
        );
        drop(store);
        node.start_ready(WAIT).await?;
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Two of five nodes killed
// ---------------------------------------------------------------------------------------------

/// The nodes' client: they serve plain HTTP (`kms node init --tls off`), as these tests are
/// about faults, not TLS.
fn plain_http() -> HttpConfig {
    HttpConfig {
        allow_plain_http: true,
        ..HttpConfig::default()
    }
}

/// `kms` with the devnet's chain and deployments, in `dir`.
fn kms_in(net: &Net, dir: &Path, args: &[&str]) -> Output {
    Command::new(KMS)
        .current_dir(dir)
        .args(args)
        .env("ETH_RPC_URL", net.http())
        .env("KMS_DEPLOYMENTS", &net.deployments)
        // The nodes serve plain HTTP (`--tls off`): these tests are about faults, not TLS.
        .env("KMS_ALLOW_PLAIN_HTTP", "1")
        .env_remove("ETH_PRIVATE_KEY")
        .env_remove("ETH_KEYSTORE")
        .env_remove("KMS_PASSWORD")
        .env_remove("KMS_PASSWORD_FILE")
        .output()
        .unwrap()
}

fn kms_ok(net: &Net, dir: &Path, args: &[&str]) -> Result<String> {
    let out = kms_in(net, dir, args);
    ensure!(
        out.status.success(),
        "kms {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3_of_5_policy_survives_two_killed_nodes() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    // Accounts: 0 deployer, 1-5 stakers, 6-10 their workers, 11 Alice.
    let net = Net::start(None, &["--accounts", "12"]).await?;
    let alice_key = net.key(11)?;
    let miner = Miner::start(net.reader(), Duration::from_millis(250));
    let mut nodes = Vec::new();
    for i in 1..=5 {
        let options = NodeOptions {
            poll_interval_ms: 200,
            ..node_options(net.http(), 1)
        };
        nodes.push(net.node(&format!("node{i}"), i, i + 5, &options).await?);
    }
    for node in &mut nodes {
        node.start()?;
    }
    for node in &mut nodes {
        node.wait_ready(WAIT).await?;
    }
    println!("5 nodes up after {:?}", started.elapsed());

    // Alice grants Bob 3-of-5 with the CLI; Enrico encrypts.
    let work = tempfile::tempdir()?;
    let dir = work.path();
    kms_ok(
        &net,
        dir,
        &["keys", "new", "--umbral-only", "--dir", "alice"],
    )?;
    kms_ok(&net, dir, &["keys", "new", "--umbral-only", "--dir", "bob"])?;
    let bob: Value = serde_json::from_str(&kms_ok(
        &net,
        dir,
        &["keys", "show", "--json", "--umbral", "bob/umbral.json"],
    )?)?;
    kms_ok(
        &net,
        dir,
        &[
            "policy",
            "grant",
            "--umbral",
            "alice/umbral.json",
            "--label",
            "photos",
            "--bob",
            bob["receivingKey"].as_str().context("no receivingKey")?,
            "--threshold",
            "3",
            "--shares",
            "5",
            "--expires",
            "5",
            "--fee-rate",
            "1gwei",
            "--out",
            "policy.json",
            "--yes",
            "--private-key",
            &alice_key,
        ],
    )?;
    for node in &nodes {
        ensure!(node.kfrags().await? == 1, "{} holds no kfrag", node.name);
    }
    let plaintext: Vec<u8> = (0..150_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(dir.join("photo.raw"), &plaintext)?;
    kms_ok(
        &net,
        dir,
        &[
            "encrypt",
            "--policy-key",
            "policy.json",
            "--umbral",
            "alice/umbral.json",
            "photo.raw",
            "photo.kms",
        ],
    )?;
    let retrieve = |out: &str| -> Result<()> {
        kms_ok(
            &net,
            dir,
            &[
                "retrieve",
                "--policy",
                "policy.json",
                "--umbral",
                "bob/umbral.json",
                "photo.kms",
                out,
            ],
        )?;
        ensure!(std::fs::read(dir.join(out))? == plaintext, "{out} differs");
        Ok(())
    };

    // Two nodes SIGKILLed: three are enough.
    nodes[0].sigkill();
    nodes[1].sigkill();
    retrieve("photo.out1")?;
    // They come back with their kfrags; the two others die: still three.
    nodes[0].start()?;
    nodes[1].start()?;
    nodes[0].wait_ready(WAIT).await?;
    nodes[1].wait_ready(WAIT).await?;
    nodes[3].sigkill();
    nodes[4].sigkill();
    retrieve("photo.out2")?;
    // A third one down: Bob is told there are not enough cfrags (exit 4).
    nodes[2].sigkill();
    let out = kms_in(
        &net,
        dir,
        &[
            "retrieve",
            "--policy",
            "policy.json",
            "--umbral",
            "bob/umbral.json",
            "photo.kms",
            "photo.out3",
        ],
    );
    ensure!(
        out.status.code() == Some(4),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(!dir.join("photo.out3").exists(), "no partial output");

    for node in &mut nodes {
        node.stop()?;
    }
    drop(miner);
    println!("done in {:?}", started.elapsed());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 2. SIGKILL at random points
// ---------------------------------------------------------------------------------------------

/// SplitMix64: small, seedable, good enough to pick delays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn bytes16(&mut self) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.next().to_be_bytes());
        id[8..].copy_from_slice(&self.next().to_be_bytes());
        id
    }
}

/// The run's seed: `KMS_E2E_SEED`, or the clock; printed so that a failure can be replayed.
fn seed() -> u64 {
    let seed = std::env::var("KMS_E2E_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("seed {seed} (replay with KMS_E2E_SEED={seed})");
    seed
}

/// Where a kill is aimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aim {
    /// A random delay after the process starts: start-up, catch-up, uploads, duties.
    Anywhere,
    /// Right after the node acknowledged a kfrag, while the other uploads are in flight.
    Upload,
    /// While the follower is catching up (its lag is over a few ranges).
    CatchUp,
}

/// A policy of the test and its kfrag upload (the same bytes every time).
struct TestPolicy {
    id: [u8; 16],
    upload: KfragUpload,
    acked: bool,
}

/// `kms_node_chain_lag_blocks` from `/metrics`.
async fn chain_lag(port: u16) -> Option<u64> {
    let (status, body) = http_get(port, "/metrics").await.ok()?;
    if status != 200 {
        return None;
    }
    body.lines()
        .find_map(|l| l.strip_prefix("kms_node_chain_lag_blocks "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_uploads_and_catch_up_loses_nothing_and_repeats_no_duty() -> Result<()> {
    const KILLS: usize = 21;
    const CONFIRMATIONS: u64 = 2;
    const RANGE: u64 = 3;
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let mut rng = Rng(seed());
    let net = Net::start(None, &[]).await?;
    let reader = net.reader();
    let options = NodeOptions {
        max_log_range: RANGE,
        ..node_options(net.http(), CONFIRMATIONS)
    };
    // Policies are created before the node's first start: the worker accepts the bond first.
    const ACCEPTED_IN_SETUP: u64 = 1;
    let mut node = net
        .staked_node("node", STAKER, WORKER, &options, true)
        .await?;
    let (staker, worker) = (node.staker, node.worker);
    let _miner = Miner::start(reader.clone(), Duration::from_millis(200));
    let node_key = kms_crypto::keys::MasterSecret::load(&node.dir.join("umbral.json"))?
        .node_key()
        .public_key();
    let bob_node = PolicyNode {
        staker,
        worker,
        url: node.url(),
        umbral_public_key: node_key,
    };
    let patient = NodeClient::new(plain_http())?;

    let keys = Keys::new();
    let once = NodeClient::new(HttpConfig {
        attempts: 1,
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_secs(10),
        ..plain_http()
    })?;
    let mut policies: Vec<TestPolicy> = Vec::new();
    let mut last_policy_block = 0;
    let mut mid_catch_up = 0;
    let mut cut_uploads = 0;
    let mut travels = 0;
    for kill in 1..=KILLS {
        // While the node is down: time passes now and then (a new period: new duties, while
        // those of the last one may be cut short), policies naming it are created, blocks are
        // mined for the follower to catch up on.
        if kill > 1 && travels < 8 && rng.range(0, 2) == 0 {
            net.chain.travel(SECONDS_PER_PERIOD).await?;
            travels += 1;
        }
        // The first start is killed anywhere too (the node record's transaction, the first
        // commitment).
        let aim = match kill % 3 {
            _ if kill == 1 => Aim::Anywhere,
            0 => Aim::Upload,
            1 => Aim::CatchUp,
            _ => Aim::Anywhere,
        };
        let new_policies = match aim {
            Aim::Upload => 3,
            _ => rng.range(1, 3),
        };
        for _ in 0..new_policies {
            let (id, block) = create_policy(
                &net.chain,
                ALICE,
                rng.bytes16(),
                keys.signer_address(),
                &[staker],
                12,
            )
            .await?;
            last_policy_block = block;
            let upload = keys.uploads(id, 1, &[(staker, node_key)])?.remove(0);
            policies.push(TestPolicy {
                id,
                upload,
                acked: false,
            });
        }
        let blocks = match aim {
            Aim::CatchUp => rng.range(120, 200),
            _ => rng.range(5, 60),
        };
        net.chain.mine(blocks).await?;

        // The node starts; Alice uploads every kfrag it has not acknowledged yet, one after the
        // other (so that a kill right after an acknowledgement cuts the next upload), retrying
        // each until the node takes it or is killed.
        node.start()?;
        let spawned = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let acks: Arc<StdMutex<Vec<[u8; 16]>>> = Arc::default();
        let mut pending: Vec<([u8; 16], KfragUpload)> = policies
            .iter()
            .filter(|p| !p.acked)
            .map(|p| (p.id, p.upload.clone()))
            .collect();
        let first = rng.range(0, pending.len() as u64 - 1) as usize;
        pending.rotate_left(first);
        let uploads = {
            let (client, url) = (once.clone(), node.url());
            let (stop, acks) = (stop.clone(), acks.clone());
            tokio::spawn(async move {
                for (id, upload) in pending {
                    while !stop.load(Ordering::SeqCst) {
                        match client.upload_kfrag(&url, id, &upload).await {
                            Ok(_) => {
                                acks.lock().unwrap().push(id);
                                break;
                            }
                            // Not listening yet, or listening and starting (503).
                            Err(NodeError::Unreachable(_))
                            | Err(NodeError::Refused { status: 503, .. }) => {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                            // The node's upload limit (30 at once, then 120 a minute per
                            // address): after many kills more than 30 kfrags can be pending.
                            // Alice waits as told, as the real client does.
                            Err(NodeError::Refused {
                                status: 429,
                                retry_after_secs,
                                ..
                            }) => {
                                let secs = retry_after_secs.unwrap_or(1);
                                tokio::time::sleep(Duration::from_secs(secs)).await;
                            }
                            // A refusal of a valid kfrag of a live policy is a failure.
                            Err(e) => return Some(format!("{}: {e}", alloy::hex::encode(id))),
                        }
                    }
                }
                None
            })
        };
        let waited_for_aim = Instant::now() + Duration::from_secs(10);
        let delay = Duration::from_millis(match aim {
            Aim::Anywhere => rng.range(0, 1500),
            Aim::Upload => rng.range(0, 20),
            Aim::CatchUp => rng.range(0, 60),
        });
        match aim {
            Aim::Anywhere => {}
            Aim::Upload => {
                while acks.lock().unwrap().is_empty() && Instant::now() < waited_for_aim {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            Aim::CatchUp => {
                while chain_lag(node.port)
                    .await
                    .is_none_or(|lag| lag < 4 * RANGE + CONFIRMATIONS)
                    && Instant::now() < waited_for_aim
                {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
        tokio::time::sleep(delay).await;
        let head_at_kill = net.chain.head().await?;
        let at = spawned.elapsed();
        node.sigkill();
        stop.store(true, Ordering::SeqCst);
        if let Some(refused) = uploads.await? {
            bail!("kill {kill}: a kfrag upload was refused: {refused}");
        }
        let acked_now: Vec<_> = acks.lock().unwrap().clone();
        let pending_before = policies.iter().filter(|p| !p.acked).count();
        for id in &acked_now {
            if let Some(policy) = policies.iter_mut().find(|p| p.id == *id) {
                policy.acked = true;
            }
        }

        // Nothing lost: the store opens, holds every acknowledged kfrag, and every transaction
        // the worker sent is a recorded duty.
        let store = node.open_store()?;
        for policy in policies.iter().filter(|p| p.acked) {
            ensure!(
                store.get_kfrag(policy.id)?.is_some(),
                "kill {kill}: the acknowledged kfrag of 0x{} is lost",
                alloy::hex::encode(policy.id)
            );
        }
        let nonce = duties_match_nonce(&net.chain, &store, worker, false, ACCEPTED_IN_SETUP)
            .await
            .with_context(|| format!("kill {kill}"))?;
        let cursor = store.cursor()?;
        let behind = cursor.map_or(head_at_kill, |c| head_at_kill.saturating_sub(c.block));
        if aim == Aim::CatchUp && behind > CONFIRMATIONS + 2 * RANGE {
            mid_catch_up += 1;
        }
        if aim == Aim::Upload && acked_now.len() < pending_before {
            cut_uploads += 1;
        }
        println!(
            "kill {kill:2} {aim:?} at {at:?}: cursor {} of head {head_at_kill} ({behind} behind), \
             {}/{pending_before} uploads acknowledged, worker nonce {nonce}",
            cursor.map_or("none".into(), |c| c.block.to_string()),
            acked_now.len(),
        );
    }
    ensure!(
        mid_catch_up > 0,
        "no kill aimed at the catch-up found the follower behind"
    );
    ensure!(
        cut_uploads > 0,
        "no kill aimed at the uploads cut one short"
    );

    // Back for good: every kfrag is (or now gets) stored, and Bob decrypts with every policy.
    node.start_ready(WAIT).await?;
    for policy in policies.iter_mut().filter(|p| !p.acked) {
        patient
            .upload_kfrag(&node.url(), policy.id, &policy.upload)
            .await
            .with_context(|| format!("final upload of 0x{}", alloy::hex::encode(policy.id)))?;
        policy.acked = true;
    }
    for policy in &policies {
        let file = keys.policy_file(&net.chain, policy.id, 1, vec![bob_node.clone()]);
        keys.bob_decrypts(&net.chain, &patient, &file)
            .await
            .with_context(|| format!("Bob with policy {}", file.policy_id_hex()))?;
    }
    wait_committed(&net.chain, staker).await?;

    // The follower has every policy, and every duty transaction is settled.
    let target = last_policy_block + CONFIRMATIONS;
    node.wait_cursor(target, WAIT).await?;
    ensure!(node.status().await?.policies == policies.len() as u64);
    let ids: Vec<[u8; 16]> = policies.iter().map(|p| p.id).collect();
    let store = stop_when(&mut node, "the follower and the duties", |store| {
        let cursor = store.cursor()?.map_or(0, |c| c.block);
        if cursor < target {
            return Ok(Some(format!("cursor {cursor} < {target}")));
        }
        duties_waiting(store)
    })
    .await?;
    for id in &ids {
        let record = store
            .policy(*id)?
            .with_context(|| format!("policy 0x{} not followed", alloy::hex::encode(id)))?;
        ensure!(
            record.nodes == vec![staker] && !record.revoked,
            "{record:?}"
        );
        ensure!(store.get_kfrag(*id)?.is_some(), "kfrag lost");
    }
    let cursor = store.cursor()?.context("no cursor")?;
    ensure!(
        net.chain.block_hash(cursor.block).await? == cursor.hash,
        "cursor off the chain"
    );
    let nonce = duties_match_nonce(&net.chain, &store, worker, true, ACCEPTED_IN_SETUP).await?;
    let commits = one_commitment_per_period(&net.chain, staker).await?;
    println!(
        "{KILLS} kills ({mid_catch_up} mid catch-up, {cut_uploads} cutting uploads), {travels} \
         periods passed, {} policies, {commits} commitments, {nonce} worker transactions, in {:?}",
        policies.len(),
        started.elapsed()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3. Anvil restarted under running nodes
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_reconnect_and_catch_up_after_anvil_restarts() -> Result<()> {
    const ALICE: usize = 5;
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let state_dir = tempfile::tempdir()?;
    let state = state_dir.path().join("anvil-state.json");
    let port = support::free_port();
    let mut net = Net::start(
        Some(port),
        &[
            "--state",
            state.to_str().unwrap(),
            "--preserve-historical-states",
        ],
    )
    .await?;
    let reader = net.reader();
    // One node follows by subscription (ws://), one by polling (http://). Pruning is off so
    // that a deleted kfrag shows the follower applied a revocation.
    let mut nodes = Vec::new();
    for (name, staker, worker, rpc) in
        [("ws-node", 1, 2, net.ws()), ("http-node", 3, 4, net.http())]
    {
        let options = NodeOptions {
            prune: false,
            poll_interval_ms: 200,
            ..node_options(rpc, 2)
        };
        nodes.push(net.node(name, staker, worker, &options).await?);
    }
    let miner = Miner::start(reader.clone(), Duration::from_millis(250));
    for node in &mut nodes {
        node.start_ready(WAIT).await?;
    }
    let stakers: Vec<Address> = {
        let mut s: Vec<Address> = nodes.iter().map(|n| n.staker).collect();
        s.sort();
        s
    };
    for staker in &stakers {
        wait_committed(&net.chain, *staker).await?;
    }
    nodes.sort_by_key(|n| n.staker);
    let client = NodeClient::new(plain_http())?;
    let mut bob_nodes = Vec::new();
    for node in &nodes {
        bob_nodes.push(policy_node(&client, node).await?);
    }
    let node_keys: Vec<(Address, PublicKey)> = bob_nodes
        .iter()
        .map(|n| (n.staker, n.umbral_public_key))
        .collect();
    let keys = Keys::new();

    // A 2-of-2 policy before the restart.
    let (before, _) = create_policy(
        &net.chain,
        ALICE,
        [0xb0; 16],
        keys.signer_address(),
        &stakers,
        10,
    )
    .await?;
    for (node, upload) in nodes.iter().zip(keys.uploads(before, 2, &node_keys)?) {
        client.upload_kfrag(&node.url(), before, &upload).await?;
    }
    let head_before = net.chain.head().await?;

    // Anvil stops (writing its state), stays down for a few seconds, comes back.
    miner.pause().await;
    net.chain.restart_anvil(Duration::from_secs(4)).await?;
    miner.resume().await;
    ensure!(
        net.chain.head().await? >= head_before,
        "the chain did not survive"
    );
    println!("anvil restarted after {:?}", started.elapsed());

    // The policy from before is served; a new one is taken and then revoked, which the
    // followers apply; time passes and both commit again.
    let file = keys.policy_file(&net.chain, before, 2, bob_nodes.clone());
    support::eventually("Bob's retrieval after the restart", WAIT, || async {
        Ok(keys.bob_decrypts(&net.chain, &client, &file).await.is_ok())
    })
    .await?;
    let (after, _) = create_policy(
        &net.chain,
        ALICE,
        [0xa0; 16],
        keys.signer_address(),
        &stakers,
        10,
    )
    .await?;
    for (node, upload) in nodes.iter().zip(keys.uploads(after, 2, &node_keys)?) {
        client.upload_kfrag(&node.url(), after, &upload).await?;
        ensure!(node.kfrags().await? == 2, "{}", node.name);
    }
    keys.bob_decrypts(
        &net.chain,
        &client,
        &keys.policy_file(&net.chain, after, 2, bob_nodes.clone()),
    )
    .await?;
    // The followers record it once it is confirmed.
    for node in &nodes {
        support::eventually(
            &format!("{} to record the new policy", node.name),
            WAIT,
            || async { Ok(node.status().await?.policies == 2) },
        )
        .await
        .with_context(|| node.log_tail(30))?;
    }
    let as_alice = net.chain.provider(ALICE)?;
    let receipt = net
        .chain
        .deployment()
        .policy_manager(&as_alice)
        .revokePolicy(FixedBytes(after), stakers.clone())
        .send()
        .await?
        .get_receipt()
        .await?;
    ensure!(receipt.status(), "revokePolicy reverted");
    for node in &nodes {
        support::eventually(
            &format!("{} to apply the revocation", node.name),
            WAIT,
            || async { Ok(node.kfrags().await? == 1) },
        )
        .await
        .with_context(|| node.log_tail(30))?;
    }
    let committed_before: Vec<u64> = {
        let mut v = Vec::new();
        for staker in &stakers {
            v.push(last_committed(&net.chain, *staker).await?);
        }
        v
    };
    net.chain.travel(SECONDS_PER_PERIOD).await?;
    for (staker, before) in stakers.iter().zip(&committed_before) {
        let next = wait_committed(&net.chain, *staker).await?;
        ensure!(next > *before, "no new commitment");
        one_commitment_per_period(&net.chain, *staker).await?;
    }
    let revoked_block = receipt.block_number.context("no block")?;

    // Their stores: both policies followed (the second revoked), cursors on the chain.
    for node in &mut nodes {
        node.wait_cursor(revoked_block, WAIT).await?;
        let store = stop_when(node, "the follower and the duties", |store| {
            let cursor = store.cursor()?.map_or(0, |c| c.block);
            if cursor < revoked_block {
                return Ok(Some(format!("cursor {cursor} < {revoked_block}")));
            }
            duties_waiting(store)
        })
        .await?;
        let first = store.policy(before)?.context("policy before the restart")?;
        let second = store.policy(after)?.context("policy after the restart")?;
        ensure!(!first.revoked && second.revoked, "{first:?} {second:?}");
        ensure!(store.get_kfrag(before)?.is_some() && store.get_kfrag(after)?.is_none());
        let cursor = store.cursor()?.context("no cursor")?;
        ensure!(net.chain.block_hash(cursor.block).await? == cursor.hash);
        duties_match_nonce(&net.chain, &store, node.worker, true, 0).await?;
    }
    drop(miner);
    println!("done in {:?}", started.elapsed());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 4. A reorg shallower than the confirmation depth
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shallow_reorg_neither_commits_twice_nor_keeps_a_vanished_policy() -> Result<()> {
    const CONFIRMATIONS: u64 = 3;
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let net = Net::start(None, &[]).await?;
    let reader = net.reader();
    let mut node = net
        .node(
            "node",
            STAKER,
            WORKER,
            &node_options(net.http(), CONFIRMATIONS),
        )
        .await?;
    // Fees withdrawn from the first wei (the default waits for fees worth ten withdrawals' gas):
    // the test waits for the withdrawal of its 1-gwei policy's fee below.
    configure(&node, &[("withdraw_fees_threshold_wei", "\"1\"")])?;
    let staker = node.staker;
    let miner = Miner::start(reader.clone(), Duration::from_millis(200));
    node.start_ready(WAIT).await?;
    wait_committed(&net.chain, staker).await?;
    let client = NodeClient::new(plain_http())?;
    let bob_node = policy_node(&client, &node).await?;
    let keys = Keys::new();

    // The commitment of a new period is mined, then reorged out one block deep.
    miner.pause().await;
    net.chain.mine(CONFIRMATIONS + 1).await?;
    net.chain.travel(SECONDS_PER_PERIOD).await?;
    let next = net.chain.current_period().await? + 1;
    let deadline = Instant::now() + WAIT;
    let commit_tx = loop {
        let found = net
            .chain
            .commitments(staker)
            .await?
            .into_iter()
            .find(|(p, _)| *p == next);
        if let Some((_, tx)) = found {
            break tx;
        }
        ensure!(
            Instant::now() < deadline,
            "the node did not commit to {next}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let commit_block = reader
        .get_transaction_receipt(commit_tx)
        .await?
        .and_then(|r| r.block_number)
        .context("no receipt")?;
    net.chain.mine(1).await?;
    ensure!(net.chain.head().await? == commit_block + 1);
    let old_hash = net.chain.block_hash(commit_block).await?;
    net.chain.reorg(2).await?;
    ensure!(net.chain.block_hash(commit_block).await? != old_hash);
    // The node sends the very same transaction again.
    support::eventually("the commitment back on chain", WAIT, || async {
        Ok(reader
            .get_transaction_receipt(commit_tx)
            .await?
            .and_then(|r| r.block_number)
            .is_some_and(|b| b > commit_block + 1))
    })
    .await?;
    ensure!(one_commitment_per_period(&net.chain, staker).await? >= 2);

    // A confirmed policy and one that a reorg removes after the node took its kfrag.
    let (kept, _) = create_policy(
        &net.chain,
        ALICE,
        [0x4b; 16],
        keys.signer_address(),
        &[staker],
        10,
    )
    .await?;
    net.chain.mine(CONFIRMATIONS + 1).await?;
    // The policy credits the node fees for the period it committed to, which it withdraws (once
    // a period): wait for that transaction, so that no other lands among the reorged blocks.
    let manager = net.chain.deployment().policy_manager(&reader);
    support::eventually("the fee withdrawal", WAIT, || async {
        Ok(manager.fees(staker).call().await?.is_zero())
    })
    .await?;
    let key = [(bob_node.staker, bob_node.umbral_public_key)];
    ensure!(
        client
            .upload_kfrag(&node.url(), kept, &keys.uploads(kept, 1, &key)?[0])
            .await?
    );
    let (vanished, vanished_block) = create_policy(
        &net.chain,
        ALICE,
        [0x56; 16],
        keys.signer_address(),
        &[staker],
        10,
    )
    .await?;
    ensure!(
        client
            .upload_kfrag(&node.url(), vanished, &keys.uploads(vanished, 1, &key)?[0])
            .await?,
        "the unconfirmed policy's kfrag was not taken"
    );
    net.chain.mine(1).await?;
    ensure!(
        net.chain.head().await? == vanished_block + 1,
        "another block among those to reorg"
    );
    net.chain.reorg(2).await?;
    let signer = net
        .chain
        .deployment()
        .policy_manager(&reader)
        .kfragSignerOf(FixedBytes(vanished))
        .call()
        .await?;
    ensure!(signer.is_zero(), "the policy survived the reorg");
    // The node serves from the chain it has read: a block past the reorg, once it has read it.
    net.chain.mine(1).await?;
    node.wait_head(net.chain.head().await?, WAIT).await?;
    let vanished_file = keys.policy_file(&net.chain, vanished, 1, vec![bob_node.clone()]);
    ensure!(
        keys.bob_decrypts(&net.chain, &client, &vanished_file)
            .await
            .is_err(),
        "a vanished policy served"
    );
    let kept_file = keys.policy_file(&net.chain, kept, 1, vec![bob_node.clone()]);
    keys.bob_decrypts(&net.chain, &client, &kept_file).await?;
    let reorged_at = net.chain.head().await?;

    // Blocks go on: the kfrag of the vanished policy is deleted, the other one kept.
    miner.resume().await;
    support::eventually("the vanished policy's kfrag to be pruned", WAIT, || async {
        Ok(node.kfrags().await? == 1)
    })
    .await
    .with_context(|| node.log_tail(30))?;
    keys.bob_decrypts(&net.chain, &client, &kept_file).await?;
    let target = reorged_at + CONFIRMATIONS;
    node.wait_cursor(target, WAIT).await?;
    let store = stop_when(&mut node, "the follower and the duties", |store| {
        let cursor = store.cursor()?.map_or(0, |c| c.block);
        if cursor < target {
            return Ok(Some(format!("cursor {cursor} < {target}")));
        }
        duties_waiting(store)
    })
    .await?;
    ensure!(
        store.policy(vanished)?.is_none(),
        "vanished policy followed"
    );
    ensure!(store.get_kfrag(vanished)?.is_none(), "vanished kfrag kept");
    ensure!(store.policy(kept)?.is_some() && store.get_kfrag(kept)?.is_some());
    match store.duty(&format!("commit/{next}"))? {
        Some(DutyRecord::Done { tx_hash, .. }) => {
            ensure!(tx_hash == commit_tx, "another commitment transaction")
        }
        other => bail!("commit/{next}: {other:?}"),
    }
    duties_match_nonce(&net.chain, &store, node.worker, true, 0).await?;
    one_commitment_per_period(&net.chain, staker).await?;
    let commits: BTreeMap<u64, B256> = net.chain.commitments(staker).await?.into_iter().collect();
    ensure!(commits.get(&next) == Some(&commit_tx));
    drop(miner);
    println!("done in {:?}", started.elapsed());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 5. SIGKILL while an audit's evidence is filed
// ---------------------------------------------------------------------------------------------

/// A peer run in this process, its audits off: `kms node run` never answers wrong cfrags
/// ([`Behaviour::WrongCFrags`] is for devnets and tests only).
struct Peer {
    staker: Address,
    running: RunningNode,
    _dir: tempfile::TempDir,
}

impl Peer {
    /// Stakes the minimum for `staker` with `worker` bonded, and starts its node answering as
    /// `behaviour` says.
    async fn start(
        net: &Net,
        (staker, worker): (usize, usize),
        behaviour: Behaviour,
    ) -> Result<Self> {
        let chain = &net.chain;
        chain.stake_minimum(staker, worker).await?;
        let dir = tempfile::tempdir()?;
        let settings = Settings {
            rpc_url: net.http(),
            max_log_range: 2000,
            behaviour,
            ..local_settings(chain, staker, worker, dir.path().join("node.redb"))?
        };
        Ok(Self {
            staker: chain.address(staker)?,
            running: kms_node::start(settings).await?,
            _dir: dir,
        })
    }
}

/// Sets `key = value` lines of `node`'s configuration file (each key unique in the file).
fn configure(node: &NodeProcess, settings: &[(&str, &str)]) -> Result<()> {
    let path = node.dir.join("node.toml");
    let mut text = std::fs::read_to_string(&path)?;
    for (key, value) in settings {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .with_context(|| format!("no {key} in {text}"))?
            .to_owned();
        text = text.replace(&line, &format!("{key} = {value}"));
    }
    std::fs::write(&path, text)?;
    Ok(())
}

/// The logs of `event` emitted by `contract` whose second indexed argument is `account`.
async fn logs_naming(
    reader: &DynProvider,
    chain: &TestChain,
    contract: Address,
    event: B256,
    account: Address,
) -> Result<Vec<alloy::rpc::types::Log>> {
    let filter = Filter::new()
        .address(contract)
        .event_signature(event)
        .topic2(account.into_word())
        .from_block(chain.deployment().start_block);
    Ok(reader.get_logs(&filter).await?)
}

/// The faulty peer's wrong answers as the auditing node's `GET /v1/network` counts them (`None`
/// while it does not answer).
async fn wrong_answers(node: &NodeProcess, peer: Address) -> Option<u64> {
    let (status, body) = http_get(node.port, "/v1/network").await.ok()?;
    if status != 200 {
        return None;
    }
    let view: NetworkView = serde_json::from_str(&body).ok()?;
    Some(
        view.peers
            .iter()
            .find(|p| p.staker == peer)
            .and_then(|p| p.availability.as_ref())
            .map_or(0, |a| a.wrong),
    )
}

/// Where a kill of the auditing node is aimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FilingAim {
    /// After its audit policy's `createPolicy` is mined: the duty settling, the policy marked
    /// created, the kfrag uploads.
    Policy,
    /// After a round found a wrong cfrag: the evidence recorded, its commitment on the way.
    Accepted,
    /// After an evidence commitment is mined: its duty settling, the reveal on the way.
    Committed,
    /// After a reveal is mined: its duty settling, the evidence not yet marked evaluated.
    Revealed,
}

/// The auditing node's filing as the chain and its API show it while it runs.
#[derive(Debug, Clone, Copy)]
struct Filing {
    policies: usize,
    wrong: Option<u64>,
    commitments: usize,
    evaluations: usize,
}

impl Filing {
    async fn read(
        reader: &DynProvider,
        chain: &TestChain,
        node: &NodeProcess,
        faulty: Address,
    ) -> Result<Self> {
        let d = chain.deployment();
        let (policies, commitments, evaluations) = (
            logs_naming(
                reader,
                chain,
                d.policy_manager,
                PolicyManager::PolicyCreated::SIGNATURE_HASH,
                node.worker,
            )
            .await?,
            logs_naming(
                reader,
                chain,
                d.adjudicator,
                Adjudicator::EvidenceCommitted::SIGNATURE_HASH,
                node.worker,
            )
            .await?,
            logs_naming(
                reader,
                chain,
                d.adjudicator,
                Adjudicator::CFragEvaluated::SIGNATURE_HASH,
                faulty,
            )
            .await?,
        );
        Ok(Self {
            policies: policies.len(),
            wrong: wrong_answers(node, faulty).await,
            commitments: commitments.len(),
            evaluations: evaluations.len(),
        })
    }

    /// Whether `self` (read later) shows the step `aim` waits for, done since `before`.
    fn reached(&self, aim: FilingAim, before: &Self) -> bool {
        match aim {
            FilingAim::Policy => self.policies > before.policies,
            FilingAim::Accepted => self.wrong.unwrap_or(0) > before.wrong.unwrap_or(0),
            FilingAim::Committed => self.commitments > before.commitments,
            FilingAim::Revealed => self.evaluations > before.evaluations,
        }
    }
}

/// What a kill cut short, from the killed node's store: a line for the log, and whether an
/// evidence was being filed (not final, or one of its transactions recorded as sent).
fn cut_short(store: &Store) -> Result<(String, bool)> {
    let evidence = store.all_evidence()?;
    let count =
        |f: fn(&EvidenceState) -> bool| evidence.iter().filter(|(_, r)| f(&r.state)).count();
    let pending = count(|s| matches!(s, EvidenceState::Pending));
    let committed = count(|s| matches!(s, EvidenceState::Committed { .. }));
    let sent: Vec<String> = store
        .duties()?
        .into_iter()
        .filter(|(_, r)| matches!(r, DutyRecord::Sent { .. }))
        .map(|(k, _)| {
            k.split_once("/0x")
                .map_or(k.clone(), |(duty, _)| duty.to_owned())
        })
        .collect();
    let filing = pending + committed > 0 || sent.iter().any(|k| k.starts_with("evidence-"));
    Ok((
        format!(
            "evidence {pending} pending, {committed} committed, {} final; sent: {sent:?}",
            evidence.len() - pending - committed
        ),
        filing,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_audit_evidence_is_filed_slashes_once_per_evidence() -> Result<()> {
    const FAULTY: (usize, usize) = (5, 6);
    const HONEST: (usize, usize) = (7, 8);
    // Two audit periods; in each, one kill around the audit policy's creation and three while
    // a round's evidence is filed (more rounds than kills, in case two fall due together).
    const PERIODS: u64 = 2;
    const KILLS_PER_PERIOD: usize = 4;
    const ROUNDS: usize = 6;
    const CONFIRMATIONS: u64 = 1;
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let mut rng = Rng(seed());
    let net = Net::start(None, &[]).await?;
    let reader = net.reader();
    let d = net.chain.deployment().clone();
    // Half a period at least for the first period's rounds.
    let into = net.chain.latest_timestamp().await? % SECONDS_PER_PERIOD;
    if into > SECONDS_PER_PERIOD / 2 {
        net.chain.travel(SECONDS_PER_PERIOD - into + 1).await?;
    }
    let _miner = Miner::start(reader.clone(), Duration::from_millis(200));
    // The peers first, committed, so that the auditor plans its audit of them as it starts.
    let faulty = Peer::start(&net, FAULTY, Behaviour::WrongCFrags).await?;
    let honest = Peer::start(&net, HONEST, Behaviour::Honest).await?;
    wait_committed(&net.chain, faulty.staker).await?;
    wait_committed(&net.chain, honest.staker).await?;
    let mut node = net
        .node(
            "auditor",
            STAKER,
            WORKER,
            &node_options(net.http(), CONFIRMATIONS),
        )
        .await?;
    // 10 gwei a period pays both peers at the default rate (1 gwei).
    configure(
        &node,
        &[
            ("budget_per_period_wei", "\"10000000000\""),
            ("rounds_per_period", &ROUNDS.to_string()),
        ],
    )?;
    let (staker, worker) = (node.staker, node.worker);
    let token = d.token(&reader);
    let staker_before = token.balanceOf(staker).call().await?;
    let first_period = net.chain.current_period().await?;
    println!("peers up after {:?}", started.elapsed());

    // Each kill: the node (re)starts; chain time moves to the next period (a kill aimed at the
    // audit policy) or to the period's next audit round (the others); the kill waits for the
    // step it is aimed at and a random delay more. The killed node's store must then account
    // for every transaction its worker sent, none twice.
    let mut kills = 0;
    let mut cut_filings = 0;
    let mut rounds: Vec<u64> = Vec::new();
    for period in first_period..first_period + PERIODS {
        for k in 0..KILLS_PER_PERIOD {
            let aim = match k {
                0 => FilingAim::Policy,
                _ => [
                    FilingAim::Accepted,
                    FilingAim::Committed,
                    FilingAim::Revealed,
                ][rng.range(0, 2) as usize],
            };
            if !node.is_running() {
                node.start_ready(WAIT).await?;
            }
            // What was done so far, once the node's network view answers.
            let mut before = Filing::read(&reader, &net.chain, &node, faulty.staker).await?;
            let deadline = Instant::now() + WAIT;
            while before.wrong.is_none() {
                ensure!(Instant::now() < deadline, "no GET /v1/network");
                tokio::time::sleep(Duration::from_millis(20)).await;
                before = Filing::read(&reader, &net.chain, &node, faulty.staker).await?;
            }
            let now = net.chain.latest_timestamp().await?;
            if aim == FilingAim::Policy {
                // The first period's policy is created as the node starts.
                if period > first_period {
                    net.chain
                        .travel(period * SECONDS_PER_PERIOD - now + 1)
                        .await?;
                }
            } else {
                // The period's next round; none left: on to the next period.
                let Some(&at) = rounds.iter().find(|&&at| at > now) else {
                    break;
                };
                net.chain.travel(at - now + 1).await?;
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let seen = Filing::read(&reader, &net.chain, &node, faulty.staker).await?;
                if seen.reached(aim, &before) {
                    break;
                }
                ensure!(
                    Instant::now() < deadline,
                    "kill {}: {aim:?} not reached ({before:?}, now {seen:?}); log:\n{}",
                    kills + 1,
                    node.log_tail(40)
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let delay = match aim {
                FilingAim::Policy => rng.range(0, 300),
                FilingAim::Accepted => rng.range(0, 400),
                FilingAim::Committed => rng.range(0, 150),
                FilingAim::Revealed => rng.range(0, 100),
            };
            tokio::time::sleep(Duration::from_millis(delay)).await;
            node.sigkill();
            kills += 1;

            let store = node.open_store()?;
            let nonce = duties_match_nonce(&net.chain, &store, worker, false, 0)
                .await
                .with_context(|| format!("kill {kills}"))?;
            let audit = store.audit(period)?.context("no audit planned")?;
            ensure!(
                audit.state != AuditState::Planned || aim == FilingAim::Policy,
                "kill {kills}: {audit:?}"
            );
            rounds.clone_from(&audit.rounds);
            let (cut, filing) = cut_short(&store)?;
            cut_filings += usize::from(filing);
            // Recorded, and killed before the broadcast: the chain has never seen it.
            let mut unbroadcast = 0;
            for (_, record) in store.duties()? {
                if let DutyRecord::Sent { tx_hash, .. } = record {
                    if reader.get_transaction_by_hash(tx_hash).await?.is_none() {
                        unbroadcast += 1;
                    }
                }
            }
            println!(
                "kill {kills} {aim:?} +{delay} ms at {:?}: period {period} audit {:?}, round \
                 {}/{}, {cut} ({unbroadcast} never broadcast), worker nonce {nonce}",
                started.elapsed(),
                audit.state,
                audit.rounds_done,
                audit.rounds.len(),
            );
        }
    }
    ensure!(
        kills > PERIODS as usize * 2,
        "only {kills} kills: the rounds fell due together"
    );
    ensure!(cut_filings > 0, "no kill cut an evidence's filing short");

    // Back for good: the last period's remaining rounds fall due, and every evidence is filed.
    let last_period = first_period + PERIODS - 1;
    if !node.is_running() {
        node.start_ready(WAIT).await?;
    }
    let now = net.chain.latest_timestamp().await?;
    if let Some(&last) = rounds.last().filter(|&&last| last >= now) {
        net.chain.travel(last - now + 1).await?;
    }
    let store = stop_when(&mut node, "the audit's rounds and filings", |store| {
        let audit = store.audit(last_period)?.context("no audit")?;
        if audit.rounds_done < audit.rounds.len() {
            return Ok(Some(format!(
                "{}/{} rounds done",
                audit.rounds_done,
                audit.rounds.len()
            )));
        }
        let open = store
            .all_evidence()?
            .into_iter()
            .filter(|(_, r)| !r.state.is_final())
            .count();
        if open > 0 {
            return Ok(Some(format!("{open} evidence not final")));
        }
        duties_waiting(store)
    })
    .await?;

    // Every evidence evaluated once, in this node's reveal, after one commitment, paid to its
    // staker; no other staker evaluated.
    let records = store.all_evidence()?;
    ensure!(!records.is_empty(), "the audits caught no wrong cfrag");
    let evaluations = logs_naming(
        &reader,
        &net.chain,
        d.adjudicator,
        Adjudicator::CFragEvaluated::SIGNATURE_HASH,
        faulty.staker,
    )
    .await?;
    let all_evaluations = reader
        .get_logs(
            &Filter::new()
                .address(d.adjudicator)
                .event_signature(Adjudicator::CFragEvaluated::SIGNATURE_HASH)
                .from_block(d.start_block),
        )
        .await?;
    ensure!(
        all_evaluations.len() == evaluations.len(),
        "a staker other than the faulty one was evaluated"
    );
    ensure!(
        evaluations.len() == records.len(),
        "{} evaluations of {} evidence records",
        evaluations.len(),
        records.len()
    );
    let mut rewards = U256::ZERO;
    for (hash, record) in &records {
        ensure!(record.fault.staker == faulty.staker, "{record:?}");
        let EvidenceState::Evaluated {
            tx_hash,
            verdict,
            reward,
            ..
        } = &record.state
        else {
            bail!("evidence {hash}: {:?}", record.state);
        };
        ensure!(verdict != "Correct", "evidence {hash}: {verdict}");
        let matching: Vec<_> = evaluations
            .iter()
            .filter(|log| log.topics().get(1) == Some(hash))
            .collect();
        ensure!(
            matching.len() == 1,
            "evidence {hash} evaluated {} times",
            matching.len()
        );
        let event = matching[0].log_decode::<Adjudicator::CFragEvaluated>()?;
        ensure!(
            event.transaction_hash == Some(*tx_hash),
            "evidence {hash}: evaluated in another reveal"
        );
        let event = event.inner.data;
        ensure!(event.investigator == staker && event.reward == *reward && !reward.is_zero());
        rewards += *reward;
    }
    let adjudicator = Adjudicator::new(d.adjudicator, &reader);
    ensure!(adjudicator.violations(faulty.staker).call().await? == U256::from(records.len()));
    ensure!(adjudicator
        .violations(honest.staker)
        .call()
        .await?
        .is_zero());
    ensure!(token.balanceOf(staker).call().await? == staker_before + rewards);
    // The honest peer was audited too, and served every round it was asked.
    let honest_seen = store
        .availability_from(first_period)?
        .into_iter()
        .filter(|(peer, _, _)| *peer == honest.staker)
        .fold(Availability::default(), |mut sum, (_, _, seen)| {
            sum.add(&seen);
            sum
        });
    ensure!(
        honest_seen.served > 0 && honest_seen.served == honest_seen.total(),
        "the honest peer: {honest_seen:?}"
    );
    let commitments = logs_naming(
        &reader,
        &net.chain,
        d.adjudicator,
        Adjudicator::EvidenceCommitted::SIGNATURE_HASH,
        worker,
    )
    .await?;
    ensure!(
        commitments.len() == records.len(),
        "{} commitments for {} evidence records",
        commitments.len(),
        records.len()
    );

    // One audit policy a period, created once.
    let mut created = Vec::new();
    for log in logs_naming(
        &reader,
        &net.chain,
        d.policy_manager,
        PolicyManager::PolicyCreated::SIGNATURE_HASH,
        worker,
    )
    .await?
    {
        let block = reader
            .get_block_by_number(log.block_number.context("no block")?.into())
            .await?
            .context("no block")?;
        created.push(block.header.timestamp / SECONDS_PER_PERIOD);
    }
    let periods: Vec<u64> = (first_period..first_period + PERIODS).collect();
    ensure!(
        created == periods,
        "audit policies created in periods {created:?}"
    );
    for period in periods {
        let audit = store.audit(period)?.context("no audit")?;
        ensure!(audit.state == AuditState::Created, "{audit:?}");
    }

    // Every transaction of the worker is a recorded duty that succeeded, none signed twice.
    let nonce = duties_match_nonce(&net.chain, &store, worker, true, 0).await?;
    for (key, record) in store.duties()? {
        if let DutyRecord::Done { tx_hash, .. } = record {
            let receipt = reader
                .get_transaction_receipt(tx_hash)
                .await?
                .with_context(|| format!("{key}: no receipt"))?;
            ensure!(receipt.status(), "{key}: {tx_hash} reverted");
        }
    }
    drop(store);
    faulty.running.shutdown().await;
    honest.running.shutdown().await;
    println!(
        "{kills} kills ({cut_filings} cutting a filing short), {} evidence filed and slashed once \
         each, {nonce} worker transactions, in {:?}",
        records.len(),
        started.elapsed()
    );
    Ok(())
}

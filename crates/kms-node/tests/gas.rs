//! Gas as nodes really run: three in-process nodes with the duties `kms node init` ships
//! (commit, mint, fees withdrawn at the `"auto"` threshold, prune, audits of their peers) go
//! through several periods on anvil while Alice grants a 3-node policy each period, paying enough
//! that every node withdraws its fees every period (the state that used to make every accrual
//! create its slot again). The receipts of the nodes' `commitToNextPeriod`, of the `createPolicy`
//! calls and of the nodes' `withdrawFees` are held to the bars of `test/gas/Gas.t.sol`.
//!
//! Settings that differ from `kms node init`'s, none of which changes a transaction the node
//! sends: `[chain] confirmations = 0` and `poll_interval_ms = 100` (anvil mines a block per
//! transaction only; a test does not wait for seconds), and any free port for the API.
//! Needs `forge build` artifacts and `npm ci` (anvil and forge).

#![allow(clippy::unwrap_used)]

use std::{path::PathBuf, time::Duration};

use alloy::{
    primitives::{Address, B256, U256},
    providers::{DynProvider, Provider},
    rpc::types::{Filter, TransactionReceipt},
    sol_types::SolEvent,
};
use anyhow::{ensure, Context, Result};
use kms_client::{grant::GrantRequest, Client, HttpConfig};
use kms_contracts::{
    test_utils::{eventually, TestChain},
    PolicyManager, StakingEscrow,
};
use kms_node::{test_utils::local_settings, DutyRecord, NodeConfig, RunningNode, Settings, Store};
use umbral_pre::SecretKey;

const SECONDS_PER_PERIOD: u64 = 600;
/// How long the test waits for the nodes to do something.
const WAIT: Duration = Duration::from_secs(60);
/// Periods during which Alice grants a policy and the nodes commit and withdraw.
const PERIODS: u64 = 5;
/// Wei per node per period of Alice's policies: above the `"auto"` threshold at anvil's gas price
/// (10 x 40,000 gas x ~1 gwei = 0.0004 ETH), so each node withdraws every period.
const FEE_RATE: u64 = 1_000_000_000_000_000;
/// Alice's policies end this many periods after their creation, each in a period no other
/// policy ends in: every node's `rateEnding` entry is a fresh slot, the dearest case.
const POLICY_PERIODS: u64 = 20;

/// The bars (`test/gas/Gas.t.sol`, README).
const COMMIT_BAR: u64 = 100_000;
const CREATE_POLICY_BAR: u64 = 250_000;
const WITHDRAW_FEES_BAR: u64 = 40_000;
/// The first commitment of a period allocates the period's issuance and creates its totals slot
/// (one per period for the whole network, not per node): no bar, but it must not grow.
const FIRST_OF_PERIOD_CEILING: u64 = 120_000;

/// Anvil's dev accounts, by role: (staker, worker) of each node, and Alice.
const NODES: [(usize, usize); 3] = [(1, 2), (5, 6), (7, 8)];
const ALICE: usize = 3;

struct Node {
    staker: Address,
    running: RunningNode,
    _dir: tempfile::TempDir,
}

impl Node {
    fn store(&self) -> &Store {
        self.running.store()
    }
}

/// A local node's settings with the `[duties]` and `[audit]` sections exactly as `kms node init`
/// writes them and `kms node run` reads them.
fn shipped_settings(
    chain: &TestChain,
    (staker, worker): (usize, usize),
    dir: &std::path::Path,
) -> Result<Settings> {
    let settings = local_settings(chain, staker, worker, dir.join("node.redb"))?;
    let path = dir.join("node.toml");
    NodeConfig::new(
        settings.rpc_url.clone(),
        PathBuf::from("deployments.json"),
        settings.staker,
        settings.listen,
        "http://127.0.0.1:9151".into(),
    )
    .save(&path)?;
    let duties = NodeConfig::load(&path)?.duty_config(&path)?;
    ensure!(duties.audit.enabled(), "init ships audits on");
    Ok(Settings { duties, ..settings })
}

async fn receipt(reader: &DynProvider, tx: B256) -> Result<TransactionReceipt> {
    reader
        .get_transaction_receipt(tx)
        .await?
        .with_context(|| format!("no receipt of {tx}"))
}

/// Whether `receipt` holds a log of `event`.
fn emits<E: SolEvent>(receipt: &TransactionReceipt) -> bool {
    receipt
        .inner
        .logs()
        .iter()
        .any(|log| log.topics().first() == Some(&E::SIGNATURE_HASH))
}

/// The transactions that emitted `event` on `contract`.
async fn transactions_of<E: SolEvent>(
    chain: &TestChain,
    contract: Address,
) -> Result<Vec<(B256, E)>> {
    let filter = Filter::new()
        .address(contract)
        .event_signature(E::SIGNATURE_HASH)
        .from_block(chain.deployment().start_block);
    let mut found = Vec::new();
    for log in chain.read_provider().get_logs(&filter).await? {
        let event = E::decode_log_data(log.data())?;
        found.push((
            log.transaction_hash
                .context("a log without its transaction")?,
            event,
        ));
    }
    Ok(found)
}

/// Whether `node`'s duty `key` is settled (done or skipped).
fn settled(node: &Node, key: &str) -> Result<bool> {
    Ok(matches!(
        node.store().duty(key)?,
        Some(DutyRecord::Done { .. } | DutyRecord::Skipped { .. })
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_with_the_shipped_defaults_stay_within_the_gas_bars() -> Result<()> {
    let chain = TestChain::start(SECONDS_PER_PERIOD).await?;
    let reader = chain.read_provider();
    let d = chain.deployment().clone();
    // Start at the first period of a commitment-bitmap word (256 periods), early in it: every
    // node's first commitment creates its word, and the later ones all fall in that word.
    let now = chain.latest_timestamp().await?;
    let word_start = (now / SECONDS_PER_PERIOD / 256 + 1) * 256 * SECONDS_PER_PERIOD;
    chain.travel(word_start - now + 1).await?;
    let first = chain.current_period().await?;

    let mut nodes = Vec::new();
    for accounts in NODES {
        chain.stake_minimum(accounts.0, accounts.1).await?;
        let dir = tempfile::tempdir()?;
        let running = kms_node::start(shipped_settings(&chain, accounts, dir.path())?).await?;
        nodes.push(Node {
            staker: chain.address(accounts.0)?,
            running,
            _dir: dir,
        });
    }
    let stakers: Vec<Address> = nodes.iter().map(|n| n.staker).collect();

    // The test's nodes serve plain HTTP.
    let http = HttpConfig {
        allow_plain_http: true,
        ..HttpConfig::default()
    };
    let alice = Client::connect(chain.provider(ALICE)?, d.clone(), http).await?;
    let mut granted = Vec::new();
    for period in first..first + PERIODS {
        // Every node commits at the start of the period, and withdraws the fees that accrued
        // (but in the first period, which has none before Alice's policy credits them).
        let commit = format!("commit/{}", period + 1);
        let fees = format!("fees/{period}");
        for node in &nodes {
            eventually("the period's commitment", WAIT, || async {
                Ok(settled(node, &commit)? && (period == first || settled(node, &fees)?))
            })
            .await?;
        }
        // Alice's policy comes after the withdrawals: each node's fees are credited for the
        // current and the next period, to a fee slot the withdrawal emptied.
        let (delegating, signer, bob) = (
            SecretKey::random(),
            SecretKey::random(),
            SecretKey::random(),
        );
        let request = GrantRequest {
            label: format!("period {period}"),
            owner: chain.address(ALICE)?,
            creator: chain.address(ALICE)?,
            delegating_key: delegating.public_key(),
            verifying_key: signer.public_key(),
            receiving_key: bob.public_key(),
            senders: Vec::new(),
            threshold: 2,
            shares: 3,
            end_timestamp: (period + POLICY_PERIODS) * SECONDS_PER_PERIOD,
            fee_rate: U256::from(FEE_RATE),
            seed: period,
            salt: None,
        };
        let plan = alice.plan_grant(&request).await?;
        let outcome = alice.execute_grant(&plan, &delegating, &signer).await?;
        ensure!(outcome.uploaded() == 3, "{:?}", outcome.uploads);
        granted.push(outcome.tx_hash);
        for node in &nodes {
            eventually("the period's withdrawal", WAIT, || async {
                settled(node, &fees)
            })
            .await?;
        }
        chain.travel(SECONDS_PER_PERIOD).await?;
    }
    let last = format!("commit/{}", first + PERIODS + 1);
    for node in &nodes {
        eventually("the last commitment", WAIT, || async {
            settled(node, &last)
        })
        .await?;
    }
    // The nodes withdrew in every period: the default threshold let them, at these fees.
    for node in &nodes {
        for period in first..first + PERIODS {
            let record = node.store().duty(&format!("fees/{period}"))?;
            ensure!(
                matches!(record, Some(DutyRecord::Done { .. })),
                "{}: fees/{period} {record:?}",
                node.staker
            );
        }
    }
    for node in nodes {
        node.running.shutdown().await;
    }

    // Commitments: each node's first one creates its slots (the warm-up); the first of each
    // period allocates the period's issuance.
    let (mut steady, mut first_of_period) = (Vec::new(), Vec::new());
    for &staker in &stakers {
        for (period, tx) in chain.commitments(staker).await?.into_iter().skip(1) {
            let r = receipt(&reader, tx).await?;
            let line = format!("commitToNextPeriod {staker} -> {period}");
            if emits::<StakingEscrow::IssuanceAllocated>(&r) {
                first_of_period.push((line + " (first of the period)", r.gas_used));
            } else {
                steady.push((line, r.gas_used));
            }
        }
    }
    ensure!(
        steady.len() as u64 >= 2 * (PERIODS - 1),
        "too few steady commitments: {steady:?}"
    );
    let mut create_policy = Vec::new();
    for (tx, event) in
        transactions_of::<PolicyManager::PolicyCreated>(&chain, d.policy_manager).await?
    {
        let who = if granted.contains(&tx) {
            "Alice"
        } else {
            "an audit"
        };
        let line = format!("createPolicy ({} nodes, {who})", event.nodes.len());
        create_policy.push((line, receipt(&reader, tx).await?.gas_used));
    }
    ensure!(
        granted.len() as u64 == PERIODS,
        "Alice's policies: {granted:?}"
    );
    let mut withdraw_fees = Vec::new();
    for (tx, event) in
        transactions_of::<PolicyManager::FeesWithdrawn>(&chain, d.policy_manager).await?
    {
        let r = receipt(&reader, tx).await?;
        ensure!(
            stakers.contains(&event.node) && r.from != event.node,
            "a withdrawal not sent by a node's worker: {r:?}"
        );
        withdraw_fees.push((format!("withdrawFees {}", event.node), r.gas_used));
    }
    ensure!(withdraw_fees.len() as u64 >= 3 * PERIODS);

    let mut over = Vec::new();
    println!("gas used, against its bar:");
    for (bar, measured) in [
        (COMMIT_BAR, &steady),
        (FIRST_OF_PERIOD_CEILING, &first_of_period),
        (CREATE_POLICY_BAR, &create_policy),
        (WITHDRAW_FEES_BAR, &withdraw_fees),
    ] {
        for (what, gas) in measured {
            println!("{gas:>8} / {bar}  {what}");
            if *gas > bar {
                over.push(format!("{what}: {gas} gas, over {bar}"));
            }
        }
    }
    ensure!(over.is_empty(), "over their bars: {over:#?}");
    Ok(())
}

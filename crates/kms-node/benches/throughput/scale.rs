//! `--scale`: re-encryption latency of a node holding `--policies` policies (100,000 by default)
//! next to one holding [`SMALL`] (goal: p50 and p99 within [`GOAL_RATIO`] of the small node's),
//! with each node's resident memory and store file.
//!
//! Each store is filled through the store's API as the node would have it: the policies'
//! confirmed records with `Store::apply_batch` (as the chain follower writes them) and their
//! kfrags with `Store::put_kfrags` (feature `test-utils`: one transaction per
//! [`CHUNK`] kfrags, where uploads commit one each). A kfrag is not bound to its policy id, so
//! [`KFRAGS`] real kfrags (each its own Alice, Bob and signer) are stored under all the ids, in
//! turn. Both nodes are processes of their own (`--serve-node`, as in `--pinned`), pinned to core
//! 0 while this process, the client, runs on core 1 (unpinned on a single core).
//!
//! One client sends one request at a time, of one capsule, each to a policy drawn at random
//! (uniformly) from those the node holds, in rounds of [`ROUND`] requests per series, the series
//! in turn (the order changing every round), each request signed before its round: the latency
//! is the node's answer time with nothing queued. Three series:
//!
//! - `small`: the small node, over its policies;
//! - `large`: the large node, over all its policies;
//! - `large_hot`: the large node, over its first [`SMALL`] policies only: the same store as
//!   `large`, but every kfrag verified in the node's cache (`api/reencrypt.rs` keeps at most
//!   10,000), which tells the store's size from the cache's hit rate.
//!
//! Before the requests, each node reads every kfrag record once, as the daemon's pruning duty
//! does every duty tick (`Store::kfrag_policies`; timed in the node process): a running node
//! has read its whole kfrags table, and redb keeps what it read in its cache (1 GiB at most by
//! default), so the RSS after that read is a running node's. The bench node runs no duties
//! itself: the time of that read is what each tick of a daemon would add.
//!
//! Every answer must be a 200 with one cfrag; the first of each series is checked in full.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use alloy::primitives::B256;
use anyhow::{anyhow, ensure, Context, Result};
use axum::body::Bytes;
use kms_crypto::{
    recover_answer_signer,
    wire::{decode_b64, decode_hex, ReencryptRequest, ReencryptResponse},
    AnswerContext,
};
use kms_node::{store::FollowerBatch, Cursor, PolicyRecord, Store, StoredKfrag};
use serde::Serialize;
use umbral_pre::{CapsuleFrag, DefaultDeserialize, DefaultSerialize};

use crate::{
    args::Args,
    fixture::{unix_now, Fixture, ADJUDICATOR, CAPSULE_POOL, CHAIN_ID},
    load::{http_client, percentile_ms, post_to},
    proc::load_average,
    process::{file_size, pin_self, Memory, NodeProcess, ReadAll, ServeConfig},
    report::{git, utc_now, write_report},
};

/// Policies of the small node.
pub(crate) const SMALL: usize = 10;
/// Distinct real kfrags stored under the policy ids.
pub(crate) const KFRAGS: usize = 4;
/// Records written per transaction.
pub(crate) const CHUNK: usize = 10_000;
/// Requests per series per round.
pub(crate) const ROUND: usize = 250;
/// The goal: the large node's p50 and p99 at most this times the small node's.
pub(crate) const GOAL_RATIO: f64 = 1.10;

/// The id of the `i`-th policy of a bench store.
fn policy_id(i: usize) -> [u8; 16] {
    let mut id = [0x5c; 16];
    id[8..].copy_from_slice(&(i as u64).to_be_bytes());
    id
}

#[derive(Debug, Clone, Serialize)]
struct StoreFill {
    policies: usize,
    seconds: f64,
    file_bytes: u64,
}

/// Fills a fresh store at `path` with `policies` policies naming the bench node.
fn fill_store(path: &Path, fixtures: &[Fixture], policies: usize, end: u64) -> Result<StoreFill> {
    let start = Instant::now();
    let store = Store::open(path)?;
    let kfrags = fixtures
        .iter()
        .map(|fx| {
            Ok(StoredKfrag {
                kfrag: fx.kfrag.to_bytes().context("kfrag")?.into_vec(),
                delegating_key: fx.keys.delegating.public_key(),
                receiving_key: fx.keys.bob.public_key(),
                verifying_key: fx.keys.signer.public_key(),
                end_timestamp: end,
                nodes: vec![fx.staker],
            })
        })
        .collect::<Result<Vec<_>>>()?;
    for (chunk, first) in (0..policies).step_by(CHUNK).enumerate() {
        let ids = first..policies.min(first + CHUNK);
        let created = ids
            .clone()
            .map(|i| {
                let fx = &fixtures[i % fixtures.len()];
                let record = PolicyRecord {
                    nodes: vec![fx.staker],
                    end_timestamp: end,
                    kfrag_signer: fx.keys.signer_address(),
                    owner: fx.staker,
                    created_block: chunk as u64 + 1,
                    revoked: false,
                };
                (policy_id(i), record)
            })
            .collect();
        let block = chunk as u64 + 1;
        store.apply_batch(
            &FollowerBatch {
                created,
                ..FollowerBatch::default()
            },
            Cursor {
                block,
                hash: B256::from(alloy::primitives::U256::from(block)),
            },
        )?;
        let chunk_kfrags = ids
            .map(|i| (policy_id(i), kfrags[i % kfrags.len()].clone()))
            .collect::<Vec<_>>();
        store.put_kfrags(&chunk_kfrags)?;
    }
    ensure!(
        store.kfrag_count()? == policies as u64 && store.policy_count()? == policies as u64,
        "the store does not hold {policies} policies"
    );
    drop(store);
    Ok(StoreFill {
        policies,
        seconds: start.elapsed().as_secs_f64(),
        file_bytes: file_size(path)?,
    })
}

/// splitmix64: reproducible picks without a dependency.
struct Picks(u64);

impl Picks {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

/// One request, signed: where it goes and what to check its answer against.
struct Signed {
    policy: usize,
    capsule: usize,
    url: String,
    body: Bytes,
}

struct Series {
    name: &'static str,
    node: usize,
    /// Requests go to policies `0..policies` of the node.
    policies: usize,
    latencies: Vec<Duration>,
    checked: bool,
}

#[derive(Debug, Clone, Serialize)]
struct SeriesResult {
    name: &'static str,
    node_policies: usize,
    requested_policies: usize,
    requests: usize,
    p50_ms: f64,
    p99_ms: f64,
    mean_ms: f64,
    max_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
struct NodeResult {
    policies: usize,
    store: StoreFill,
    /// After the store is opened, before any request.
    memory_at_start: Option<Memory>,
    /// The pruning duty's read of every kfrag record (each duty tick of a daemon), in the node.
    pruning_read: ReadAll,
    /// After that read (redb keeps what it read in its cache, up to 1 GiB by default).
    memory_after_pruning_read: Option<Memory>,
    /// After the last request.
    memory_at_end: Option<Memory>,
}

#[derive(Debug, Serialize)]
struct ScaleReport {
    bench: &'static str,
    date: String,
    git_commit: Option<String>,
    git_dirty: Option<bool>,
    cores: usize,
    load_average_at_start: Option<f64>,
    pinned: bool,
    distinct_kfrags: usize,
    requests_per_series: usize,
    nodes: Vec<NodeResult>,
    series: Vec<SeriesResult>,
    /// large p50 / small p50, large p99 / small p99.
    p50_ratio: f64,
    p99_ratio: f64,
    goal_ratio: f64,
}

fn sign(
    fixtures: &[Fixture],
    nodes: &[NodeProcess],
    series: &Series,
    picks: &mut Picks,
) -> Result<Signed> {
    let policy = picks.below(series.policies);
    let capsule = picks.below(CAPSULE_POOL);
    let fx = &fixtures[policy % fixtures.len()];
    let request = ReencryptRequest::sign(
        &fx.keys.bob,
        policy_id(policy),
        fx.staker,
        unix_now(),
        &fx.capsule_bytes[capsule..=capsule],
    );
    Ok(Signed {
        policy,
        capsule,
        url: nodes[series.node].policy_url(policy_id(policy)),
        body: Bytes::from(serde_json::to_vec(&request)?),
    })
}

/// The answer is the worker's signed, correct cfrag for the capsule.
fn check(fixtures: &[Fixture], signed: &Signed, answer: &ReencryptResponse) -> Result<()> {
    let fx = &fixtures[signed.policy % fixtures.len()];
    let capsule = &fx.capsules[signed.capsule];
    let [answer] = answer.cfrags.as_slice() else {
        return Err(anyhow!("{} cfrags for one capsule", answer.cfrags.len()));
    };
    let cfrag = CapsuleFrag::from_bytes(&decode_b64("cfrag", &answer.cfrag)?)
        .map_err(|e| anyhow!("cfrag: {e}"))?;
    let context = AnswerContext {
        chain_id: CHAIN_ID,
        adjudicator: ADJUDICATOR,
        staker: fx.staker,
        period: answer.period,
        policy_id: policy_id(signed.policy),
    };
    let signer = recover_answer_signer(
        &context,
        &capsule.to_bytes_simple(),
        &cfrag.to_bytes_simple(),
        &decode_hex("signature", &answer.signature)?,
    )?;
    ensure!(signer == fx.worker.address(), "answer signed by {signer}");
    cfrag
        .verify(
            capsule,
            &fx.keys.signer.public_key(),
            &fx.keys.delegating.public_key(),
            &fx.keys.bob.public_key(),
        )
        .map_err(|(e, _)| anyhow!("cfrag does not verify: {e}"))?;
    Ok(())
}

pub(crate) fn run_scale(args: &Args) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let pinned = cores >= 2;
    if pinned {
        pin_self(1)?;
    }
    ensure!(args.policies > SMALL, "--policies must be above {SMALL}");
    let requests = args.requests.div_ceil(ROUND) * ROUND;
    eprintln!(
        "scale: {} vs {SMALL} policies, {requests} requests per series, nodes {}",
        args.policies,
        if pinned {
            "on core 0, client on core 1"
        } else {
            "unpinned"
        }
    );
    let fixtures = (0..KFRAGS)
        .map(|_| Fixture::new())
        .collect::<Result<Vec<_>>>()?;
    let dir = tempfile::tempdir().context("temporary directory")?;
    let end = unix_now() + 30 * 86_400;
    let mut results = Vec::new();
    let mut nodes = Vec::new();
    for policies in [SMALL, args.policies] {
        eprintln!("filling a store with {policies} policies...");
        let path = dir.path().join(format!("node-{policies}.redb"));
        let store = fill_store(&path, &fixtures, policies, end)?;
        eprintln!(
            "  {:.1} s, {:.1} MiB",
            store.seconds,
            store.file_bytes as f64 / 1048576.0
        );
        let mut node = NodeProcess::start(
            pinned.then_some(0),
            &ServeConfig {
                store: path,
                policies: Vec::new(),
            },
        )?;
        let memory_at_start = node.process.memory_kib();
        node.process.send("read-all")?;
        let pruning_read = node.process.read::<ReadAll>().context("read-all")?;
        ensure!(
            pruning_read.kfrags == policies,
            "the node read {} kfrags",
            pruning_read.kfrags
        );
        eprintln!(
            "  the pruning duty's read of every kfrag: {:.3} s",
            pruning_read.seconds
        );
        results.push(NodeResult {
            policies,
            store,
            memory_at_start,
            pruning_read,
            memory_after_pruning_read: node.process.memory_kib(),
            memory_at_end: None,
        });
        nodes.push(node);
    }
    let mut series = [
        ("small", 0, SMALL),
        ("large", 1, args.policies),
        ("large_hot", 1, SMALL),
    ]
    .map(|(name, node, policies)| Series {
        name,
        node,
        policies,
        latencies: Vec::with_capacity(requests),
        checked: false,
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let http = http_client()?;
    let mut picks = Picks(0x5ca1e);
    let mut served = 0u64;
    // Warm-up (one round, untimed): connections, and the kfrag cache as a running node has it.
    for round in 0..=requests / ROUND {
        let order = (0..series.len())
            .map(|i| (i + round) % series.len())
            .collect::<Vec<_>>();
        let mut signed = Vec::with_capacity(series.len());
        for &s in &order {
            signed.push(
                (0..ROUND)
                    .map(|_| sign(&fixtures, &nodes, &series[s], &mut picks))
                    .collect::<Result<Vec<_>>>()?,
            );
        }
        for (&s, batch) in order.iter().zip(signed) {
            let series = &mut series[s];
            for request in batch {
                let (answer, latency) = runtime
                    .block_on(post_to(&http, &request.url, request.body.clone()))
                    .with_context(|| format!("{} request", series.name))?;
                served += 1;
                ensure!(answer.cfrags.len() == 1, "{} cfrags", answer.cfrags.len());
                if !series.checked {
                    check(&fixtures, &request, &answer)
                        .with_context(|| format!("{}: first answer", series.name))?;
                    series.checked = true;
                }
                if round > 0 {
                    series.latencies.push(latency);
                }
            }
        }
        if round > 0 {
            eprintln!("  round {round}: {served} requests served");
        }
    }
    for (result, node) in results.iter_mut().zip(&nodes) {
        result.memory_at_end = node.process.memory_kib();
    }
    let series = series
        .iter_mut()
        .map(|s| {
            s.latencies.sort_unstable();
            SeriesResult {
                name: s.name,
                node_policies: results[s.node].policies,
                requested_policies: s.policies,
                requests: s.latencies.len(),
                p50_ms: percentile_ms(&s.latencies, 0.5),
                p99_ms: percentile_ms(&s.latencies, 0.99),
                mean_ms: s.latencies.iter().sum::<Duration>().as_secs_f64() * 1e3
                    / s.latencies.len().max(1) as f64,
                max_ms: s
                    .latencies
                    .last()
                    .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3),
            }
        })
        .collect::<Vec<_>>();
    let report = ScaleReport {
        bench: "kms-node re-encryption latency, 100,000 policies vs 10 \
                (crates/kms-node/benches/throughput --scale)",
        date: utc_now(),
        git_commit: git(&["rev-parse", "--short", "HEAD"]),
        git_dirty: git(&["status", "--porcelain"]).map(|s| !s.is_empty()),
        cores,
        load_average_at_start: load_average(),
        pinned,
        distinct_kfrags: KFRAGS,
        requests_per_series: requests,
        p50_ratio: series[1].p50_ms / series[0].p50_ms,
        p99_ratio: series[1].p99_ms / series[0].p99_ms,
        goal_ratio: GOAL_RATIO,
        nodes: results,
        series,
    };
    print_scale(&report);
    write_report(&report, &args.out)
}

fn print_scale(report: &ScaleReport) {
    println!();
    for node in &report.nodes {
        let mib = |kib: u64| kib as f64 / 1024.0;
        println!(
            "node with {} policies: store {:.1} MiB (filled in {:.1} s), RSS at start {} MiB, \
             after the pruning read ({:.3} s) {} MiB, at end {} MiB (peak {} MiB)",
            node.policies,
            node.store.file_bytes as f64 / 1048576.0,
            node.store.seconds,
            node.memory_at_start
                .map_or_else(|| "-".to_owned(), |m| format!("{:.1}", mib(m.rss_kib))),
            node.pruning_read.seconds,
            node.memory_after_pruning_read
                .map_or_else(|| "-".to_owned(), |m| format!("{:.1}", mib(m.rss_kib))),
            node.memory_at_end
                .map_or_else(|| "-".to_owned(), |m| format!("{:.1}", mib(m.rss_kib))),
            node.memory_at_end
                .map_or_else(|| "-".to_owned(), |m| format!("{:.1}", mib(m.peak_rss_kib))),
        );
    }
    println!(
        "{:<10} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "series", "policies", "asked", "requests", "p50 ms", "p99 ms", "mean ms", "max ms"
    );
    for s in &report.series {
        println!(
            "{:<10} {:>9} {:>9} {:>8} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
            s.name,
            s.node_policies,
            s.requested_policies,
            s.requests,
            s.p50_ms,
            s.p99_ms,
            s.mean_ms,
            s.max_ms
        );
    }
    println!(
        "large / small: p50 x{:.3}, p99 x{:.3} (goal <= x{:.2}: {})",
        report.p50_ratio,
        report.p99_ratio,
        report.goal_ratio,
        if report.p50_ratio <= report.goal_ratio && report.p99_ratio <= report.goal_ratio {
            "met"
        } else {
            "missed"
        }
    );
}

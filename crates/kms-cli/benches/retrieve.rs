//! Bob's retrieve of a 3-of-5 policy on localhost: p50 and p99 latency (goal: p50 <= 10 ms), and
//! the same with the nodes' RPC endpoint 50 ms away (goal: p50 no more than 2 ms above).
//!
//! Starts a devnet (anvil, the contracts, five staked miners and their nodes in this process),
//! grants a 3-of-5 policy and encrypts a file, then times `N` retrievals of its capsule:
//! `Client::retrieve` (what `kms retrieve` does: refreshes the five node records from the chain,
//! asks the nodes concurrently, verifies every cfrag and the worker signatures, stops at three)
//! and `retrieve_from` (the nodes only, no chain reads). Every retrieval is fully checked.
//!
//! Every node reaches the chain through its own `kms_node::test_utils::RpcProxy` (over HTTP: the
//! nodes poll for blocks instead of subscribing), which counts the node's calls by method and
//! adds a delay to each when told. The timed retrievals alternate, in blocks of
//! [`BLOCK`] iterations, between no delay and [`RPC_DELAY`] per call, `N` of each, so that both
//! are measured in the same run under the same conditions. Bob's own chain reads (the node
//! records and answer terms of `Client::retrieve`) go to anvil directly, not through the proxies.
//!
//! The proxies' counters during the timed retrievals show which calls the nodes made while
//! serving them, next to the calls of an idle window as long as the delayed retrievals took (the
//! follower's polling and the duties' ticks, which run whether Bob asks or not): re-encryption
//! requests are served from the node's store and head view, with no per-request call.
//!
//! `cargo bench -p kms-cli --bench retrieve -- [--iterations N] [--out PATH]`; `script/bench`
//! runs it.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use anyhow::{ensure, Context, Result};
use kms_cli::devnet;
use kms_client::{retrieve::retrieve_from, Client, RetrieveOptions};
use kms_crypto::keys::MasterSecret;
use kms_node::test_utils::RpcProxy;
use serde_json::{json, Value};
use umbral_pre::{decrypt_reencrypted, encrypt, Capsule, SecretKey};

mod devnet_policy;

/// The delay each of the nodes' RPC calls gets in the delayed half of the run.
const RPC_DELAY: Duration = Duration::from_millis(50);
/// Iterations in a row with the same delay before switching.
const BLOCK: usize = 10;
/// The nodes of the devnet (a 3-of-5 policy).
const NODES: usize = 5;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let iterations: usize = devnet_policy::arg("--iterations").map_or(Ok(200), |s| s.parse())?;
    ensure!(iterations > 0, "--iterations must be positive");
    let out = devnet_policy::arg("--out").unwrap_or_else(|| "bench-results/retrieve.json".into());
    let args = devnet_policy::devnet_args(NODES)?;
    let port = args.port;
    // The proxies only forward once a node calls, after anvil is up.
    let mut proxies = Vec::with_capacity(NODES);
    for _ in 0..NODES {
        proxies.push(RpcProxy::start(&format!("http://127.0.0.1:{port}")).await?);
    }
    let node_rpc_urls = proxies
        .iter()
        .map(|p| p.url().to_owned())
        .collect::<Vec<_>>();
    let devnet = devnet::start_with_node_rpc(&args, &node_rpc_urls).await?;
    let result = run(&devnet, &proxies, iterations, &out).await;
    let _ = std::fs::remove_file(&args.deployments_file);
    devnet.shutdown().await;
    result
}

/// Latencies of one delay setting.
#[derive(Default)]
struct Samples {
    full: Vec<Duration>,
    nodes_only: Vec<Duration>,
    /// Calls the nodes made while these were timed, by method (all five proxies).
    calls: BTreeMap<String, u64>,
    /// Wall time of the timed blocks.
    elapsed: Duration,
}

impl Samples {
    fn summary(&mut self) -> Value {
        self.full.sort();
        self.nodes_only.sort();
        let stats = |sorted: &[Duration]| {
            json!({
                "p50Ms": percentile(sorted, 0.5),
                "p99Ms": percentile(sorted, 0.99),
                "meanMs": sorted.iter().sum::<Duration>().as_secs_f64() * 1000.0
                    / sorted.len() as f64,
            })
        };
        json!({
            "retrieve": stats(&self.full),
            "retrieveFromNodesOnly": stats(&self.nodes_only),
        })
    }

    fn calls_json(&self) -> Value {
        calls_json(
            &self.calls,
            self.elapsed,
            Some(self.full.len() + self.nodes_only.len()),
        )
    }
}

fn calls_json(
    calls: &BTreeMap<String, u64>,
    elapsed: Duration,
    retrievals: Option<usize>,
) -> Value {
    let total = calls.values().sum::<u64>();
    let mut value = json!({
        "seconds": elapsed.as_secs_f64(),
        "calls": total,
        "callsPerSecond": total as f64 / elapsed.as_secs_f64().max(1e-9),
        "byMethod": calls,
    });
    if let Some(retrievals) = retrievals {
        value["retrievals"] = json!(retrievals);
    }
    value
}

/// Every proxy's counters, summed by method.
fn snapshot(proxies: &[RpcProxy]) -> BTreeMap<String, u64> {
    let mut total = BTreeMap::new();
    for proxy in proxies {
        for (method, n) in proxy.calls_by_method() {
            *total.entry(method).or_default() += n;
        }
    }
    total
}

/// Adds `after - before` to `into`.
fn add_delta(
    into: &mut BTreeMap<String, u64>,
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) {
    for (method, n) in after {
        let delta = n - before.get(method).copied().unwrap_or(0);
        if delta > 0 {
            *into.entry(method.clone()).or_default() += delta;
        }
    }
}

fn set_delay(proxies: &[RpcProxy], delay: Duration) {
    for proxy in proxies {
        proxy.set_delay(delay);
    }
}

/// What one timed iteration needs.
struct Retriever<'a> {
    bob_client: &'a Client<alloy::providers::DynProvider>,
    policy: &'a kms_client::PolicyFile,
    bob_sk: &'a SecretKey,
    capsule: &'a Capsule,
    ciphertext: &'a [u8],
    options: &'a RetrieveOptions,
}

impl Retriever<'_> {
    /// One `Client::retrieve` and one `retrieve_from`, both checked; their latencies.
    async fn iteration(&self) -> Result<(Duration, Duration)> {
        let (policy, bob_sk, capsule) = (self.policy, self.bob_sk, self.capsule);
        let started = Instant::now();
        let retrieval = self
            .bob_client
            .retrieve(policy, bob_sk, std::slice::from_ref(capsule), self.options)
            .await?;
        let full = started.elapsed();
        let cfrags = retrieval.cfrags.into_iter().next().context("no cfrags")?;
        ensure!(cfrags.len() >= 3);
        let plaintext = decrypt_reencrypted(
            bob_sk,
            &policy.delegating_key,
            capsule,
            cfrags,
            self.ciphertext,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        ensure!(plaintext.len() == 31);

        // As `Client::retrieve` does, but without its chain reads, which are not the node's time.
        let raw_options = RetrieveOptions {
            terms: self
                .bob_client
                .answer_terms(policy.nodes.iter().map(|n| n.worker))
                .await?,
            ..self.options.clone()
        };
        let started = Instant::now();
        let retrieval = retrieve_from(
            self.bob_client.node_client(),
            policy,
            &policy.nodes,
            bob_sk,
            std::slice::from_ref(capsule),
            &raw_options,
        )
        .await?;
        let nodes_only = started.elapsed();
        ensure!(retrieval.cfrags[0].len() >= 3);
        Ok((full, nodes_only))
    }
}

async fn run(
    devnet: &devnet::Devnet,
    proxies: &[RpcProxy],
    iterations: usize,
    out: &str,
) -> Result<()> {
    // Every node committed, so that all five can be sampled.
    devnet_policy::wait_for_commitments(devnet).await?;
    let (alice, bob) = (MasterSecret::random(), MasterSecret::random());
    let policy = devnet_policy::grant(devnet, &alice, &bob, "bench", (3, 5), Vec::new()).await?;
    let (capsule, ciphertext) = encrypt(&policy.delegating_key, b"a 32-byte data key, say........")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let bob_client = devnet_policy::bob_client(devnet).await?;
    let bob_sk = bob.receiving_key();
    let options = RetrieveOptions::default();
    let retriever = Retriever {
        bob_client: &bob_client,
        policy: &policy,
        bob_sk: &bob_sk,
        capsule: &capsule,
        ciphertext: &ciphertext,
        options: &options,
    };

    // Warm up connections and caches, with each delay.
    for delay in [Duration::ZERO, RPC_DELAY] {
        set_delay(proxies, delay);
        for _ in 0..3 {
            retriever.iteration().await?;
        }
    }
    let (mut direct, mut delayed) = (Samples::default(), Samples::default());
    let mut block = 0;
    while direct.full.len() < iterations || delayed.full.len() < iterations {
        let (samples, delay) = if block % 2 == 0 {
            (&mut direct, Duration::ZERO)
        } else {
            (&mut delayed, RPC_DELAY)
        };
        block += 1;
        set_delay(proxies, delay);
        let n = BLOCK.min(iterations - samples.full.len());
        let before = snapshot(proxies);
        let started = Instant::now();
        for _ in 0..n {
            let (full, nodes_only) = retriever.iteration().await?;
            samples.full.push(full);
            samples.nodes_only.push(nodes_only);
        }
        samples.elapsed += started.elapsed();
        add_delta(&mut samples.calls, &before, &snapshot(proxies));
    }
    // The calls the nodes make anyway (follower polling, duty ticks), over as long a window.
    set_delay(proxies, RPC_DELAY);
    let idle_window = delayed.elapsed;
    eprintln!(
        "idle window of {:.1} s (nodes' calls without retrievals)...",
        idle_window.as_secs_f64()
    );
    let before = snapshot(proxies);
    tokio::time::sleep(idle_window).await;
    let mut idle = BTreeMap::new();
    add_delta(&mut idle, &before, &snapshot(proxies));
    set_delay(proxies, Duration::ZERO);

    let (direct_summary, delayed_summary) = (direct.summary(), delayed.summary());
    let difference = |measure: &str| {
        delayed_summary[measure]["p50Ms"]
            .as_f64()
            .unwrap_or(f64::NAN)
            - direct_summary[measure]["p50Ms"]
                .as_f64()
                .unwrap_or(f64::NAN)
    };
    let report = json!({
        "benchmark": "retrieve 3-of-5 on localhost",
        "iterations": iterations,
        "cores": std::thread::available_parallelism().map_or(1, usize::from),
        "nodesRpc": "one RpcProxy per node over HTTP (polling); Bob's chain reads go to anvil directly",
        "retrieve": direct_summary["retrieve"],
        "retrieveFromNodesOnly": direct_summary["retrieveFromNodesOnly"],
        "goalP50Ms": 10.0,
        "rpcDelayMs": RPC_DELAY.as_secs_f64() * 1000.0,
        "withRpcDelay": delayed_summary,
        "p50DifferenceMs": {
            "retrieve": difference("retrieve"),
            "retrieveFromNodesOnly": difference("retrieveFromNodesOnly"),
        },
        "goalP50DifferenceMs": 2.0,
        "nodeRpcCalls": {
            "duringRetrievesNoDelay": direct.calls_json(),
            "duringRetrievesWithDelay": delayed.calls_json(),
            "idleWithDelay": calls_json(&idle, idle_window, None),
        },
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(dir) = std::path::Path::new(out).parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, serde_json::to_string_pretty(&report)?)?;
    eprintln!("written to {out}");
    Ok(())
}

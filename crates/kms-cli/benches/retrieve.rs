//! Bob's retrieve of a 3-of-5 policy on localhost: p50 and p99 latency (goal: p50 <= 10 ms).
//!
//! Starts a devnet (anvil, the contracts, five staked miners and their nodes in this process),
//! grants a 3-of-5 policy and encrypts a file, then times `N` retrievals of its capsule:
//! `Client::retrieve` (what `kms retrieve` does: refreshes the five node records from the chain,
//! asks the nodes concurrently, verifies every cfrag and the worker signatures, stops at three)
//! and `retrieve_from` (the nodes only, no chain reads). Every retrieval is fully checked.
//!
//! `cargo bench -p kms-cli --bench retrieve -- [--iterations N] [--out PATH]`; `script/bench`
//! runs it.

use std::time::{Duration, Instant};

use alloy::{primitives::U256, providers::Provider};
use anyhow::{ensure, Context, Result};
use kms_cli::devnet::{self, DevnetArgs};
use kms_client::{retrieve::retrieve_from, Client, GrantRequest, HttpConfig, RetrieveOptions};
use kms_crypto::keys::MasterSecret;
use umbral_pre::{decrypt_reencrypted, encrypt};

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> Result<()> {
    let iterations: usize = arg("--iterations").map_or(Ok(200), |s| s.parse())?;
    let out = arg("--out").unwrap_or_else(|| "bench-results/retrieve.json".into());
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let args = DevnetArgs {
        port,
        nodes: 5,
        seconds_per_period: 3600,
        node_port: 0,
        deployments_file: format!("deployments/bench-{port}.json"),
        dir: None,
        demo: false,
        faulty_node: false,
    };
    let devnet = devnet::start(&args).await?;
    let result = run(&devnet, iterations, &out).await;
    let _ = std::fs::remove_file(format!("deployments/bench-{port}.json"));
    devnet.shutdown().await;
    result
}

async fn run(devnet: &devnet::Devnet, iterations: usize, out: &str) -> Result<()> {
    let d = devnet.chain.deployment().clone();
    // Wait for every node to commit, so that all five can be sampled.
    let escrow = d.staking_escrow(devnet.chain.read_provider());
    for miner in &devnet.miners {
        let deadline = Instant::now() + Duration::from_secs(60);
        while escrow
            .getStakerInfo(miner.staker)
            .call()
            .await?
            .lastCommittedPeriod
            == U256::ZERO
        {
            ensure!(Instant::now() < deadline, "a node did not commit");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let alice_index = devnet::alice_index(devnet);
    let alice_provider = devnet.provider(alice_index)?;
    let alice_client = Client::connect(alice_provider, d.clone(), HttpConfig::default()).await?;
    let (alice, bob) = (MasterSecret::random(), MasterSecret::random());
    let now = devnet
        .chain
        .read_provider()
        .get_block_by_number(Default::default())
        .await?
        .context("no block")?
        .header
        .timestamp;
    let request = GrantRequest {
        label: "bench".into(),
        owner: devnet.chain.address(alice_index)?,
        creator: devnet.chain.address(alice_index)?,
        delegating_key: alice.delegating_key("bench").public_key(),
        verifying_key: alice.signing_key().public_key(),
        receiving_key: bob.receiving_key().public_key(),
        threshold: 3,
        shares: 5,
        end_timestamp: (now / d.seconds_per_period + 10) * d.seconds_per_period,
        fee_rate: U256::from(1_000_000_000u64),
        seed: 1,
        salt: None,
    };
    let plan = alice_client.plan_grant(&request).await?;
    let grant = alice_client
        .execute_grant(&plan, &alice.delegating_key("bench"), &alice.signing_key())
        .await?;
    ensure!(grant.uploaded() == 5, "uploads failed");
    let policy = grant.policy;
    let (capsule, ciphertext) = encrypt(&policy.delegating_key, b"a 32-byte data key, say........")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let bob_client = Client::connect(
        devnet.provider(devnet::bob_index(devnet))?,
        d.clone(),
        HttpConfig::default(),
    )
    .await?;
    let bob_sk = bob.receiving_key();
    let options = RetrieveOptions::default();

    let mut full = Vec::with_capacity(iterations);
    let mut nodes_only = Vec::with_capacity(iterations);
    // Warm up connections and caches.
    for _ in 0..5 {
        bob_client
            .retrieve(&policy, &bob_sk, std::slice::from_ref(&capsule), &options)
            .await?;
    }
    for _ in 0..iterations {
        let started = Instant::now();
        let retrieval = bob_client
            .retrieve(&policy, &bob_sk, std::slice::from_ref(&capsule), &options)
            .await?;
        full.push(started.elapsed());
        let cfrags = retrieval.cfrags.into_iter().next().context("no cfrags")?;
        ensure!(cfrags.len() >= 3);
        let plaintext = decrypt_reencrypted(
            &bob_sk,
            &policy.delegating_key,
            &capsule,
            cfrags,
            &ciphertext,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        ensure!(plaintext.len() == 31);

        // As `Client::retrieve` does, but without its chain reads, which are not the node's time.
        let raw_options = RetrieveOptions {
            terms: bob_client
                .answer_terms(policy.nodes.iter().map(|n| n.worker))
                .await?,
            ..options.clone()
        };
        let started = Instant::now();
        let retrieval = retrieve_from(
            bob_client.node_client(),
            &policy,
            &policy.nodes,
            &bob_sk,
            std::slice::from_ref(&capsule),
            &raw_options,
        )
        .await?;
        nodes_only.push(started.elapsed());
        ensure!(retrieval.cfrags[0].len() >= 3);
    }
    full.sort();
    nodes_only.sort();
    let report = serde_json::json!({
        "benchmark": "retrieve 3-of-5 on localhost",
        "iterations": iterations,
        "cores": std::thread::available_parallelism().map_or(1, usize::from),
        "retrieve": {
            "p50Ms": percentile(&full, 0.5),
            "p99Ms": percentile(&full, 0.99),
            "meanMs": full.iter().sum::<Duration>().as_secs_f64() * 1000.0 / iterations as f64,
        },
        "retrieveFromNodesOnly": {
            "p50Ms": percentile(&nodes_only, 0.5),
            "p99Ms": percentile(&nodes_only, 0.99),
        },
        "goalP50Ms": 10.0,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(dir) = std::path::Path::new(out).parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, serde_json::to_string_pretty(&report)?)?;
    eprintln!("written to {out}");
    Ok(())
}

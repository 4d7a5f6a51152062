//! Chain catch-up: a node starting from block 0 over 10,000 blocks holding 1,000 policies that
//! name it. Reports the seconds until its follower has applied them all, and the node process's
//! peak resident memory (VmHWM).
//!
//! The node is the real `kms node run` process (a fresh store, confirmations 0, 2,000 blocks per
//! `eth_getLogs`), so the memory figure is the daemon's alone.
//!
//! `cargo bench -p kms-cli --bench catchup -- [--policies N] [--blocks N] [--out PATH]`;
//! `script/bench` runs it.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use alloy::{
    primitives::{FixedBytes, U256},
    providers::Provider,
};
use anyhow::{bail, ensure, Context, Result};
use kms_contracts::test_utils::TestChain;
use kms_crypto::wire::NodeStatus;

mod support;

const PERIOD: u64 = 3600;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::main]
async fn main() -> Result<()> {
    let policies: u64 = arg("--policies").map_or(Ok(1000), |s| s.parse())?;
    let blocks: u64 = arg("--blocks").map_or(Ok(10_000), |s| s.parse())?;
    let out = arg("--out").unwrap_or_else(|| "bench-results/catchup.json".into());

    let chain = TestChain::start(PERIOD).await?;
    let d = chain.deployment().clone();
    chain.stake_minimum(1, 2).await?;
    let staker = chain.address(1)?;
    let reader = chain.read_provider();
    let alice = chain.provider(3)?;
    let manager = d.policy_manager(&alice);
    let now = reader
        .get_block_by_number(Default::default())
        .await?
        .context("no block")?
        .header
        .timestamp;
    let end = U256::from((now / PERIOD + 5) * PERIOD);
    eprintln!("creating {policies} policies naming the node");
    let setup = Instant::now();
    for i in 0..policies {
        let mut salt = [0u8; 16];
        salt[..8].copy_from_slice(&i.to_be_bytes());
        let receipt = manager
            .createPolicy(
                FixedBytes(salt),
                chain.address(3)?,
                chain.address(4)?,
                end,
                vec![staker],
            )
            .value(U256::from(1_000_000_000u64 * 5))
            .send()
            .await?
            .get_receipt()
            .await?;
        ensure!(receipt.status(), "createPolicy {i} reverted");
    }
    let head = chain.head().await?;
    if head < blocks {
        chain.mine(blocks - head).await?;
    }
    let head = chain.head().await?;
    eprintln!(
        "chain ready at block {head} in {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    // The node: kms node init + run, from scratch.
    let node = support::init_node(&chain, 1, 2)?;
    let port = node.port;
    let started = Instant::now();
    let mut child = support::run_node(&node.config)?;
    let pid = child.id().context("no pid")?;
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/v1/status");
    let deadline = Instant::now() + Duration::from_secs(600);
    let elapsed = loop {
        if let Ok(response) = http.get(&url).send().await {
            if let Ok(status) = response.json::<NodeStatus>().await {
                if status.policies >= policies && status.cursor_block.unwrap_or(0) >= head {
                    break started.elapsed();
                }
            }
        }
        if let Some(exit) = child.try_wait()? {
            bail!("the node exited: {exit}");
        }
        ensure!(Instant::now() < deadline, "catch-up did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let peak = peak_rss_kib(pid);
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;

    let report = serde_json::json!({
        "benchmark": "node catch-up from block 0",
        "blocks": head,
        "policies": policies,
        "seconds": elapsed.as_secs_f64(),
        "blocksPerSecond": head as f64 / elapsed.as_secs_f64(),
        "peakRssMiB": peak.map(|k| k as f64 / 1024.0),
        "note": "from process start (keystore decryption, chain checks, node record) to the follower at the head with every policy recorded",
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(parent) = std::path::Path::new(&out).parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&report)?)?;
    eprintln!("written to {out}");
    Ok(())
}

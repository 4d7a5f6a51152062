//! The audit duty's CPU cost at the shipped defaults: two real `kms node run` processes on the
//! same chain, one with the default `[audit]` section (10 gwei a period, up to 5 peers, 4 rounds)
//! and one with audits off (`budget_per_period_wei = "0"`), through one whole period of the
//! deployment's default length (one day), with three more peers served in process. The audit's
//! CPU is the difference of the two processes' CPU time (`/proc/<pid>/stat`, user + system) over
//! the same window, in which the auditing node plans, creates and hands out its audit policy and
//! runs all its rounds; everything else the nodes do (following the chain, committing, serving)
//! is the same in both. Reported against the limit of 1% of one core over the period.
//!
//! Chain time is compressed (a day in about a minute): the audit's work is per period, so the
//! figure is what a day's audits cost; the per-tick overhead both nodes share (reading the
//! latest block) is not the audit's.
//!
//! `cargo bench -p kms-cli --bench audit_cpu -- [--out PATH]`; `script/bench` runs it.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use alloy::{primitives::U256, providers::Provider};
use anyhow::{ensure, Context, Result};
use kms_contracts::test_utils::TestChain;
use kms_node::{test_utils::local_settings, Settings};

mod support;

/// The deployment's default period (`script/Deploy.s.sol`).
const PERIOD: u64 = 86_400;
/// The chain travels through the period in steps this long.
const STEP: u64 = 1_800;
/// The limit: 1% of one core.
const GOAL: f64 = 0.01;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// User + system CPU seconds of process `pid` so far.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let after = stat.rsplit_once(')').context("odd /proc stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let (utime, stime): (u64, u64) = (fields[11].parse()?, fields[12].parse()?);
    let ticks: f64 = String::from_utf8(Command::new("getconf").arg("CLK_TCK").output()?.stdout)?
        .trim()
        .parse()?;
    Ok((utime + stime) as f64 / ticks)
}

/// A `kms node run` process for dev accounts (staker, worker), audits on or off.
struct NodeProcess {
    child: tokio::process::Child,
    url: String,
    _node: support::InitNode,
}

impl NodeProcess {
    fn pid(&self) -> Result<u32> {
        self.child.id().context("the node exited")
    }
}

async fn node_process(
    chain: &TestChain,
    staker: usize,
    worker: usize,
    audits: bool,
) -> Result<NodeProcess> {
    let node = support::init_node(chain, staker, worker)?;
    let config = node.config.clone();
    let text = std::fs::read_to_string(&config)?;
    ensure!(
        text.contains("[audit]"),
        "kms node init wrote no [audit] section:\n{text}"
    );
    if !audits {
        let off = text.replace(
            &format!(
                "budget_per_period_wei = \"{}\"",
                kms_node::audit::DEFAULT_AUDIT_BUDGET_WEI
            ),
            "budget_per_period_wei = \"0\"",
        );
        ensure!(off != text, "could not turn audits off in:\n{text}");
        std::fs::write(&config, off)?;
    }
    let child = support::run_node(&config)?;
    Ok(NodeProcess {
        child,
        url: format!("http://127.0.0.1:{}", node.port),
        _node: node,
    })
}

/// The audit answers a node recorded (`kms_node_audit_answers_total`, summed).
async fn audit_answers(http: &reqwest::Client, url: &str) -> Result<u64> {
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("kms_node_audit_answers_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

async fn wait_committed(chain: &TestChain, stakers: &[usize]) -> Result<()> {
    let escrow = chain.deployment().staking_escrow(chain.read_provider());
    let deadline = Instant::now() + Duration::from_secs(120);
    for &staker in stakers {
        let address = chain.address(staker)?;
        loop {
            let info = escrow.getStakerInfo(address).call().await?;
            if info.lastCommittedPeriod > U256::from(chain.current_period().await?) {
                break;
            }
            ensure!(Instant::now() < deadline, "staker {staker} did not commit");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let out = arg("--out").unwrap_or_else(|| "bench-results/audit-cpu.json".into());
    let chain = TestChain::start(PERIOD).await?;
    // Measured: 1/2 audits, 3/4 does not; peers 5/6, 7/8, 9/9 in process, audits off.
    for (staker, worker) in [(1, 2), (3, 4), (5, 6), (7, 8), (9, 9)] {
        chain.stake_minimum(staker, worker).await?;
    }
    let mut peers = Vec::new();
    for (staker, worker) in [(5, 6), (7, 8), (9, 9)] {
        let dir = tempfile::tempdir()?;
        let settings = Settings {
            poll_interval: Duration::from_millis(500),
            ..local_settings(&chain, staker, worker, dir.path().join("node.redb"))?
        };
        peers.push((kms_node::start(settings).await?, dir));
    }
    let control = node_process(&chain, 3, 4, false).await?;
    wait_committed(&chain, &[3, 5, 7, 9]).await?;
    let auditor = node_process(&chain, 1, 2, true).await?;
    wait_committed(&chain, &[1]).await?;

    // From the first second of a period: the auditor plans it at its first tick there.
    let into = chain.latest_timestamp().await? % PERIOD;
    chain.travel(PERIOD - into + 1).await?;
    let period = chain.current_period().await?;
    wait_committed(&chain, &[1, 3, 5, 7, 9]).await?;
    let (auditor_pid, control_pid) = (auditor.pid()?, control.pid()?);
    let (auditor_start, control_start) = (cpu_seconds(auditor_pid)?, cpu_seconds(control_pid)?);
    let started = Instant::now();
    let http = reqwest::Client::new();
    let answers_before = audit_answers(&http, &auditor.url).await?;
    eprintln!("through period {period} in steps of {STEP} s of chain time");
    let steps = (PERIOD - PERIOD / 20) / STEP;
    for _ in 0..steps {
        chain.travel(STEP).await?;
        // About two of the nodes' poll intervals (1 s by default) per step.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    // The last rounds finish: the count of answers settles (one per audited peer and round).
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut answers, mut stable_since) = (0, Instant::now());
    loop {
        let now = audit_answers(&http, &auditor.url).await? - answers_before;
        if now != answers {
            (answers, stable_since) = (now, Instant::now());
        } else if answers > 0 && stable_since.elapsed() > Duration::from_secs(5) {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the auditor's answers did not settle ({answers})"
        );
        chain.mine(1).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let view: kms_crypto::wire::NetworkView = http
        .get(format!("{}/v1/network", auditor.url))
        .send()
        .await?
        .json()
        .await?;
    let peers_audited = view
        .peers
        .iter()
        .filter(|p| p.availability.is_some())
        .count() as u64;
    ensure!(peers_audited > 0, "the auditor audited nobody");
    ensure!(
        chain.current_period().await? == period,
        "the period ended during the run"
    );
    let wall = started.elapsed().as_secs_f64();
    let auditor_cpu = cpu_seconds(auditor_pid)? - auditor_start;
    let control_cpu = cpu_seconds(control_pid)? - control_start;
    let audit_cpu = (auditor_cpu - control_cpu).max(0.0);
    let fraction = audit_cpu / PERIOD as f64;
    let hourly = audit_cpu / 3600.0;
    let report = serde_json::json!({
        "benchmark": "audit duty CPU at the shipped defaults",
        "periodSeconds": PERIOD,
        "auditAnswers": answers,
        "peersAudited": peers_audited,
        "rounds": answers / peers_audited,
        "wallSeconds": wall,
        "auditorCpuSeconds": auditor_cpu,
        "controlCpuSeconds": control_cpu,
        "auditCpuSecondsPerPeriod": audit_cpu,
        "cpuFraction": fraction,
        "goal": GOAL,
        "ratioToGoal": fraction / GOAL,
        "cpuFractionIfPeriodWereOneHour": hourly,
        "note": "audit CPU = auditing node minus an identical node with audits off, same chain, same window; one whole period of audits (plan, createPolicy, uploads, every round); fraction = that / the period",
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(parent) = std::path::Path::new(&out).parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&report)?)?;
    eprintln!("written to {out}");
    for (node, _) in peers {
        node.shutdown().await;
    }
    let _ = chain.read_provider().get_block_number().await;
    Ok(())
}

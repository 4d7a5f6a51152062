//! `--pinned`: the node's throughput on one core against the one-core ceiling of its own
//! cryptography (goal: at least [`GOAL_RATIO`] at every level).
//!
//! - The node is a process of its own (`--serve-node`: the real router and server loop, its
//!   store in a temporary directory, the kfrag uploaded through `POST .../kfrag`) started with
//!   `taskset -c 0`. Its `Limits` are the defaults (so `workers` is the one core it may use, as
//!   `kms node run` under `taskset` would have), but for the replay quota (see the module docs).
//! - The load generator is this process, pinned to core 1 (`taskset -a -p`) before any thread
//!   starts; its clients run on a single-threaded tokio runtime and send requests signed before
//!   each window, as in the default mode.
//! - The ceiling (`ceiling.rs`) runs in a third process, also on core 0, idle while the node is
//!   measured and the other way round. A ceiling window at the level's batch runs before the
//!   first level of each batch and after every level; a level's ratio is its cfrags/s over the
//!   mean of the ceiling windows just before and after it.
//!
//! Besides the rate, each level reports the node process's CPU time: how busy its core was
//! (below 1.0, the node waited for requests) and its CPU time per cfrag next to the ceiling's
//! (`cpu_ratio`: the share of the node's CPU that went into the ceiling's work, whatever the
//! load).

use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;

use crate::{
    args::Args,
    ceiling::CeilingWindow,
    fixture::{unix_now, Fixture, POLICY_ID},
    load::{
        http_client, run_level, upload_kfrag, LevelResult, LevelSpec, Node, RequestSource,
        REMEMBERED_REQUESTS,
    },
    proc::load_average,
    process::{command, pin_self, ChildProcess, NodeProcess, ServeConfig},
    report::{git, utc_now, write_report, DISTURBED_CORES},
};

/// The goal: the node's cfrags/s over the ceiling's, at every level.
pub(crate) const GOAL_RATIO: f64 = 0.85;
const NODE_CORE: usize = 0;
const LOAD_CORE: usize = 1;

#[derive(Debug, Serialize)]
struct PinnedLevel {
    batch: usize,
    clients: usize,
    /// Mean of the ceiling windows just before and after the level.
    ceiling_cfrags_per_sec: f64,
    ratio_to_ceiling: f64,
    /// The ceiling's CPU time per cfrag over the node's (both on core 0).
    cpu_ratio: Option<f64>,
    node: LevelResult,
}

#[derive(Debug, Serialize)]
struct PinnedReport {
    bench: &'static str,
    date: String,
    git_commit: Option<String>,
    git_dirty: Option<bool>,
    cores: usize,
    load_average_at_start: Option<f64>,
    node_core: usize,
    load_generator_core: usize,
    /// The node's `Limits::workers` (its default under `taskset -c 0`).
    node_workers: usize,
    max_remembered_per_policy: usize,
    seconds_per_level: f64,
    goal_ratio: f64,
    ceiling: &'static str,
    /// Every ceiling window, in order.
    ceiling_windows: Vec<CeilingWindow>,
    levels: Vec<PinnedLevel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn ceiling_window(ceiling: &mut ChildProcess, seconds: f64, batch: usize) -> Result<CeilingWindow> {
    ceiling.send(&format!("{seconds} {batch}"))?;
    let window = ceiling.read::<CeilingWindow>().context("ceiling window")?;
    eprintln!(
        "ceiling (batch {batch}, one thread on core {NODE_CORE}): {:.0} cfrags/s",
        window.cfrags_per_sec
    );
    Ok(window)
}

pub(crate) fn run_pinned(args: &Args) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    ensure!(
        cores >= 2,
        "--pinned needs two cores (the node on core {NODE_CORE}, the load on core {LOAD_CORE})"
    );
    // Before any thread starts: every thread of this process inherits the affinity.
    pin_self(LOAD_CORE)?;
    eprintln!(
        "pinned: node and ceiling on core {NODE_CORE}, load generator on core {LOAD_CORE}, {} s \
         per measurement",
        args.seconds
    );
    let fx = Fixture::new()?;
    let dir = tempfile::tempdir().context("temporary directory")?;
    let node_process = NodeProcess::start(
        Some(NODE_CORE),
        &ServeConfig {
            store: dir.path().join("node.redb"),
            policies: vec![(POLICY_ID, fx.keys.signer_address(), unix_now() + 24 * 3600)],
        },
    )?;
    let mut ceiling = ChildProcess::spawn(command(Some(NODE_CORE), &["--ceiling-worker"])?)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let node = Arc::new(Node {
        url: node_process.policy_url(POLICY_ID),
        http: http_client()?,
        _guard: Box::new(()),
    });
    runtime.block_on(upload_kfrag(&fx, &node))?;
    let source = Arc::new(RequestSource::for_fixture(&fx));

    let mut report = PinnedReport {
        bench: "kms-node on one core (taskset) vs the one-core ceiling \
                (crates/kms-node/benches/throughput --pinned)",
        date: utc_now(),
        git_commit: git(&["rev-parse", "--short", "HEAD"]),
        git_dirty: git(&["status", "--porcelain"]).map(|s| !s.is_empty()),
        cores,
        load_average_at_start: load_average(),
        node_core: NODE_CORE,
        load_generator_core: LOAD_CORE,
        node_workers: node_process.listening.workers,
        max_remembered_per_policy: REMEMBERED_REQUESTS,
        seconds_per_level: args.seconds,
        goal_ratio: GOAL_RATIO,
        ceiling: "one thread: request message + Bob's signature check, Capsule::from_bytes per \
                  capsule, reencrypt + SignedCFrag::sign per capsule (no HTTP, JSON, base64)",
        ceiling_windows: Vec::new(),
        levels: Vec::new(),
        error: None,
    };
    let outcome = (|| -> Result<()> {
        for &batch in &args.batches {
            let mut before = ceiling_window(&mut ceiling, args.seconds, batch)?;
            report.ceiling_windows.push(before);
            for &clients in &args.clients {
                let spec = LevelSpec {
                    batch,
                    clients,
                    seconds: args.seconds,
                    raw_rate: before.cfrags_per_sec,
                    inline_signing: false,
                    sign_threads: 1,
                    node_pid: Some(node_process.process.pid()),
                };
                eprintln!("node: batch {batch}, {clients} clients...");
                let level = runtime.block_on(run_level(&fx, &node, &source, &spec))?;
                let after = ceiling_window(&mut ceiling, args.seconds, batch)?;
                report.ceiling_windows.push(after);
                let ceiling_rate = (before.cfrags_per_sec + after.cfrags_per_sec) / 2.0;
                let ceiling_cpu = before
                    .cpu_us_per_cfrag
                    .zip(after.cpu_us_per_cfrag)
                    .map(|(b, a)| (b + a) / 2.0);
                let cpu_ratio = ceiling_cpu
                    .zip(level.node_process)
                    .map(|(c, n)| c / n.cpu_us_per_cfrag);
                eprintln!(
                    "  {:.0} cfrags/s ({:.1}% of the ceiling), node core busy {}, p50 {:.2} ms, \
                     p99 {:.2} ms",
                    level.cfrags_per_sec,
                    level.cfrags_per_sec / ceiling_rate * 100.0,
                    level
                        .node_process
                        .map_or_else(|| "-".to_owned(), |n| format!("{:.2}", n.cores)),
                    level.p50_ms,
                    level.p99_ms
                );
                let failed = level.errors > 0;
                let first_error = level.first_error.clone();
                report.levels.push(PinnedLevel {
                    batch,
                    clients,
                    ceiling_cfrags_per_sec: ceiling_rate,
                    ratio_to_ceiling: level.cfrags_per_sec / ceiling_rate,
                    cpu_ratio,
                    node: level,
                });
                if failed {
                    bail!(
                        "batch {batch}, {clients} clients: a request failed: {}",
                        first_error.unwrap_or_default()
                    );
                }
                before = after;
            }
        }
        Ok(())
    })();
    if let Err(e) = &outcome {
        report.error = Some(format!("{e:#}"));
    }
    print_pinned(&report);
    write_report(&report, &args.out)?;
    outcome
}

fn print_pinned(report: &PinnedReport) {
    println!();
    println!(
        "node on core {} (workers {}), load generator on core {}, ceiling: {} (load average at \
         start {})",
        report.node_core,
        report.node_workers,
        report.load_generator_core,
        report.ceiling,
        report
            .load_average_at_start
            .map_or_else(|| "-".to_owned(), |l| format!("{l:.2}")),
    );
    println!(
        "{:>5} {:>7} {:>9} {:>9} {:>7} {:>9} {:>9} {:>8} {:>8} {:>6} {:>13}",
        "batch",
        "clients",
        "cfrags/s",
        "ceiling",
        "ratio",
        "cpu ratio",
        "node core",
        "p50 ms",
        "p99 ms",
        "goal",
        "clients/others"
    );
    for level in &report.levels {
        println!(
            "{:>5} {:>7} {:>9.0} {:>9.0} {:>6.1}% {:>9} {:>9} {:>8.2} {:>8.2} {:>6} {:>13}",
            level.batch,
            level.clients,
            level.node.cfrags_per_sec,
            level.ceiling_cfrags_per_sec,
            level.ratio_to_ceiling * 100.0,
            level
                .cpu_ratio
                .map_or_else(|| "-".to_owned(), |c| format!("{:.1}%", c * 100.0)),
            level
                .node
                .node_process
                .map_or_else(|| "-".to_owned(), |n| format!("{:.2}", n.cores)),
            level.node.p50_ms,
            level.node.p99_ms,
            if level.ratio_to_ceiling >= report.goal_ratio {
                "met"
            } else {
                "missed"
            },
            load_text(&level.node),
        );
    }
    println!(
        "ceiling: mean of the ceiling windows just before and after the level; ratio: node \
         cfrags/s over that (goal {:.0}%); cpu ratio: the ceiling's CPU time per cfrag over the \
         node's; node core: how busy the node's core was; clients/others: cores used by the load \
         generator / by processes other than it and the node (* above {DISTURBED_CORES}: the \
         window was disturbed)",
        report.goal_ratio * 100.0
    );
}

/// The load generator's cores and the other processes' (the node's own time left out).
fn load_text(level: &LevelResult) -> String {
    let Some(cpu) = level.cpu else {
        return "-".to_owned();
    };
    let node = level.node_process.map_or(0.0, |n| n.cores);
    let others = (cpu.other_processes_cores - node).max(0.0);
    format!(
        "{:.2}/{:.2}{}",
        cpu.this_process_cores,
        others,
        if others > DISTURBED_CORES { "*" } else { "" }
    )
}

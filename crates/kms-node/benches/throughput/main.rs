//! Re-encryption throughput of a node over HTTP on localhost, next to the raw rate of the same
//! work (`umbral_pre::reencrypt` + the worker's answer signature + the cfrag's serialization)
//! measured in the same run on the same cores.
//!
//! ```sh
//! cargo bench -p kms-node --bench throughput -- [--seconds N] [--clients 1,8,64] [--batch 1,16]
//!     [--out PATH] [--inline-signing] [--min-ratio 0.8] [--no-breakdown]
//! cargo bench -p kms-node --bench throughput -- --pinned [--seconds N] [--clients ..] [--batch ..]
//! cargo bench -p kms-node --bench throughput -- --scale [--policies 100000] [--requests 3000]
//! script/bench-node [same flags]
//! ```
//!
//! What runs:
//!
//! 1. **Raw rate**: one thread per core (`available_parallelism`) re-encrypts capsules with a
//!    `VerifiedKeyFrag`, signs each answer with the worker key (`kms_crypto::answer::sign_answer`)
//!    and serializes the cfrag (`to_bytes`), for `--seconds`. A raw window runs before every node
//!    level and one after the last: each level's ratio is taken against the mean of the raw
//!    windows just before and after it, as the core speed of a VM drifts over a run.
//! 2. **Node rate**: the real router (`kms_node::router`) with a fake policy directory (the policy
//!    is always live) and a redb store in a temporary directory, served by `axum::serve` on
//!    `127.0.0.1:0` in the bench's tokio runtime (one worker thread per core). The kfrag goes in
//!    through the real `POST /v1/policies/{id}/kfrag`. For every (batch, clients) pair, `clients`
//!    tokio tasks share one `reqwest::Client` and post signed `ReencryptRequest`s in a loop until
//!    the deadline; only 200 answers with one cfrag per capsule are counted, any other answer
//!    stops the bench with an error (after the results so far are written). The first answer of
//!    every level is checked in full (every cfrag verifies, every signature recovers to the
//!    worker), outside the timed window.
//! 3. **Breakdown** (unless `--no-breakdown`): single-thread costs of each step the node and the
//!    client perform, to explain the gap between the two rates.
//!
//! The clients run on the same cores as the node. By default their requests are signed before
//! each timed window (`requests_presigned`), so what they do inside it is HTTP and JSON only;
//! `--inline-signing` signs each request inside the window, as a real Bob would
//! (`requests_signed_in_window` says how many were). Every request is unique (the node's replay
//! guard answers 409 to a repeat): its (timestamp, first capsule) pair is never reused in a run.
//!
//! The node's [`Limits`](kms_node::Limits) are the defaults except `max_remembered_per_policy`,
//! raised to [`REMEMBERED_REQUESTS`](load::REMEMBERED_REQUESTS): no request expires from the
//! replay guard within a run (they are remembered for `max_clock_skew_secs` = 300 s), and the
//! bench's one policy would be answered 429 after the default 10,000 requests.
//!
//! Besides the rates, every window reports the cores this process and all other processes used
//! (from `/proc`; a window marked `*` was disturbed by other work) and this process's CPU time
//! per cfrag, whose raw/node ratio (`cpu_ratio_to_raw`) hardly depends on other load. A run takes
//! about `(2 * levels + 1) * seconds`, plus pre-signing and the breakdown.
//!
//! Output: a table on stdout and a JSON file (`--out`, default
//! `<target dir>/bench/node-throughput.json`). A relative `--out` is taken from `KMS_BENCH_CWD`
//! (set by `script/bench-node` to where it was called from), else from the workspace root.
//!
//! Two other modes run the node as a process of its own (this executable with `--serve-node`,
//! see `process.rs`) and measure something else:
//!
//! - `--pinned` (`pinned.rs`): the node pinned to core 0 with `taskset`, the clients on core 1,
//!   against the one-core ceiling of the node's own cryptography (`ceiling.rs`, run on core 0
//!   between the levels); goal >= 85% at batch 1 and 16. Output `node-pinned.json`.
//! - `--scale` (`scale.rs`): the re-encryption latency of a node holding `--policies` policies
//!   (100,000) next to one holding 10, with their memory and store files; goal p50 and p99
//!   within 10%. Output `node-scale.json`.

mod args;
mod breakdown;
mod ceiling;
mod fixture;
mod load;
mod pinned;
mod proc;
mod process;
mod report;
mod scale;

use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};

use crate::{
    args::{parse_args, Mode},
    breakdown::{breakdown, breakdown_store, ceiling},
    fixture::{Fixture, CAPSULE_POOL},
    load::{
        raw_rate, run_level, start_node, LevelSpec, RawResult, RequestSource, REMEMBERED_REQUESTS,
    },
    proc::load_average,
    report::{git, print_table, utc_now, write_report, Report},
};

const GOAL_RATIO: f64 = 0.8;

fn main() -> Result<()> {
    // The processes `--pinned` and `--scale` start: this executable again.
    let mut argv = std::env::args().skip(1);
    match argv.next().as_deref() {
        Some("--serve-node") => {
            return process::serve_node(&argv.next().context("--serve-node CONFIG")?)
        }
        Some("--ceiling-worker") => return ceiling::ceiling_worker(),
        _ => {}
    }
    let args = parse_args()?;
    match args.mode {
        Mode::Pinned => return pinned::run_pinned(&args),
        Mode::Scale => return scale::run_scale(&args),
        Mode::InProcess => {}
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    eprintln!(
        "setting up: {CAPSULE_POOL} capsules, {cores} cores, {} s per measurement",
        args.seconds
    );
    let fx = Fixture::new()?;

    let raw_window = |fx: &Fixture| -> Result<RawResult> {
        let raw = raw_rate(fx, cores, args.seconds)?;
        eprintln!(
            "raw rate ({cores} threads): {:.0} cfrags/s",
            raw.cfrags_per_sec
        );
        Ok(raw)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let source = Arc::new(RequestSource::for_fixture(&fx));

    let mut report = Report {
        bench: "kms-node re-encryption over HTTP (crates/kms-node/benches/throughput)",
        date: utc_now(),
        git_commit: git(&["rev-parse", "--short", "HEAD"]),
        git_dirty: git(&["status", "--porcelain"]).map(|s| !s.is_empty()),
        cores,
        load_average_at_start: load_average(),
        tokio_worker_threads: cores,
        node_workers: 0,
        max_remembered_per_policy: REMEMBERED_REQUESTS,
        seconds_per_level: args.seconds,
        client_signing: if args.inline_signing {
            "inline"
        } else {
            "presigned"
        },
        raw: Vec::new(),
        raw_cfrags_per_sec: 0.0,
        goal_ratio: GOAL_RATIO,
        levels: Vec::new(),
        breakdown: Vec::new(),
        error: None,
    };

    // Raw and node windows alternate, so that each level is compared with raw windows measured
    // seconds before and after it (a VM's core speed drifts over a run).
    let outcome = runtime.block_on(async {
        let (node, limits) = start_node(&fx).await?;
        report.node_workers = limits.workers;
        let node = Arc::new(node);
        for &batch in &args.batches {
            for &clients in &args.clients {
                let raw = raw_window(&fx)?;
                let spec = LevelSpec {
                    batch,
                    clients,
                    seconds: args.seconds,
                    raw_rate: raw.cfrags_per_sec,
                    inline_signing: args.inline_signing,
                    sign_threads: cores,
                    node_pid: None,
                };
                report.raw.push(raw);
                eprintln!("node: batch {batch}, {clients} clients...");
                let level = run_level(&fx, &node, &source, &spec).await?;
                eprintln!(
                    "  {:.0} cfrags/s, p50 {:.2} ms, p99 {:.2} ms",
                    level.cfrags_per_sec, level.p50_ms, level.p99_ms
                );
                let failed = level.errors > 0;
                let first_error = level.first_error.clone();
                report.levels.push(level);
                if failed {
                    bail!(
                        "batch {batch}, {clients} clients: a request failed: {}",
                        first_error.unwrap_or_default()
                    );
                }
            }
        }
        Ok(())
    });
    drop(runtime);
    let outcome = outcome.and_then(|()| {
        report.raw.push(raw_window(&fx)?);
        Ok(())
    });

    report.raw_cfrags_per_sec =
        report.raw.iter().map(|r| r.cfrags_per_sec).sum::<f64>() / report.raw.len().max(1) as f64;
    for (i, level) in report.levels.iter_mut().enumerate() {
        let around = &report.raw[i..report.raw.len().min(i + 2)];
        let n = around.len().max(1) as f64;
        level.raw_cfrags_per_sec = around.iter().map(|r| r.cfrags_per_sec).sum::<f64>() / n;
        level.ratio_to_raw = level.cfrags_per_sec / level.raw_cfrags_per_sec;
        let raw_cpu = around
            .iter()
            .map(|r| r.cpu.map(|c| c.cpu_us_per_cfrag))
            .sum::<Option<f64>>()
            .map(|total| total / n);
        level.cpu_ratio_to_raw = raw_cpu.zip(level.cpu).map(|(r, c)| r / c.cpu_us_per_cfrag);
    }
    if let Err(e) = outcome {
        report.error = Some(format!("{e:#}"));
        print_table(&report);
        write_report(&report, &args.out)?;
        return Err(e);
    }

    if args.breakdown {
        eprintln!("breakdown...");
        let dir = tempfile::tempdir().context("temporary directory")?;
        let store = breakdown_store(&fx, dir.path())?;
        report.breakdown = breakdown(&fx, &store)?;
        for level in &mut report.levels {
            level.ceiling_ratio = ceiling(&report.breakdown, level.batch, args.inline_signing);
        }
    }

    print_table(&report);
    write_report(&report, &args.out)?;
    if let Some(min) = args.min_ratio {
        let below = report
            .levels
            .iter()
            .filter(|l| l.ratio_to_raw < min)
            .map(|l| {
                format!(
                    "batch {} x {} clients: {:.2}",
                    l.batch, l.clients, l.ratio_to_raw
                )
            })
            .collect::<Vec<_>>();
        ensure!(
            below.is_empty(),
            "node/raw below {min}: {}",
            below.join(", ")
        );
    }
    Ok(())
}

//! The report: the table on stdout and the JSON file.

use std::{path::Path, process::Command};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::{
    args::workspace_root,
    breakdown::Step,
    fixture::unix_now,
    load::{LevelResult, RawResult},
    proc::CpuUse,
};

#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) bench: &'static str,
    pub(crate) date: String,
    pub(crate) git_commit: Option<String>,
    pub(crate) git_dirty: Option<bool>,
    pub(crate) cores: usize,
    /// The 1-minute load average when the bench started (other work on the machine skews it).
    pub(crate) load_average_at_start: Option<f64>,
    pub(crate) tokio_worker_threads: usize,
    pub(crate) node_workers: usize,
    pub(crate) max_remembered_per_policy: usize,
    pub(crate) seconds_per_level: f64,
    pub(crate) client_signing: &'static str,
    /// The raw windows in order: before the first level, between levels, after the last.
    pub(crate) raw: Vec<RawResult>,
    /// Mean of the raw windows (each level's ratio is taken against the two around it).
    pub(crate) raw_cfrags_per_sec: f64,
    pub(crate) goal_ratio: f64,
    pub(crate) levels: Vec<LevelResult>,
    pub(crate) breakdown: Vec<Step>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

pub(crate) fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(workspace_root())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// `YYYY-MM-DDTHH:MM:SSZ` of now (UTC), without a date crate.
pub(crate) fn utc_now() -> String {
    let secs = unix_now();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (non-negative here).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Other processes using more cores than this during a window make its numbers unreliable.
pub(crate) const DISTURBED_CORES: f64 = 0.15;

pub(crate) fn disturbed(cpu: Option<CpuUse>) -> bool {
    cpu.is_some_and(|c| c.other_processes_cores > DISTURBED_CORES)
}

pub(crate) fn cpu_text(cpu: Option<CpuUse>) -> String {
    cpu.map_or_else(
        || "-".to_owned(),
        |c| {
            format!(
                "{:.2}/{:.2}{}",
                c.this_process_cores,
                c.other_processes_cores,
                if disturbed(cpu) { "*" } else { "" }
            )
        },
    )
}

pub(crate) fn print_table(report: &Report) {
    println!();
    let raw_text = |raw: &RawResult| {
        format!(
            "{:.0} cfrags/s, {} CPU-µs/cfrag (cores ours/others {})",
            raw.cfrags_per_sec,
            raw.cpu
                .map_or_else(|| "-".to_owned(), |c| format!("{:.0}", c.cpu_us_per_cfrag)),
            cpu_text(raw.cpu)
        )
    };
    println!(
        "raw reencrypt + sign_answer + to_bytes on {} threads: {:.0} cfrags/s (mean of {} windows, \
         one before each level and one after the last)",
        report.raw.first().map_or(0, |r| r.threads),
        report.raw_cfrags_per_sec,
        report.raw.len()
    );
    for (i, raw) in report.raw.iter().enumerate() {
        println!("  raw window {i}: {}", raw_text(raw));
    }
    println!(
        "node over HTTP on 127.0.0.1, clients {} (same {} cores; load average at start {}):",
        if report.client_signing == "inline" {
            "signing each request in the window"
        } else {
            "sending requests signed before the window"
        },
        report.cores,
        report
            .load_average_at_start
            .map_or_else(|| "-".to_owned(), |l| format!("{l:.2}")),
    );
    println!(
        "{:>5} {:>7} {:>9} {:>8} {:>7} {:>9} {:>7} {:>8} {:>8} {:>8} {:>6} {:>6} {:>10}",
        "batch",
        "clients",
        "cfrags/s",
        "raw c/s",
        "ratio",
        "cpu ratio",
        "ceiling",
        "p50 ms",
        "p99 ms",
        "requests",
        "errors",
        "goal",
        "cores us/oth"
    );
    for level in &report.levels {
        println!(
            "{:>5} {:>7} {:>9.0} {:>8.0} {:>6.1}% {:>9} {:>7} {:>8.2} {:>8.2} {:>8} {:>6} {:>6} {:>10}",
            level.batch,
            level.clients,
            level.cfrags_per_sec,
            level.raw_cfrags_per_sec,
            level.ratio_to_raw * 100.0,
            level
                .cpu_ratio_to_raw
                .map_or_else(|| "-".to_owned(), |c| format!("{:.1}%", c * 100.0)),
            level
                .ceiling_ratio
                .map_or_else(|| "-".to_owned(), |c| format!("{:.1}%", c * 100.0)),
            level.p50_ms,
            level.p99_ms,
            level.requests,
            level.errors,
            if level.ratio_to_raw >= report.goal_ratio {
                "met"
            } else {
                "missed"
            },
            cpu_text(level.cpu),
        );
    }
    println!(
        "raw c/s: mean of the raw windows just before and after the level; ratio: node cfrags/s \
         over that (goal {:.0}%); cpu ratio: raw CPU time per cfrag \
         over the node's, clients included (the ratio if the node saturated an idle machine); \
         ceiling: the best ratio the single-thread costs below allow at that batch, with HTTP \
         free; cores: used by this process / by other processes",
        report.goal_ratio * 100.0
    );
    let any_disturbed = report.raw.iter().any(|r| disturbed(r.cpu))
        || report.levels.iter().any(|l| disturbed(l.cpu));
    if any_disturbed {
        println!(
            "* other processes used more than {DISTURBED_CORES} cores in that window: its numbers \
             (and the ratios, if it is a raw window) are skewed; rerun on an idle machine"
        );
    }
    if !report.breakdown.is_empty() {
        println!("single-thread cost of each step (µs):");
        for step in &report.breakdown {
            println!("  {:>8.1}  {:<20} {}", step.micros, step.paid_by, step.step);
        }
    }
}

pub(crate) fn write_report(report: &impl Serialize, out: &Path) -> Result<()> {
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    }
    let json = serde_json::to_string_pretty(report)?;
    std::fs::write(out, json + "\n").with_context(|| format!("write {}", out.display()))?;
    println!("results written to {}", out.display());
    Ok(())
}

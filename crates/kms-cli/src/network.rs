//! `kms network status`: every staker with a node record, whether its node answers now as its
//! record says, and what the other nodes' audits saw of it (`kms_client::network`).

use std::{fmt::Write as _, time::Duration};

use anyhow::Result;
use clap::{Args, Subcommand};
use kms_client::{network_status, HttpConfig, NetworkStatus, NodeClient};

use crate::{
    common::format_tokens,
    error::CliError,
    opts::{Chain, ChainOpts},
};

/// `kms network ...`: the subcommand, and the chain it reads.
#[derive(Debug, Args)]
pub struct NetworkArgs {
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: NetworkSubcommand,
    /// The chain and deployment to use.
    #[command(flatten)]
    pub chain: ChainOpts,
}

impl NetworkArgs {
    /// Runs the subcommand.
    pub async fn run(self) -> Result<()> {
        match self.command {
            NetworkSubcommand::Status(args) => args.run(&self.chain).await,
        }
    }
}

/// `kms network ...`.
#[derive(Debug, Subcommand)]
pub enum NetworkSubcommand {
    /// Every staker with a node record: stake, worker, URL, last commitment, whether its node
    /// answers now as its record says, and what the other nodes' audits saw of it.
    ///
    /// Example: kms network status --timeout 3 --json
    Status(StatusArgs),
}

/// `kms network status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Seconds to wait for each node's answer (one attempt; the nodes are asked at once).
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 3,
        value_parser = clap::value_parser!(u64).range(1..=600)
    )]
    pub timeout: u64,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

impl StatusArgs {
    /// Reads the stakers, asks their nodes, prints the table (or the JSON).
    pub async fn run(self, chain: &ChainOpts) -> Result<()> {
        // Reads only: no account, so a keystore in the environment asks for no password.
        let allow_plain_http = chain.allow_plain_http;
        let chain = Chain::connect(chain, None).await?;
        let timeout = Duration::from_secs(self.timeout);
        let nodes = NodeClient::new(HttpConfig {
            connect_timeout: timeout,
            request_timeout: timeout,
            attempts: 1,
            backoff: Duration::ZERO,
            allow_plain_http,
        })?;
        let status = network_status(&chain.provider, &chain.deployment, &nodes)
            .await
            .map_err(CliError::from)?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&status)?);
        } else {
            print!("{}", render(&status));
        }
        Ok(())
    }
}

/// The last commitment, relative to the current period.
fn commitment(last: u64, current: u64) -> String {
    if last == 0 {
        return "never".into();
    }
    let when = match current.checked_sub(last) {
        None if last == current + 1 => "next".to_owned(),
        None => format!("in {} periods", last - current),
        Some(0) => "current".to_owned(),
        Some(1) => "previous".to_owned(),
        Some(ago) => format!("{ago} periods ago"),
    };
    format!("{last} ({when})")
}

/// The status as a table, a line on the chain above it and the nodes whose audit records were
/// not counted below it.
fn render(status: &NetworkStatus) -> String {
    let mut out = String::new();
    let at = format!(
        "chain {}, block {}, period {}",
        status.chain_id, status.block, status.current_period
    );
    if status.stakers.is_empty() {
        let _ = writeln!(out, "no staker has published a node record ({at})");
        return out;
    }
    let _ = writeln!(
        out,
        "{} stakers with a node record ({at})\n",
        status.stakers.len()
    );
    let header = [
        "STAKER",
        "STAKE (KMS)",
        "WORKER",
        "URL",
        "LAST COMMITMENT",
        "REACHABLE NOW",
        "AUDITS SERVED/FAILED",
    ];
    let rows: Vec<[String; 7]> = status
        .stakers
        .iter()
        .map(|s| {
            let reachable = match &s.unreachable_reason {
                None => "yes".to_owned(),
                Some(reason) => format!("no: {reason}"),
            };
            let audits = match s.audits.reporters {
                0 => "-".to_owned(),
                n => format!(
                    "{}/{} ({n} node{})",
                    s.audits.totals.served,
                    s.audits.failed,
                    if n == 1 { "" } else { "s" }
                ),
            };
            [
                s.staker.to_string(),
                format_tokens(s.stake),
                s.worker.to_string(),
                s.url.clone(),
                commitment(s.last_committed_period, status.current_period),
                reachable,
                audits,
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut line = |cells: &[&str]| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<width$}  ");
            }
        }
        let _ = writeln!(out, "{}", text.trim_end());
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    let counted = status.reporters.iter().filter(|r| r.counted).count();
    let _ = writeln!(
        out,
        "\naudits: what {counted} of {} reachable nodes recorded of the others in their recent \
         periods",
        status.reporters.len()
    );
    for reporter in status.reporters.iter().filter(|r| !r.counted) {
        let _ = writeln!(
            out,
            "  not counted: {} ({}): {}",
            reporter.staker,
            reporter.url,
            reporter.reason.as_deref().unwrap_or("")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{Address, U256};
    use kms_client::{
        network::{Audits, ReporterStatus},
        StakerStatus,
    };

    use super::*;

    #[test]
    fn commitments_relative_to_the_current_period() {
        assert_eq!(commitment(0, 9), "never");
        assert_eq!(commitment(10, 9), "10 (next)");
        assert_eq!(commitment(9, 9), "9 (current)");
        assert_eq!(commitment(8, 9), "8 (previous)");
        assert_eq!(commitment(5, 9), "5 (4 periods ago)");
        assert_eq!(commitment(12, 9), "12 (in 3 periods)");
    }

    #[test]
    fn the_table() {
        let row = |n: u8, reason: Option<&str>, reporters, served, failed| StakerStatus {
            staker: Address::repeat_byte(n),
            stake: U256::from(15u64) * U256::from(10u64).pow(U256::from(21u64)),
            locked_now: U256::ZERO,
            worker: Address::repeat_byte(0x80 | n),
            url: format!("http://node-{n}:9151"),
            last_committed_period: 10,
            reachable: reason.is_none(),
            unreachable_reason: reason.map(str::to_owned),
            audits: Audits {
                reporters,
                failed,
                totals: kms_crypto::wire::Availability {
                    served,
                    ..Default::default()
                },
            },
        };
        let status = NetworkStatus {
            chain_id: 31_337,
            block: 42,
            current_period: 9,
            stakers: vec![
                row(1, None, 2, 12, 3),
                row(2, Some("HTTP 503"), 1, 0, 4),
                row(3, None, 0, 0, 0),
            ],
            reporters: vec![
                ReporterStatus {
                    staker: Address::repeat_byte(1),
                    url: "http://node-1:9151".into(),
                    counted: true,
                    from_period: Some(7),
                    current_period: Some(9),
                    reason: None,
                },
                ReporterStatus {
                    staker: Address::repeat_byte(3),
                    url: "http://node-3:9151".into(),
                    counted: false,
                    from_period: None,
                    current_period: None,
                    reason: Some("HTTP 404 (a version without /v1/network)".into()),
                },
            ],
        };
        let table = render(&status);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "3 stakers with a node record (chain 31337, block 42, period 9)"
        );
        assert!(lines[2].starts_with("STAKER "), "{table}");
        assert!(lines[3].contains("15000.000000000000000000"), "{table}");
        assert!(lines[3].contains("10 (next)"), "{table}");
        assert!(
            lines[3].ends_with("  yes            12/3 (2 nodes)"),
            "{table}"
        );
        assert!(
            lines[4].ends_with("  no: HTTP 503   0/4 (1 node)"),
            "{table}"
        );
        assert!(lines[5].ends_with("  yes            -"), "{table}");
        assert!(
            table.contains("audits: what 1 of 2 reachable nodes recorded"),
            "{table}"
        );
        assert!(
            table.contains(&format!(
                "not counted: {} (http://node-3:9151): HTTP 404",
                Address::repeat_byte(3)
            )),
            "{table}"
        );

        let empty = NetworkStatus {
            stakers: Vec::new(),
            reporters: Vec::new(),
            ..status
        };
        assert_eq!(
            render(&empty),
            "no staker has published a node record (chain 31337, block 42, period 9)\n"
        );
    }
}

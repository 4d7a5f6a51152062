//! The node's status page in a real browser: a three-node devnet (anvil, the contracts, the
//! nodes and their duties, in process), then Debian's headless Chromium, driven by puppeteer-core
//! (`test/browser/status-page.mjs`), loads `GET /` from each node and finds every field filled,
//! the worker's balance and the commitments included.
//!
//! Needs `npm ci` (anvil, forge, puppeteer-core) and Chromium (`/usr/bin/chromium`, or
//! `$CHROMIUM`): `script/test` installs both (`ensure_chromium` in `script/lib.sh`).

#![allow(clippy::unwrap_used)]

mod support;

use std::{path::Path, time::Duration};

use anyhow::{ensure, Context, Result};
use kms_cli::devnet::{self, DevnetArgs};
use kms_contracts::test_utils::eventually;
use serde_json::Value;
use support::{free_port, repo_root};

#[tokio::test]
async fn the_status_page_shows_every_field_in_chromium() -> Result<()> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    ensure!(
        Path::new(&chromium).exists(),
        "no Chromium at {chromium}: install Debian's `chromium` (script/test does), or set CHROMIUM"
    );
    let port = free_port();
    // Plain HTTP: the page is for a browser, which cannot pin a self-signed certificate (a
    // node that browsers reach serves a CA-issued one: docs/node.md#tls).
    let devnet = devnet::start(&DevnetArgs {
        plain_http: true,
        port,
        nodes: 3,
        seconds_per_period: 3600,
        node_port: 0,
        deployments_file: format!("deployments/test-status-{port}.json"),
        dir: None,
        demo: false,
        faulty_node: false,
    })
    .await?;
    let http = reqwest::Client::new();
    for miner in &devnet.miners {
        let url = format!("http://{}", miner.node.local_addr());
        // The duties read the standing after their first tick: wait for it in the JSON first.
        eventually("the node's standing", Duration::from_secs(60), || async {
            let status: Value = http
                .get(format!("{url}/v1/status"))
                .send()
                .await?
                .json()
                .await?;
            Ok(status["standing"]["committedNext"] == true)
        })
        .await?;
        let out = tokio::process::Command::new("node")
            .arg(repo_root().join("test/browser/status-page.mjs"))
            .arg(&url)
            .env("CHROMIUM", &chromium)
            .output()
            .await
            .context("cannot run node")?;
        ensure!(
            out.status.success(),
            "the status page of {url} in Chromium: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        let page: Value = serde_json::from_slice(&out.stdout)?;
        let fields = &page["fields"];
        ensure!(page["title"] == "KMS node status", "{page}");
        ensure!(
            fields["staker"]
                .as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case(&miner.staker.to_string())),
            "{page}"
        );
        ensure!(
            fields["workerBalanceWei"]
                .as_str()
                .is_some_and(|b| b.ends_with(" ETH")),
            "{page}"
        );
        ensure!(
            fields["nextCommitmentPeriod"]
                .as_str()
                .is_some_and(|c| c.ends_with(": made")),
            "{page}"
        );
        ensure!(fields["warnings"] == "No warnings.", "{page}");
    }
    devnet.shutdown().await;
    Ok(())
}

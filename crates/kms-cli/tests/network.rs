//! `kms network status` against a real anvil whose stakers' node records point at small fake
//! nodes (axum, in process) answering `GET /v1/node` and `GET /v1/network` with canned bodies:
//! reachable and unreachable nodes, a node serving another staker, an older node without
//! `/v1/network`, and the audit records summed across the nodes that report them.

#![allow(clippy::unwrap_used)]

mod support;

use std::process::Output;

use alloy::primitives::{Address, Bytes, U256};
use anyhow::{ensure, Context, Result};
use axum::{extract::State, routing::get, Json, Router};
use kms_contracts::test_utils::TestChain;
use kms_crypto::wire::{Availability, NetworkView, NodeInfo, PeerView};
use serde_json::Value;
use support::{free_port, KMS};

/// Long periods: the test never crosses a period boundary.
const SECONDS_PER_PERIOD: u64 = 3600;

/// What a fake node answers.
#[derive(Clone)]
struct Canned {
    info: NodeInfo,
    /// `None`: no `/v1/network` route (404), as a node of an older version.
    network: Option<NetworkView>,
}

/// Serves `canned` on a free port of 127.0.0.1 until the test ends; returns its URL.
async fn fake_node(canned: Canned) -> Result<String> {
    let mut app = Router::new().route(
        "/v1/node",
        get(|State(c): State<Canned>| async move { Json(c.info) }),
    );
    if canned.network.is_some() {
        app = app.route(
            "/v1/network",
            get(|State(c): State<Canned>| async move { Json(c.network) }),
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let app = app.with_state(canned);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(url)
}

/// Audit counts as a node records them.
fn seen(served: u64, wrong: u64, refused: u64, timed_out: u64) -> Option<Availability> {
    Some(Availability {
        served,
        wrong,
        refused,
        timed_out,
        invalid: 0,
        last_status: (refused > 0).then_some(503),
        last_failure: None,
        last_at: 1,
    })
}

/// A dev account staked with `worker` bonded, whose worker publishes a node record at `url`.
async fn stake_with_record(
    chain: &TestChain,
    staker: usize,
    worker: usize,
    url: &str,
) -> Result<()> {
    chain.stake_minimum(staker, worker).await?;
    let as_worker = chain.provider(worker)?;
    let escrow = chain.deployment().staking_escrow(&as_worker);
    let receipt = escrow
        .publishNodeRecord(url.to_owned(), Bytes::from(vec![0x02; 33]))
        .send()
        .await
        .context("publishNodeRecord")?
        .get_receipt()
        .await?;
    ensure!(receipt.status(), "publishNodeRecord reverted");
    Ok(())
}

/// `kms network status args..` against `chain`, with the deployments file in `dir`.
async fn network_status(chain: &TestChain, dir: &std::path::Path, args: &[&str]) -> Output {
    let deployments = dir.join("deployments.json");
    std::fs::write(&deployments, chain.deployment().to_json()).unwrap();
    // Asynchronous, so that the fake nodes on this runtime answer while it runs.
    tokio::process::Command::new(KMS)
        .args(["network", "status", "--rpc-url"])
        .arg(chain.endpoint_url().to_string())
        .arg("--deployments")
        .arg(&deployments)
        // The fake nodes serve plain HTTP.
        .arg("--allow-plain-http")
        .args(args)
        .env_remove("ETH_PRIVATE_KEY")
        .env_remove("ETH_KEYSTORE")
        .output()
        .await
        .unwrap()
}

fn stdout_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "kms network status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The cells of the table's row of `staker` (columns are two or more spaces apart).
fn row_of(table: &str, staker: Address) -> Vec<String> {
    let staker = staker.to_string();
    let line = table
        .lines()
        .find(|line| line.starts_with(&staker))
        .unwrap_or_else(|| panic!("no row for {staker} in\n{table}"));
    line.split("  ")
        .map(str::trim)
        .filter(|cell| !cell.is_empty())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn status_shows_reachability_and_summed_audits() -> Result<()> {
    let chain = TestChain::start(SECONDS_PER_PERIOD).await?;
    let d = chain.deployment().clone();
    let dir = tempfile::tempdir()?;

    let out = network_status(&chain, dir.path(), &[]).await;
    assert!(
        stdout_of(&out).starts_with("no staker has published a node record"),
        "{}",
        stdout_of(&out)
    );

    // (staker, worker) dev accounts. A and B answer as their records say and report audits;
    // C's URL has no listener; D's node serves A; E (its own worker) is an older version.
    let (a, b, c, dd, e) = ((1, 2), (5, 6), (7, 8), (3, 4), (9, 9));
    let address = |i: usize| chain.address(i).unwrap();
    let info = |(staker, worker): (usize, usize)| NodeInfo {
        staker: address(staker),
        worker: address(worker),
        umbral_public_key: String::new(),
        chain_id: d.chain_id,
        version: "0.0.0-fake".into(),
        max_capsules_per_request: 64,
    };
    let view = |node: usize, records: Vec<(usize, Option<Availability>)>| NetworkView {
        chain_id: d.chain_id,
        node: address(node),
        block: 1,
        current_period: 1,
        from_period: 0,
        peers: records
            .into_iter()
            .map(|(staker, availability)| PeerView {
                staker: address(staker),
                worker: Address::ZERO,
                url: String::new(),
                stake: U256::ZERO,
                locked_now: U256::ZERO,
                last_committed_period: 0,
                availability,
            })
            .collect(),
    };
    let url_a = fake_node(Canned {
        info: info(a),
        network: Some(view(
            a.0,
            vec![
                (a.0, seen(100, 0, 0, 0)), // its own entry: not an audit
                (b.0, seen(5, 1, 0, 0)),
                (c.0, seen(0, 0, 0, 2)),
                (e.0, seen(7, 0, 0, 0)),
            ],
        )),
    })
    .await?;
    let url_b = fake_node(Canned {
        info: info(b),
        network: Some(view(
            b.0,
            vec![
                (a.0, seen(3, 0, 1, 0)),
                (b.0, seen(50, 0, 0, 0)),
                (c.0, seen(0, 0, 0, 1)),
                (e.0, None),
            ],
        )),
    })
    .await?;
    let url_c = format!("http://127.0.0.1:{}", free_port());
    let url_d = fake_node(Canned {
        info: info(a),
        network: Some(view(a.0, vec![(b.0, seen(1_000, 0, 0, 0))])),
    })
    .await?;
    let url_e = fake_node(Canned {
        info: info(e),
        network: None,
    })
    .await?;
    for ((staker, worker), url) in [
        (a, &url_a),
        (b, &url_b),
        (c, &url_c),
        (dd, &url_d),
        (e, &url_e),
    ] {
        stake_with_record(&chain, staker, worker, url).await?;
    }
    chain.commit_as(a.1).await?;

    let out = network_status(&chain, dir.path(), &["--timeout", "2"]).await;
    let table = stdout_of(&out);
    assert!(table.starts_with("5 stakers with a node record"), "{table}");
    let header = table.lines().find(|l| l.starts_with("STAKER")).unwrap();
    for column in [
        "STAKE (KMS)",
        "WORKER",
        "URL",
        "LAST COMMITMENT",
        "REACHABLE NOW",
    ] {
        assert!(header.contains(column), "{table}");
    }
    let min_stake = kms_cli::common::format_tokens(d.min_stake);
    let row_a = row_of(&table, address(a.0));
    let expected_a = [
        address(a.0).to_string(),
        min_stake.clone(),
        address(a.1).to_string(),
        url_a.clone(),
    ];
    assert_eq!(row_a[..4], expected_a, "{table}");
    assert!(row_a[4].ends_with("(next)"), "{table}");
    assert_eq!(row_a[5..], ["yes", "3/1 (1 node)"], "{table}");
    let row_b = row_of(&table, address(b.0));
    assert_eq!(row_b[4..], ["never", "yes", "5/1 (1 node)"], "{table}");
    let row_c = row_of(&table, address(c.0));
    assert_eq!(row_c[5..], ["no: unreachable", "0/3 (2 nodes)"], "{table}");
    // D's node serves A: not reachable as D, and its view (A served 1000) is not counted.
    let row_d = row_of(&table, address(dd.0));
    assert_eq!(row_d[5..], ["no: serves another staker", "-"], "{table}");
    let row_e = row_of(&table, address(e.0));
    assert_eq!(row_e[5..], ["yes", "7/0 (1 node)"], "{table}");
    assert!(
        table.contains("audits: what 2 of 3 reachable nodes recorded"),
        "{table}"
    );
    assert!(
        table.contains(&format!(
            "not counted: {} ({url_e}): HTTP 404 (a version without /v1/network)",
            address(e.0)
        )),
        "{table}"
    );

    let out = network_status(&chain, dir.path(), &["--json"]).await;
    let json: Value = serde_json::from_str(&stdout_of(&out))?;
    assert_eq!(json["chainId"], d.chain_id);
    let stakers = json["stakers"].as_array().unwrap();
    assert_eq!(stakers.len(), 5);
    let entry = |staker: usize| {
        stakers
            .iter()
            .find(|s| s["staker"].as_str().and_then(|a| a.parse().ok()) == Some(address(staker)))
            .unwrap()
    };
    let json_a = entry(a.0);
    assert_eq!(json_a["stake"], d.min_stake.to_string());
    assert_eq!(json_a["url"], url_a);
    assert_eq!(json_a["reachable"], true);
    assert_eq!(json_a["unreachableReason"], Value::Null);
    assert_eq!(
        json_a["lastCommittedPeriod"].as_u64(),
        json["currentPeriod"].as_u64().map(|p| p + 1)
    );
    assert_eq!(json_a["audits"]["served"], 3);
    assert_eq!(json_a["audits"]["refused"], 1);
    assert_eq!(json_a["audits"]["failed"], 1);
    assert_eq!(json_a["audits"]["reporters"], 1);
    let json_c = entry(c.0);
    assert_eq!(json_c["reachable"], false);
    assert_eq!(json_c["unreachableReason"], "unreachable");
    assert_eq!(json_c["audits"]["timedOut"], 3);
    assert_eq!(json_c["audits"]["reporters"], 2);
    assert_eq!(entry(dd.0)["unreachableReason"], "serves another staker");
    assert_eq!(json["reporters"].as_array().unwrap().len(), 3);
    Ok(())
}

#[tokio::test]
async fn an_unreadable_chain_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(KMS)
        .args(["network", "status", "--rpc-url"])
        .arg(format!("http://127.0.0.1:{}", free_port()))
        .arg("--deployments")
        .arg(dir.path().join("deployments.json"))
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach the chain"), "{stderr}");
}

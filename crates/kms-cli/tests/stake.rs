//! `kms stake ...` and `kms keys ...` against a real anvil: every staking command's happy path
//! and its main refusals, through the real binary.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

use alloy::primitives::{Address, U256};
use anyhow::{ensure, Result};
use kms_contracts::test_utils::TestChain;
use serde_json::{json, Value};

const KMS: &str = env!("CARGO_BIN_EXE_kms");
const PERIOD: u64 = 3600;

struct Cli {
    rpc: String,
    deployments: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Cli {
    fn new(chain: &TestChain) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let deployments = dir.path().join("deployments.json");
        std::fs::write(&deployments, chain.deployment().to_json()).unwrap();
        Self {
            rpc: chain.endpoint_url().to_string(),
            deployments,
            _dir: dir,
        }
    }

    fn run(&self, key: Option<&str>, args: &[&str]) -> Output {
        let mut command = Command::new(KMS);
        command
            .args(args)
            .args(["--rpc-url", &self.rpc, "--deployments"])
            .arg(&self.deployments)
            .env_remove("ETH_PRIVATE_KEY")
            .env_remove("ETH_KEYSTORE");
        if let Some(key) = key {
            command.args(["--private-key", key]);
        }
        command.output().unwrap()
    }

    fn ok(&self, key: Option<&str>, args: &[&str]) -> String {
        let out = self.run(key, args);
        assert!(
            out.status.success(),
            "kms {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn fails(&self, key: Option<&str>, args: &[&str], code: i32, reason: &str) {
        let out = self.run(key, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "kms {args:?}: {stderr}");
        assert!(stderr.contains(reason), "kms {args:?}: {stderr}");
    }

    fn status(&self, staker: &str) -> Value {
        serde_json::from_str(&self.ok(None, &["stake", "status", "--staker", staker, "--json"]))
            .unwrap()
    }
}

fn key(chain: &TestChain, index: usize) -> String {
    alloy::hex::encode_prefixed(chain.signer(index).unwrap().to_bytes())
}

#[tokio::test]
async fn staking_commands_and_their_refusals() -> Result<()> {
    let chain = TestChain::start(PERIOD).await?;
    let d = chain.deployment().clone();
    let cli = Cli::new(&chain);
    let staker_key = key(&chain, 1);
    let staker = chain.address(1)?.to_string();
    let staker_key = Some(staker_key.as_str());

    // No tokens yet: says so.
    cli.fails(
        staker_key,
        &["stake", "deposit", "--amount", "15000", "--periods", "30"],
        1,
        "get tokens first",
    );
    // Fund the staker with 40,000 KMS.
    let as_deployer = chain.provider(0)?;
    d.token(&as_deployer)
        .transfer(
            chain.address(1)?,
            U256::from(40_000u64) * U256::from(10u64).pow(U256::from(18)),
        )
        .send()
        .await?
        .get_receipt()
        .await?;
    // Below the minimum stake: the contract's custom error, exit code 3.
    cli.fails(
        staker_key,
        &["stake", "deposit", "--amount", "1", "--periods", "30"],
        3,
        "StakingEscrow_AmountBelowMinStake",
    );
    // No account: says how to give one.
    cli.fails(
        None,
        &["stake", "deposit", "--amount", "15000", "--periods", "30"],
        1,
        "--keystore",
    );

    // Deposit (approval included), twice, then divide, prolong and merge.
    cli.ok(
        staker_key,
        &["stake", "deposit", "--amount", "20000", "--periods", "30"],
    );
    cli.ok(
        staker_key,
        &["stake", "deposit", "--amount", "15000", "--periods", "31"],
    );
    let status = cli.status(&staker);
    ensure!(
        status["subStakes"].as_array().unwrap().len() == 2,
        "{status}"
    );
    ensure!(status["value"] == "35000000000000000000000", "{status}");
    cli.ok(
        staker_key,
        &["stake", "prolong", "--index", "0", "--periods", "1"],
    );
    cli.ok(
        staker_key,
        &["stake", "merge", "--index", "0", "--merged", "1"],
    );
    let status = cli.status(&staker);
    let live: Vec<&Value> = status["subStakes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["amount"] != "0")
        .collect();
    ensure!(
        live.len() == 1 && live[0]["amount"] == "35000000000000000000000",
        "{status}"
    );
    cli.ok(
        staker_key,
        &[
            "stake",
            "divide",
            "--index",
            "0",
            "--amount",
            "15000",
            "--periods",
            "2",
        ],
    );
    // Merging sub-stakes that end in different periods is refused by the contract.
    cli.fails(
        staker_key,
        &["stake", "merge", "--index", "0", "--merged", "1"],
        3,
        "StakingEscrow_SubStakesNotMergeable",
    );

    // Bond a worker, set a minimum fee rate.
    let worker = chain.address(2)?.to_string();
    // Bonding is two steps: the staker proposes, the worker accepts.
    cli.ok(staker_key, &["stake", "bond-worker", "--worker", &worker]);
    let status = cli.status(&staker);
    ensure!(
        status["pendingWorker"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case(&worker),
        "{status}"
    );
    ensure!(
        status["worker"] == json!(Address::ZERO),
        "proposed is not bonded: {status}"
    );
    let as_worker = chain.provider(2)?;
    let receipt = d
        .staking_escrow(&as_worker)
        .acceptWorker(chain.address(1)?)
        .send()
        .await?
        .get_receipt()
        .await?;
    ensure!(receipt.status(), "acceptWorker reverted");
    cli.ok(
        staker_key,
        &["stake", "set-min-fee-rate", "--rate", "2gwei"],
    );
    ensure!(cli.status(&staker)["worker"]
        .as_str()
        .unwrap()
        .eq_ignore_ascii_case(&worker));
    let min_rate = d
        .policy_manager(&chain.read_provider())
        .effectiveMinFeeRate(chain.address(1)?)
        .call()
        .await?;
    ensure!(min_rate == U256::from(2_000_000_000u64), "{min_rate}");

    // Nothing unlocked yet: withdraw says why.
    cli.fails(
        staker_key,
        &["stake", "withdraw", "--all"],
        1,
        "nothing is withdrawable",
    );
    cli.fails(
        staker_key,
        &["stake", "withdraw", "--amount", "1"],
        3,
        "StakingEscrow_InsufficientUnlocked",
    );
    // Compounding: a top-up from the wallet (any amount), none from free tokens or a lock while
    // nothing is free, and the restake switch shown by the status.
    let first = |status: &Value| {
        status["subStakes"][0]["amount"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let before = U256::from_str_radix(&first(&cli.status(&staker)), 10)?;
    cli.ok(
        staker_key,
        &["stake", "increase", "--index", "0", "--amount", "1000"],
    );
    let after = U256::from_str_radix(&first(&cli.status(&staker)), 10)?;
    ensure!(after - before == U256::from(1000u64) * U256::from(10u64).pow(U256::from(18)));
    cli.fails(
        staker_key,
        &[
            "stake",
            "increase",
            "--index",
            "0",
            "--amount",
            "1",
            "--from-unlocked",
        ],
        3,
        "StakingEscrow_InsufficientUnlocked",
    );
    cli.fails(
        staker_key,
        &["stake", "lock", "--amount", "1", "--periods", "30"],
        1,
        "are free in the escrow",
    );
    ensure!(cli.status(&staker)["reStake"] == false);
    cli.ok(staker_key, &["stake", "restake", "on"]);
    ensure!(cli.status(&staker)["reStake"] == true);
    // Human-readable status too.
    let text = cli.ok(None, &["stake", "status", "--staker", &staker]);
    ensure!(
        text.contains("sub-stakes")
            && text.contains("36000")
            && text.contains("restaking         on"),
        "{text}"
    );
    Ok(())
}

#[test]
fn keys_new_and_show() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let password = dir.path().join("pw");
    // Password files must be private, like key files.
    kms_crypto::keys::write_secret_file(&password, b"pw\n")?;
    let keys = dir.path().join("bob");
    let out = Command::new(KMS)
        .args(["keys", "new", "--json", "--dir"])
        .arg(&keys)
        .arg("--password-file")
        .arg(&password)
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout)?;
    let out = Command::new(KMS)
        .args(["keys", "show", "--json", "--label", "photos", "--umbral"])
        .arg(keys.join("umbral.json"))
        .output()?;
    ensure!(out.status.success());
    let shown: Value = serde_json::from_slice(&out.stdout)?;
    ensure!(
        shown["receivingKey"] == created["receivingKey"],
        "{shown} {created}"
    );
    ensure!(shown["policyKey"].as_str().unwrap().starts_with("0x0"));
    // Never overwrites.
    let out = Command::new(KMS)
        .args(["keys", "new", "--umbral-only", "--dir"])
        .arg(&keys)
        .output()?;
    ensure!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("exists"));
    Ok(())
}

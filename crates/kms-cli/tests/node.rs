//! `kms node init` and `kms node run` as a user runs them: the real binary, a real anvil.

#![allow(clippy::unwrap_used)]

mod support;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use alloy::primitives::U256;
use anyhow::{ensure, Context, Result};
use kms_contracts::test_utils::TestChain;
use support::{kms, KMS};

#[test]
fn run_refuses_a_missing_config_with_a_reason() {
    let out = kms(&["node", "run", "--config", "/nonexistent/node.toml"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/node.toml"), "{stderr}");
    // A configuration error: a service manager should not restart it (the systemd unit's
    // RestartPreventExitStatus).
    assert_eq!(out.status.code(), Some(78), "{stderr}");
}

#[tokio::test]
async fn init_then_run_until_sigterm() -> Result<()> {
    let chain = TestChain::start(3600).await?;
    let d = chain.deployment().clone();
    let dir = tempfile::tempdir()?;
    let deployments = dir.path().join("deployments.json");
    std::fs::write(&deployments, d.to_json())?;
    let password = dir.path().join("password");
    // Password files must be private, like key files.
    kms_crypto::keys::write_secret_file(&password, b"correct horse\n")?;
    let node_dir = dir.path().join("node");
    let staker = chain.address(1)?;
    let worker_key = alloy::hex::encode_prefixed(chain.signer(2)?.to_bytes());
    let rpc = chain.endpoint_url().to_string();
    let args = [
        "node",
        "init",
        "--dir",
        node_dir.to_str().unwrap(),
        "--staker",
        &staker.to_string(),
        "--rpc-url",
        &rpc,
        "--deployments",
        deployments.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--password-file",
        password.to_str().unwrap(),
        "--worker-private-key",
        &worker_key,
    ];
    let out = kms(&args);
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(stdout.contains(&chain.address(2)?.to_string()), "{stdout}");
    // No --confirmations against an anvil that mines only on transactions: depth 0, and why (the
    // default 2 would wait at start for two transactions nobody sends; the run below starts).
    ensure!(
        stdout.contains("confirmations = 0: ")
            && stdout.contains("mines a block only with a transaction"),
        "{stdout}"
    );
    let written = std::fs::read_to_string(node_dir.join("node.toml"))?;
    ensure!(written.contains("confirmations = 0"), "{written}");
    // A depth asked for is kept, with a warning of what it means on this chain.
    let mut deep = args.to_vec();
    let deep_dir = dir.path().join("deep");
    deep[3] = deep_dir.to_str().unwrap();
    deep.extend(["--confirmations", "2"]);
    let out = kms(&deep);
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && stdout.contains("note: "),
        "{stdout}"
    );
    ensure!(std::fs::read_to_string(deep_dir.join("node.toml"))?.contains("confirmations = 2"));
    #[cfg(unix)]
    for file in ["worker.json", "umbral.json"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(node_dir.join(file))?.permissions().mode() & 0o777;
        ensure!(mode == 0o600, "{file} has mode {mode:o}");
    }
    // A second init into the same directory would destroy keys: refused.
    ensure!(!kms(&args).status.success());

    let config = node_dir.join("node.toml");
    // Not bonded yet: the node says what to do.
    let out = kms(&["node", "run", "--config", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(stderr.contains("kms stake bond-worker"), "{stderr}");
    // ... which may be done while it waits to be restarted: not a configuration error.
    ensure!(out.status.code() == Some(1), "{:?}", out.status);
    // A wrong keystore password is one: no restart mends it.
    let wrong = dir.path().join("wrong-password");
    kms_crypto::keys::write_secret_file(&wrong, b"incorrect horse\n")?;
    let out = kms(&[
        "node",
        "run",
        "--config",
        config.to_str().unwrap(),
        "--password-file",
        wrong.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(78), "{:?}: {stderr}", out.status);
    ensure!(stderr.contains("worker.json"), "{stderr}");

    chain.stake_minimum(1, 2).await?;
    let mut child = tokio::process::Command::new(KMS)
        .args(["node", "run", "--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    // It publishes its record, then commits: wait for the commitment on chain.
    let reader = chain.read_provider();
    let escrow = d.staking_escrow(&reader);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = escrow.getStakerInfo(staker).call().await?;
        if info.lastCommittedPeriod > U256::ZERO {
            break;
        }
        ensure!(Instant::now() < deadline, "the node did not commit");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // HTTPS with the self-signed certificate `init` made, its pin in the published URL.
    let record = escrow.nodeRecordOf(staker).call().await?;
    let pin = kms_crypto::tls::parse_node_url(&record.url)?.pin;
    let identity = kms_node::tls::TlsIdentity::from_pem(
        &std::fs::read_to_string(node_dir.join("tls/cert.pem"))?,
        &std::fs::read_to_string(node_dir.join("tls/key.pem"))?,
        kms_node::tls::TlsKind::SelfSigned,
    )?;
    ensure!(
        record.url.starts_with("https://127.0.0.1:") && pin == Some(identity.fingerprint()),
        "{record:?}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(node_dir.join("tls/key.pem"))?
            .permissions()
            .mode()
            & 0o777;
        ensure!(mode == 0o600, "tls/key.pem has mode {mode:o}");
    }

    // SIGTERM: a clean exit.
    let pid = child.id().context("no pid")?;
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait()).await??;
    ensure!(status.success(), "exit status {status}");
    Ok(())
}

/// `kms node check` before the bond (says what to do), after it (passes, answering the public
/// URL itself), against a public URL that leads nowhere, with a keystore others can read, and
/// with the node running (asks the node itself).
#[tokio::test]
async fn check_says_what_is_missing_then_passes() -> Result<()> {
    let chain = TestChain::start(3600).await?;
    let dir = tempfile::tempdir()?;
    let deployments = dir.path().join("deployments.json");
    std::fs::write(&deployments, chain.deployment().to_json())?;
    let password = dir.path().join("password");
    kms_crypto::keys::write_secret_file(&password, b"pw\n")?;
    let node_dir = dir.path().join("node");
    let port = support::free_port();
    let out = kms(&[
        "node",
        "init",
        "--dir",
        node_dir.to_str().unwrap(),
        "--staker",
        &chain.address(1)?.to_string(),
        "--rpc-url",
        chain.endpoint_url().as_ref(),
        "--deployments",
        deployments.to_str().unwrap(),
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--password-file",
        password.to_str().unwrap(),
        "--worker-private-key",
        &alloy::hex::encode_prefixed(chain.signer(2)?.to_bytes()),
    ]);
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = node_dir.join("node.toml");
    let check = || {
        let out = kms(&["node", "check", "--config", config.to_str().unwrap()]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // Not staked, not bonded: exit 1, and what to run.
    let (code, stdout, stderr) = check();
    ensure!(code == Some(1), "{stdout}{stderr}");
    for expected in [
        "ok    worker keystore",
        "ok    umbral key",
        "ok    certificate: self-signed, pinned in the published URL https://127.0.0.1:",
        "ok    rpc: ",
        "FAIL  worker bond",
        "kms stake bond-worker",
        "warn  stake",
        "ok    public url",
        "checked with a token",
    ] {
        ensure!(stdout.contains(expected), "{expected}: {stdout}");
    }
    ensure!(stderr.contains("check(s) failed"), "{stderr}");

    // Staked and bonded: every check passes.
    chain.stake_minimum(1, 2).await?;
    let (code, stdout, _) = check();
    ensure!(code == Some(0), "{stdout}");
    for expected in [
        "ok    worker bond",
        "ok    worker funds",
        "ok    stake",
        "0 failed",
    ] {
        ensure!(stdout.contains(expected), "{expected}: {stdout}");
    }

    // A keystore others can read, and a public URL that leads nowhere: both fail, saying why.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let keystore = node_dir.join("worker.json");
        std::fs::set_permissions(&keystore, std::fs::Permissions::from_mode(0o644))?;
        let (code, stdout, _) = check();
        ensure!(code == Some(1) && stdout.contains("chmod 600"), "{stdout}");
        std::fs::set_permissions(&keystore, std::fs::Permissions::from_mode(0o600))?;
    }
    let text = std::fs::read_to_string(&config)?;
    let nowhere = format!("https://127.0.0.1:{}", support::free_port());
    std::fs::write(
        &config,
        text.replace(&format!("https://127.0.0.1:{port}"), &nowhere),
    )?;
    let (code, stdout, _) = check();
    ensure!(
        code == Some(1) && stdout.contains("FAIL  public url") && stdout.contains("firewall"),
        "{stdout}"
    );
    std::fs::write(&config, &text)?;

    // Running: the check asks the node itself.
    let _node = tokio::process::Command::new(KMS)
        .args(["node", "run", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, stdout, _) = check();
        if code == Some(0) && stdout.contains("reaches this running node") {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "never passed with the node running: {stdout}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(())
}

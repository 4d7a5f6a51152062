//! What the benchmarks that run real `kms node run` processes share: `kms node init` for a dev
//! account of the test chain, with its password file and deployments file.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{ensure, Result};
use kms_contracts::test_utils::TestChain;

/// The `kms` binary under benchmark.
pub(crate) const KMS: &str = env!("CARGO_BIN_EXE_kms");

/// A node initialised by `kms node init`: its configuration file and API port.
pub(crate) struct InitNode {
    /// `node.toml`.
    pub(crate) config: PathBuf,
    /// The port it listens on (127.0.0.1).
    pub(crate) port: u16,
    /// Holds the node's files.
    pub(crate) _dir: tempfile::TempDir,
}

/// `kms node init` for dev account `staker` with dev account `worker`'s key, confirmations 0,
/// on a free port, in a fresh temporary directory.
pub(crate) fn init_node(chain: &TestChain, staker: usize, worker: usize) -> Result<InitNode> {
    let dir = tempfile::tempdir()?;
    let deployments = dir.path().join("deployments.json");
    std::fs::write(&deployments, chain.deployment().to_json())?;
    // Password files must be private, like key files.
    kms_crypto::keys::write_secret_file(&dir.path().join("pw"), b"pw\n")?;
    let node_dir = dir.path().join("node");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let status = Command::new(KMS)
        .args(["node", "init", "--confirmations", "0", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--dir")
        .arg(&node_dir)
        .args([
            "--staker",
            &chain.address(staker)?.to_string(),
            "--rpc-url",
            chain.endpoint_url().as_str(),
        ])
        .arg("--deployments")
        .arg(&deployments)
        .arg("--password-file")
        .arg(dir.path().join("pw"))
        .args([
            "--worker-private-key",
            &alloy::hex::encode_prefixed(chain.signer(worker)?.to_bytes()),
        ])
        .stdout(Stdio::null())
        .status()?;
    ensure!(status.success(), "kms node init failed");
    Ok(InitNode {
        config: node_dir.join("node.toml"),
        port,
        _dir: dir,
    })
}

/// `kms node run` on `config`, logging warnings only, killed when dropped.
pub(crate) fn run_node(config: &std::path::Path) -> Result<tokio::process::Child> {
    Ok(tokio::process::Command::new(KMS)
        .args(["node", "run", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?)
}

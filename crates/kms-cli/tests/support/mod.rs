//! Helpers shared by the tests that run the real `kms` binary: child processes that never
//! outlive a test, free ports, the repository root, `kms node` processes and their stores.

#![allow(dead_code, clippy::unwrap_used)] // each test binary uses a part of it

use std::{
    fs::{File, OpenOptions},
    io::{Read, Seek, SeekFrom},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    time::{Duration, Instant},
};

use alloy::primitives::Address;
use anyhow::{bail, ensure, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The `kms` binary under test.
pub(crate) const KMS: &str = env!("CARGO_BIN_EXE_kms");

/// Runs `kms args` to completion, without the caller's chain and password environment.
pub(crate) fn kms(args: &[&str]) -> Output {
    Command::new(KMS)
        .args(args)
        .env_remove("ETH_RPC_URL")
        .env_remove("KMS_PASSWORD")
        .env_remove("KMS_PASSWORD_FILE")
        .output()
        .unwrap()
}

/// A port that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The repository root (where `foundry.toml` is).
pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|d| d.join("foundry.toml").is_file())
        .unwrap()
        .to_path_buf()
}

/// Sends `signal` (a `kill` signal name) to `pid`.
fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Stops `child`: SIGTERM, then SIGKILL if it is still running after `grace`; reaps it.
pub(crate) fn terminate(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    signal(child.id(), "TERM");
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait().ok()
}

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped, so that a failing test
/// leaves nothing running.
#[derive(Debug)]
pub(crate) struct Process {
    child: Option<Child>,
}

impl Process {
    /// Spawns `command`.
    pub(crate) fn spawn(command: &mut Command) -> Result<Self> {
        let child = command
            .spawn()
            .with_context(|| format!("spawning {command:?}"))?;
        Ok(Self { child: Some(child) })
    }

    /// The process id.
    pub(crate) fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The child, to take its pipes.
    pub(crate) fn child_mut(&mut self) -> Option<&mut Child> {
        self.child.as_mut()
    }

    /// Whether it has exited (and how).
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGKILL, and reap it.
    pub(crate) fn sigkill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, SIGKILL after `grace`; its exit status.
    pub(crate) fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.child
            .take()
            .and_then(|mut child| terminate(&mut child, grace))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

pub(crate) use kms_contracts::test_utils::eventually;

/// `GET path` on `127.0.0.1:port` (HTTP/1.1, one request per connection): status and body.
pub(crate) async fn http_get(port: u16, path: &str) -> Result<(u16, String)> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        anyhow::Ok(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .context("HTTP request timed out")??;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("no end of the HTTP header")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no HTTP status")?;
    ensure!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "chunked answer unsupported: {head}"
    );
    Ok((status, body.to_owned()))
}

/// How `kms node init`'s configuration is adjusted before the node runs.
#[derive(Debug, Clone)]
pub(crate) struct NodeOptions {
    /// `[chain] rpc_url`.
    pub(crate) rpc_url: String,
    /// `[chain] confirmations`.
    pub(crate) confirmations: u64,
    /// `[chain] poll_interval_ms`.
    pub(crate) poll_interval_ms: u64,
    /// `[chain] max_log_range`.
    pub(crate) max_log_range: u64,
    /// `[duties] prune`.
    pub(crate) prune: bool,
    /// `[audit]`: the defaults (on) when set, else `budget_per_period_wei = "0"`. Off unless a
    /// test is about audits: an audit policy names the other test nodes, whose kfrag and policy
    /// counts the tests check.
    pub(crate) audits: bool,
}

/// A `kms node` set up with `kms node init` and run with `kms node run` as a child process; its
/// output goes to `node.log` in its directory.
#[derive(Debug)]
pub(crate) struct NodeProcess {
    /// A name for messages.
    pub(crate) name: String,
    /// The node's directory.
    pub(crate) dir: PathBuf,
    /// The API's port (fixed: the published URL stays the same across restarts).
    pub(crate) port: u16,
    /// The staker it serves.
    pub(crate) staker: Address,
    /// Its worker.
    pub(crate) worker: Address,
    process: Option<Process>,
}

impl NodeProcess {
    /// `kms node init` in `dir` (which must not exist yet), importing `worker_key` (hex), then
    /// the configuration adjusted as `options` say.
    pub(crate) fn init(
        name: &str,
        dir: &Path,
        deployments: &Path,
        password_file: &Path,
        staker: Address,
        worker_key: &str,
        options: &NodeOptions,
    ) -> Result<Self> {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let out = kms(&[
            "node",
            "init",
            "--dir",
            dir.to_str().unwrap(),
            "--staker",
            &staker.to_string(),
            "--rpc-url",
            &options.rpc_url,
            "--deployments",
            deployments.to_str().unwrap(),
            "--listen",
            &listen,
            "--confirmations",
            &options.confirmations.to_string(),
            "--password-file",
            password_file.to_str().unwrap(),
            "--worker-private-key",
            worker_key,
            // Plain HTTP (`url()`, `http_get`): the tests using these nodes are about faults.
            "--tls",
            "off",
        ]);
        ensure!(
            out.status.success(),
            "kms node init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config = dir.join("node.toml");
        let mut text = std::fs::read_to_string(&config)?;
        let budget = if options.audits {
            format!("\"{}\"", kms_node::audit::DEFAULT_AUDIT_BUDGET_WEI)
        } else {
            "\"0\"".to_owned()
        };
        for (key, value) in [
            ("poll_interval_ms", options.poll_interval_ms.to_string()),
            ("max_log_range", options.max_log_range.to_string()),
            ("prune", options.prune.to_string()),
            ("budget_per_period_wei", budget),
        ] {
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("{key} = ")))
                .with_context(|| format!("no {key} in {text}"))?
                .to_owned();
            text = text.replace(&line, &format!("{key} = {value}"));
        }
        std::fs::write(&config, text)?;
        let worker: alloy::signers::local::PrivateKeySigner = worker_key.parse()?;
        Ok(Self {
            name: name.to_owned(),
            dir: dir.to_owned(),
            port,
            staker,
            worker: worker.address(),
            process: None,
        })
    }

    /// The URL the node publishes.
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The store's file.
    pub(crate) fn store_path(&self) -> PathBuf {
        self.dir.join("node.redb")
    }

    /// The log file.
    pub(crate) fn log_path(&self) -> PathBuf {
        self.dir.join("node.log")
    }

    /// Whether a process was started and not stopped or killed since.
    pub(crate) fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// `kms node run`, output appended to the log.
    pub(crate) fn start(&mut self) -> Result<()> {
        ensure!(self.process.is_none(), "{} is running already", self.name);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let process = Process::spawn(
            Command::new(KMS)
                .args(["node", "run", "--config"])
                .arg(self.dir.join("node.toml"))
                .env_remove("ETH_RPC_URL")
                .env_remove("KMS_PASSWORD")
                .env_remove("KMS_PASSWORD_FILE")
                .env("NO_COLOR", "1")
                .env(
                    "RUST_LOG",
                    std::env::var("KMS_E2E_NODE_LOG").unwrap_or_else(|_| "info".into()),
                )
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log),
        )?;
        self.process = Some(process);
        Ok(())
    }

    /// Waits until the API answers `GET /v1/status` (the node has started: bonded, record
    /// published); fails at once if the process exits.
    pub(crate) async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.process.as_mut().and_then(Process::exited) {
                self.process = None;
                bail!(
                    "{} exited with {status} before serving; log:\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
            if let Ok((200, _)) = http_get(self.port, "/v1/status").await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not serve within {timeout:?}; log:\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `start`, then `wait_ready`.
    pub(crate) async fn start_ready(&mut self, timeout: Duration) -> Result<()> {
        self.start()?;
        self.wait_ready(timeout).await
    }

    /// SIGKILL.
    pub(crate) fn sigkill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.sigkill();
        }
    }

    /// SIGTERM; fails unless the node exits cleanly within 20 s.
    pub(crate) fn stop(&mut self) -> Result<()> {
        let Some(mut process) = self.process.take() else {
            return Ok(());
        };
        let status = process.stop(Duration::from_secs(20));
        ensure!(
            status.is_some_and(|s| s.success()),
            "{} did not stop cleanly on SIGTERM ({status:?}); log:\n{}",
            self.name,
            self.log_tail(40)
        );
        Ok(())
    }

    /// The node's store; only while the node is not running (redb locks the file).
    pub(crate) fn open_store(&self) -> Result<kms_node::Store> {
        ensure!(self.process.is_none(), "{} is running", self.name);
        kms_node::Store::open(self.store_path())
            .with_context(|| format!("opening the store of {}", self.name))
    }

    /// `GET /v1/status`.
    pub(crate) async fn status(&self) -> Result<kms_crypto::wire::NodeStatus> {
        let (status, body) = http_get(self.port, "/v1/status").await?;
        ensure!(status == 200, "GET /v1/status: {status} {body}");
        Ok(serde_json::from_str(&body)?)
    }

    /// `GET /v1/status`'s kfrag count.
    pub(crate) async fn kfrags(&self) -> Result<u64> {
        Ok(self.status().await?.kfrags)
    }

    /// Waits until the node has read the chain head up to block `block` (`GET /v1/status`'s
    /// `headBlock`): it serves from what it has read.
    pub(crate) async fn wait_head(&self, block: u64, timeout: Duration) -> Result<()> {
        eventually(
            &format!("{} to read the chain to block {block}", self.name),
            timeout,
            || async { Ok(self.status().await?.head_block.is_some_and(|h| h >= block)) },
        )
        .await
        .with_context(|| self.log_tail(30))
    }

    /// Waits until the follower has applied block `block` (`GET /v1/status`'s cursor).
    pub(crate) async fn wait_cursor(&self, block: u64, timeout: Duration) -> Result<()> {
        eventually(
            &format!("{} to follow the chain to block {block}", self.name),
            timeout,
            || async {
                Ok(self
                    .status()
                    .await?
                    .cursor_block
                    .is_some_and(|c| c >= block))
            },
        )
        .await
        .with_context(|| self.log_tail(30))
    }

    /// The last `lines` lines of the log.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(self.log_path()) {
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
            let _ = file.read_to_string(&mut text);
        }
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop(Duration::from_secs(10));
        }
    }
}

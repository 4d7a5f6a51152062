//! A local development chain: anvil with the KMS contracts deployed (feature `devnet`).
//!
//! `kms devnet` and the integration tests (through `test_utils`, feature `test-utils`) start
//! their chains here. The contracts are deployed by the very script production uses
//! (`script/Deploy.s.sol`), so a devnet exercises the real deployment path and the real
//! deployments file rather than a Rust re-implementation of it. Anvil and forge are the
//! npm-pinned binaries in `node_modules/` (`npm ci` installs them), so a devnet runs the same
//! toolchain versions as the Solidity side; it needs a checkout of this repository.

use std::{
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    time::Duration,
};

use alloy::{
    eips::BlockNumberOrTag,
    hex,
    node_bindings::{Anvil, AnvilInstance, NodeError},
    primitives::Address,
    providers::{ext::AnvilApi, DynProvider, Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
    transports::http::reqwest::Url,
};
use tokio::sync::Mutex;

use crate::{Deployment, DeploymentError};

/// The anvil binary itself, relative to the repository root. `node_modules/.bin/anvil` is a node
/// wrapper that does not forward signals: killing it would leave anvil running.
pub const ANVIL_BIN: &str = "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil";

/// The forge binary itself, relative to the repository root: like anvil's node wrapper, forge's
/// would leave forge running when killed (after [`DEPLOY_TIMEOUT`], say).
pub const FORGE_BIN: &str = "node_modules/@foundry-rs/forge-linux-amd64/bin/forge";

/// How long the deployment script may take. It compiles nothing when `forge build` has run (a
/// few seconds of transactions); a cold compilation with the npm solc takes a minute or two. A
/// script that is still running after this waits on something that will not come, and the
/// test that started it should fail saying so rather than hang its CI job.
pub const DEPLOY_TIMEOUT: Duration = Duration::from_secs(600);

/// The deployment script, relative to the repository root (forge must run from there).
pub const DEPLOY_SCRIPT: &str = "script/Deploy.s.sol";

/// Deployment parameters the script reads from the environment. They are cleared for the forge
/// run so that a developer's shell cannot change what the tests deploy.
const SCRIPT_PARAMETERS: &[&str] = &[
    "PRIVATE_KEY",
    "DEPLOYMENTS_PATH",
    "SECONDS_PER_PERIOD",
    "TOKEN_CAP",
    "INITIAL_SUPPLY",
    "MIN_STAKE",
    "MAX_STAKE",
    "MIN_LOCK_PERIODS",
    "MAX_LOCK_PERIODS",
    "MIN_WORKER_PERIODS",
    "ISSUANCE_RATE",
    "MIN_FEE_RATE",
    "DEFAULT_FEE_RATE",
    "MAX_FEE_RATE",
    "FEE_GOVERNOR",
    "EVIDENCE_WINDOW",
    "BASE_PENALTY",
    "PENALTY_HISTORY_COEFFICIENT",
    "PERCENTAGE_PENALTY_COEFFICIENT",
    "REWARD_COEFFICIENT",
];

/// Serializes forge runs within a test binary: concurrent runs would race on forge's compilation
/// cache and on `broadcast/` (every anvil has chain id 31337), and two compilations at once on a
/// small machine are slower than one after the other.
static FORGE_LOCK: Mutex<()> = Mutex::const_new(());

/// Why a development chain could not be started or set up.
#[derive(Debug, thiserror::Error)]
pub enum DevChainError {
    /// No ancestor of this crate holds `foundry.toml`.
    #[error("no foundry.toml in {} or any of its parents", start.display())]
    RepoRootNotFound {
        /// Where the search started.
        start: PathBuf,
    },
    /// A Foundry binary is not installed.
    #[error("{} not found: run `npm ci` in {}", path.display(), root.display())]
    ToolMissing {
        /// The missing binary.
        path: PathBuf,
        /// The repository root.
        root: PathBuf,
    },
    /// Anvil did not start.
    #[error("could not start anvil: {0}")]
    Anvil(#[from] NodeError),
    /// The blocking task that starts anvil did not finish.
    #[error("the task starting anvil failed: {0}")]
    AnvilTask(#[from] tokio::task::JoinError),
    /// forge could not be run at all.
    #[error("could not run {FORGE_BIN}: {0}")]
    ForgeSpawn(#[source] std::io::Error),
    /// The deployment script failed; its whole output is kept since forge reports the reason
    /// (a revert, a compilation error) there.
    #[error("`forge script {DEPLOY_SCRIPT}` failed ({status})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}")]
    ForgeFailed {
        /// forge's exit status.
        status: ExitStatus,
        /// forge's standard output.
        stdout: String,
        /// forge's standard error.
        stderr: String,
    },
    /// The deployment script did not finish within [`DEPLOY_TIMEOUT`]; it was killed.
    #[error("`forge script {DEPLOY_SCRIPT}` against {endpoint} did not finish in {seconds} s and was killed\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}")]
    ForgeTimedOut {
        /// The RPC endpoint the script was sending to.
        endpoint: String,
        /// How long it was given.
        seconds: u64,
        /// What forge printed on its standard output until then.
        stdout: String,
        /// What forge printed on its standard error until then.
        stderr: String,
    },
    /// The script ran but its deployments file is unusable.
    #[error(transparent)]
    Deployment(#[from] DeploymentError),
    /// The deployments file is for another chain than the one started.
    #[error("deployed to chain {deployed}, but anvil runs chain {anvil}")]
    ChainMismatch {
        /// The chain id in the deployments file.
        deployed: u64,
        /// Anvil's chain id.
        anvil: u64,
    },
    /// A step on the chain failed: an anvil request, or a setup transaction (staking a test
    /// node, say) that failed or reverted.
    #[error("{step} failed: {reason}")]
    Transaction {
        /// The step, e.g. `deposit`.
        step: &'static str,
        /// The error or the reverted receipt.
        reason: String,
    },
    /// Anvil has fewer dev accounts than asked for.
    #[error("anvil has no dev account #{index} (it has {count})")]
    NoSuchAccount {
        /// The index asked for.
        index: usize,
        /// How many accounts anvil has.
        count: usize,
    },
}

/// The repository root: the nearest ancestor of the current directory, or else of this crate's
/// source, that holds `foundry.toml`.
pub fn repo_root() -> Result<PathBuf, DevChainError> {
    if let Ok(cwd) = std::env::current_dir() {
        if let Some(root) = cwd.ancestors().find(|d| d.join("foundry.toml").is_file()) {
            return Ok(root.to_path_buf());
        }
    }
    let start = Path::new(env!("CARGO_MANIFEST_DIR"));
    start
        .ancestors()
        .find(|dir| dir.join("foundry.toml").is_file())
        .map(Path::to_path_buf)
        .ok_or_else(|| DevChainError::RepoRootNotFound {
            start: start.to_path_buf(),
        })
}

/// How [`DevChain::start_on`] starts the chain.
#[derive(Debug, Clone)]
pub struct ChainOptions {
    /// Anvil's port; `None`: any free port.
    pub port: Option<u16>,
    /// Length of a period, in seconds.
    pub seconds_per_period: u64,
    /// Further script parameters (see `script/Deploy.s.sol`).
    pub parameters: Vec<(String, String)>,
    /// Keep the deployments file at this path relative to the repository root (it must be under
    /// `deployments/`); `None`: a temporary file, removed after loading.
    pub deployments_file: Option<String>,
}

impl Default for ChainOptions {
    fn default() -> Self {
        Self {
            port: None,
            seconds_per_period: 3600,
            parameters: Vec::new(),
            deployments_file: None,
        }
    }
}

/// A running anvil with the KMS contracts deployed on it. Dropping it stops anvil.
#[derive(Debug)]
pub struct DevChain {
    pub(crate) anvil: AnvilInstance,
    deployment: Deployment,
    /// The anvil binary and the extra arguments it was started with, to restart it alike
    /// (`test_utils::TestChain::restart_anvil`; unread in a `devnet`-only build).
    #[cfg_attr(not(feature = "test-utils"), allow(dead_code))]
    pub(crate) anvil_bin: PathBuf,
    #[cfg_attr(not(feature = "test-utils"), allow(dead_code))]
    pub(crate) anvil_args: Vec<String>,
    /// One read-only provider for the chain-time steps below (each `read_provider()` builds a new
    /// HTTP client); a restart of anvil replaces it.
    pub(crate) reader: DynProvider,
}

impl DevChain {
    /// Starts anvil on a free port and deploys the contracts with periods of
    /// `seconds_per_period` seconds and the script's defaults for everything else.
    pub async fn start(seconds_per_period: u64) -> Result<Self, DevChainError> {
        Self::start_with(seconds_per_period, &[]).await
    }

    /// Like [`DevChain::start`], with further script parameters (e.g. `("MIN_STAKE", "1")`);
    /// see `script/Deploy.s.sol` for the names.
    pub async fn start_with(
        seconds_per_period: u64,
        parameters: &[(&str, &str)],
    ) -> Result<Self, DevChainError> {
        Self::start_on(ChainOptions {
            seconds_per_period,
            parameters: parameters
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..ChainOptions::default()
        })
        .await
    }

    /// Starts anvil and deploys as `options` say (`kms devnet` uses a fixed port and keeps the
    /// deployments file).
    pub async fn start_on(options: ChainOptions) -> Result<Self, DevChainError> {
        Self::start_with_anvil_args(options, &[]).await
    }

    /// Like [`DevChain::start_on`], with further arguments for anvil (e.g. `--accounts 20`, or
    /// `--state FILE`, so that a test restarting anvil keeps the chain).
    pub async fn start_with_anvil_args(
        options: ChainOptions,
        anvil_args: &[&str],
    ) -> Result<Self, DevChainError> {
        let root = repo_root()?;
        let anvil_bin = tool(&root, ANVIL_BIN)?;
        tool(&root, FORGE_BIN)?;
        let anvil_args: Vec<String> = anvil_args.iter().map(|a| (*a).to_owned()).collect();

        // Port 0: anvil binds a port the OS picks and reports it, so parallel tests never collide.
        let anvil = spawn_anvil(anvil_bin.clone(), options.port, anvil_args.clone()).await?;
        let port = anvil.port();
        let deployer_key = anvil
            .keys()
            .first()
            .ok_or(DevChainError::NoSuchAccount { index: 0, count: 0 })?;

        // Must stay under ./deployments: foundry.toml only lets scripts write there.
        let relative_path = options
            .deployments_file
            .clone()
            .unwrap_or_else(|| format!("deployments/test-{port}.json"));
        let seconds_per_period = options.seconds_per_period;
        let parameters: Vec<(&str, &str)> = options
            .parameters
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let endpoint = loopback_endpoint(port);
        let mut command = tokio::process::Command::new(root.join(FORGE_BIN));
        command
            .current_dir(&root)
            .args(["script", DEPLOY_SCRIPT, "--rpc-url"])
            .arg(endpoint.as_str())
            .arg("--broadcast");
        for name in SCRIPT_PARAMETERS {
            command.env_remove(name);
        }
        command
            .env("PRIVATE_KEY", hex::encode_prefixed(deployer_key.to_bytes()))
            .env("SECONDS_PER_PERIOD", seconds_per_period.to_string())
            .env("DEPLOYMENTS_PATH", &relative_path)
            .envs(parameters.iter().copied())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .kill_on_drop(true);

        tracing::debug!(%endpoint, "deploying the KMS contracts with forge");
        {
            let _guard = FORGE_LOCK.lock().await;
            run_deploy_script(command, &endpoint, DEPLOY_TIMEOUT).await?;
        }

        let path = root.join(&relative_path);
        let deployment = Deployment::load(&path);
        if options.deployments_file.is_none() {
            // The file only served to hand the addresses over; a leftover one is gitignored.
            let _ = std::fs::remove_file(&path);
        }
        let deployment = deployment?;
        let anvil_chain = anvil.chain_id();
        if deployment.chain_id != anvil_chain {
            return Err(DevChainError::ChainMismatch {
                deployed: deployment.chain_id,
                anvil: anvil_chain,
            });
        }
        let reader = ProviderBuilder::new().connect_http(endpoint).erased();
        Ok(Self {
            anvil,
            deployment,
            anvil_bin,
            anvil_args,
            reader,
        })
    }

    /// The deployment, as loaded from the file the script wrote.
    pub fn deployment(&self) -> &Deployment {
        &self.deployment
    }

    /// The running anvil (endpoints, dev keys and addresses).
    pub fn anvil(&self) -> &AnvilInstance {
        &self.anvil
    }

    /// Anvil's HTTP endpoint, by address: `localhost` (alloy's own endpoint) may resolve to `::1`
    /// first, where anvil does not listen but another process may have the same port.
    pub fn endpoint_url(&self) -> Url {
        loopback_endpoint(self.anvil.port())
    }

    /// Anvil's WebSocket endpoint, by address as [`endpoint_url`](Self::endpoint_url).
    pub fn ws_endpoint(&self) -> String {
        format!("ws://127.0.0.1:{}", self.anvil.port())
    }

    /// Anvil's dev account `index` (0 is the deployer, holding the initial token supply).
    pub fn address(&self, index: usize) -> Result<Address, DevChainError> {
        self.signer(index).map(|signer| signer.address())
    }

    /// The signer of anvil's dev account `index`.
    pub fn signer(&self, index: usize) -> Result<PrivateKeySigner, DevChainError> {
        let keys = self.anvil.keys();
        keys.get(index)
            .map(|key| PrivateKeySigner::from(key.clone()))
            .ok_or(DevChainError::NoSuchAccount {
                index,
                count: keys.len(),
            })
    }

    /// An HTTP provider that signs with dev account `index`; type-erased so that tests can keep
    /// providers of several accounts side by side.
    pub fn provider(&self, index: usize) -> Result<DynProvider, DevChainError> {
        let signer = self.signer(index)?;
        Ok(ProviderBuilder::new()
            .wallet(signer)
            .connect_http(self.endpoint_url())
            .erased())
    }

    /// A read-only HTTP provider (no wallet).
    pub fn read_provider(&self) -> DynProvider {
        ProviderBuilder::new()
            .connect_http(self.endpoint_url())
            .erased()
    }

    /// Moves chain time forward by `seconds` and mines a block at the new time (a devnet's
    /// periods pass in an instant).
    pub async fn travel(&self, seconds: u64) -> Result<(), DevChainError> {
        self.reader
            .anvil_increase_time(seconds)
            .await
            .map_err(|e| step_failed("evm_increaseTime", e))?;
        self.mine(1).await
    }

    /// Mines `blocks` blocks at once.
    pub async fn mine(&self, blocks: u64) -> Result<(), DevChainError> {
        self.reader
            .anvil_mine(Some(blocks), None)
            .await
            .map_err(|e| step_failed("anvil_mine", e))
    }

    /// The latest block's number.
    pub async fn head(&self) -> Result<u64, DevChainError> {
        self.reader
            .get_block_number()
            .await
            .map_err(|e| step_failed("eth_blockNumber", e))
    }

    /// The latest block's timestamp: the chain's time, which [`travel`](Self::travel) moves.
    pub async fn latest_timestamp(&self) -> Result<u64, DevChainError> {
        Ok(self
            .reader
            .get_block_by_number(BlockNumberOrTag::Latest)
            .await
            .map_err(|e| step_failed("eth_getBlockByNumber", e))?
            .ok_or_else(|| step_failed("eth_getBlockByNumber", "no latest block"))?
            .header
            .timestamp)
    }

    /// The period of the latest block's timestamp.
    pub async fn current_period(&self) -> Result<u64, DevChainError> {
        Ok(self.latest_timestamp().await? / self.deployment.seconds_per_period.max(1))
    }
}

/// A step on the chain (an anvil request, a setup transaction) failed, and why.
pub(crate) fn step_failed(step: &'static str, reason: impl std::fmt::Display) -> DevChainError {
    DevChainError::Transaction {
        step,
        reason: reason.to_string(),
    }
}

/// Anvil's HTTP endpoint on `port`: anvil listens on 127.0.0.1.
fn loopback_endpoint(port: u16) -> Url {
    Url::parse(&format!("http://127.0.0.1:{port}")).expect("a loopback URL with a port parses")
}

/// Runs the deployment script to its end, or kills it after `timeout` keeping what it printed
/// until then (forge says there what it was waiting for).
async fn run_deploy_script(
    mut command: tokio::process::Command,
    endpoint: &Url,
    timeout: Duration,
) -> Result<(), DevChainError> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(DevChainError::ForgeSpawn)?;
    // Read both pipes while forge runs: a full pipe would block it.
    let stdout = tokio::spawn(read_to_text(child.stdout.take()));
    let stderr = tokio::spawn(read_to_text(child.stderr.take()));
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => Some(status.map_err(DevChainError::ForgeSpawn)?),
        Err(_elapsed) => {
            let _ = child.kill().await;
            None
        }
    };
    // A child of forge's (the solc wrapper) may still hold a pipe open: wait for its end briefly.
    let collect = |mut task: tokio::task::JoinHandle<String>| async move {
        match tokio::time::timeout(Duration::from_secs(5), &mut task).await {
            Ok(text) => text.unwrap_or_default(),
            Err(_elapsed) => {
                task.abort();
                String::new()
            }
        }
    };
    let stdout = collect(stdout).await;
    let stderr = collect(stderr).await;
    match status {
        Some(status) if status.success() => Ok(()),
        Some(status) => Err(DevChainError::ForgeFailed {
            status,
            stdout,
            stderr,
        }),
        None => Err(DevChainError::ForgeTimedOut {
            endpoint: endpoint.to_string(),
            seconds: timeout.as_secs(),
            stdout,
            stderr,
        }),
    }
}

/// All that `pipe` gives until its end, as text (nothing for no pipe).
async fn read_to_text(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> String {
    use tokio::io::AsyncReadExt;

    let mut text = Vec::new();
    if let Some(mut pipe) = pipe {
        let _ = pipe.read_to_end(&mut text).await;
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// Starts anvil (in a blocking task: the builder waits for anvil's banner).
pub(crate) async fn spawn_anvil(
    bin: PathBuf,
    port: Option<u16>,
    args: Vec<String>,
) -> Result<AnvilInstance, DevChainError> {
    Ok(tokio::task::spawn_blocking(move || {
        let mut anvil = Anvil::at(bin).args(args);
        if let Some(port) = port {
            anvil = anvil.port(port);
        }
        anvil.try_spawn()
    })
    .await??)
}

fn tool(root: &Path, relative: &str) -> Result<PathBuf, DevChainError> {
    let path = root.join(relative);
    if path.is_file() {
        Ok(path)
    } else {
        Err(DevChainError::ToolMissing {
            path,
            root: root.to_path_buf(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(script: &str) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("sh");
        command.args(["-c", script]).kill_on_drop(true);
        command
    }

    /// A script that hangs is killed at its deadline, and what it printed is kept to say where.
    #[tokio::test]
    async fn a_deployment_that_hangs_is_killed_with_its_output() {
        let endpoint = loopback_endpoint(1);
        let started = std::time::Instant::now();
        let outcome = run_deploy_script(
            shell("echo 'Compiling 60 files'; echo 'waiting for receipts' >&2; exec sleep 60"),
            &endpoint,
            Duration::from_secs(1),
        )
        .await;
        assert!(started.elapsed() < Duration::from_secs(20), "it waited");
        match outcome {
            Err(DevChainError::ForgeTimedOut {
                endpoint,
                seconds,
                stdout,
                stderr,
            }) => {
                assert_eq!(endpoint, "http://127.0.0.1:1/");
                assert_eq!(seconds, 1);
                assert_eq!(stdout, "Compiling 60 files\n");
                assert_eq!(stderr, "waiting for receipts\n");
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_failed_deployment_keeps_its_status_and_output() {
        let outcome = run_deploy_script(
            shell("echo 'script failed: InvalidParameter()' >&2; exit 3"),
            &loopback_endpoint(1),
            Duration::from_secs(30),
        )
        .await;
        match outcome {
            Err(DevChainError::ForgeFailed { status, stderr, .. }) => {
                assert_eq!(status.code(), Some(3));
                assert!(stderr.contains("InvalidParameter()"), "{stderr}");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        run_deploy_script(
            shell("true"),
            &loopback_endpoint(1),
            Duration::from_secs(30),
        )
        .await
        .expect("a script that succeeds");
    }
}

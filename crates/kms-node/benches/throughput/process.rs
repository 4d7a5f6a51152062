//! The node as a process of its own (`--pinned`, `--scale`): this executable run with
//! `--serve-node`, optionally pinned to one core with `taskset`, serving the real router and
//! server loop (`kms_node::router`, `kms_node::server::serve`) from a store the parent prepared,
//! with the [`FakeDirectory`] and a never-stale head view (no chain). Its CPU time and memory
//! are read from `/proc/<pid>`.

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::Arc,
};

use anyhow::{anyhow, bail, ensure, Context, Result};
use kms_node::{
    test_utils::{FakeDirectory, FakePolicy},
    ApiState, Arrangement, Limits, NodeIdentity, Store,
};
use serde::{Deserialize, Serialize};

use crate::{
    fixture::{node_keys, ADJUDICATOR, CHAIN_ID, SECONDS_PER_PERIOD},
    load::REMEMBERED_REQUESTS,
    proc::USER_HZ,
};

/// What the node process serves: passed as JSON after `--serve-node`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ServeConfig {
    /// The store (opened by the node; the parent may have filled it).
    pub(crate) store: PathBuf,
    /// Policies the fake chain knows, for kfrag uploads: id, kfrag signer, end.
    pub(crate) policies: Vec<([u8; 16], alloy::primitives::Address, u64)>,
}

/// What the node process says once it listens (one JSON line on stdout).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Listening {
    pub(crate) addr: std::net::SocketAddr,
    /// `Limits::workers` (the default: the cores the process may run on).
    pub(crate) workers: usize,
}

/// The answer to a `read-all` line: the store read of the node's pruning duty, which reads
/// every kfrag's record each duty tick (`Store::kfrag_policies`), timed in the node process.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct ReadAll {
    pub(crate) kfrags: usize,
    pub(crate) seconds: f64,
}

/// Answers `read-all` lines on stdin until it closes (the parent exits or drops its handle),
/// then returns.
fn commands(store: Store) {
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim() == "read-all" {
            let start = std::time::Instant::now();
            let answer = match store.kfrag_policies() {
                Ok(kfrags) => serde_json::to_string(&ReadAll {
                    kfrags: kfrags.len(),
                    seconds: start.elapsed().as_secs_f64(),
                }),
                Err(e) => Ok(format!("{{\"error\": \"{e}\"}}")),
            };
            if let Ok(answer) = answer {
                println!("{answer}");
                let _ = std::io::stdout().flush();
            }
        }
    }
}

/// `--serve-node CONFIG`: serves until stdin closes, answering `read-all` lines meanwhile.
pub(crate) fn serve_node(config: &str) -> Result<()> {
    let config: ServeConfig = serde_json::from_str(config).context("--serve-node config")?;
    // As `kms` builds its runtime: one worker thread per core this process may run on.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(async move {
        let store = Store::open(&config.store).context("open the store")?;
        let directory = FakeDirectory::default();
        let (worker, umbral, staker) = node_keys();
        for (id, signer, end_timestamp) in config.policies {
            directory.insert(
                id,
                FakePolicy {
                    signer,
                    arrangement: Arrangement {
                        nodes: vec![staker],
                        end_timestamp,
                        owner: alloy::primitives::Address::repeat_byte(0xa1),
                    },
                },
            );
        }
        let identity = NodeIdentity {
            staker,
            worker,
            umbral,
            chain_id: CHAIN_ID,
            adjudicator: ADJUDICATOR,
            policy_manager: alloy::primitives::Address::repeat_byte(0xb0),
            seconds_per_period: SECONDS_PER_PERIOD,
        };
        let limits = Limits {
            max_remembered_per_policy: REMEMBERED_REQUESTS,
            ..Limits::default()
        };
        let commands_store = store.clone();
        let state = ApiState::new(identity, store, Arc::new(directory), limits.clone())
            .map_err(|e| anyhow!("API state: {e}"))?
            .with_head_view(kms_node::test_utils::steady_head());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind 127.0.0.1:0")?;
        let listening = Listening {
            addr: listener.local_addr()?,
            workers: limits.workers,
        };
        println!("{}", serde_json::to_string(&listening)?);
        std::io::stdout().flush()?;
        let stdin_closed = async {
            let _ = tokio::task::spawn_blocking(move || commands(commands_store)).await;
        };
        let connections = prometheus::IntGauge::new("connections", "open connections")?;
        kms_node::server::serve(
            listener,
            kms_node::router(Arc::new(state)),
            &limits,
            None,
            connections,
            stdin_closed,
        )
        .await;
        Ok(())
    })
}

/// `taskset -c CORE` in front of a command, or nothing.
pub(crate) fn command(core: Option<usize>, args: &[&str]) -> Result<Command> {
    let exe = std::env::current_exe().context("this executable")?;
    let mut command = match core {
        Some(core) => {
            let mut command = Command::new("taskset");
            command.arg("-c").arg(core.to_string()).arg(exe);
            command
        }
        None => Command::new(exe),
    };
    command.args(args);
    Ok(command)
}

/// Pins this process (every thread it has; later ones inherit it) to `core`.
pub(crate) fn pin_self(core: usize) -> Result<()> {
    let status = Command::new("taskset")
        .args([
            "-a",
            "-c",
            "-p",
            &core.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(Stdio::null())
        .status()
        .context("taskset (util-linux) is needed to pin the bench")?;
    ensure!(status.success(), "taskset -p {core}: {status}");
    Ok(())
}

/// A child process of this executable, spoken to line by line; killed when dropped.
pub(crate) struct ChildProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<std::process::ChildStdout>,
}

impl ChildProcess {
    pub(crate) fn spawn(mut command: Command) -> Result<Self> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("start a bench process")?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().context("child stdout")?);
        Ok(Self {
            child,
            stdin,
            stdout,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line the child prints, parsed as JSON.
    pub(crate) fn read<T: serde::de::DeserializeOwned>(&mut self) -> Result<T> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            let status = self.child.try_wait()?;
            bail!("the bench process exited ({status:?}) without answering");
        }
        serde_json::from_str(line.trim()).with_context(|| format!("bench process said {line:?}"))
    }

    pub(crate) fn send(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("child stdin closed")?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        Ok(())
    }

    /// The child's resident memory now and at its peak, in KiB (`VmRSS`, `VmHWM`).
    pub(crate) fn memory_kib(&self) -> Option<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        };
        Some(Memory {
            rss_kib: field("VmRSS:")?,
            peak_rss_kib: field("VmHWM:")?,
        })
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        // Closing stdin stops the node gracefully; kill in case it hangs.
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process's resident memory, in KiB.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Memory {
    pub(crate) rss_kib: u64,
    pub(crate) peak_rss_kib: u64,
}

/// utime + stime of a `/proc/.../stat` file, in seconds.
pub(crate) fn process_cpu_seconds(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields = after.split_whitespace().collect::<Vec<_>>();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / USER_HZ)
}

/// A node process serving `store`, pinned to `core` if given.
pub(crate) struct NodeProcess {
    pub(crate) process: ChildProcess,
    pub(crate) listening: Listening,
}

impl NodeProcess {
    pub(crate) fn start(core: Option<usize>, config: &ServeConfig) -> Result<Self> {
        let config = serde_json::to_string(config)?;
        let mut process = ChildProcess::spawn(command(core, &["--serve-node", &config])?)?;
        let listening = process.read::<Listening>().context("the node process")?;
        Ok(Self { process, listening })
    }

    /// The base URL of policy `id`'s endpoints.
    pub(crate) fn policy_url(&self, id: [u8; 16]) -> String {
        format!(
            "http://{}/v1/policies/{}",
            self.listening.addr,
            kms_crypto::wire::encode_hex(&id)
        )
    }
}

/// The size of a file, in bytes.
pub(crate) fn file_size(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("{}", path.display()))?
        .len())
}

//! Re-encryption throughput of a node over HTTP on localhost, next to the raw rate of the same
//! work (`umbral_pre::reencrypt` + the worker's answer signature + the cfrag's serialization)
//! measured in the same run on the same cores.
//!
//! ```sh
//! cargo bench -p kms-node --bench throughput -- [--seconds N] [--clients 1,8,64] [--batch 1,16]
//!     [--out PATH] [--inline-signing] [--min-ratio 0.8] [--no-breakdown]
//! script/bench-node [same flags]
//! ```
//!
//! What runs:
//!
//! 1. **Raw rate**: one thread per core (`available_parallelism`) re-encrypts capsules with a
//!    `VerifiedKeyFrag`, signs each answer with the worker key (`kms_crypto::answer::sign_answer`)
//!    and serializes the cfrag (`to_bytes`), for `--seconds`. A raw window runs before every node
//!    level and one after the last: each level's ratio is taken against the mean of the raw
//!    windows just before and after it, as the core speed of a VM drifts over a run.
//! 2. **Node rate**: the real router (`kms_node::router`) with a fake policy directory (the policy
//!    is always live) and a redb store in a temporary directory, served by `axum::serve` on
//!    `127.0.0.1:0` in the bench's tokio runtime (one worker thread per core). The kfrag goes in
//!    through the real `POST /v1/policies/{id}/kfrag`. For every (batch, clients) pair, `clients`
//!    tokio tasks share one `reqwest::Client` and post signed `ReencryptRequest`s in a loop until
//!    the deadline; only 200 answers with one cfrag per capsule are counted, any other answer
//!    stops the bench with an error (after the results so far are written). The first answer of
//!    every level is checked in full (every cfrag verifies, every signature recovers to the
//!    worker), outside the timed window.
//! 3. **Breakdown** (unless `--no-breakdown`): single-thread costs of each step the node and the
//!    client perform, to explain the gap between the two rates.
//!
//! The clients run on the same cores as the node. By default their requests are signed before
//! each timed window (`requests_presigned`), so what they do inside it is HTTP and JSON only;
//! `--inline-signing` signs each request inside the window, as a real Bob would
//! (`requests_signed_in_window` says how many were). Every request is unique (the node's replay
//! guard answers 409 to a repeat): its (timestamp, first capsule) pair is never reused in a run.
//!
//! The node's [`Limits`] are the defaults except `max_remembered_per_policy`, raised to
//! [`REMEMBERED_REQUESTS`]: no request expires from the replay guard within a run (they are
//! remembered for `max_clock_skew_secs` = 300 s), and the bench's one policy would be answered
//! 429 after the default 10,000 requests.
//!
//! Besides the rates, every window reports the cores this process and all other processes used
//! (from `/proc`; a window marked `*` was disturbed by other work) and this process's CPU time
//! per cfrag, whose raw/node ratio (`cpu_ratio_to_raw`) hardly depends on other load. A run takes
//! about `(2 * levels + 1) * seconds`, plus pre-signing and the breakdown.
//!
//! Output: a table on stdout and a JSON file (`--out`, default
//! `<target dir>/bench/node-throughput.json`). A relative `--out` is taken from `KMS_BENCH_CWD`
//! (set by `script/bench-node` to where it was called from), else from the workspace root.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use alloy::{primitives::Address, signers::local::PrivateKeySigner};
use anyhow::{anyhow, bail, ensure, Context, Result};
use axum::body::Bytes;
use kms_crypto::{
    answer::{sign_answer, AnswerContext},
    ethereum_address, recover_answer_signer,
    wire::{
        decode_b64, decode_hex, encode_b64, encode_hex, KfragUpload, ReencryptRequest,
        ReencryptResponse, SignedCFrag,
    },
};
use kms_node::{
    ApiState, Arrangement, DirectoryError, Limits, NodeIdentity, PolicyDirectory, Store,
    StoredKfrag,
};
use serde::Serialize;
use umbral_pre::{
    encrypt, generate_kfrags, reencrypt, Capsule, CapsuleFrag, DefaultDeserialize,
    DefaultSerialize, KeyFrag, SecretKey, Signer, VerifiedKeyFrag,
};

const CHAIN_ID: u64 = 31337;
/// The Adjudicator the bench node's answers name (no chain here: any address).
const ADJUDICATOR: Address = Address::repeat_byte(0xad);
const SECONDS_PER_PERIOD: u64 = 86_400;

/// The context of the bench node's answers in `period`.
fn answer_context(fx: &Fixture, period: u64) -> AnswerContext {
    AnswerContext {
        chain_id: CHAIN_ID,
        adjudicator: ADJUDICATOR,
        staker: fx.staker,
        period,
        policy_id: POLICY_ID,
    }
}

fn current_period() -> u64 {
    unix_now() / SECONDS_PER_PERIOD
}
const POLICY_ID: [u8; 16] = [0x42; 16];
/// Distinct capsules the requests draw from; with the timestamp they make every request unique.
const CAPSULE_POOL: usize = 2048;
/// How far ahead of the clock request timestamps may run (the node accepts 300 s either way).
const MAX_TIMESTAMP_LEAD: u64 = 240;
/// The bench's `Limits::max_remembered_per_policy` (see the module docs).
const REMEMBERED_REQUESTS: usize = 20_000_000;
/// Requests pre-signed per level: the raw rate times the window times this margin (the node
/// cannot outrun the raw rate by much); past them, clients sign inline and it is reported.
const PRESIGN_MARGIN: f64 = 1.5;

const USAGE: &str = "\
usage: cargo bench -p kms-node --bench throughput -- [options]
  --seconds N        seconds per measurement (default 5, or env KMS_BENCH_SECONDS)
  --clients LIST     concurrent clients, comma-separated (default 1,8,64)
  --batch LIST       capsules per request, comma-separated (default 1,16)
  --out PATH         JSON results (default <target>/bench/node-throughput.json)
  --inline-signing   clients sign each request inside the timed window (default: pre-signed)
  --min-ratio R      exit with an error if a level's node/raw ratio is below R (e.g. 0.8)
  --no-breakdown     skip the single-thread cost breakdown";

// ---------------------------------------------------------------------------------------------
// Arguments

#[derive(Debug, Clone)]
struct Args {
    seconds: f64,
    clients: Vec<usize>,
    batches: Vec<usize>,
    out: PathBuf,
    inline_signing: bool,
    min_ratio: Option<f64>,
    breakdown: bool,
}

fn parse_list(flag: &str, value: &str) -> Result<Vec<usize>> {
    let list = value
        .split(',')
        .map(|item| {
            item.trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| anyhow!("{flag}: {item:?} is not a positive integer"))
        })
        .collect::<Result<Vec<_>>>()?;
    ensure!(!list.is_empty(), "{flag}: empty list");
    Ok(list)
}

fn parse_seconds(source: &str, value: &str) -> Result<f64> {
    value
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
        .ok_or_else(|| anyhow!("{source}: {value:?} is not a positive number of seconds"))
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        seconds: match std::env::var("KMS_BENCH_SECONDS") {
            Ok(value) => parse_seconds("KMS_BENCH_SECONDS", &value)?,
            Err(_) => 5.0,
        },
        clients: vec![1, 8, 64],
        batches: vec![1, 16],
        out: default_out(),
        inline_signing: false,
        min_ratio: None,
        breakdown: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline_value) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value.into())),
            _ => (arg.clone(), None),
        };
        let mut value = |flag: &str| -> Result<String> {
            match inline_value.clone() {
                Some(value) => Ok(value),
                None => it.next().ok_or_else(|| anyhow!("{flag} needs a value")),
            }
        };
        match flag.as_str() {
            "--seconds" => args.seconds = parse_seconds("--seconds", &value("--seconds")?)?,
            "--clients" => args.clients = parse_list("--clients", &value("--clients")?)?,
            "--batch" => args.batches = parse_list("--batch", &value("--batch")?)?,
            "--out" => args.out = resolve_out(Path::new(&value("--out")?)),
            "--min-ratio" => {
                let raw = value("--min-ratio")?;
                args.min_ratio = Some(
                    raw.parse::<f64>()
                        .ok()
                        .filter(|r| r.is_finite())
                        .ok_or_else(|| anyhow!("--min-ratio: {raw:?} is not a number"))?,
                );
            }
            "--inline-signing" => args.inline_signing = true,
            "--no-breakdown" => args.breakdown = false,
            // `cargo bench` passes `--bench` to every bench target.
            "--bench" => {}
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(args)
}

/// The workspace root (the bench runs with the package as its working directory).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `<target dir>/bench/node-throughput.json`: the target dir is found from this executable
/// (`<target>/<profile>/deps/throughput-*`), else the workspace's `target`.
fn default_out() -> PathBuf {
    let from_exe = std::env::current_exe().ok().and_then(|exe| {
        let target = exe.parent()?.parent()?.parent()?.to_path_buf();
        target.join("CACHEDIR.TAG").exists().then_some(target)
    });
    from_exe
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("bench/node-throughput.json")
}

fn resolve_out(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    std::env::var_os("KMS_BENCH_CWD")
        .map_or_else(workspace_root, PathBuf::from)
        .join(path)
}

// ---------------------------------------------------------------------------------------------
// The policy, the capsules and the fake chain

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Alice, Bob, the kfrag signer, one policy's kfrag and the capsules Bob asks about.
struct Fixture {
    alice: SecretKey,
    signer: SecretKey,
    bob: SecretKey,
    kfrag: VerifiedKeyFrag,
    /// The node's worker (answer signatures) and Umbral key.
    worker: PrivateKeySigner,
    node_umbral: SecretKey,
    staker: Address,
    capsules: Vec<Capsule>,
    /// Each capsule's default serialization (what requests carry).
    capsule_bytes: Vec<Vec<u8>>,
}

impl Fixture {
    fn new() -> Result<Self> {
        let (alice, signer, bob) = (
            SecretKey::random(),
            SecretKey::random(),
            SecretKey::random(),
        );
        let kfrag = generate_kfrags(
            &alice,
            &bob.public_key(),
            &Signer::new(signer.clone()),
            1,
            1,
            true,
            true,
        )
        .into_vec()
        .pop()
        .ok_or_else(|| anyhow!("generate_kfrags returned no kfrag"))?;
        let mut capsules = Vec::with_capacity(CAPSULE_POOL);
        let mut capsule_bytes = Vec::with_capacity(CAPSULE_POOL);
        for i in 0..CAPSULE_POOL {
            let (capsule, _) = encrypt(&alice.public_key(), format!("message {i}").as_bytes())
                .map_err(|e| anyhow!("encrypt: {e}"))?;
            capsule_bytes.push(capsule.to_bytes().context("capsule to_bytes")?.into_vec());
            capsules.push(capsule);
        }
        Ok(Self {
            alice,
            signer,
            bob,
            kfrag,
            worker: PrivateKeySigner::random(),
            node_umbral: SecretKey::random(),
            staker: PrivateKeySigner::random().address(),
            capsules,
            capsule_bytes,
        })
    }

    fn upload(&self) -> Result<KfragUpload> {
        Ok(KfragUpload::seal(
            &self.kfrag,
            &self.node_umbral.public_key(),
            self.staker,
            POLICY_ID,
            (&self.alice.public_key(), &self.bob.public_key()),
            &Signer::new(self.signer.clone()),
        )?)
    }
}

/// A chain on which [`POLICY_ID`] exists, names the node and is live.
struct FakeDirectory {
    signer: Address,
    arrangement: Arrangement,
}

impl PolicyDirectory for FakeDirectory {
    async fn kfrag_signer(&self, policy_id: [u8; 16]) -> Result<Option<Address>, DirectoryError> {
        Ok((policy_id == POLICY_ID).then_some(self.signer))
    }

    async fn arrangement(
        &self,
        policy_id: [u8; 16],
    ) -> Result<Option<Arrangement>, DirectoryError> {
        Ok((policy_id == POLICY_ID).then(|| self.arrangement.clone()))
    }

    async fn is_active(
        &self,
        policy_id: [u8; 16],
        node: Address,
        nodes: &[Address],
    ) -> Result<bool, DirectoryError> {
        Ok(policy_id == POLICY_ID && nodes == self.arrangement.nodes && nodes.contains(&node))
    }
}

// ---------------------------------------------------------------------------------------------
// CPU accounting (Linux `/proc`; `None` elsewhere)

/// Clock ticks per second of `/proc` times (`USER_HZ`, 100 on every Linux architecture).
const USER_HZ: f64 = 100.0;

/// This process's CPU time and the whole machine's busy time, in clock ticks.
#[derive(Debug, Clone, Copy)]
struct CpuSnapshot {
    process: u64,
    machine_busy: u64,
}

impl CpuSnapshot {
    fn take() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the `(comm)`, which may hold spaces: state is field 3, utime 14, stime 15.
        let after = stat.rsplit_once(')')?.1;
        let fields = after.split_whitespace().collect::<Vec<_>>();
        let process = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        let machine = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu = machine.lines().next()?.strip_prefix("cpu ")?;
        // user nice system idle iowait irq softirq steal ...: busy is all but idle and iowait.
        let ticks = cpu
            .split_whitespace()
            .map(|t| t.parse::<u64>().ok())
            .collect::<Option<Vec<_>>>()?;
        let machine_busy = ticks
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
            .map(|(_, t)| t)
            .sum();
        Some(Self {
            process,
            machine_busy,
        })
    }
}

/// Cores this process used and cores other processes used, between two snapshots.
#[derive(Debug, Clone, Copy, Serialize)]
struct CpuUse {
    this_process_cores: f64,
    other_processes_cores: f64,
    /// CPU time of this process (node and clients) per cfrag, in microseconds: unlike the
    /// rates, barely moved by other processes taking cores.
    cpu_us_per_cfrag: f64,
}

fn cpu_use(
    before: Option<CpuSnapshot>,
    after: Option<CpuSnapshot>,
    wall: f64,
    cfrags: u64,
) -> Option<CpuUse> {
    let (before, after) = (before?, after?);
    let ours = after.process.saturating_sub(before.process) as f64 / USER_HZ;
    let busy = after.machine_busy.saturating_sub(before.machine_busy) as f64 / USER_HZ;
    Some(CpuUse {
        this_process_cores: ours / wall,
        other_processes_cores: (busy - ours).max(0.0) / wall,
        cpu_us_per_cfrag: ours * 1e6 / cfrags.max(1) as f64,
    })
}

/// The 1-minute load average.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

// ---------------------------------------------------------------------------------------------
// Raw rate

#[derive(Debug, Clone, Serialize)]
struct RawResult {
    threads: usize,
    seconds: f64,
    cfrags: u64,
    cfrags_per_sec: f64,
    cpu: Option<CpuUse>,
}

/// What the node does per capsule, minus the HTTP, JSON and base64 around it.
fn raw_one(fx: &Fixture, capsule: &Capsule) -> Result<usize> {
    let cfrag = reencrypt(capsule, fx.kfrag.clone());
    let signature = sign_answer(
        &fx.worker,
        &answer_context(fx, current_period()),
        &capsule.to_bytes_simple(),
        &cfrag.to_bytes_simple(),
    )?;
    let bytes = cfrag.to_bytes().context("cfrag to_bytes")?;
    Ok(bytes.len() + signature.as_bytes().len())
}

fn raw_rate(fx: &Fixture, threads: usize, seconds: f64) -> Result<RawResult> {
    let window = Duration::from_secs_f64(seconds);
    let cpu_before = CpuSnapshot::take();
    let start = Instant::now();
    let deadline = start + window;
    let counts = std::thread::scope(|scope| {
        let handles = (0..threads)
            .map(|t| {
                scope.spawn(move || -> Result<u64> {
                    let mut done = 0u64;
                    let mut i = t * (CAPSULE_POOL / threads.max(1));
                    while Instant::now() < deadline {
                        std::hint::black_box(raw_one(fx, &fx.capsules[i % CAPSULE_POOL])?);
                        done += 1;
                        i += 1;
                    }
                    Ok(done)
                })
            })
            .collect::<Vec<_>>();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow!("a raw-rate thread panicked"))?
            })
            .collect::<Result<Vec<u64>>>()
    })?;
    let elapsed = start.elapsed().as_secs_f64();
    let cfrags = counts.iter().sum::<u64>();
    Ok(RawResult {
        threads,
        seconds: elapsed,
        cfrags,
        cfrags_per_sec: cfrags as f64 / elapsed,
        cpu: cpu_use(cpu_before, CpuSnapshot::take(), elapsed, cfrags),
    })
}

// ---------------------------------------------------------------------------------------------
// Requests

/// Signs unique requests: each (timestamp, first capsule) pair is used once per run. The
/// timestamp never goes below the clock, so a request stays valid for the node's 300 s skew.
struct RequestSource {
    bob: SecretKey,
    staker: Address,
    capsule_bytes: Arc<Vec<Vec<u8>>>,
    next: Mutex<(u64, usize)>,
    signed_inline: AtomicU64,
}

impl RequestSource {
    fn next_key(&self) -> Result<(u64, usize)> {
        let mut next = self
            .next
            .lock()
            .map_err(|_| anyhow!("request source poisoned"))?;
        let now = unix_now();
        if now > next.0 {
            *next = (now, 0);
        } else if next.1 == CAPSULE_POOL {
            *next = (next.0 + 1, 0);
        }
        // Past the node's 300 s clock window the requests would be refused (401).
        ensure!(
            next.0 <= now + MAX_TIMESTAMP_LEAD,
            "more than {CAPSULE_POOL} requests a second for {MAX_TIMESTAMP_LEAD} s: the \
             timestamps would leave the node's clock window; use a shorter --seconds"
        );
        let key = *next;
        next.1 += 1;
        Ok(key)
    }

    /// The JSON body of the request for `batch` capsules from `first` on, signed at `timestamp`.
    fn body(&self, timestamp: u64, first: usize, batch: usize) -> Result<Bytes> {
        let capsules = (0..batch)
            .map(|j| self.capsule_bytes[(first + j) % CAPSULE_POOL].clone())
            .collect::<Vec<_>>();
        let request =
            ReencryptRequest::sign(&self.bob, POLICY_ID, self.staker, timestamp, &capsules);
        Ok(Bytes::from(serde_json::to_vec(&request)?))
    }

    fn next_body(&self, batch: usize) -> Result<(Bytes, usize)> {
        let (timestamp, first) = self.next_key()?;
        Ok((self.body(timestamp, first, batch)?, first))
    }

    /// `count` requests signed on `threads` threads.
    fn presign(&self, count: usize, batch: usize, threads: usize) -> Result<Vec<(Bytes, usize)>> {
        let keys = (0..count)
            .map(|_| self.next_key())
            .collect::<Result<Vec<_>>>()?;
        let chunk = count.div_ceil(threads.max(1)).max(1);
        std::thread::scope(|scope| {
            let handles = keys
                .chunks(chunk)
                .map(|keys| {
                    scope.spawn(move || {
                        keys.iter()
                            .map(|&(ts, first)| Ok((self.body(ts, first, batch)?, first)))
                            .collect::<Result<Vec<_>>>()
                    })
                })
                .collect::<Vec<_>>();
            let mut all = Vec::with_capacity(count);
            for handle in handles {
                all.extend(
                    handle
                        .join()
                        .map_err(|_| anyhow!("a signing thread panicked"))??,
                );
            }
            Ok(all)
        })
    }
}

/// Checks an answer in full: one cfrag per capsule, each verifies, each signature is the worker's.
fn check_answer(
    fx: &Fixture,
    first: usize,
    batch: usize,
    response: &ReencryptResponse,
) -> Result<()> {
    ensure!(
        response.cfrags.len() == batch,
        "{} cfrags for {batch} capsules",
        response.cfrags.len()
    );
    for (j, answer) in response.cfrags.iter().enumerate() {
        let capsule = &fx.capsules[(first + j) % CAPSULE_POOL];
        let cfrag = CapsuleFrag::from_bytes(&decode_b64("cfrag", &answer.cfrag)?)
            .map_err(|e| anyhow!("cfrag {j}: {e}"))?;
        let signature = decode_hex("signature", &answer.signature)?;
        let signer = recover_answer_signer(
            &answer_context(fx, answer.period),
            &capsule.to_bytes_simple(),
            &cfrag.to_bytes_simple(),
            &signature,
        )?;
        ensure!(
            signer == fx.worker.address(),
            "cfrag {j}: signed by {signer}"
        );
        cfrag
            .verify(
                capsule,
                &fx.signer.public_key(),
                &fx.alice.public_key(),
                &fx.bob.public_key(),
            )
            .map_err(|(e, _)| anyhow!("cfrag {j} does not verify: {e}"))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Node levels

#[derive(Debug, Clone, Serialize)]
struct LevelResult {
    batch: usize,
    clients: usize,
    seconds: f64,
    requests: u64,
    cfrags: u64,
    errors: u64,
    cfrags_per_sec: f64,
    requests_per_sec: f64,
    /// Mean of the raw windows just before and just after this level.
    raw_cfrags_per_sec: f64,
    ratio_to_raw: f64,
    /// The best ratio the breakdown's single-thread costs allow at this batch (no HTTP).
    ceiling_ratio: Option<f64>,
    /// The raw CPU time per cfrag over the node's (clients included): the ratio on an
    /// otherwise idle machine when the node saturates the cores.
    cpu_ratio_to_raw: Option<f64>,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    requests_presigned: usize,
    requests_signed_in_window: u64,
    cpu: Option<CpuUse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_error: Option<String>,
}

struct Node {
    url: String,
    http: reqwest::Client,
    _server: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn start_node(fx: &Fixture) -> Result<(Node, Limits)> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    let store = Store::open(dir.path().join("node.redb")).context("open the store")?;
    let directory = Arc::new(FakeDirectory {
        signer: ethereum_address(&fx.signer.public_key()),
        arrangement: Arrangement {
            nodes: vec![fx.staker],
            end_timestamp: unix_now() + 24 * 3600,
        },
    });
    let identity = NodeIdentity {
        staker: fx.staker,
        worker: fx.worker.clone(),
        umbral: fx.node_umbral.clone(),
        chain_id: CHAIN_ID,
        adjudicator: ADJUDICATOR,
        seconds_per_period: SECONDS_PER_PERIOD,
    };
    let limits = Limits {
        max_remembered_per_policy: REMEMBERED_REQUESTS,
        ..Limits::default()
    };
    let state = ApiState::new(identity, store, directory, limits.clone())
        .map_err(|e| anyhow!("API state: {e}"))?;
    let app = kms_node::router(Arc::new(state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("bind 127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()
        .context("HTTP client")?;
    let node = Node {
        url: format!("http://{addr}/v1/policies/{}", encode_hex(&POLICY_ID)),
        http,
        _server: server,
        _dir: dir,
    };
    let response = node
        .http
        .post(format!("{}/kfrag", node.url))
        .json(&fx.upload()?)
        .send()
        .await
        .context("kfrag upload")?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    ensure!(
        status.as_u16() == 201,
        "kfrag upload answered {status}: {text}"
    );
    Ok((node, limits))
}

/// Posts one request; the answer and the latency.
async fn post(node: &Node, body: Bytes) -> Result<(ReencryptResponse, Duration)> {
    let start = Instant::now();
    let response = node
        .http
        .post(format!("{}/reencrypt", node.url))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .context("request")?;
    let status = response.status();
    let bytes = response.bytes().await.context("answer body")?;
    let latency = start.elapsed();
    if status.as_u16() != 200 {
        bail!("{status}: {}", String::from_utf8_lossy(&bytes));
    }
    let answer: ReencryptResponse = serde_json::from_slice(&bytes).context("answer JSON")?;
    Ok((answer, latency))
}

#[derive(Default)]
struct ClientTally {
    requests: u64,
    cfrags: u64,
    errors: u64,
    latencies: Vec<Duration>,
    first_error: Option<String>,
}

struct Pool {
    bodies: Vec<(Bytes, usize)>,
    next: AtomicUsize,
}

impl Pool {
    fn take(&self) -> Option<Bytes> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.bodies.get(i).map(|(body, _)| body.clone())
    }
}

async fn client_loop(
    node: Arc<Node>,
    source: Arc<RequestSource>,
    pool: Arc<Pool>,
    batch: usize,
    deadline: Instant,
    stop: Arc<AtomicBool>,
) -> ClientTally {
    let mut tally = ClientTally::default();
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        let body = match pool.take() {
            Some(body) => body,
            None => {
                source.signed_inline.fetch_add(1, Ordering::Relaxed);
                match source.next_body(batch) {
                    Ok((body, _)) => body,
                    Err(e) => {
                        tally.errors += 1;
                        tally.first_error.get_or_insert(format!("signing: {e:#}"));
                        stop.store(true, Ordering::Relaxed);
                        break;
                    }
                }
            }
        };
        match post(&node, body).await {
            Ok((answer, latency)) if answer.cfrags.len() == batch => {
                tally.requests += 1;
                tally.cfrags += batch as u64;
                tally.latencies.push(latency);
            }
            Ok((answer, _)) => {
                tally.errors += 1;
                tally.first_error.get_or_insert(format!(
                    "{} cfrags for {batch} capsules",
                    answer.cfrags.len()
                ));
                stop.store(true, Ordering::Relaxed);
            }
            Err(e) => {
                tally.errors += 1;
                tally.first_error.get_or_insert(format!("{e:#}"));
                stop.store(true, Ordering::Relaxed);
            }
        }
    }
    tally
}

/// Nearest-rank percentile of sorted latencies, in ms.
fn percentile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1e3
}

struct LevelSpec {
    batch: usize,
    clients: usize,
    seconds: f64,
    raw_rate: f64,
    inline_signing: bool,
    sign_threads: usize,
}

async fn run_level(
    fx: &Fixture,
    node: &Arc<Node>,
    source: &Arc<RequestSource>,
    spec: &LevelSpec,
) -> Result<LevelResult> {
    // One request checked in full, outside the window (also warms the connection pool).
    let (body, first) = source.next_body(spec.batch)?;
    let (answer, _) = post(node, body).await.context("warm-up request")?;
    check_answer(fx, first, spec.batch, &answer).context("warm-up answer")?;

    let presigned = if spec.inline_signing {
        Vec::new()
    } else {
        let count = (spec.raw_rate * spec.seconds * PRESIGN_MARGIN / spec.batch as f64).ceil()
            as usize
            + 4 * spec.clients;
        let source = source.clone();
        let (batch, threads) = (spec.batch, spec.sign_threads);
        tokio::task::spawn_blocking(move || source.presign(count, batch, threads))
            .await
            .context("pre-signing")??
    };
    let presigned_count = presigned.len();
    let pool = Arc::new(Pool {
        bodies: presigned,
        next: AtomicUsize::new(0),
    });
    let inline_before = source.signed_inline.load(Ordering::Relaxed);
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_before = CpuSnapshot::take();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(spec.seconds);
    let tasks = (0..spec.clients)
        .map(|_| {
            tokio::spawn(client_loop(
                node.clone(),
                source.clone(),
                pool.clone(),
                spec.batch,
                deadline,
                stop.clone(),
            ))
        })
        .collect::<Vec<_>>();
    let mut total = ClientTally::default();
    for task in tasks {
        let tally = task.await.context("client task")?;
        total.requests += tally.requests;
        total.cfrags += tally.cfrags;
        total.errors += tally.errors;
        total.latencies.extend(tally.latencies);
        if total.first_error.is_none() {
            total.first_error = tally.first_error;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_use(cpu_before, CpuSnapshot::take(), elapsed, total.cfrags);
    total.latencies.sort_unstable();
    let cfrags_per_sec = total.cfrags as f64 / elapsed;
    Ok(LevelResult {
        batch: spec.batch,
        clients: spec.clients,
        seconds: elapsed,
        requests: total.requests,
        cfrags: total.cfrags,
        errors: total.errors,
        cfrags_per_sec,
        requests_per_sec: total.requests as f64 / elapsed,
        raw_cfrags_per_sec: spec.raw_rate,
        ratio_to_raw: cfrags_per_sec / spec.raw_rate,
        ceiling_ratio: None,
        cpu_ratio_to_raw: None,
        p50_ms: percentile_ms(&total.latencies, 0.50),
        p99_ms: percentile_ms(&total.latencies, 0.99),
        max_ms: total
            .latencies
            .last()
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3),
        requests_presigned: presigned_count,
        requests_signed_in_window: source.signed_inline.load(Ordering::Relaxed) - inline_before,
        cpu,
        first_error: total.first_error,
    })
}

// ---------------------------------------------------------------------------------------------
// Breakdown

#[derive(Debug, Clone, Serialize)]
struct Step {
    /// What was timed.
    step: &'static str,
    /// Who pays it: [`RAW`], [`NODE_CFRAG`], [`NODE_REQUEST`] or [`CLIENT_REQUEST`].
    paid_by: &'static str,
    /// Mean single-thread cost, in microseconds.
    micros: f64,
}

/// A step of the raw rate (the node pays it too, per cfrag).
const RAW: &str = "raw, per cfrag";
/// What the node adds per cfrag.
const NODE_CFRAG: &str = "node, per cfrag";
/// What the node adds per request.
const NODE_REQUEST: &str = "node, per request";
/// What the client pays per request.
const CLIENT_REQUEST: &str = "client, per request";

/// The best node/raw ratio the steps allow for `batch` capsules per request, if HTTP, the
/// runtime and the client cost nothing (plus the client's signing if `client_signs`).
fn ceiling(steps: &[Step], batch: usize, client_signs: bool) -> Option<f64> {
    let sum = |paid_by: &str| {
        steps
            .iter()
            .filter(|s| s.paid_by == paid_by)
            .map(|s| s.micros)
            .sum::<f64>()
    };
    let raw = sum(RAW);
    let mut per_cfrag = raw + sum(NODE_CFRAG) + sum(NODE_REQUEST) / batch as f64;
    if client_signs {
        per_cfrag += sum(CLIENT_REQUEST) / batch as f64;
    }
    (raw > 0.0).then(|| raw / per_cfrag)
}

/// Mean time of `op` on this thread over ~`budget`.
fn time_op(budget: Duration, mut op: impl FnMut() -> Result<()>) -> Result<f64> {
    op()?;
    let start = Instant::now();
    let mut runs = 0u32;
    while start.elapsed() < budget || runs < 10 {
        op()?;
        runs += 1;
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / f64::from(runs))
}

fn breakdown(fx: &Fixture, store: &Store) -> Result<Vec<Step>> {
    let budget = Duration::from_millis(300);
    let capsule = &fx.capsules[0];
    let cfrag = reencrypt(capsule, fx.kfrag.clone());
    let stored = store
        .get_kfrag(POLICY_ID)?
        .ok_or_else(|| anyhow!("no kfrag in the breakdown store"))?;
    let request = ReencryptRequest::sign(
        &fx.bob,
        POLICY_ID,
        fx.staker,
        unix_now(),
        &fx.capsule_bytes[..1],
    );
    let request_json = serde_json::to_vec(&request)?;
    let message = kms_crypto::wire::reencrypt_message(
        POLICY_ID,
        fx.staker,
        request.timestamp,
        request.decode_nonce()?,
        &fx.capsule_bytes[..1],
    );
    let bob_signature = request.decode_signature()?;
    let signature = sign_answer(
        &fx.worker,
        &answer_context(fx, current_period()),
        &capsule.to_bytes_simple(),
        &cfrag.to_bytes_simple(),
    )?;
    let answer = ReencryptResponse {
        cfrags: vec![SignedCFrag {
            cfrag: encode_b64(&cfrag.to_bytes().context("cfrag")?),
            signature: encode_hex(&signature.as_bytes()),
            period: current_period(),
        }],
    };
    let answer_json = serde_json::to_vec(&answer)?;

    let mut steps = Vec::new();
    let mut step = |step, paid_by, micros| {
        steps.push(Step {
            step,
            paid_by,
            micros,
        });
    };
    step(
        "umbral_pre::reencrypt",
        RAW,
        time_op(budget, || {
            std::hint::black_box(reencrypt(capsule, fx.kfrag.clone()));
            Ok(())
        })?,
    );
    step(
        "sign_answer (worker ECDSA)",
        RAW,
        time_op(budget, || {
            std::hint::black_box(sign_answer(
                &fx.worker,
                &answer_context(fx, current_period()),
                &capsule.to_bytes_simple(),
                &cfrag.to_bytes_simple(),
            )?);
            Ok(())
        })?,
    );
    step(
        "cfrag to_bytes",
        RAW,
        time_op(budget, || {
            std::hint::black_box(cfrag.to_bytes().context("cfrag")?);
            Ok(())
        })?,
    );
    let cfrag_bytes = cfrag.to_bytes().context("cfrag")?;
    step(
        "cfrag base64 + signature hex",
        NODE_CFRAG,
        time_op(budget, || {
            std::hint::black_box((encode_b64(&cfrag_bytes), encode_hex(&signature.as_bytes())));
            Ok(())
        })?,
    );
    step(
        "Capsule::from_bytes (checks the capsule)",
        NODE_CFRAG,
        time_op(budget, || {
            std::hint::black_box(
                Capsule::from_bytes(&fx.capsule_bytes[0]).map_err(|e| anyhow!("capsule: {e}"))?,
            );
            Ok(())
        })?,
    );
    step(
        "request JSON + base64 + signature decode (1 capsule)",
        NODE_REQUEST,
        time_op(budget, || {
            let request: ReencryptRequest = serde_json::from_slice(&request_json)?;
            std::hint::black_box(request.capsule_bytes()?);
            std::hint::black_box(request.decode_signature()?);
            Ok(())
        })?,
    );
    step(
        "store.get_kfrag (redb read + record decode)",
        NODE_REQUEST,
        time_op(budget, || {
            std::hint::black_box(store.get_kfrag(POLICY_ID)?);
            Ok(())
        })?,
    );
    step(
        "request signature verify (Bob's key)",
        NODE_REQUEST,
        time_op(budget, || {
            ensure!(bob_signature.verify(&fx.bob.public_key(), &message));
            Ok(())
        })?,
    );
    step(
        "KeyFrag::from_bytes + verify (stored kfrag, in serve)",
        NODE_REQUEST,
        time_op(budget, || {
            let kfrag = KeyFrag::from_bytes(&stored.kfrag).map_err(|e| anyhow!("kfrag: {e}"))?;
            std::hint::black_box(
                kfrag
                    .verify(
                        &stored.verifying_key,
                        Some(&stored.delegating_key),
                        Some(&stored.receiving_key),
                    )
                    .map_err(|(e, _)| anyhow!("kfrag: {e}"))?,
            );
            Ok(())
        })?,
    );
    step(
        "answer JSON serialize (1 cfrag)",
        NODE_REQUEST,
        time_op(budget, || {
            std::hint::black_box(serde_json::to_vec(&answer)?);
            Ok(())
        })?,
    );
    step(
        "ReencryptRequest::sign + JSON (1 capsule)",
        CLIENT_REQUEST,
        time_op(budget, || {
            let request = ReencryptRequest::sign(
                &fx.bob,
                POLICY_ID,
                fx.staker,
                unix_now(),
                &fx.capsule_bytes[..1],
            );
            std::hint::black_box(serde_json::to_vec(&request)?);
            Ok(())
        })?,
    );
    step(
        "answer JSON parse (1 cfrag)",
        CLIENT_REQUEST,
        time_op(budget, || {
            std::hint::black_box(serde_json::from_slice::<ReencryptResponse>(&answer_json)?);
            Ok(())
        })?,
    );
    Ok(steps)
}

/// Writes the kfrag of `fx` straight into a fresh store (for the breakdown's store read).
fn breakdown_store(fx: &Fixture, dir: &Path) -> Result<Store> {
    let store = Store::open(dir.join("breakdown.redb"))?;
    store.put_kfrag_if_absent(
        POLICY_ID,
        &StoredKfrag {
            kfrag: fx.kfrag.to_bytes().context("kfrag")?.into_vec(),
            delegating_key: fx.alice.public_key(),
            receiving_key: fx.bob.public_key(),
            verifying_key: fx.signer.public_key(),
            end_timestamp: unix_now() + 3600,
            nodes: vec![fx.staker],
        },
    )?;
    Ok(store)
}

// ---------------------------------------------------------------------------------------------
// Report

#[derive(Debug, Serialize)]
struct Report {
    bench: &'static str,
    date: String,
    git_commit: Option<String>,
    git_dirty: Option<bool>,
    cores: usize,
    /// The 1-minute load average when the bench started (other work on the machine skews it).
    load_average_at_start: Option<f64>,
    tokio_worker_threads: usize,
    node_workers: usize,
    max_remembered_per_policy: usize,
    seconds_per_level: f64,
    client_signing: &'static str,
    /// The raw windows in order: before the first level, between levels, after the last.
    raw: Vec<RawResult>,
    /// Mean of the raw windows (each level's ratio is taken against the two around it).
    raw_cfrags_per_sec: f64,
    goal_ratio: f64,
    levels: Vec<LevelResult>,
    breakdown: Vec<Step>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn git(args: &[&str]) -> Option<String> {
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
fn utc_now() -> String {
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
const DISTURBED_CORES: f64 = 0.15;

fn disturbed(cpu: Option<CpuUse>) -> bool {
    cpu.is_some_and(|c| c.other_processes_cores > DISTURBED_CORES)
}

fn cpu_text(cpu: Option<CpuUse>) -> String {
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

fn print_table(report: &Report) {
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

fn write_report(report: &Report, out: &Path) -> Result<()> {
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    }
    let json = serde_json::to_string_pretty(report)?;
    std::fs::write(out, json + "\n").with_context(|| format!("write {}", out.display()))?;
    println!("results written to {}", out.display());
    Ok(())
}

// ---------------------------------------------------------------------------------------------

const GOAL_RATIO: f64 = 0.8;

fn main() -> Result<()> {
    let args = parse_args()?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    eprintln!(
        "setting up: {CAPSULE_POOL} capsules, {cores} cores, {} s per measurement",
        args.seconds
    );
    let fx = Fixture::new()?;

    let raw_window = |fx: &Fixture| -> Result<RawResult> {
        let raw = raw_rate(fx, cores, args.seconds)?;
        eprintln!(
            "raw rate ({cores} threads): {:.0} cfrags/s",
            raw.cfrags_per_sec
        );
        Ok(raw)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let source = Arc::new(RequestSource {
        bob: fx.bob.clone(),
        staker: fx.staker,
        capsule_bytes: Arc::new(fx.capsule_bytes.clone()),
        next: Mutex::new((0, 0)),
        signed_inline: AtomicU64::new(0),
    });

    let mut report = Report {
        bench: "kms-node re-encryption over HTTP (crates/kms-node/benches/throughput.rs)",
        date: utc_now(),
        git_commit: git(&["rev-parse", "--short", "HEAD"]),
        git_dirty: git(&["status", "--porcelain"]).map(|s| !s.is_empty()),
        cores,
        load_average_at_start: load_average(),
        tokio_worker_threads: cores,
        node_workers: 0,
        max_remembered_per_policy: REMEMBERED_REQUESTS,
        seconds_per_level: args.seconds,
        client_signing: if args.inline_signing {
            "inline"
        } else {
            "presigned"
        },
        raw: Vec::new(),
        raw_cfrags_per_sec: 0.0,
        goal_ratio: GOAL_RATIO,
        levels: Vec::new(),
        breakdown: Vec::new(),
        error: None,
    };

    // Raw and node windows alternate, so that each level is compared with raw windows measured
    // seconds before and after it (a VM's core speed drifts over a run).
    let outcome = runtime.block_on(async {
        let (node, limits) = start_node(&fx).await?;
        report.node_workers = limits.workers;
        let node = Arc::new(node);
        for &batch in &args.batches {
            for &clients in &args.clients {
                let raw = raw_window(&fx)?;
                let spec = LevelSpec {
                    batch,
                    clients,
                    seconds: args.seconds,
                    raw_rate: raw.cfrags_per_sec,
                    inline_signing: args.inline_signing,
                    sign_threads: cores,
                };
                report.raw.push(raw);
                eprintln!("node: batch {batch}, {clients} clients...");
                let level = run_level(&fx, &node, &source, &spec).await?;
                eprintln!(
                    "  {:.0} cfrags/s, p50 {:.2} ms, p99 {:.2} ms",
                    level.cfrags_per_sec, level.p50_ms, level.p99_ms
                );
                let failed = level.errors > 0;
                let first_error = level.first_error.clone();
                report.levels.push(level);
                if failed {
                    bail!(
                        "batch {batch}, {clients} clients: a request failed: {}",
                        first_error.unwrap_or_default()
                    );
                }
            }
        }
        Ok(())
    });
    drop(runtime);
    let outcome = outcome.and_then(|()| {
        report.raw.push(raw_window(&fx)?);
        Ok(())
    });

    report.raw_cfrags_per_sec =
        report.raw.iter().map(|r| r.cfrags_per_sec).sum::<f64>() / report.raw.len().max(1) as f64;
    for (i, level) in report.levels.iter_mut().enumerate() {
        let around = &report.raw[i..report.raw.len().min(i + 2)];
        let n = around.len().max(1) as f64;
        level.raw_cfrags_per_sec = around.iter().map(|r| r.cfrags_per_sec).sum::<f64>() / n;
        level.ratio_to_raw = level.cfrags_per_sec / level.raw_cfrags_per_sec;
        let raw_cpu = around
            .iter()
            .map(|r| r.cpu.map(|c| c.cpu_us_per_cfrag))
            .sum::<Option<f64>>()
            .map(|total| total / n);
        level.cpu_ratio_to_raw = raw_cpu.zip(level.cpu).map(|(r, c)| r / c.cpu_us_per_cfrag);
    }
    if let Err(e) = outcome {
        report.error = Some(format!("{e:#}"));
        print_table(&report);
        write_report(&report, &args.out)?;
        return Err(e);
    }

    if args.breakdown {
        eprintln!("breakdown...");
        let dir = tempfile::tempdir().context("temporary directory")?;
        let store = breakdown_store(&fx, dir.path())?;
        report.breakdown = breakdown(&fx, &store)?;
        for level in &mut report.levels {
            level.ceiling_ratio = ceiling(&report.breakdown, level.batch, args.inline_signing);
        }
    }

    print_table(&report);
    write_report(&report, &args.out)?;
    if let Some(min) = args.min_ratio {
        let below = report
            .levels
            .iter()
            .filter(|l| l.ratio_to_raw < min)
            .map(|l| {
                format!(
                    "batch {} x {} clients: {:.2}",
                    l.batch, l.clients, l.ratio_to_raw
                )
            })
            .collect::<Vec<_>>();
        ensure!(
            below.is_empty(),
            "node/raw below {min}: {}",
            below.join(", ")
        );
    }
    Ok(())
}

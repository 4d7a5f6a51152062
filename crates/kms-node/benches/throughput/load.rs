//! The load: the raw rate, the signed requests and the node levels.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use alloy::primitives::Address;
use anyhow::{anyhow, bail, ensure, Context, Result};
use axum::body::Bytes;
use kms_crypto::{
    recover_answer_signer,
    wire::{decode_b64, decode_hex, encode_hex, ReencryptRequest, ReencryptResponse},
};
use kms_node::{
    test_utils::{FakeDirectory, FakePolicy},
    ApiState, Arrangement, Limits, NodeIdentity, Store,
};
use serde::Serialize;
use umbral_pre::{
    reencrypt, Capsule, CapsuleFrag, DefaultDeserialize, DefaultSerialize, SecretKey,
};

use crate::{
    fixture::{
        answer_context, unix_now, Fixture, ADJUDICATOR, CAPSULE_POOL, CHAIN_ID, POLICY_ID,
        SECONDS_PER_PERIOD,
    },
    proc::{cpu_use, CpuSnapshot, CpuUse},
    process::process_cpu_seconds,
};

/// How far ahead of the clock request timestamps may run (the node accepts 300 s either way).
pub(crate) const MAX_TIMESTAMP_LEAD: u64 = 240;
/// The bench's `Limits::max_remembered_per_policy` (see the module docs).
pub(crate) const REMEMBERED_REQUESTS: usize = 20_000_000;
/// Requests pre-signed per level: the raw rate times the window times this margin (the node
/// cannot outrun the raw rate by much); past them, clients sign inline and it is reported.
pub(crate) const PRESIGN_MARGIN: f64 = 1.5;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct RawResult {
    pub(crate) threads: usize,
    pub(crate) seconds: f64,
    pub(crate) cfrags: u64,
    pub(crate) cfrags_per_sec: f64,
    pub(crate) cpu: Option<CpuUse>,
}

/// What the node does per capsule, minus the HTTP, JSON and base64 around it.
pub(crate) fn raw_one(fx: &Fixture, capsule: &Capsule) -> Result<usize> {
    let cfrag = reencrypt(capsule, fx.kfrag.clone());
    let signature = fx.sign_answer(capsule, &cfrag)?;
    let bytes = cfrag.to_bytes().context("cfrag to_bytes")?;
    Ok(bytes.len() + signature.as_bytes().len())
}

pub(crate) fn raw_rate(fx: &Fixture, threads: usize, seconds: f64) -> Result<RawResult> {
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

/// Signs unique requests: each (timestamp, first capsule) pair is used once per run. The
/// timestamp never goes below the clock, so a request stays valid for the node's 300 s skew.
pub(crate) struct RequestSource {
    pub(crate) bob: SecretKey,
    pub(crate) staker: Address,
    pub(crate) capsule_bytes: Arc<Vec<Vec<u8>>>,
    pub(crate) next: Mutex<(u64, usize)>,
    pub(crate) signed_inline: AtomicU64,
}

impl RequestSource {
    /// Requests by the fixture's Bob to its node, over its capsule pool.
    pub(crate) fn for_fixture(fx: &Fixture) -> Self {
        Self {
            bob: fx.keys.bob.clone(),
            staker: fx.staker,
            capsule_bytes: Arc::new(fx.capsule_bytes.clone()),
            next: Mutex::new((0, 0)),
            signed_inline: AtomicU64::new(0),
        }
    }

    pub(crate) fn next_key(&self) -> Result<(u64, usize)> {
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
    pub(crate) fn body(&self, timestamp: u64, first: usize, batch: usize) -> Result<Bytes> {
        let capsules = (0..batch)
            .map(|j| self.capsule_bytes[(first + j) % CAPSULE_POOL].clone())
            .collect::<Vec<_>>();
        let request =
            ReencryptRequest::sign(&self.bob, POLICY_ID, self.staker, timestamp, &capsules);
        Ok(Bytes::from(serde_json::to_vec(&request)?))
    }

    pub(crate) fn next_body(&self, batch: usize) -> Result<(Bytes, usize)> {
        let (timestamp, first) = self.next_key()?;
        Ok((self.body(timestamp, first, batch)?, first))
    }

    /// `count` requests signed on `threads` threads.
    pub(crate) fn presign(
        &self,
        count: usize,
        batch: usize,
        threads: usize,
    ) -> Result<Vec<(Bytes, usize)>> {
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
pub(crate) fn check_answer(
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
                &fx.keys.signer.public_key(),
                &fx.keys.delegating.public_key(),
                &fx.keys.bob.public_key(),
            )
            .map_err(|(e, _)| anyhow!("cfrag {j} does not verify: {e}"))?;
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct LevelResult {
    pub(crate) batch: usize,
    pub(crate) clients: usize,
    pub(crate) seconds: f64,
    pub(crate) requests: u64,
    pub(crate) cfrags: u64,
    pub(crate) errors: u64,
    pub(crate) cfrags_per_sec: f64,
    pub(crate) requests_per_sec: f64,
    /// Mean of the raw windows just before and just after this level.
    pub(crate) raw_cfrags_per_sec: f64,
    pub(crate) ratio_to_raw: f64,
    /// The best ratio the breakdown's single-thread costs allow at this batch (no HTTP).
    pub(crate) ceiling_ratio: Option<f64>,
    /// The raw CPU time per cfrag over the node's (clients included): the ratio on an
    /// otherwise idle machine when the node saturates the cores.
    pub(crate) cpu_ratio_to_raw: Option<f64>,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
    pub(crate) requests_presigned: usize,
    pub(crate) requests_signed_in_window: u64,
    pub(crate) cpu: Option<CpuUse>,
    /// The node's own CPU use, when it runs as a process of its own (`--pinned`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) node_process: Option<NodeProcessCpu>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) first_error: Option<String>,
}

/// The node process's CPU time in a window.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct NodeProcessCpu {
    /// Cores it used (1.0: its core was busy all the window).
    pub(crate) cores: f64,
    /// Its CPU time per cfrag served, in microseconds.
    pub(crate) cpu_us_per_cfrag: f64,
}

pub(crate) struct Node {
    /// The base URL of the bench policy's endpoints.
    pub(crate) url: String,
    pub(crate) http: reqwest::Client,
    /// What keeps the node up: the in-process server task and its store's directory, or the
    /// node process (`--pinned`).
    pub(crate) _guard: Box<dyn std::any::Any + Send + Sync>,
}

/// The load generator's HTTP client: a connection per concurrent client, kept while in use.
/// Idle ones are dropped well before the node closes them (`Limits::header_read_timeout`,
/// 10 s): a connection idle through a long raw or ceiling window is not reused as the node
/// closes it.
pub(crate) fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .pool_idle_timeout(Duration::from_secs(4))
        .build()
        .context("HTTP client")
}

/// Uploads the fixture's kfrag through the real `POST /v1/policies/{id}/kfrag`.
pub(crate) async fn upload_kfrag(fx: &Fixture, node: &Node) -> Result<()> {
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
    Ok(())
}

pub(crate) async fn start_node(fx: &Fixture) -> Result<(Node, Limits)> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    let store = Store::open(dir.path().join("node.redb")).context("open the store")?;
    let directory = Arc::new(FakeDirectory::with(
        POLICY_ID,
        FakePolicy {
            signer: fx.keys.signer_address(),
            arrangement: Arrangement {
                nodes: vec![fx.staker],
                end_timestamp: unix_now() + 24 * 3600,
                owner: Address::repeat_byte(0xa1),
            },
        },
    ));
    let identity = NodeIdentity {
        staker: fx.staker,
        worker: fx.worker.clone(),
        umbral: fx.node_umbral.clone(),
        chain_id: CHAIN_ID,
        adjudicator: ADJUDICATOR,
        policy_manager: alloy::primitives::Address::repeat_byte(0xb0),
        seconds_per_period: SECONDS_PER_PERIOD,
    };
    let limits = Limits {
        max_remembered_per_policy: REMEMBERED_REQUESTS,
        ..Limits::default()
    };
    let state = ApiState::new(identity, store, directory, limits.clone())
        .map_err(|e| anyhow!("API state: {e}"))?
        .with_head_view(kms_node::test_utils::steady_head());
    let app = kms_node::router(Arc::new(state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("bind 127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let node = Node {
        url: format!("http://{addr}/v1/policies/{}", encode_hex(&POLICY_ID)),
        http: http_client()?,
        _guard: Box::new((server, dir)),
    };
    upload_kfrag(fx, &node).await?;
    Ok((node, limits))
}

/// Posts one request; the answer and the latency.
pub(crate) async fn post(node: &Node, body: Bytes) -> Result<(ReencryptResponse, Duration)> {
    post_to(&node.http, &node.url, body).await
}

/// Posts one request to the policy whose endpoints are at `policy_url`.
pub(crate) async fn post_to(
    http: &reqwest::Client,
    policy_url: &str,
    body: Bytes,
) -> Result<(ReencryptResponse, Duration)> {
    let start = Instant::now();
    let response = http
        .post(format!("{policy_url}/reencrypt"))
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
pub(crate) struct ClientTally {
    pub(crate) requests: u64,
    pub(crate) cfrags: u64,
    pub(crate) errors: u64,
    pub(crate) latencies: Vec<Duration>,
    pub(crate) first_error: Option<String>,
}

pub(crate) struct Pool {
    pub(crate) bodies: Vec<(Bytes, usize)>,
    pub(crate) next: AtomicUsize,
}

impl Pool {
    pub(crate) fn take(&self) -> Option<Bytes> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.bodies.get(i).map(|(body, _)| body.clone())
    }
}

pub(crate) async fn client_loop(
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
pub(crate) fn percentile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1e3
}

pub(crate) struct LevelSpec {
    pub(crate) batch: usize,
    pub(crate) clients: usize,
    pub(crate) seconds: f64,
    pub(crate) raw_rate: f64,
    pub(crate) inline_signing: bool,
    pub(crate) sign_threads: usize,
    /// The node's process, when it runs in one of its own (`--pinned`): its CPU time in the
    /// window is reported.
    pub(crate) node_pid: Option<u32>,
}

pub(crate) async fn run_level(
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
    let node_stat = spec.node_pid.map(|pid| format!("/proc/{pid}/stat"));
    let node_cpu_before = node_stat.as_deref().and_then(process_cpu_seconds);
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
    let node_process = node_stat
        .as_deref()
        .and_then(process_cpu_seconds)
        .zip(node_cpu_before)
        .map(|(after, before)| NodeProcessCpu {
            cores: (after - before) / elapsed,
            cpu_us_per_cfrag: (after - before) * 1e6 / total.cfrags.max(1) as f64,
        });
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
        node_process,
        first_error: total.first_error,
    })
}

//! The one-core ceiling of `--pinned`: one thread doing exactly the cryptography the node does
//! per request, without HTTP, JSON or base64: the request message and Bob's signature check,
//! each capsule's check (`Capsule::from_bytes`, through `wire::decode_umbral` as the node calls
//! it), then for each capsule `reencrypt` with the verified kfrag and the worker's signed
//! answer (`SignedCFrag::sign`: the cfrag's serialization and the answer signature).
//!
//! It runs in a process of its own (`--ceiling-worker`), pinned to the node's core: the parent
//! sends `SECONDS BATCH` lines on stdin and reads one [`CeilingWindow`] JSON line per window.

use std::{
    io::BufRead,
    time::{Duration, Instant},
};

use anyhow::{anyhow, ensure, Context, Result};
use kms_crypto::{
    wire::{self, ReencryptRequest, SignedCFrag},
    AnswerContext,
};
use serde::{Deserialize, Serialize};
use umbral_pre::{reencrypt, Capsule, Signature};

use crate::{
    fixture::{answer_context, current_period, unix_now, Fixture, CAPSULE_POOL, POLICY_ID},
    process::process_cpu_seconds,
};

/// Distinct requests a window cycles through.
const REQUESTS: usize = 64;

/// One window of the ceiling.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct CeilingWindow {
    pub(crate) batch: usize,
    pub(crate) seconds: f64,
    pub(crate) cfrags: u64,
    pub(crate) cfrags_per_sec: f64,
    /// CPU time of the worker per cfrag, in microseconds.
    pub(crate) cpu_us_per_cfrag: Option<f64>,
}

/// A request as the node has it once its JSON, base64 and hex are decoded.
struct Decoded {
    timestamp: u64,
    nonce: [u8; 16],
    signature: Signature,
    capsule_bytes: Vec<Vec<u8>>,
}

/// `--ceiling-worker`: answers windows until stdin closes.
pub(crate) fn ceiling_worker() -> Result<()> {
    let fx = Fixture::new()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let mut words = line.split_whitespace();
        let seconds: f64 = words.next().context("seconds")?.parse()?;
        let batch: usize = words.next().context("batch")?.parse()?;
        let window = window(&fx, seconds, batch)?;
        println!("{}", serde_json::to_string(&window)?);
    }
    Ok(())
}

fn window(fx: &Fixture, seconds: f64, batch: usize) -> Result<CeilingWindow> {
    let requests = (0..REQUESTS)
        .map(|r| {
            let capsules = (0..batch)
                .map(|j| fx.capsule_bytes[(r * batch + j) % CAPSULE_POOL].clone())
                .collect::<Vec<_>>();
            let request =
                ReencryptRequest::sign(&fx.keys.bob, POLICY_ID, fx.staker, unix_now(), &capsules);
            Ok(Decoded {
                timestamp: request.timestamp,
                nonce: request.decode_nonce()?,
                signature: request.decode_signature()?,
                capsule_bytes: request.capsule_bytes()?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let context = answer_context(fx, current_period());
    // One request first, outside the window.
    node_work(fx, &context, &requests[0])?;
    let cpu_before = process_cpu_seconds("/proc/self/stat");
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let mut cfrags = 0u64;
    let mut i = 0;
    while Instant::now() < deadline {
        cfrags += node_work(fx, &context, &requests[i % REQUESTS])?;
        i += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds("/proc/self/stat")
        .zip(cpu_before)
        .map(|(after, before)| (after - before) * 1e6 / cfrags.max(1) as f64);
    Ok(CeilingWindow {
        batch,
        seconds: elapsed,
        cfrags,
        cfrags_per_sec: cfrags as f64 / elapsed,
        cpu_us_per_cfrag: cpu,
    })
}

/// What the node computes for one request (`api/reencrypt.rs`), minus HTTP and encodings.
fn node_work(fx: &Fixture, context: &AnswerContext, request: &Decoded) -> Result<u64> {
    let message = wire::reencrypt_message(
        POLICY_ID,
        fx.staker,
        request.timestamp,
        request.nonce,
        &request.capsule_bytes,
    );
    ensure!(
        request
            .signature
            .verify(&fx.keys.bob.public_key(), &message),
        "Bob's signature does not verify"
    );
    let capsules = request
        .capsule_bytes
        .iter()
        .map(|bytes| wire::decode_umbral::<Capsule>("capsule", bytes))
        .collect::<Result<Vec<_>, _>>()?;
    for capsule in &capsules {
        let cfrag = reencrypt(capsule, fx.kfrag.clone()).unverify();
        std::hint::black_box(
            SignedCFrag::sign(&fx.worker, context, capsule, &cfrag)
                .map_err(|e| anyhow!("sign: {e}"))?,
        );
    }
    Ok(capsules.len() as u64)
}

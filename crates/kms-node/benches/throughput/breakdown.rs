//! The single-thread cost of each step the node and the client perform.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{anyhow, ensure, Context, Result};
use kms_crypto::wire::{encode_b64, encode_hex, ReencryptRequest, ReencryptResponse, SignedCFrag};
use kms_node::{Store, StoredKfrag};
use serde::Serialize;
use umbral_pre::{reencrypt, Capsule, DefaultDeserialize, DefaultSerialize, KeyFrag};

use crate::fixture::{current_period, unix_now, Fixture, POLICY_ID};

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Step {
    /// What was timed.
    pub(crate) step: &'static str,
    /// Who pays it: [`RAW`], [`NODE_CFRAG`], [`NODE_REQUEST`] or [`CLIENT_REQUEST`].
    pub(crate) paid_by: &'static str,
    /// Mean single-thread cost, in microseconds.
    pub(crate) micros: f64,
}

/// A step of the raw rate (the node pays it too, per cfrag).
pub(crate) const RAW: &str = "raw, per cfrag";
/// What the node adds per cfrag.
pub(crate) const NODE_CFRAG: &str = "node, per cfrag";
/// What the node adds per request.
pub(crate) const NODE_REQUEST: &str = "node, per request";
/// What the client pays per request.
pub(crate) const CLIENT_REQUEST: &str = "client, per request";

/// The best node/raw ratio the steps allow for `batch` capsules per request, if HTTP, the
/// runtime and the client cost nothing (plus the client's signing if `client_signs`).
pub(crate) fn ceiling(steps: &[Step], batch: usize, client_signs: bool) -> Option<f64> {
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
pub(crate) fn time_op(budget: Duration, mut op: impl FnMut() -> Result<()>) -> Result<f64> {
    op()?;
    let start = Instant::now();
    let mut runs = 0u32;
    while start.elapsed() < budget || runs < 10 {
        op()?;
        runs += 1;
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / f64::from(runs))
}

pub(crate) fn breakdown(fx: &Fixture, store: &Store) -> Result<Vec<Step>> {
    let budget = Duration::from_millis(300);
    let capsule = &fx.capsules[0];
    let cfrag = reencrypt(capsule, fx.kfrag.clone());
    let stored = store
        .get_kfrag(POLICY_ID)?
        .ok_or_else(|| anyhow!("no kfrag in the breakdown store"))?;
    let request = fx.first_request();
    let request_json = serde_json::to_vec(&request)?;
    let message = kms_crypto::wire::reencrypt_message(
        POLICY_ID,
        fx.staker,
        request.timestamp,
        request.decode_nonce()?,
        &fx.capsule_bytes[..1],
    );
    let bob_signature = request.decode_signature()?;
    let signature = fx.sign_answer(capsule, &cfrag)?;
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
            std::hint::black_box(fx.sign_answer(capsule, &cfrag)?);
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
            ensure!(bob_signature.verify(&fx.keys.bob.public_key(), &message));
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
            let request = fx.first_request();
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
pub(crate) fn breakdown_store(fx: &Fixture, dir: &Path) -> Result<Store> {
    let store = Store::open(dir.join("breakdown.redb"))?;
    store.put_kfrag_if_absent(
        POLICY_ID,
        &StoredKfrag {
            kfrag: fx.kfrag.to_bytes().context("kfrag")?.into_vec(),
            delegating_key: fx.keys.delegating.public_key(),
            receiving_key: fx.keys.bob.public_key(),
            verifying_key: fx.keys.signer.public_key(),
            end_timestamp: unix_now() + 3600,
            nodes: vec![fx.staker],
        },
    )?;
    Ok(store)
}

//! `POST /v1/policies/{id}/reencrypt`: Bob asks for cfrags ([`ReencryptRequest`]) and each is
//! answered signed by the worker ([`SignedCFrag::sign`]). Here are the request's limits, its
//! signature, the replay guard and the policy's checks (from the store and the head view: no
//! chain call).

use std::sync::Arc;

use alloy::signers::local::PrivateKeySigner;
use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, State},
    http::StatusCode,
    Json,
};
use kms_crypto::{
    wire::{self, ReencryptRequest, ReencryptResponse, SignedCFrag},
    AnswerContext,
};
use sha2::{Digest, Sha256};
use umbral_pre::{reencrypt, Capsule, CapsuleFrag, DefaultDeserialize, KeyFrag, VerifiedKeyFrag};

use super::{
    body_bytes, gone_by_order, gone_ended, gone_revoked, parse_json, parse_policy_id, run_blocking,
    unix_now, with_store, ApiError, ApiState, Behaviour, Confirmed,
};
use crate::{directory::PolicyDirectory, guard::Admission, store::StoredKfrag};

/// Verified kfrags kept in memory, per generation of `guard::Recent` (so at most twice as many,
/// under 1 KB each): a node serving up to this many policies at once restores none of them
/// from the store's bytes.
pub(super) const VERIFIED_KFRAG_CACHE: usize = 65_536;

/// Digests of the kfrag records this process verified, per generation of `guard::Recent` (so at
/// most twice as many, ~100 bytes each).
pub(super) const VERIFIED_DIGESTS: usize = 500_000;

impl<D: PolicyDirectory> ApiState<D> {
    /// The stored kfrag, verified: from the cache when the record read now has the digest of the
    /// one verified before (verification depends only on the kfrag's bytes and the three keys,
    /// so a deleted or replaced kfrag is never served from the cache). Past the cache, a record whose digest
    /// this process has verified before is restored without the curve checks
    /// (`KeyFrag::skip_verification`, for trusted storage): the node holds more policies than
    /// the cache, and verifying again on every miss cost a fifth of a request. A record not
    /// verified by this process, or changed since, is verified in full. Blocking (curve
    /// arithmetic).
    fn verified_kfrag(
        &self,
        policy_id: [u8; 16],
        record: &StoredKfrag,
    ) -> Result<VerifiedKeyFrag, ApiError> {
        let digest = record_digest(record);
        if let Ok(mut cache) = self.verified.lock() {
            if let Some((verified_digest, verified)) = cache.get(&policy_id) {
                if *verified_digest == digest {
                    return Ok(verified.clone());
                }
            }
        }
        let kfrag = KeyFrag::from_bytes(&record.kfrag).map_err(ApiError::internal)?;
        let seen = self
            .verified_digests
            .lock()
            .ok()
            .and_then(|mut digests| digests.get(&policy_id).copied())
            == Some(digest);
        let verified = if seen {
            kfrag.skip_verification()
        } else {
            let verified = kfrag
                .verify(
                    &record.verifying_key,
                    Some(&record.delegating_key),
                    Some(&record.receiving_key),
                )
                .map_err(|(e, _)| {
                    ApiError::internal(format!("stored kfrag does not verify: {e}"))
                })?;
            if let Ok(mut digests) = self.verified_digests.lock() {
                digests.insert(policy_id, digest);
            }
            verified
        };
        if let Ok(mut cache) = self.verified.lock() {
            cache.insert(policy_id, (digest, verified.clone()));
        }
        Ok(verified)
    }
}

/// What a kfrag's verification depends on: its bytes and the three keys.
fn record_digest(record: &StoredKfrag) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(
        u32::try_from(record.kfrag.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    hasher.update(&record.kfrag);
    for key in [
        &record.verifying_key,
        &record.delegating_key,
        &record.receiving_key,
    ] {
        hasher.update(key.to_compressed_bytes());
    }
    hasher.finalize().into()
}

/// `POST /v1/policies/{id}/reencrypt`.
pub(super) async fn reencrypt_capsules<D: PolicyDirectory>(
    State(state): State<Arc<ApiState<D>>>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ReencryptResponse>, ApiError> {
    let policy_id = parse_policy_id(&id)?;
    let request: ReencryptRequest = parse_json(&body_bytes(body)?)?;
    let limits = &state.limits;
    if request.capsules.is_empty() {
        return Err(ApiError::bad_request("capsules: empty"));
    }
    if request.capsules.len() > limits.max_capsules {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "capsules: {} in one request, at most {}",
                request.capsules.len(),
                limits.max_capsules
            ),
        ));
    }
    let now = unix_now();
    if request.timestamp.abs_diff(now) > limits.max_clock_skew_secs {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!(
                "timestamp {} is more than {} s from the node's clock ({now})",
                request.timestamp, limits.max_clock_skew_secs
            ),
        ));
    }
    let capsule_bytes = request.capsule_bytes()?;
    let signature = request.decode_signature()?;
    let nonce = request.decode_nonce()?;

    let held = with_store(&state.store, move |s| s.held(policy_id)).await?;
    let (record, policy) = (held.kfrag, held.policy);
    let confirmed = Confirmed::of(policy.as_ref());
    // The owner's signed order: refused from the moment the node kept it, before any block.
    if held.ordered {
        return Err(gone_by_order());
    }
    let Some(record) = record else {
        // A revocation or the policy's end deletes the kfrag; the confirmed record says which.
        return Err(match policy {
            Some(_) if confirmed == Confirmed::Revoked => gone_revoked(),
            Some(p) if p.end_timestamp <= now.max(state.clock.now()) => gone_ended(p.end_timestamp),
            _ => ApiError::new(
                StatusCode::NOT_FOUND,
                "this node holds no kfrag for the policy",
            ),
        });
    };
    // From what the node follows: no chain call on the request path, and before any curve
    // arithmetic.
    state.ensure_live(policy_id, record.end_timestamp, confirmed)?;
    let staker = state.identity.staker;
    let message =
        wire::reencrypt_message(policy_id, staker, request.timestamp, nonce, &capsule_bytes);
    // The elliptic-curve work (the signature, capsule checks, the kfrag) off the async threads.
    // The signature covers the raw capsule bytes, so it is checked first: decoding a capsule
    // verifies it (curve arithmetic), which only Bob's requests are worth.
    let (capsules, verified) = {
        let (state, message) = (state.clone(), message.clone());
        run_blocking(&state.clone(), move || {
            if !signature.verify(&record.receiving_key, &message) {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "signature: not by the policy's receiving key over this request",
                ));
            }
            let capsules = capsule_bytes
                .iter()
                .enumerate()
                .map(|(i, bytes)| wire::decode_umbral::<Capsule>(&format!("capsules[{i}]"), bytes))
                .collect::<Result<Vec<_>, _>>()?;
            let verified = state.verified_kfrag(policy_id, &record)?;
            Ok((capsules, verified))
        })
        .await?
    };
    // Only a request signed by the Bob of a policy whose kfrag the node holds gets here, so the
    // guard holds entries of those policies only, each within its own quota.
    let digest: [u8; 32] = Sha256::digest(&message).into();
    let admission = match state.replays.lock() {
        Ok(mut guard) => guard.admit(
            policy_id,
            digest,
            request.timestamp.saturating_add(limits.max_clock_skew_secs),
            now,
        ),
        Err(_) => return Err(ApiError::internal("replay guard poisoned")),
    };
    match admission {
        Admission::New => {}
        Admission::Replay => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "replayed request: sign a new one",
            ))
        }
        Admission::OverQuota { retry_after_secs } => {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "this policy has {} recent requests remembered against replays, its quota: \
                     retry in {retry_after_secs} s",
                    limits.max_remembered_per_policy
                ),
            )
            .retry_after(retry_after_secs))
        }
    }

    // Every answer of the batch names the same period: the chain's, by the node's clock.
    let identity = &state.identity;
    let context = AnswerContext {
        chain_id: identity.chain_id,
        adjudicator: identity.adjudicator,
        staker,
        period: state.clock.period(identity.seconds_per_period),
        policy_id,
    };
    // A batch is spread over the worker pool, so one client's batch uses every core.
    let count = capsules.len();
    let per_job = count.div_ceil(limits.workers.max(1));
    let jobs = capsules.chunks(per_job).map(|chunk| {
        let (chunk, verified) = (chunk.to_vec(), verified.clone());
        let worker = state.identity.worker.clone();
        let behaviour = state.behaviour;
        run_blocking(&state, move || {
            serve(&verified, &worker, &context, &chunk, behaviour)
        })
    });
    let cfrags = futures_util::future::try_join_all(jobs)
        .await?
        .into_iter()
        .flatten()
        .collect();
    state
        .metrics
        .reencryptions
        .inc_by(u64::try_from(count).unwrap_or(u64::MAX));
    Ok(Json(ReencryptResponse { cfrags }))
}

/// Re-encrypts every capsule with the verified kfrag and signs each answer.
fn serve(
    verified: &VerifiedKeyFrag,
    worker: &PrivateKeySigner,
    context: &AnswerContext,
    capsules: &[Capsule],
    behaviour: Behaviour,
) -> Result<Vec<SignedCFrag>, ApiError> {
    capsules
        .iter()
        .map(|capsule| {
            let cfrag = reencrypt(capsule, verified.clone()).unverify();
            let cfrag = match behaviour {
                Behaviour::Honest => cfrag,
                Behaviour::WrongCFrags => wrong_cfrag(&cfrag)?,
            };
            SignedCFrag::sign(worker, context, capsule, &cfrag).map_err(ApiError::internal)
        })
        .collect()
}

/// [`Behaviour::WrongCFrags`]: `E1` replaced by `E2` (both valid points, so the cfrag still
/// deserializes).
fn wrong_cfrag(cfrag: &CapsuleFrag) -> Result<CapsuleFrag, ApiError> {
    use kms_crypto::umbral::layout::{E1, E2};
    let mut tampered = cfrag.to_bytes_simple().into_vec();
    let e2 = tampered
        .get(E2)
        .ok_or_else(|| ApiError::internal("cfrag shorter than its layout"))?
        .to_vec();
    tampered[E1].copy_from_slice(&e2);
    kms_crypto::umbral::cfrag_from_bytes_simple(&tampered).map_err(ApiError::internal)
}

//! `POST /v1/policies/{id}/kfrag`: Alice uploads a kfrag sealed for this node
//! ([`KfragUpload`]). The upload is opened by `kms_crypto::wire`; here are its limits (a
//! per-client rate, the cache of unknown policies) and the chain's checks.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use alloy::primitives::Address;
use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, ConnectInfo, Path, State},
    http::StatusCode,
    Extension, Json,
};
use kms_crypto::{
    ethereum_address,
    wire::{encode_hex, KfragAccepted, KfragUpload, KfragUploadError},
};

use super::{
    body_bytes, parse_json, parse_policy_id, run_blocking, with_store, ApiError, ApiState,
    Confirmed,
};
use crate::{
    directory::PolicyDirectory,
    guard::client_key,
    store::{PutOutcome, StoredKfrag},
};

impl<D: PolicyDirectory> ApiState<D> {
    /// Takes one of the client's tokens for requests that cost a chain call (kfrag uploads,
    /// relayed evidence; `what` names them in the 429): 429 when it has none left. A request
    /// without a peer address (handed to the router in process) counts as one unknown client.
    pub(super) fn admit_upload(
        &self,
        peer: Option<SocketAddr>,
        what: &str,
    ) -> Result<(), ApiError> {
        let checked = match self.uploads.lock() {
            Ok(mut limiter) => limiter.check(client_key(peer.map(|p| p.ip())), Instant::now()),
            Err(_) => return Err(ApiError::internal("upload rate limiter poisoned")),
        };
        checked.map_err(|wait| {
            let retry_after = wait.as_secs().saturating_add(1);
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many {what} from this address (kfrag uploads and evidence count \
                     together: at most {} at once, then {} a minute): retry in {retry_after} s",
                    self.limits.kfrag_upload_burst, self.limits.kfrag_uploads_per_minute
                ),
            )
            .retry_after(retry_after)
        })
    }

    /// The policy's kfrag signer on chain; 404 if there is no such policy. A policy id the
    /// chain did not know is answered from memory for [`Limits::unknown_policy_ttl`], so that
    /// uploads repeating it cost no chain call.
    async fn kfrag_signer(&self, policy_id: [u8; 16]) -> Result<Address, ApiError> {
        let unknown = |ttl: Duration| {
            ApiError::new(StatusCode::NOT_FOUND, "no such policy on chain")
                .retry_after(ttl.as_secs().max(1))
        };
        let known_unknown = match self.unknown_policies.lock() {
            Ok(mut cache) => cache
                .is_unknown(policy_id, Instant::now())
                .then(|| cache.ttl()),
            Err(_) => return Err(ApiError::internal("unknown-policy cache poisoned")),
        };
        if let Some(ttl) = known_unknown {
            return Err(unknown(ttl));
        }
        match self.directory.kfrag_signer(policy_id).await {
            Ok(Some(signer)) => Ok(signer),
            Ok(None) => {
                let ttl = match self.unknown_policies.lock() {
                    Ok(mut cache) => {
                        cache.remember(policy_id, Instant::now());
                        cache.ttl()
                    }
                    Err(_) => return Err(ApiError::internal("unknown-policy cache poisoned")),
                };
                Err(unknown(ttl))
            }
            Err(e) => Err(ApiError::chain(e)),
        }
    }
}

impl From<KfragUploadError> for ApiError {
    fn from(e: KfragUploadError) -> Self {
        match e {
            KfragUploadError::NotSignedForThisNode => {
                Self::new(StatusCode::UNAUTHORIZED, e.to_string())
            }
            KfragUploadError::Reserialize(e) => Self::internal(e),
            e => Self::bad_request(e.to_string()),
        }
    }
}

/// `POST /v1/policies/{id}/kfrag`.
pub(super) async fn upload_kfrag<D: PolicyDirectory>(
    State(state): State<Arc<ApiState<D>>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<KfragAccepted>), ApiError> {
    // Not while the node cannot vouch for the chain (starting, RPC down): before the rate limit,
    // so that a client retrying then keeps its tokens.
    state.ensure_fresh()?;
    // Each upload may cost a chain call: a client gets so many a minute.
    state.admit_upload(
        peer.map(|Extension(ConnectInfo(addr))| addr),
        "kfrag uploads",
    )?;
    let policy_id = parse_policy_id(&id)?;
    let upload: KfragUpload = parse_json(&body_bytes(body)?)?;
    let upload = upload.decode()?;
    let staker = state.identity.staker;

    // The chain first: it is cheaper than decrypting, and junk for unknown policies stops here
    // (and is remembered for a moment, so that repeating it costs no chain call).
    let signer = state.kfrag_signer(policy_id).await?;
    if ethereum_address(&upload.verifying_key) != signer {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("verifyingKey is not the policy's kfrag signer {signer}"),
        ));
    }
    // Bound to this policy and this node by Alice's kfrag signer: an upload seen elsewhere
    // cannot be stored under another policy of the same Alice (and make hers a 409).
    upload.check_signed_for(policy_id, staker)?;
    let arrangement = state
        .directory
        .arrangement(policy_id)
        .await
        .map_err(ApiError::chain)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                format!("the policy does not name this node ({staker})"),
            )
        })?;
    if !arrangement.nodes.contains(&staker) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("the policy does not name this node ({staker})"),
        ));
    }
    // The upload has just found the policy on chain (`arrangement`): only a revocation or its
    // end refuses it here, not a creation the follower has not read yet.
    let held = with_store(&state.store, move |s| s.held(policy_id)).await?;
    if held.ordered {
        return Err(super::gone_by_order());
    }
    let stored_policy = held.policy;
    let confirmed = match &stored_policy {
        Some(p) if p.revoked => Confirmed::Revoked,
        _ => Confirmed::Live,
    };
    // The creation's end, or later if the follower applied an extension.
    let end_timestamp = stored_policy
        .as_ref()
        .map_or(arrangement.end_timestamp, |p| {
            p.end_timestamp.max(arrangement.end_timestamp)
        });
    state.ensure_live(policy_id, end_timestamp, confirmed)?;

    let umbral = state.identity.umbral.clone();
    let opened = run_blocking(&state, move || Ok(upload.open(&umbral)?)).await?;

    let record = StoredKfrag {
        kfrag: opened.kfrag_bytes,
        delegating_key: opened.delegating_key,
        receiving_key: opened.receiving_key,
        verifying_key: opened.verifying_key,
        end_timestamp,
        nodes: arrangement.nodes,
    };
    let outcome = with_store(&state.store, move |s| {
        s.put_kfrag_if_absent(policy_id, &record)
    })
    .await?;
    let policy_id_hex = encode_hex(&policy_id);
    match outcome {
        PutOutcome::Inserted => {
            state.metrics.kfrags.inc();
            tracing::info!(policy = %policy_id_hex, "kfrag stored");
            Ok((
                StatusCode::CREATED,
                Json(KfragAccepted {
                    policy_id: policy_id_hex,
                    created: true,
                }),
            ))
        }
        PutOutcome::AlreadyStored => Ok((
            StatusCode::OK,
            Json(KfragAccepted {
                policy_id: policy_id_hex,
                created: false,
            }),
        )),
        PutOutcome::Conflict => Err(ApiError::new(
            StatusCode::CONFLICT,
            "another kfrag is already stored for this policy",
        )),
    }
}

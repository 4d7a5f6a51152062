//! `POST /v1/policies/{id}/revocation`: the policy owner's signed revocation order
//! ([`kms_crypto::revocation`]). The node checks the owner's signature, keeps the order and
//! refuses the policy from then on, before any transaction; `GET` hands the kept orders to
//! anyone, who may carry one out on chain (`PolicyManager.revokeBySignature`), which refunds the
//! owner. The follower forgets the orders when the revocation is confirmed; the pruning duty, when
//! the policy ends.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, ConnectInfo, Path, State},
    http::StatusCode,
    Extension, Json,
};
use kms_crypto::{
    revocation::{OrderDomain, RevocationAccepted, RevocationOrderBody, RevocationOrders},
    wire::encode_hex,
};

use super::{
    body_bytes, gone_ended, gone_revoked, parse_json, parse_policy_id, unix_now, with_store,
    ApiError, ApiState,
};
use crate::{directory::PolicyDirectory, store::OrderOutcome};

impl<D: PolicyDirectory> ApiState<D> {
    /// The domain the node's owners sign their orders in.
    fn order_domain(&self) -> OrderDomain {
        OrderDomain {
            chain_id: self.identity.chain_id,
            policy_manager: self.identity.policy_manager,
        }
    }
}

/// `POST /v1/policies/{id}/revocation`.
pub(super) async fn take_order<D: PolicyDirectory>(
    State(state): State<Arc<ApiState<D>>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<RevocationAccepted>), ApiError> {
    let policy_id = parse_policy_id(&id)?;
    let body: RevocationOrderBody = parse_json(&body_bytes(body)?)?;
    let order = body.decode()?;
    let staker = state.identity.staker;
    if order.policy_id != policy_id {
        return Err(ApiError::bad_request(format!(
            "policyId: the order is for policy {}, posted to policy {}",
            encode_hex(&order.policy_id),
            encode_hex(&policy_id)
        )));
    }
    if !order.covers(staker) {
        return Err(ApiError::bad_request(format!(
            "node: the order revokes the arrangement of {}, not this node's ({staker}): send it \
             to that node",
            order.node
        )));
    }
    let now = unix_now();
    if order.deadline < now {
        return Err(ApiError::bad_request(format!(
            "deadline: the order expired at {} (now {now}): it could not be carried out on \
             chain; sign a new one",
            order.deadline
        )));
    }
    // Only a policy this node serves: an order for anything else would be kept for nothing.
    let held = with_store(&state.store, move |s| s.held(policy_id)).await?;
    if held.kfrag.is_none() {
        return Err(match held.policy {
            Some(p) if p.revoked => gone_revoked(),
            Some(p) if p.end_timestamp <= now => gone_ended(p.end_timestamp),
            _ => ApiError::new(
                StatusCode::NOT_FOUND,
                "this node holds no kfrag for the policy: it has nothing to refuse",
            ),
        });
    }
    // The owner from the confirmed record; else (a policy the follower has not confirmed yet, a
    // record written before owners were) from the chain, which costs a call and so a token.
    let owner = match held.policy.as_ref().map(|p| p.owner) {
        Some(owner) if !owner.is_zero() => owner,
        _ => {
            state.admit_upload(
                peer.map(|Extension(ConnectInfo(addr))| addr),
                "revocation orders",
            )?;
            state
                .directory
                .arrangement(policy_id)
                .await
                .map_err(ApiError::chain)?
                .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such policy on chain"))?
                .owner
        }
    };
    let signer = order
        .signer(state.order_domain())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if signer != owner {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "signature: signed by {signer}, not by the policy's owner {owner} (or for another \
                 chain, PolicyManager, node or deadline than the order says)"
            ),
        ));
    }
    let outcome = with_store(&state.store, move |s| {
        s.put_revocation_order(policy_id, &order)
    })
    .await?;
    let policy_id_hex = encode_hex(&policy_id);
    match outcome {
        OrderOutcome::Kept => {
            state.metrics.revocation_orders.inc();
            tracing::info!(
                policy = %policy_id_hex,
                node = %order.node,
                deadline = order.deadline,
                "revocation order kept: the policy is refused"
            );
            Ok((
                StatusCode::CREATED,
                Json(RevocationAccepted {
                    policy_id: policy_id_hex,
                    created: true,
                }),
            ))
        }
        OrderOutcome::AlreadyKept => Ok((
            StatusCode::OK,
            Json(RevocationAccepted {
                policy_id: policy_id_hex,
                created: false,
            }),
        )),
        // Deleted between the read and the write: revoked or ended meanwhile.
        OrderOutcome::NoKfrag => Err(ApiError::new(
            StatusCode::GONE,
            "the policy's kfrag was deleted meanwhile: the policy is revoked or has ended",
        )),
    }
}

/// `GET /v1/policies/{id}/revocation`.
pub(super) async fn orders<D: PolicyDirectory>(
    State(state): State<Arc<ApiState<D>>>,
    Path(id): Path<String>,
) -> Result<Json<RevocationOrders>, ApiError> {
    let policy_id = parse_policy_id(&id)?;
    let orders = with_store(&state.store, move |s| s.revocation_orders(policy_id)).await?;
    if orders.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "this node holds no revocation order for the policy (none was sent to it, or the \
             revocation is settled, or the policy has ended)",
        ));
    }
    Ok(Json(RevocationOrders {
        orders: orders.iter().map(RevocationOrderBody::from).collect(),
    }))
}

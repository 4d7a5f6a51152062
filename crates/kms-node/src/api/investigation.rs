//! `POST /v1/evidence`, `GET /v1/evidence/{id}` and `GET /v1/network`: the node as the
//! network's investigator (see `crate::evidence` and `crate::audit`).

use std::{future::Future, pin::Pin, sync::Arc};

use alloy::primitives::{Address, B256};
use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use kms_crypto::{
    fault::Fault,
    wire::{Availability, EvidenceStatus, NetworkView},
};
use serde::Deserialize;
use tokio::sync::RwLock;

use super::{body_bytes, unix_now, with_store, ApiError, ApiState};
use crate::{
    audit::NetworkSnapshot,
    directory::PolicyDirectory,
    evidence::{EvidenceDesk, Refusal},
    store::{EvidenceRecord, EvidenceSource, EvidenceState},
};

/// How many periods `GET /v1/network`'s availability covers: the current one and the three
/// before it.
pub const RECENT_PERIODS: u64 = 4;

/// [`EvidenceIntake::accept_relayed`]'s answer: the evidence id, its record, and whether it
/// was new.
pub(crate) type Accepting<'a> =
    Pin<Box<dyn Future<Output = Result<(B256, EvidenceRecord, bool), Refusal>> + Send + 'a>>;

/// What the API needs of the evidence desk, without its provider type.
pub trait EvidenceIntake: Send + Sync + 'static {
    /// [`EvidenceDesk::accept`] of a relayed fault.
    fn accept_relayed(&self, fault: Fault, beneficiary: Option<Address>, now: u64)
        -> Accepting<'_>;
}

impl<P> EvidenceIntake for EvidenceDesk<P>
where
    P: alloy::providers::Provider + Clone + Send + Sync + 'static,
{
    fn accept_relayed(
        &self,
        fault: Fault,
        beneficiary: Option<Address>,
        now: u64,
    ) -> Accepting<'_> {
        Box::pin(self.accept(fault, beneficiary, EvidenceSource::Relayed, now))
    }
}

/// The investigator parts of the API: absent on a node that neither files evidence nor audits.
#[derive(Clone, Default)]
pub struct Investigation {
    /// Judges and records relayed evidence.
    pub evidence: Option<Arc<dyn EvidenceIntake>>,
    /// The stakers as the auditor last read them.
    pub network: Option<Arc<RwLock<NetworkSnapshot>>>,
}

impl std::fmt::Debug for Investigation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Investigation")
            .field("evidence", &self.evidence.is_some())
            .field("network", &self.network.is_some())
            .finish()
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        let status = match &refusal {
            Refusal::BadRequest(_) => StatusCode::BAD_REQUEST,
            Refusal::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Refusal::AlreadyEvaluated(_) => StatusCode::CONFLICT,
            Refusal::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, refusal.to_string())
    }
}

/// `POST /v1/evidence`'s query: who is paid.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EvidenceQuery {
    beneficiary: Option<String>,
}

fn status_of(id: B256, record: &EvidenceRecord) -> EvidenceStatus {
    let mut status = EvidenceStatus {
        id,
        state: String::new(),
        staker: record.fault.staker,
        beneficiary: record.beneficiary,
        source: match record.source {
            EvidenceSource::Relayed => "relayed",
            EvidenceSource::Audit => "audit",
        }
        .to_owned(),
        tx_hash: None,
        verdict: None,
        penalty: None,
        reward: None,
        reason: None,
    };
    status.state = match &record.state {
        EvidenceState::Pending => "pending",
        EvidenceState::Committed { .. } => "committed",
        EvidenceState::Evaluated {
            tx_hash,
            verdict,
            penalty,
            reward,
        } => {
            status.tx_hash = Some(*tx_hash);
            status.verdict = Some(verdict.clone());
            status.penalty = Some(*penalty);
            status.reward = Some(*reward);
            if verdict == "Correct" {
                "correct"
            } else {
                "slashed"
            }
        }
        EvidenceState::EvaluatedElsewhere => "evaluatedElsewhere",
        EvidenceState::Refused { reason } => {
            status.reason = Some(reason.clone());
            "refused"
        }
    }
    .to_owned();
    status
}

/// `POST /v1/evidence[?beneficiary=0x...]`: judges a fault file as the Adjudicator would and,
/// if slashable, files it on chain: 202 with its status (200 if it was accepted before), or a
/// 4xx with the contract's reason. Nothing is sent for a refused one.
pub(super) async fn relay_evidence<D: PolicyDirectory>(
    State(state): State<Arc<ApiState<D>>>,
    Query(query): Query<EvidenceQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Some(intake) = state.investigation.evidence.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "this node does not file evidence",
        ));
    };
    let body = body_bytes(body)?;
    let beneficiary = query
        .beneficiary
        .map(|text| {
            text.parse::<Address>()
                .map_err(|e| ApiError::bad_request(format!("beneficiary: not an address ({e})")))
        })
        .transpose()?;
    let fault = Fault::from_json(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let (id, record, new) = intake
        .accept_relayed(fault, beneficiary, unix_now())
        .await?;
    let status = if new {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(status_of(id, &record))).into_response())
}

/// `GET /v1/evidence/{id}`: where the filing of the evidence `id` stands.
pub(super) async fn evidence_status<D: PolicyDirectory>(
    State(state): State<Arc<ApiState<D>>>,
    Path(id): Path<String>,
) -> Result<Json<EvidenceStatus>, ApiError> {
    let id: B256 = id.parse().map_err(|e| {
        ApiError::bad_request(format!("evidence id: expected 32 bytes of hex ({e})"))
    })?;
    let record = with_store(&state.store, move |store| store.evidence(id))
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such evidence on this node"))?;
    Ok(Json(status_of(id, &record)))
}

/// `GET /v1/network`: every staker with a node record (as last read from the chain) and what
/// this node's audits saw of each in the recent periods.
pub(super) async fn network<D: PolicyDirectory>(
    State(state): State<Arc<ApiState<D>>>,
) -> Result<Json<NetworkView>, ApiError> {
    let Some(snapshot) = state.investigation.network.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "this node keeps no network view",
        ));
    };
    let snapshot = snapshot.read().await.clone();
    if snapshot.block == 0 {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the node has not read the stakers yet",
        )
        .retry_after(5));
    }
    let from_period = snapshot.period.saturating_sub(RECENT_PERIODS - 1);
    let seen = with_store(&state.store, move |store| {
        store.availability_from(from_period)
    })
    .await?;
    let mut by_peer: std::collections::HashMap<Address, Availability> =
        std::collections::HashMap::new();
    for (peer, _, availability) in seen {
        by_peer.entry(peer).or_default().add(&availability);
    }
    let peers = snapshot
        .peers
        .into_iter()
        .map(|mut peer| {
            peer.availability = by_peer.remove(&peer.staker);
            peer
        })
        .collect();
    Ok(Json(NetworkView {
        chain_id: state.identity.chain_id,
        node: state.identity.staker,
        block: snapshot.block,
        current_period: snapshot.period,
        from_period,
        peers,
    }))
}

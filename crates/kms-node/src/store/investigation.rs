//! What the node keeps as an investigator of the network: the evidence it files (relayed or found
//! by its audits), its audit policies, and the availability of every peer it audited.
//!
//! | table              | key                          | value                          |
//! |--------------------|------------------------------|--------------------------------|
//! | `evidence_v1`      | `[u8; 32]` evidence hash     | JSON of an [`EvidenceRecord`]  |
//! | `audits_v1`        | `u64` period                 | JSON of an [`AuditRecord`]     |
//! | `availability_v1`  | `([u8; 20] staker, u64 period)` | JSON of an [`Availability`] (the wire's) |

use alloy::primitives::{Address, B256, U256};
use kms_crypto::{fault::Fault, wire::Availability};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{db_err, json_corrupt, Store, StoreError};

pub(super) const EVIDENCE: TableDefinition<'_, [u8; 32], &[u8]> =
    TableDefinition::new("evidence_v1");
pub(super) const AUDITS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("audits_v1");
pub(super) const AVAILABILITY: TableDefinition<'_, ([u8; 20], u64), &[u8]> =
    TableDefinition::new("availability_v1");

/// Where a piece of evidence came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EvidenceSource {
    /// Posted to `POST /v1/evidence` by anyone (a Bob without ETH, say).
    Relayed,
    /// Found by this node's own audit.
    Audit,
}

/// Where the filing of a piece of evidence stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    tag = "state"
)]
pub enum EvidenceState {
    /// Accepted; the commitment is not yet mined deep enough.
    Pending,
    /// The commitment is mined in `block`; the reveal goes out from a later block.
    Committed {
        /// The commitment's block.
        block: u64,
    },
    /// The Adjudicator evaluated it in this node's reveal.
    Evaluated {
        /// The reveal transaction.
        tx_hash: B256,
        /// The `CFragEvaluated` verdict's name (`Correct`: nothing slashed).
        verdict: String,
        /// Tokens slashed.
        penalty: U256,
        /// Tokens paid to the beneficiary.
        reward: U256,
    },
    /// Another investigator's reveal was evaluated first: the staker was slashed once, for them.
    EvaluatedElsewhere,
    /// The Adjudicator would refuse it (the reason is the contract's), or the chain refused a
    /// transaction; nothing more is sent for it.
    Refused {
        /// Why.
        reason: String,
    },
}

impl EvidenceState {
    /// Whether nothing more will be sent for it.
    pub fn is_final(&self) -> bool {
        !matches!(self, Self::Pending | Self::Committed { .. })
    }
}

/// A piece of evidence the node files on chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvidenceRecord {
    /// The fault, as `kms retrieve --report` saves it.
    pub fault: Fault,
    /// Who is paid the investigator reward (`evaluateCFragFor`'s beneficiary).
    pub beneficiary: Address,
    /// Where it came from.
    pub source: EvidenceSource,
    /// When the node accepted it (Unix seconds, the node's clock).
    pub received_at: u64,
    /// Where its filing stands.
    pub state: EvidenceState,
}

/// Where an audit policy stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    tag = "state"
)]
pub enum AuditState {
    /// Planned and recorded; `createPolicy` is sent as the duty `audit-policy/<period>`.
    Planned,
    /// Created on chain: its kfrags are handed out and its rounds run.
    Created,
    /// Not created (its period passed first, or the chain refused it).
    Abandoned {
        /// Why.
        reason: String,
    },
}

/// One period's audit policy: the node is its Alice and its Bob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// The period it audits in (it ends with it).
    pub period: u64,
    /// The policy file (`kms_client::PolicyFile`'s JSON): its nodes are the audited peers.
    pub policy: String,
    /// The salt of the policy id.
    pub salt: B256,
    /// The seed its delegating, signing and receiving keys derive from. Audit keys protect
    /// nothing but random test data.
    pub key_seed: B256,
    /// `createPolicy`'s value: what the audit costs in fees.
    pub fee: U256,
    /// When each round runs (chain time, Unix seconds), ascending.
    pub rounds: Vec<u64>,
    /// How many rounds ran.
    pub rounds_done: usize,
    /// The peers that hold their kfrag.
    pub uploaded: Vec<Address>,
    /// How many times the kfrags were handed out (once when created, then again at a round for
    /// the peers that missed them).
    #[serde(default)]
    pub upload_attempts: u32,
    /// Where it stands.
    pub state: AuditState,
}

fn to_json<T: Serialize>(what: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| json_corrupt(what, e))
}

impl Store {
    /// Records `record` under `hash` unless evidence with that hash is recorded; returns the
    /// record that is stored now (the earlier one if there was one).
    pub fn put_evidence_if_absent(
        &self,
        hash: B256,
        record: &EvidenceRecord,
    ) -> Result<(EvidenceRecord, bool), StoreError> {
        let what = format!("evidence {hash}");
        let txn = self.db.begin_write().map_err(db_err)?;
        let outcome = {
            let mut table = txn.open_table(EVIDENCE).map_err(db_err)?;
            let existing = table
                .get(hash.0)
                .map_err(db_err)?
                .map(|g| serde_json::from_slice::<EvidenceRecord>(g.value()))
                .transpose()
                .map_err(|e| json_corrupt(&what, e))?;
            match existing {
                Some(existing) => (existing, false),
                None => {
                    table
                        .insert(hash.0, to_json(&what, record)?.as_slice())
                        .map_err(db_err)?;
                    (record.clone(), true)
                }
            }
        };
        txn.commit().map_err(db_err)?;
        Ok(outcome)
    }

    /// The evidence recorded under `hash`.
    pub fn evidence(&self, hash: B256) -> Result<Option<EvidenceRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(EVIDENCE).map_err(db_err)?;
        let guard = table.get(hash.0).map_err(db_err)?;
        guard
            .map(|g| {
                serde_json::from_slice(g.value()).map_err(|e| json_corrupt(&hash.to_string(), e))
            })
            .transpose()
    }

    /// Sets the filing state of the evidence under `hash` (nothing if there is none).
    pub fn set_evidence_state(&self, hash: B256, state: &EvidenceState) -> Result<(), StoreError> {
        let what = format!("evidence {hash}");
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut table = txn.open_table(EVIDENCE).map_err(db_err)?;
            let existing = table
                .get(hash.0)
                .map_err(db_err)?
                .map(|g| serde_json::from_slice::<EvidenceRecord>(g.value()))
                .transpose()
                .map_err(|e| json_corrupt(&what, e))?;
            if let Some(mut record) = existing {
                record.state = state.clone();
                table
                    .insert(hash.0, to_json(&what, &record)?.as_slice())
                    .map_err(db_err)?;
            }
        }
        txn.commit().map_err(db_err)
    }

    /// Every piece of evidence, by hash.
    pub fn all_evidence(&self) -> Result<Vec<(B256, EvidenceRecord)>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(EVIDENCE).map_err(db_err)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(db_err)? {
            let (key, value) = entry.map_err(db_err)?;
            let hash = B256::from(key.value());
            let record = serde_json::from_slice(value.value())
                .map_err(|e| json_corrupt(&hash.to_string(), e))?;
            out.push((hash, record));
        }
        Ok(out)
    }

    /// The audit policy of `period`.
    pub fn audit(&self, period: u64) -> Result<Option<AuditRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(AUDITS).map_err(db_err)?;
        let guard = table.get(period).map_err(db_err)?;
        guard
            .map(|g| {
                serde_json::from_slice(g.value())
                    .map_err(|e| json_corrupt(&format!("audit {period}"), e))
            })
            .transpose()
    }

    /// Records the audit policy of its period.
    pub fn set_audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        let what = format!("audit {}", record.period);
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut table = txn.open_table(AUDITS).map_err(db_err)?;
            table
                .insert(record.period, to_json(&what, record)?.as_slice())
                .map_err(db_err)?;
        }
        txn.commit().map_err(db_err)
    }

    /// The audit policies of `from` and later periods, ascending.
    pub fn audits_from(&self, from: u64) -> Result<Vec<AuditRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(AUDITS).map_err(db_err)?;
        let mut out = Vec::new();
        for entry in table.range(from..).map_err(db_err)? {
            let (key, value) = entry.map_err(db_err)?;
            let record = serde_json::from_slice(value.value())
                .map_err(|e| json_corrupt(&format!("audit {}", key.value()), e))?;
            out.push(record);
        }
        Ok(out)
    }

    /// Adds `answers` to each peer's availability in `period`, in one transaction.
    pub fn record_availability(
        &self,
        period: u64,
        answers: &[(Address, Availability)],
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut table = txn.open_table(AVAILABILITY).map_err(db_err)?;
            for (peer, answer) in answers {
                let key = (peer.0 .0, period);
                let what = format!("availability of {peer} in {period}");
                let mut current: Availability = table
                    .get(key)
                    .map_err(db_err)?
                    .map(|g| serde_json::from_slice(g.value()))
                    .transpose()
                    .map_err(|e| json_corrupt(&what, e))?
                    .unwrap_or_default();
                current.add(answer);
                table
                    .insert(key, to_json(&what, &current)?.as_slice())
                    .map_err(db_err)?;
            }
        }
        txn.commit().map_err(db_err)
    }

    /// Every peer's availability in `from` and later periods: `(peer, period, availability)`.
    pub fn availability_from(
        &self,
        from: u64,
    ) -> Result<Vec<(Address, u64, Availability)>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(AVAILABILITY).map_err(db_err)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(db_err)? {
            let (key, value) = entry.map_err(db_err)?;
            let (peer, period) = key.value();
            if period < from {
                continue;
            }
            let peer = Address::from(peer);
            let record = serde_json::from_slice(value.value())
                .map_err(|e| json_corrupt(&format!("availability of {peer}"), e))?;
            out.push((peer, period, record));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn availability_adds_up_per_peer_and_period() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("n.redb")).unwrap();
        let (a, b) = (Address::repeat_byte(1), Address::repeat_byte(2));
        let served = Availability {
            served: 1,
            last_at: 10,
            ..Default::default()
        };
        let refused = Availability {
            refused: 1,
            last_status: Some(503),
            last_failure: Some("busy".into()),
            last_at: 11,
            ..Default::default()
        };
        store
            .record_availability(7, &[(a, served.clone()), (b, refused.clone())])
            .unwrap();
        store
            .record_availability(7, &[(a, refused.clone())])
            .unwrap();
        store
            .record_availability(8, &[(a, served.clone())])
            .unwrap();
        let mut all = store.availability_from(7).unwrap();
        all.sort_by_key(|(peer, period, _)| (*peer, *period));
        assert_eq!(all.len(), 3);
        let (_, _, a7) = &all[0];
        assert_eq!((a7.served, a7.refused, a7.total()), (1, 1, 2));
        assert_eq!(a7.last_status, Some(503));
        assert_eq!(store.availability_from(8).unwrap().len(), 1);
    }
}

//! The node's embedded ACID store (redb, one file).
//!
//! Layout: one redb table per kind of record, each with its own schema version in its name, so
//! that later duties add tables (`chain_cursor_v1`, `duties_v1`, ...) without touching these.
//!
//! | table        | key                    | value                                   |
//! |--------------|------------------------|-----------------------------------------|
//! | `meta`       | `&str` name            | `u64` (`"schema"` = [`SCHEMA_VERSION`]) |
//! | `kfrags_v1`  | `[u8; 16]` policy id   | JSON of a [`StoredKfrag`]                |
//! | `policies_v1`| `[u8; 16]` policy id   | JSON of a [`PolicyRecord`] (this node's confirmed policies) |
//! | `cursor_v1`  | `&str` `"cursor"`      | JSON of the follower's [`Cursor`]        |
//! | `duties_v1`  | `&str` duty key        | JSON of a [`DutyRecord`]                 |
//! | `revocation_orders_v1` | `[u8; 16]` policy id | JSON list of the owner's signed orders ([`RevocationOrderBody`]) for a policy whose kfrag the node holds |
//!
//! and the investigator's tables (evidence, audit policies, peers' availability): see
//! [`investigation`].
//!
//! Every method is blocking (redb fsyncs on commit): call them from `spawn_blocking` in async
//! code.

use std::{path::Path, sync::Arc};

use alloy::primitives::{Address, Bytes};
use kms_crypto::revocation::{RevocationOrder, RevocationOrderBody};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use umbral_pre::PublicKey;

/// The store's schema version, recorded in the `meta` table.
pub const SCHEMA_VERSION: u64 = 1;

const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const KFRAGS: TableDefinition<'_, [u8; 16], &[u8]> = TableDefinition::new("kfrags_v1");
const POLICIES: TableDefinition<'_, [u8; 16], &[u8]> = TableDefinition::new("policies_v1");
const CURSOR: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("cursor_v1");
const DUTIES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("duties_v1");
const ORDERS: TableDefinition<'_, [u8; 16], &[u8]> = TableDefinition::new("revocation_orders_v1");
const CURSOR_KEY: &str = "cursor";

#[cfg(feature = "test-utils")]
mod bulk;
pub mod investigation;
pub use investigation::{AuditRecord, AuditState, EvidenceRecord, EvidenceSource, EvidenceState};
pub use kms_crypto::wire::Availability;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb failed (I/O, corruption, ...).
    #[error("store: {0}")]
    Db(#[from] redb::Error),
    /// A record does not decode.
    #[error("store: corrupt record for policy 0x{policy}: {reason}")]
    Corrupt {
        /// The policy id, hex.
        policy: String,
        /// What is wrong.
        reason: String,
    },
    /// The store file's permissions could not be set to this user only.
    #[error("store {}: cannot make it private (mode 0600): {source}", path.display())]
    Permissions {
        /// The store file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was written by another schema version.
    #[error("store: schema version {found}, this node reads {SCHEMA_VERSION}")]
    Schema {
        /// The version in the file.
        found: u64,
    },
}

/// Creates `path` empty with mode `0600` if it is missing (redb initializes an empty file), and
/// narrows an existing file that group or others have any access to down to `0600`.
///
/// Only the narrowing can fail the open, and only when the file's owner could chmod it: a file
/// this user can use but does not own (`root:kms 0660`, a share that has no modes) is left as it
/// is with a warning, as redb opened it before. Other errors (no `data_dir`, a read-only one)
/// are left for redb to report as it always did.
#[cfg(unix)]
fn make_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Ok(_) | Err(_) => return Ok(()),
    }
    let Ok(metadata) = std::fs::metadata(path) else {
        return Ok(());
    };
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let mode = format!("{mode:o}");
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        Ok(()) => {
            tracing::warn!(
                path = %path.display(), mode,
                "the store holds kfrags and was open to group or others: narrowed to 0600"
            );
            Ok(())
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::Unsupported
            ) =>
        {
            tracing::warn!(
                path = %path.display(), mode, error = %e,
                "the store holds kfrags and is open to group or others, and this user cannot \
                 narrow it (not its owner?): chown it to the node's user or chmod 600 it"
            );
            Ok(())
        }
        Err(source) => Err(StoreError::Permissions {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(not(unix))]
fn make_private(_path: &Path) -> Result<(), StoreError> {
    Ok(())
}

fn db_err<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Db(e.into())
}

/// A policy's key fragment as the node keeps it, with what it needs to serve and check it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredKfrag {
    /// The `KeyFrag`'s default serialization (verified at upload).
    pub kfrag: Vec<u8>,
    /// Alice's delegating key.
    pub delegating_key: PublicKey,
    /// Bob's receiving key: the only requester served.
    pub receiving_key: PublicKey,
    /// The kfrag signer's key.
    pub verifying_key: PublicKey,
    /// When the policy ends (Unix seconds).
    pub end_timestamp: u64,
    /// The policy's node list, as in its `PolicyCreated` event.
    pub nodes: Vec<Address>,
}

/// The on-disk form of a [`StoredKfrag`].
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KfragRecordV1 {
    kfrag: Bytes,
    delegating_key: Bytes,
    receiving_key: Bytes,
    verifying_key: Bytes,
    end_timestamp: u64,
    nodes: Vec<Address>,
}

impl StoredKfrag {
    fn encode(&self, policy_id: [u8; 16]) -> Result<Vec<u8>, StoreError> {
        let record = KfragRecordV1 {
            kfrag: Bytes::copy_from_slice(&self.kfrag),
            delegating_key: Bytes::from(self.delegating_key.to_compressed_bytes().into_vec()),
            receiving_key: Bytes::from(self.receiving_key.to_compressed_bytes().into_vec()),
            verifying_key: Bytes::from(self.verifying_key.to_compressed_bytes().into_vec()),
            end_timestamp: self.end_timestamp,
            nodes: self.nodes.clone(),
        };
        serde_json::to_vec(&record).map_err(|e| StoreError::Corrupt {
            policy: alloy::primitives::hex::encode(policy_id),
            reason: e.to_string(),
        })
    }

    fn decode(policy_id: [u8; 16], bytes: &[u8]) -> Result<Self, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            policy: alloy::primitives::hex::encode(policy_id),
            reason,
        };
        let record: KfragRecordV1 =
            serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        let key = |name: &str, bytes: &Bytes| {
            PublicKey::try_from_compressed_bytes(bytes).map_err(|e| corrupt(format!("{name}: {e}")))
        };
        Ok(Self {
            kfrag: record.kfrag.to_vec(),
            delegating_key: key("delegatingKey", &record.delegating_key)?,
            receiving_key: key("receivingKey", &record.receiving_key)?,
            verifying_key: key("verifyingKey", &record.verifying_key)?,
            end_timestamp: record.end_timestamp,
            nodes: record.nodes,
        })
    }
}

/// What [`Store::put_kfrag_if_absent`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The policy had no kfrag; this one is stored.
    Inserted,
    /// The very same record was already stored; nothing changed.
    AlreadyStored,
    /// Another kfrag is stored for the policy; nothing changed.
    Conflict,
}

/// The node's store. Cloning shares the database.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store at `path`, creating the file and its tables if needed. The file holds
    /// kfrags, secrets of the policies' owners: it is made readable by this user only (`0600`),
    /// whatever the umask, and an existing one others can read is narrowed to that, with a
    /// warning.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        make_private(path)?;
        let db = Database::create(path).map_err(db_err)?;
        let txn = db.begin_write().map_err(db_err)?;
        {
            let mut meta = txn.open_table(META).map_err(db_err)?;
            let found = meta.get("schema").map_err(db_err)?.map(|v| v.value());
            match found {
                None => {
                    meta.insert("schema", SCHEMA_VERSION).map_err(db_err)?;
                }
                Some(SCHEMA_VERSION) => {}
                Some(found) => return Err(StoreError::Schema { found }),
            }
            txn.open_table(KFRAGS).map_err(db_err)?;
            txn.open_table(POLICIES).map_err(db_err)?;
            txn.open_table(CURSOR).map_err(db_err)?;
            txn.open_table(DUTIES).map_err(db_err)?;
            txn.open_table(ORDERS).map_err(db_err)?;
            txn.open_table(investigation::EVIDENCE).map_err(db_err)?;
            txn.open_table(investigation::AUDITS).map_err(db_err)?;
            txn.open_table(investigation::AVAILABILITY)
                .map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Stores `kfrag` for `policy_id` unless the policy already has one, atomically.
    pub fn put_kfrag_if_absent(
        &self,
        policy_id: [u8; 16],
        kfrag: &StoredKfrag,
    ) -> Result<PutOutcome, StoreError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        let outcome = {
            let mut table = txn.open_table(KFRAGS).map_err(db_err)?;
            let existing = match table.get(policy_id).map_err(db_err)? {
                Some(guard) => Some(StoredKfrag::decode(policy_id, guard.value())?),
                None => None,
            };
            match existing {
                Some(existing) if existing == *kfrag => PutOutcome::AlreadyStored,
                Some(_) => PutOutcome::Conflict,
                None => {
                    table
                        .insert(policy_id, kfrag.encode(policy_id)?.as_slice())
                        .map_err(db_err)?;
                    PutOutcome::Inserted
                }
            }
        };
        if outcome == PutOutcome::Inserted {
            txn.commit().map_err(db_err)?;
        } else {
            txn.abort().map_err(db_err)?;
        }
        Ok(outcome)
    }

    /// The kfrag stored for `policy_id`, the policy's confirmed record and whether its owner
    /// ordered this node to refuse it, read together (one snapshot: a revocation deletes the
    /// kfrag, marks the record and forgets the orders in one transaction).
    pub fn held(&self, policy_id: [u8; 16]) -> Result<Held, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let kfrags = txn.open_table(KFRAGS).map_err(db_err)?;
        let kfrag = kfrags
            .get(policy_id)
            .map_err(db_err)?
            .map(|g| StoredKfrag::decode(policy_id, g.value()))
            .transpose()?;
        let policies = txn.open_table(POLICIES).map_err(db_err)?;
        let policy = policies
            .get(policy_id)
            .map_err(db_err)?
            .map(|g| serde_json::from_slice(g.value()).map_err(|e| json_corrupt("policy", e)))
            .transpose()?;
        let orders = txn.open_table(ORDERS).map_err(db_err)?;
        let ordered = orders.get(policy_id).map_err(db_err)?.is_some();
        Ok(Held {
            kfrag,
            policy,
            ordered,
        })
    }

    /// The kfrag stored for `policy_id`.
    pub fn get_kfrag(&self, policy_id: [u8; 16]) -> Result<Option<StoredKfrag>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(KFRAGS).map_err(db_err)?;
        let guard = table.get(policy_id).map_err(db_err)?;
        guard
            .map(|g| StoredKfrag::decode(policy_id, g.value()))
            .transpose()
    }

    /// Deletes the kfrag of `policy_id`, and the revocation orders kept for it (nothing is left
    /// to refuse, nor to settle once the policy has ended); whether there was a kfrag.
    pub fn delete_kfrag(&self, policy_id: [u8; 16]) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        let removed = {
            let mut table = txn.open_table(KFRAGS).map_err(db_err)?;
            let removed = table.remove(policy_id).map_err(db_err)?.is_some();
            txn.open_table(ORDERS)
                .map_err(db_err)?
                .remove(policy_id)
                .map_err(db_err)?;
            removed
        };
        txn.commit().map_err(db_err)?;
        Ok(removed)
    }

    /// How many kfrags are stored.
    pub fn kfrag_count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(KFRAGS).map_err(db_err)?;
        table.len().map_err(db_err)
    }
}

/// What the node holds of a policy ([`Store::held`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    /// Its kfrag.
    pub kfrag: Option<StoredKfrag>,
    /// Its confirmed record.
    pub policy: Option<PolicyRecord>,
    /// Whether the owner's signed order to refuse it is kept ([`Store::put_revocation_order`]).
    pub ordered: bool,
}

/// What [`Store::put_revocation_order`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderOutcome {
    /// Kept: the first order of its kind (the whole policy, or this node) for the policy, or one
    /// with a later deadline than the one it replaced.
    Kept,
    /// An order of its kind with this deadline or a later one is kept already; nothing changed.
    AlreadyKept,
    /// The node holds no kfrag for the policy (any more): nothing kept.
    NoKfrag,
}

/// A policy naming this node, as the chain follower saw it at confirmation depth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRecord {
    /// The policy's node list (its `PolicyCreated` event).
    pub nodes: Vec<Address>,
    /// When the policy ends (Unix seconds, chain time).
    pub end_timestamp: u64,
    /// The policy's kfrag signer.
    pub kfrag_signer: Address,
    /// The policy's owner (signs revocation orders); zero in records written before it was
    /// recorded.
    #[serde(default)]
    pub owner: Address,
    /// The block the policy was created in.
    pub created_block: u64,
    /// Whether the policy, or this node's arrangement in it, was revoked.
    pub revoked: bool,
}

/// A stored kfrag's policy, as the pruning duty checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KfragPolicy {
    /// The policy id.
    pub policy_id: [u8; 16],
    /// When the policy ends.
    pub end_timestamp: u64,
    /// The policy's node list.
    pub nodes: Vec<Address>,
    /// Whether the follower recorded the policy (or this node's arrangement) as revoked.
    pub revoked: bool,
    /// The block of the policy's creation, if the follower has confirmed it.
    pub created_block: Option<u64>,
}

/// The part of a [`KfragRecordV1`] the pruning duty reads: no key is decoded (decompressing
/// three public keys per record was most of a scan's cost).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KfragTerms {
    end_timestamp: u64,
    nodes: Vec<Address>,
}

/// How far the chain follower has processed the chain: every event up to and including `block`
/// is applied to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cursor {
    /// The last processed block.
    pub block: u64,
    /// Its hash, to notice a reorg deeper than the confirmation depth.
    pub hash: alloy::primitives::B256,
}

/// What the chain follower learnt from one range of confirmed blocks, applied atomically with the
/// cursor's move.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FollowerBatch {
    /// Policies created naming this node.
    pub created: Vec<([u8; 16], PolicyRecord)>,
    /// Policies revoked, or arrangements of this node revoked.
    pub revoked: Vec<[u8; 16]>,
    /// Policies extended, with their new end (any policy's: those the node does not hold are
    /// skipped).
    pub extended: Vec<([u8; 16], u64)>,
}

/// Where a duty's transaction is. Recorded *before* the transaction is broadcast, with the signed
/// transaction itself, so that a restart rebroadcasts the very same transaction (same nonce:
/// it cannot be executed twice) instead of signing a second one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    tag = "state"
)]
pub enum DutyRecord {
    /// Signed and about to be, or being, broadcast.
    Sent {
        /// The transaction hash.
        tx_hash: alloy::primitives::B256,
        /// The signed transaction (EIP-2718 encoding), for rebroadcasting.
        raw_tx: Bytes,
        /// Its nonce.
        nonce: u64,
    },
    /// Mined and successful.
    Done {
        /// The transaction hash (zero when the chain showed the duty done by someone else, e.g.
        /// an earlier run whose record was lost with its disk).
        tx_hash: alloy::primitives::B256,
        /// The block it was mined in.
        block: u64,
    },
    /// Nothing was sent: the chain showed nothing to do (e.g. no fees above the threshold).
    Skipped {
        /// Why.
        reason: String,
    },
    /// Mined but reverted, or the nonce was taken by another transaction; not retried for the
    /// same key.
    Failed {
        /// The transaction hash.
        tx_hash: alloy::primitives::B256,
        /// Why.
        reason: String,
    },
}

fn decode_orders(policy_id: [u8; 16], bytes: &[u8]) -> Result<Vec<RevocationOrder>, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        policy: alloy::primitives::hex::encode(policy_id),
        reason: format!("revocation orders: {reason}"),
    };
    let bodies: Vec<RevocationOrderBody> =
        serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    bodies
        .iter()
        .map(|b| b.decode().map_err(|e| corrupt(e.to_string())))
        .collect()
}

fn json_corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        policy: what.to_owned(),
        reason: e.to_string(),
    }
}

impl Store {
    /// The follower's cursor; `None` before the first batch.
    pub fn cursor(&self) -> Result<Option<Cursor>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(CURSOR).map_err(db_err)?;
        let guard = table.get(CURSOR_KEY).map_err(db_err)?;
        guard
            .map(|g| serde_json::from_slice(g.value()).map_err(|e| json_corrupt("cursor", e)))
            .transpose()
    }

    /// Applies `batch` and moves the cursor to `cursor`, in one transaction: a crash leaves either
    /// both or neither. Revocations delete the policy's kfrag too. Idempotent: applying the same
    /// batch twice (after a crash, or a cursor rewound for a reorg) changes nothing more.
    /// Returns how many kfrags were deleted.
    pub fn apply_batch(&self, batch: &FollowerBatch, cursor: Cursor) -> Result<u64, StoreError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        let mut deleted = 0;
        {
            let mut policies = txn.open_table(POLICIES).map_err(db_err)?;
            let mut kfrags = txn.open_table(KFRAGS).map_err(db_err)?;
            let mut orders = txn.open_table(ORDERS).map_err(db_err)?;
            for (policy_id, record) in &batch.created {
                let known_revoked = match policies.get(*policy_id).map_err(db_err)? {
                    Some(g) => {
                        serde_json::from_slice::<PolicyRecord>(g.value())
                            .map_err(|e| json_corrupt("policy", e))?
                            .revoked
                    }
                    None => false,
                };
                let mut record = record.clone();
                record.revoked |= known_revoked;
                let bytes = serde_json::to_vec(&record).map_err(|e| json_corrupt("policy", e))?;
                policies
                    .insert(*policy_id, bytes.as_slice())
                    .map_err(db_err)?;
            }
            for (policy_id, end) in &batch.extended {
                let existing = match policies.get(*policy_id).map_err(db_err)? {
                    Some(g) => Some(
                        serde_json::from_slice::<PolicyRecord>(g.value())
                            .map_err(|e| json_corrupt("policy", e))?,
                    ),
                    None => None,
                };
                let Some(mut record) = existing else { continue };
                // A revoked arrangement is not extended; an end only moves later.
                if record.revoked || record.end_timestamp >= *end {
                    continue;
                }
                record.end_timestamp = *end;
                let bytes = serde_json::to_vec(&record).map_err(|e| json_corrupt("policy", e))?;
                policies
                    .insert(*policy_id, bytes.as_slice())
                    .map_err(db_err)?;
                let stored = match kfrags.get(*policy_id).map_err(db_err)? {
                    Some(g) => Some(StoredKfrag::decode(*policy_id, g.value())?),
                    None => None,
                };
                if let Some(mut kfrag) = stored {
                    kfrag.end_timestamp = kfrag.end_timestamp.max(*end);
                    let bytes = kfrag.encode(*policy_id)?;
                    kfrags
                        .insert(*policy_id, bytes.as_slice())
                        .map_err(db_err)?;
                }
            }
            for policy_id in &batch.revoked {
                let existing = match policies.get(*policy_id).map_err(db_err)? {
                    Some(g) => Some(
                        serde_json::from_slice::<PolicyRecord>(g.value())
                            .map_err(|e| json_corrupt("policy", e))?,
                    ),
                    None => None,
                };
                if let Some(mut record) = existing {
                    record.revoked = true;
                    let bytes =
                        serde_json::to_vec(&record).map_err(|e| json_corrupt("policy", e))?;
                    policies
                        .insert(*policy_id, bytes.as_slice())
                        .map_err(db_err)?;
                }
                if kfrags.remove(*policy_id).map_err(db_err)?.is_some() {
                    deleted += 1;
                }
                // Settled (or revoked by the owner herself): the orders are spent.
                orders.remove(*policy_id).map_err(db_err)?;
            }
            let mut table = txn.open_table(CURSOR).map_err(db_err)?;
            let bytes = serde_json::to_vec(&cursor).map_err(|e| json_corrupt("cursor", e))?;
            table.insert(CURSOR_KEY, bytes.as_slice()).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        Ok(deleted)
    }

    /// Rewinds the cursor (after a reorg deeper than the confirmation depth).
    pub fn set_cursor(&self, cursor: Cursor) -> Result<(), StoreError> {
        self.apply_batch(&FollowerBatch::default(), cursor)
            .map(|_| ())
    }

    /// A confirmed policy naming this node.
    pub fn policy(&self, policy_id: [u8; 16]) -> Result<Option<PolicyRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(POLICIES).map_err(db_err)?;
        let guard = table.get(policy_id).map_err(db_err)?;
        guard
            .map(|g| serde_json::from_slice(g.value()).map_err(|e| json_corrupt("policy", e)))
            .transpose()
    }

    /// How many confirmed policies naming this node are recorded.
    pub fn policy_count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(POLICIES).map_err(db_err)?;
        table.len().map_err(db_err)
    }

    /// Every stored kfrag's policy id with its end, node list, revocation and confirmed creation
    /// (for the pruning duty), read in one transaction.
    pub fn kfrag_policies(&self) -> Result<Vec<KfragPolicy>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(KFRAGS).map_err(db_err)?;
        let policies = txn.open_table(POLICIES).map_err(db_err)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(db_err)? {
            let (key, value) = entry.map_err(db_err)?;
            let id = key.value();
            let terms: KfragTerms =
                serde_json::from_slice(value.value()).map_err(|e| StoreError::Corrupt {
                    policy: alloy::primitives::hex::encode(id),
                    reason: e.to_string(),
                })?;
            let record = match policies.get(id).map_err(db_err)? {
                Some(g) => Some(
                    serde_json::from_slice::<PolicyRecord>(g.value())
                        .map_err(|e| json_corrupt("policy", e))?,
                ),
                None => None,
            };
            out.push(KfragPolicy {
                policy_id: id,
                end_timestamp: terms.end_timestamp,
                nodes: terms.nodes,
                revoked: record.as_ref().is_some_and(|r| r.revoked),
                created_block: record.map(|r| r.created_block),
            });
        }
        Ok(out)
    }

    /// Keeps the owner's signed `order` for `policy_id` (checked by the caller), if the node holds
    /// the policy's kfrag: from then on the node refuses the policy ([`Held::ordered`]). One
    /// order of each kind (the whole policy, this node's arrangement) is kept, the one with the
    /// latest deadline: any of them settles the refund on chain, the latest for longest.
    pub fn put_revocation_order(
        &self,
        policy_id: [u8; 16],
        order: &RevocationOrder,
    ) -> Result<OrderOutcome, StoreError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        let outcome = {
            let kfrags = txn.open_table(KFRAGS).map_err(db_err)?;
            let mut table = txn.open_table(ORDERS).map_err(db_err)?;
            if kfrags.get(policy_id).map_err(db_err)?.is_none() {
                OrderOutcome::NoKfrag
            } else {
                let mut kept = match table.get(policy_id).map_err(db_err)? {
                    Some(g) => decode_orders(policy_id, g.value())?,
                    None => Vec::new(),
                };
                let same_kind = kept
                    .iter()
                    .position(|o| o.is_whole_policy() == order.is_whole_policy());
                let outcome = match same_kind {
                    Some(i) if kept[i].deadline >= order.deadline => OrderOutcome::AlreadyKept,
                    Some(i) => {
                        kept[i] = *order;
                        OrderOutcome::Kept
                    }
                    None => {
                        kept.push(*order);
                        OrderOutcome::Kept
                    }
                };
                if outcome == OrderOutcome::Kept {
                    kept.sort_by_key(|o| !o.is_whole_policy());
                    let bodies: Vec<RevocationOrderBody> =
                        kept.iter().map(RevocationOrderBody::from).collect();
                    let bytes =
                        serde_json::to_vec(&bodies).map_err(|e| json_corrupt("orders", e))?;
                    table.insert(policy_id, bytes.as_slice()).map_err(db_err)?;
                }
                outcome
            }
        };
        if outcome == OrderOutcome::Kept {
            txn.commit().map_err(db_err)?;
        } else {
            txn.abort().map_err(db_err)?;
        }
        Ok(outcome)
    }

    /// The signed revocation orders kept for `policy_id`, the whole-policy one first.
    pub fn revocation_orders(
        &self,
        policy_id: [u8; 16],
    ) -> Result<Vec<RevocationOrder>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(ORDERS).map_err(db_err)?;
        let guard = table.get(policy_id).map_err(db_err)?;
        guard.map_or(Ok(Vec::new()), |g| decode_orders(policy_id, g.value()))
    }

    /// The record of the duty `key` (e.g. `commit/42`).
    pub fn duty(&self, key: &str) -> Result<Option<DutyRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(DUTIES).map_err(db_err)?;
        let guard = table.get(key).map_err(db_err)?;
        guard
            .map(|g| serde_json::from_slice(g.value()).map_err(|e| json_corrupt(key, e)))
            .transpose()
    }

    /// Records the duty `key`'s state (durably: redb fsyncs on commit).
    pub fn set_duty(&self, key: &str, record: &DutyRecord) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut table = txn.open_table(DUTIES).map_err(db_err)?;
            let bytes = serde_json::to_vec(record).map_err(|e| json_corrupt(key, e))?;
            table.insert(key, bytes.as_slice()).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)
    }

    /// Every duty record, by key (for status and tests).
    pub fn duties(&self) -> Result<Vec<(String, DutyRecord)>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(DUTIES).map_err(db_err)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(db_err)? {
            let (key, value) = entry.map_err(db_err)?;
            let record =
                serde_json::from_slice(value.value()).map_err(|e| json_corrupt(key.value(), e))?;
            out.push((key.value().to_owned(), record));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use umbral_pre::SecretKey;

    pub(super) fn record(end: u64) -> StoredKfrag {
        StoredKfrag {
            kfrag: vec![1, 2, 3],
            delegating_key: SecretKey::random().public_key(),
            receiving_key: SecretKey::random().public_key(),
            verifying_key: SecretKey::random().public_key(),
            end_timestamp: end,
            nodes: vec![Address::repeat_byte(1), Address::repeat_byte(2)],
        }
    }

    #[test]
    fn put_get_delete_count_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.redb");
        let store = Store::open(&path).unwrap();
        let (a, b) = ([1u8; 16], [2u8; 16]);
        let first = record(100);
        assert_eq!(store.kfrag_count().unwrap(), 0);
        assert_eq!(store.get_kfrag(a).unwrap(), None);
        assert_eq!(
            store.put_kfrag_if_absent(a, &first).unwrap(),
            PutOutcome::Inserted
        );
        assert_eq!(
            store.put_kfrag_if_absent(a, &first).unwrap(),
            PutOutcome::AlreadyStored
        );
        assert_eq!(
            store.put_kfrag_if_absent(a, &record(100)).unwrap(),
            PutOutcome::Conflict
        );
        assert_eq!(
            store.put_kfrag_if_absent(b, &record(7)).unwrap(),
            PutOutcome::Inserted
        );
        assert_eq!(store.kfrag_count().unwrap(), 2);
        assert_eq!(store.get_kfrag(a).unwrap(), Some(first.clone()));
        drop(store);

        // Durable across a reopen.
        let store = Store::open(&path).unwrap();
        assert_eq!(store.get_kfrag(a).unwrap(), Some(first));
        assert!(store.delete_kfrag(a).unwrap());
        assert!(!store.delete_kfrag(a).unwrap());
        assert_eq!(store.kfrag_count().unwrap(), 1);
    }

    /// Kfrags are the owners' secrets: the file is this user's only, whatever the umask, and an
    /// existing one others could read is narrowed (its data kept).
    #[cfg(unix)]
    #[test]
    fn the_store_file_is_private() {
        use std::os::unix::fs::PermissionsExt;

        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.redb");
        let store = Store::open(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        store.put_kfrag_if_absent([1; 16], &record(100)).unwrap();
        drop(store);

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let store = Store::open(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(store.kfrag_count().unwrap(), 1);
    }
}

#[cfg(test)]
mod follower_tests {
    #![allow(clippy::unwrap_used)]

    use super::tests::record;
    use super::*;
    use alloy::primitives::B256;
    use umbral_pre::SecretKey;

    fn policy(end: u64) -> PolicyRecord {
        PolicyRecord {
            nodes: vec![Address::repeat_byte(1)],
            end_timestamp: end,
            kfrag_signer: Address::repeat_byte(9),
            owner: Address::repeat_byte(8),
            created_block: 3,
            revoked: false,
        }
    }

    #[test]
    fn batches_are_idempotent_and_revocation_sticks_and_deletes_the_kfrag() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("n.redb")).unwrap();
        assert_eq!(store.cursor().unwrap(), None);
        let id = [7u8; 16];
        let kfrag = StoredKfrag {
            kfrag: vec![1],
            delegating_key: SecretKey::random().public_key(),
            receiving_key: SecretKey::random().public_key(),
            verifying_key: SecretKey::random().public_key(),
            end_timestamp: 10,
            nodes: vec![Address::repeat_byte(1)],
        };
        store.put_kfrag_if_absent(id, &kfrag).unwrap();
        let scanned = |revoked, created_block| KfragPolicy {
            policy_id: id,
            end_timestamp: 10,
            nodes: vec![Address::repeat_byte(1)],
            revoked,
            created_block,
        };
        assert_eq!(store.kfrag_policies().unwrap(), vec![scanned(false, None)]);
        let created = FollowerBatch {
            created: vec![(id, policy(10))],
            ..FollowerBatch::default()
        };
        let cursor = |block| Cursor {
            block,
            hash: B256::repeat_byte(block as u8),
        };
        assert_eq!(store.apply_batch(&created, cursor(5)).unwrap(), 0);
        assert_eq!(store.cursor().unwrap(), Some(cursor(5)));
        let created_block = store.policy(id).unwrap().unwrap().created_block;
        assert_eq!(
            store.kfrag_policies().unwrap(),
            vec![scanned(false, Some(created_block))]
        );
        // Extended: both records take the later end; an earlier one and another policy's
        // change nothing.
        let extended = FollowerBatch {
            extended: vec![(id, 20), (id, 15), ([9u8; 16], 99)],
            ..FollowerBatch::default()
        };
        store.apply_batch(&extended, cursor(5)).unwrap();
        assert_eq!(store.policy(id).unwrap().unwrap().end_timestamp, 20);
        assert_eq!(store.get_kfrag(id).unwrap().unwrap().end_timestamp, 20);
        assert!(store.policy([9u8; 16]).unwrap().is_none());
        let revoked = FollowerBatch {
            revoked: vec![id],
            ..FollowerBatch::default()
        };
        assert_eq!(store.apply_batch(&revoked, cursor(6)).unwrap(), 1);
        assert_eq!(store.get_kfrag(id).unwrap(), None);
        // Replaying the creation (a rewound cursor) does not resurrect the policy.
        store.apply_batch(&created, cursor(5)).unwrap();
        assert!(store.policy(id).unwrap().unwrap().revoked);
        assert_eq!(store.apply_batch(&revoked, cursor(6)).unwrap(), 0);
    }

    #[test]
    fn duty_records_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("n.redb")).unwrap();
        let sent = DutyRecord::Sent {
            tx_hash: B256::repeat_byte(1),
            raw_tx: Bytes::from_static(&[1, 2]),
            nonce: 4,
        };
        store.set_duty("commit/3", &sent).unwrap();
        assert_eq!(store.duty("commit/3").unwrap(), Some(sent.clone()));
        assert_eq!(store.duty("commit/4").unwrap(), None);
        assert_eq!(store.duties().unwrap(), vec![("commit/3".to_owned(), sent)]);
    }

    #[test]
    fn revocation_orders_are_kept_one_per_kind_and_go_with_the_kfrag() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.redb");
        let store = Store::open(&path).unwrap();
        let (id, other) = ([4u8; 16], [5u8; 16]);
        let order = |node: Address, deadline: u64| RevocationOrder {
            policy_id: id,
            node,
            deadline,
            signature: [deadline as u8; 65],
        };
        let me = Address::repeat_byte(1);
        // Nothing to refuse without the kfrag.
        assert_eq!(
            store
                .put_revocation_order(id, &order(Address::ZERO, 10))
                .unwrap(),
            OrderOutcome::NoKfrag
        );
        store.put_kfrag_if_absent(id, &record(100)).unwrap();
        store.put_kfrag_if_absent(other, &record(100)).unwrap();
        assert!(!store.held(id).unwrap().ordered);
        let put = |o| store.put_revocation_order(id, &o).unwrap();
        assert_eq!(put(order(me, 10)), OrderOutcome::Kept);
        assert_eq!(put(order(Address::ZERO, 10)), OrderOutcome::Kept);
        assert_eq!(put(order(Address::ZERO, 10)), OrderOutcome::AlreadyKept);
        assert_eq!(put(order(Address::ZERO, 9)), OrderOutcome::AlreadyKept);
        assert_eq!(put(order(Address::ZERO, 11)), OrderOutcome::Kept);
        assert!(store.held(id).unwrap().ordered);
        assert!(!store.held(other).unwrap().ordered);
        // Kept across a restart, the whole-policy order first.
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(
            store.revocation_orders(id).unwrap(),
            vec![order(Address::ZERO, 11), order(me, 10)]
        );
        // Deleting the kfrag (the policy ended) forgets them.
        store.delete_kfrag(id).unwrap();
        assert!(store.revocation_orders(id).unwrap().is_empty());
        assert!(!store.held(id).unwrap().ordered);
    }
}

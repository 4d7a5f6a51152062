//! The node's embedded ACID store (redb, one file).
//!
//! Layout: one redb table per kind of record, each with its own schema version in its name, so
//! that later duties add tables (`chain_cursor_v1`, `duties_v1`, ...) without touching these.
//!
//! | table        | key                    | value                                   |
//! |--------------|------------------------|-----------------------------------------|
//! | `meta`       | `&str` name            | `u64` (`"schema"` = [`SCHEMA_VERSION`]) |
//! | `kfrags_v1`  | `[u8; 16]` policy id   | JSON of a [`StoredKfrag`]                |
//!
//! Every method is blocking (redb fsyncs on commit): call them from `spawn_blocking` in async
//! code.

use std::{path::Path, sync::Arc};

use alloy::primitives::{Address, Bytes};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use umbral_pre::PublicKey;

/// The store's schema version, recorded in the `meta` table.
pub const SCHEMA_VERSION: u64 = 1;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const KFRAGS: TableDefinition<[u8; 16], &[u8]> = TableDefinition::new("kfrags_v1");

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
    /// The file was written by another schema version.
    #[error("store: schema version {found}, this node reads {SCHEMA_VERSION}")]
    Schema {
        /// The version in the file.
        found: u64,
    },
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
    /// Opens the store at `path`, creating the file and its tables if needed.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
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

    /// The kfrag stored for `policy_id`.
    pub fn get_kfrag(&self, policy_id: [u8; 16]) -> Result<Option<StoredKfrag>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(KFRAGS).map_err(db_err)?;
        let guard = table.get(policy_id).map_err(db_err)?;
        guard
            .map(|g| StoredKfrag::decode(policy_id, g.value()))
            .transpose()
    }

    /// Deletes the kfrag of `policy_id`; whether there was one.
    pub fn delete_kfrag(&self, policy_id: [u8; 16]) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        let removed = {
            let mut table = txn.open_table(KFRAGS).map_err(db_err)?;
            let removed = table.remove(policy_id).map_err(db_err)?.is_some();
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use umbral_pre::SecretKey;

    fn record(end: u64) -> StoredKfrag {
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
}

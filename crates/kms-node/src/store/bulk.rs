//! Bulk writes for benchmarks (feature `test-utils`): a store filled with many policies, one
//! transaction per call, where the node's own [`Store::put_kfrag_if_absent`] commits (and
//! fsyncs) one kfrag at a time, as uploads arrive.

use super::{db_err, Store, StoreError, StoredKfrag, KFRAGS};

impl Store {
    /// Stores every `(policy id, kfrag)` of `kfrags` in one transaction, replacing any kfrag
    /// already stored for the same policy. Records are encoded as the node's own writes encode
    /// them; the policies' confirmed records go in with [`Store::apply_batch`].
    pub fn put_kfrags(&self, kfrags: &[([u8; 16], StoredKfrag)]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut table = txn.open_table(KFRAGS).map_err(db_err)?;
            for (policy_id, kfrag) in kfrags {
                table
                    .insert(*policy_id, kfrag.encode(*policy_id)?.as_slice())
                    .map_err(db_err)?;
            }
        }
        txn.commit().map_err(db_err)
    }
}

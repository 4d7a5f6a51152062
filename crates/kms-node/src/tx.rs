//! Exactly-once transactions for the node's duties.
//!
//! A duty's transaction is simulated (`eth_estimateGas`, so a revert is seen with its decoded
//! custom error before anything is signed), signed locally with an explicit nonce, and
//! **recorded in the store with its raw bytes before it is broadcast**. After a crash the record
//! is found and the very same transaction is broadcast again: it has the same nonce, so it cannot
//! execute twice, and a duty is never signed twice. A duty is marked done only when its receipt
//! is `confirmations` blocks deep and still on the canonical chain; if a reorg drops it, the same
//! raw transaction goes out again.
//!
//! A recorded transaction that the chain has never seen (a crash between the record and the
//! broadcast) and whose nonce is still free is simulated again before it goes out: the node may
//! have been down for a period, and a commitment signed in the last one may now revert, or need
//! more gas than it was given (settling the ended period's reward), or pay less than the base
//! fee. If it still goes through within its gas and fee it is sent as recorded; if it needs more,
//! it is signed again **at the same nonce** (so it still executes at most once); if it would
//! revert now, the duty is recorded as skipped and the nonce is left for the next one.

use std::time::{Duration, Instant};

use alloy::{
    consensus::{Transaction, TxEnvelope},
    eips::{
        eip2718::{Decodable2718, Encodable2718},
        BlockNumberOrTag,
    },
    network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder},
    primitives::{Address, Bytes, TxKind, B256, U256},
    providers::Provider,
    rpc::types::TransactionRequest,
};
use kms_contracts::errors::{describe_rpc_error, rpc_revert_data};

use crate::store::{DutyRecord, Store, StoreError};

/// Polls in a row that must see the duty's nonce used without its receipt before the duty is
/// declared replaced.
const REPLACED_AFTER_POLLS: u32 = 5;

/// Why a duty's transaction did not settle.
#[derive(Debug, thiserror::Error)]
pub enum TxError {
    /// The simulation reverted: nothing was signed or recorded.
    #[error("{0}")]
    Reverted(String),
    /// The RPC endpoint failed; the duty is retried at the next tick.
    #[error("rpc: {0}")]
    Rpc(String),
    /// The transaction is broadcast but not yet deep enough; the next tick goes on waiting.
    #[error("transaction {0} not yet confirmed")]
    Pending(B256),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The transaction could not be signed.
    #[error("signing: {0}")]
    Sign(String),
}

/// Sends the node's transactions from its worker account (see the module docs).
#[derive(Clone)]
pub struct TxSender<P> {
    provider: P,
    wallet: EthereumWallet,
    from: Address,
    chain_id: u64,
    store: Store,
    confirmations: u64,
    poll_interval: Duration,
    settle_timeout: Duration,
}

impl<P> std::fmt::Debug for TxSender<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxSender")
            .field("from", &self.from)
            .field("chain_id", &self.chain_id)
            .field("confirmations", &self.confirmations)
            .finish_non_exhaustive()
    }
}

fn rpc(e: impl std::fmt::Display) -> TxError {
    TxError::Rpc(e.to_string())
}

impl<P: Provider + Clone> TxSender<P> {
    /// A sender signing with `wallet` (whose default signer is `from`) on chain `chain_id`.
    pub fn new(
        provider: P,
        wallet: EthereumWallet,
        from: Address,
        chain_id: u64,
        store: Store,
        confirmations: u64,
        poll_interval: Duration,
    ) -> Self {
        Self {
            provider,
            wallet,
            from,
            chain_id,
            store,
            confirmations,
            poll_interval,
            settle_timeout: Duration::from_secs(30),
        }
    }

    /// How deep a transaction must be to count as done.
    pub fn confirmations(&self) -> u64 {
        self.confirmations
    }

    /// How long one call waits for a receipt before answering [`TxError::Pending`].
    pub fn with_settle_timeout(mut self, timeout: Duration) -> Self {
        self.settle_timeout = timeout;
        self
    }

    /// Runs the duty `key`: a call of `input` on `to`, at most once ever. A duty already settled
    /// returns its record; one recorded as sent resumes waiting for (and rebroadcasting) the same
    /// transaction. A new transaction is signed only once every other recorded one is settled
    /// (see [`TxSender::settle_in_flight`]).
    pub async fn run(&self, key: &str, to: Address, input: Bytes) -> Result<DutyRecord, TxError> {
        self.run_paying(key, to, input, U256::ZERO).await
    }

    /// [`TxSender::run`] of a call that sends `value` wei along (a policy's fee, say).
    pub async fn run_paying(
        &self,
        key: &str,
        to: Address,
        input: Bytes,
        value: U256,
    ) -> Result<DutyRecord, TxError> {
        let store = self.store.clone();
        let owned_key = key.to_owned();
        let existing = blocking(move || store.duty(&owned_key)).await?;
        match existing {
            Some(DutyRecord::Sent {
                tx_hash,
                raw_tx,
                nonce,
            }) => self.resume(key, tx_hash, &raw_tx, nonce).await,
            Some(settled) => Ok(settled),
            None => {
                // An unsettled transaction holds the next nonce, and what it does (a commitment,
                // say) must be on chain before a new duty is simulated and signed.
                self.settle_in_flight().await?;
                let (tx_hash, raw_tx, nonce) = self.sign(to, input, value).await?;
                let record = DutyRecord::Sent {
                    tx_hash,
                    raw_tx: raw_tx.clone(),
                    nonce,
                };
                let store = self.store.clone();
                let owned_key = key.to_owned();
                blocking(move || store.set_duty(&owned_key, &record)).await?;
                tracing::info!(duty = key, tx = %tx_hash, nonce, "duty transaction recorded");
                self.settle(key, tx_hash, &raw_tx, nonce).await
            }
        }
    }

    /// Settles every transaction recorded as sent: broadcasts it again and waits for it as
    /// [`TxSender::run`] does, recording it done or failed. These are the transactions of duties
    /// that do not come up again after a crash (their period passed while the node was down, or
    /// the chain shows their effect already): without this they would stay `sent`, and one never
    /// broadcast would go out only with the next duty's transaction, executing late.
    ///
    /// Returns the records settled now; [`TxError::Pending`] if one is not settled yet.
    pub async fn settle_in_flight(&self) -> Result<Vec<(String, DutyRecord)>, TxError> {
        let store = self.store.clone();
        let in_flight = blocking(move || store.duties()).await?;
        let mut settled = Vec::new();
        for (key, record) in in_flight {
            if let DutyRecord::Sent {
                tx_hash,
                raw_tx,
                nonce,
            } = record
            {
                let record = self.resume(&key, tx_hash, &raw_tx, nonce).await?;
                settled.push((key, record));
            }
        }
        Ok(settled)
    }

    /// Simulates, then signs with the next nonce.
    async fn sign(
        &self,
        to: Address,
        input: Bytes,
        value: U256,
    ) -> Result<(B256, Bytes, u64), TxError> {
        let request = self.call(to, input, value);
        let gas = self.simulate(&request).await?;
        // A transaction recorded but not settled holds its nonce: never sign below it. (`run`
        // settles them all first; this guards the nonce whatever the caller did.)
        let store = self.store.clone();
        let in_flight = blocking(move || store.duties()).await?;
        let floor = in_flight
            .iter()
            .filter_map(|(_, record)| match record {
                DutyRecord::Sent { nonce, .. } => Some(nonce + 1),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        let nonce = self.pending_nonce().await?.max(floor);
        self.sign_at(request, gas, nonce).await
    }

    /// The worker's next nonce, counting the transactions pending in the RPC endpoint's pool.
    async fn pending_nonce(&self) -> Result<u64, TxError> {
        self.provider
            .get_transaction_count(self.from)
            .pending()
            .await
            .map_err(rpc)
    }

    /// A call of `input` on `to` from the worker, paying `value`, to simulate and sign.
    fn call(&self, to: Address, input: Bytes, value: U256) -> TransactionRequest {
        TransactionRequest::default()
            .with_from(self.from)
            .with_to(to)
            .with_input(input)
            .with_value(value)
    }

    /// `eth_estimateGas` of `request`; a revert is [`TxError::Reverted`] with its decoded error.
    async fn simulate(&self, request: &TransactionRequest) -> Result<u64, TxError> {
        self.provider
            .estimate_gas(request.clone())
            .await
            .map_err(|e| match rpc_revert_data(&e) {
                Some(_) => TxError::Reverted(describe_rpc_error(&e)),
                None => rpc(describe_rpc_error(&e)),
            })
    }

    /// Signs `request` with `nonce`, the gas estimate plus headroom and the current fees.
    async fn sign_at(
        &self,
        request: TransactionRequest,
        gas: u64,
        nonce: u64,
    ) -> Result<(B256, Bytes, u64), TxError> {
        let fees = self.provider.estimate_eip1559_fees().await.map_err(rpc)?;
        let request = request
            .with_nonce(nonce)
            .with_chain_id(self.chain_id)
            // Headroom: state can move between the estimate and inclusion.
            .with_gas_limit(gas.saturating_mul(12) / 10)
            .with_max_fee_per_gas(fees.max_fee_per_gas)
            .with_max_priority_fee_per_gas(fees.max_priority_fee_per_gas);
        let envelope = request
            .build(&self.wallet)
            .await
            .map_err(|e| TxError::Sign(e.to_string()))?;
        let tx_hash = *envelope.tx_hash();
        Ok((tx_hash, Bytes::from(envelope.encoded_2718()), nonce))
    }

    /// Settles the recorded transaction of duty `key`, first signing it again at its nonce if
    /// the chain has never seen it (see the module docs).
    async fn resume(
        &self,
        key: &str,
        tx_hash: B256,
        raw_tx: &Bytes,
        nonce: u64,
    ) -> Result<DutyRecord, TxError> {
        // Pending, mined, or its nonce taken: `settle` tells which.
        let seen = self
            .provider
            .get_transaction_by_hash(tx_hash)
            .await
            .map_err(rpc)?
            .is_some();
        if seen || self.pending_nonce().await? > nonce {
            return self.settle(key, tx_hash, raw_tx, nonce).await;
        }
        let recorded = TxEnvelope::decode_2718(&mut raw_tx.as_ref())
            .map_err(|e| TxError::Sign(format!("recorded transaction undecodable: {e}")))?;
        let TxKind::Call(to) = recorded.kind() else {
            return Err(TxError::Sign(
                "recorded transaction creates a contract".into(),
            ));
        };
        let request = self.call(to, recorded.input().clone(), recorded.value());
        let gas = match self.simulate(&request).await {
            Ok(gas) => gas,
            Err(TxError::Reverted(reason)) => {
                let record = DutyRecord::Skipped {
                    reason: format!(
                        "never broadcast before a restart, and would now revert: {reason}"
                    ),
                };
                self.record(key, &record).await?;
                tracing::warn!(duty = key, tx = %tx_hash, nonce, %reason, "unsent duty transaction dropped");
                return Ok(record);
            }
            Err(e) => return Err(e),
        };
        let base_fee = self
            .provider
            .get_block_by_number(BlockNumberOrTag::Latest)
            .await
            .map_err(rpc)?
            .and_then(|block| block.header.base_fee_per_gas)
            .unwrap_or(0);
        if gas <= recorded.gas_limit() && recorded.max_fee_per_gas() >= u128::from(base_fee) {
            return self.settle(key, tx_hash, raw_tx, nonce).await;
        }
        let (tx_hash, raw_tx, nonce) = self.sign_at(request, gas, nonce).await?;
        self.record(
            key,
            &DutyRecord::Sent {
                tx_hash,
                raw_tx: raw_tx.clone(),
                nonce,
            },
        )
        .await?;
        tracing::info!(duty = key, tx = %tx_hash, nonce, "unsent duty transaction signed again at its nonce");
        self.settle(key, tx_hash, &raw_tx, nonce).await
    }

    /// Broadcasts `raw_tx` (again) and waits until it is `confirmations` deep, or the timeout.
    async fn settle(
        &self,
        key: &str,
        tx_hash: B256,
        raw_tx: &Bytes,
        nonce: u64,
    ) -> Result<DutyRecord, TxError> {
        let deadline = Instant::now() + self.settle_timeout;
        let mut broadcast_due = true;
        // How many polls in a row saw the nonce used and no receipt: a node may advance the
        // account's nonce a moment before it serves the receipt, so one sighting proves nothing.
        let mut unexplained_nonce = 0u32;
        loop {
            if broadcast_due {
                // "already known" and "nonce too low" are expected after a restart: the receipt
                // check below decides what happened.
                if let Err(e) = self.provider.send_raw_transaction(raw_tx).await {
                    tracing::debug!(duty = key, tx = %tx_hash, error = %e, "rebroadcast refused");
                }
                broadcast_due = false;
            }
            let receipt = self
                .provider
                .get_transaction_receipt(tx_hash)
                .await
                .map_err(rpc)?;
            let head = self.provider.get_block_number().await.map_err(rpc)?;
            match receipt.and_then(|r| r.block_number.map(|b| (r.status(), b))) {
                Some((status, block)) if head.saturating_sub(block) >= self.confirmations => {
                    // Deep enough: is that block still canonical?
                    let canonical = self
                        .provider
                        .get_block_by_number(BlockNumberOrTag::Number(block))
                        .await
                        .map_err(rpc)?
                        .map(|b| b.header.hash);
                    let receipt_block_hash = self
                        .provider
                        .get_transaction_receipt(tx_hash)
                        .await
                        .map_err(rpc)?
                        .and_then(|r| r.block_hash);
                    if canonical.is_some() && canonical == receipt_block_hash {
                        let record = if status {
                            DutyRecord::Done { tx_hash, block }
                        } else {
                            DutyRecord::Failed {
                                tx_hash,
                                reason: "reverted on chain".into(),
                            }
                        };
                        self.record(key, &record).await?;
                        tracing::info!(duty = key, tx = %tx_hash, block, ok = status, "duty settled");
                        return Ok(record);
                    }
                    broadcast_due = true;
                }
                Some(_) => unexplained_nonce = 0,
                None => {
                    let mined_nonce = self
                        .provider
                        .get_transaction_count(self.from)
                        .await
                        .map_err(rpc)?;
                    // Read the receipt again after the nonce: a transaction mined between the
                    // two reads advanced the nonce without being replaced.
                    let mined = self
                        .provider
                        .get_transaction_receipt(tx_hash)
                        .await
                        .map_err(rpc)?
                        .is_some();
                    unexplained_nonce = if mined_nonce > nonce && !mined {
                        unexplained_nonce + 1
                    } else {
                        0
                    };
                    if unexplained_nonce >= REPLACED_AFTER_POLLS {
                        // Our nonce was used, yet our transaction has no receipt: another
                        // transaction from the worker account took it.
                        let record = DutyRecord::Failed {
                            tx_hash,
                            reason: format!("nonce {nonce} was used by another transaction"),
                        };
                        self.record(key, &record).await?;
                        tracing::warn!(duty = key, tx = %tx_hash, "duty transaction replaced");
                        return Ok(record);
                    }
                    broadcast_due = !mined;
                }
            }
            if Instant::now() >= deadline {
                return Err(TxError::Pending(tx_hash));
            }
            tokio::time::sleep(self.poll_interval).await;
        }
    }

    async fn record(&self, key: &str, record: &DutyRecord) -> Result<(), TxError> {
        let store = self.store.clone();
        let (key, record) = (key.to_owned(), record.clone());
        blocking(move || store.set_duty(&key, &record)).await
    }
}

/// Runs a store operation off the async runtime (redb fsyncs on commit).
pub(crate) async fn blocking<T, F>(op: F) -> Result<T, TxError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(op)
        .await
        .map_err(|e| TxError::Rpc(format!("store task failed: {e}")))?
        .map_err(TxError::from)
}

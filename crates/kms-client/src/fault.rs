//! What came of reporting a fault. The fault file itself (the evidence a Bob keeps, and the body
//! of a node's `POST /v1/evidence`) is a wire format: [`kms_crypto::fault`].

use alloy::primitives::{Address, B256, U256};
use kms_crypto::Verdict;

pub use kms_crypto::fault::{Fault, FaultError, FAULT_FILE_VERSION};

/// What the Adjudicator decided about a reported fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportOutcome {
    /// The transaction.
    pub tx_hash: B256,
    /// The verdict of its `CFragEvaluated` event (`Correct`: nothing slashed).
    pub verdict: Verdict,
    /// The staker judged.
    pub staker: Address,
    /// Tokens slashed.
    pub penalty: U256,
    /// Tokens paid to the reporter.
    pub reward: U256,
}

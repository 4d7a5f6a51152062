//! A provable fault: a node's signed answer whose cfrag fails Umbral's verification, kept with
//! everything the Adjudicator needs, as JSON: the file `kms retrieve --report` saves and
//! `kms report FILE` submits, and the body of a node's `POST /v1/evidence` (anyone may hold and
//! relay it: it carries only public data).
//!
//! The file holds the inputs of [`Evidence::from_parts`] rather than the evidence struct: the
//! products and y coordinates are recomputed from the bytes when it is reported, so a file
//! edited by hand cannot smuggle in inconsistent ones, and the file stays readable.

use std::path::{Path, PathBuf};

use crate::{AnswerContext, Evidence, EvidenceError};
use alloy::primitives::{Address, Bytes, FixedBytes, B256};
use serde::{Deserialize, Serialize};
use umbral_pre::PublicKey;

/// The fault file format this crate writes and reads.
pub const FAULT_FILE_VERSION: u32 = 2;

/// A node's wrong, signed re-encryption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fault {
    /// Always [`FAULT_FILE_VERSION`].
    pub version: u32,
    /// The chain the policy lives on (the worker's signature is bound to it).
    pub chain_id: u64,
    /// The policy.
    pub policy_id: FixedBytes<16>,
    /// The Adjudicator the answer names.
    pub adjudicator: Address,
    /// The period the answer names.
    pub period: u64,
    /// The node's staker (who gets slashed).
    pub staker: Address,
    /// The worker that signed the answer.
    pub worker: Address,
    /// Where the node was asked.
    pub url: String,
    /// `Capsule::to_bytes_simple` (98 bytes).
    pub capsule: Bytes,
    /// `CapsuleFrag::to_bytes_simple` of the node's cfrag (359 bytes).
    pub cfrag: Bytes,
    /// The policy's delegating key, compressed (33 bytes).
    pub delegating_key: Bytes,
    /// Bob's key, compressed (33 bytes).
    pub receiving_key: Bytes,
    /// The policy's kfrag signer.
    pub kfrag_signer: Address,
    /// The worker's 65-byte signature of the answer.
    pub worker_signature: Bytes,
    /// The verdict the Rust model of the Adjudicator predicts (e.g. `WrongE`).
    pub expected_verdict: String,
    /// Why Bob's verification failed (umbral's error).
    pub reason: String,
}

/// Why a fault file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// The file could not be read.
    #[error("cannot read fault file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file could not be written.
    #[error("cannot write fault file {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The JSON is not a fault file (serde names the field).
    #[error("fault file {}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The JSON is not a fault (serde names the field).
    #[error("not a fault file: {0}")]
    Parse(#[source] serde_json::Error),
    /// The file is of another version.
    #[error(
        "fault file version {0} is not supported (this kms reads version {FAULT_FILE_VERSION})"
    )]
    Version(u32),
    /// A key is not a compressed point.
    #[error("fault file field `{field}` is not a compressed public key")]
    Key {
        /// The field.
        field: &'static str,
    },
    /// The bytes cannot be evidence.
    #[error("the fault cannot be turned into evidence: {0}")]
    Evidence(#[from] EvidenceError),
}

impl Fault {
    /// The evidence `Adjudicator.evaluateCFrag` takes, recomputed from the bytes.
    pub fn evidence(&self) -> Result<Evidence, FaultError> {
        if self.version != FAULT_FILE_VERSION {
            return Err(FaultError::Version(self.version));
        }
        let key = |field: &'static str, bytes: &Bytes| {
            PublicKey::try_from_compressed_bytes(bytes).map_err(|_| FaultError::Key { field })
        };
        Ok(Evidence::from_parts(
            &self.capsule,
            &self.cfrag,
            &key("delegatingKey", &self.delegating_key)?,
            &key("receivingKey", &self.receiving_key)?,
            self.kfrag_signer,
            &AnswerContext {
                chain_id: self.chain_id,
                adjudicator: self.adjudicator,
                staker: self.staker,
                period: self.period,
                policy_id: self.policy_id.0,
            },
            &self.worker_signature,
        )?)
    }

    /// `keccak256(capsule || cfrag)`: the Adjudicator's key for this evidence (`evaluated`,
    /// the commitments), and the id a node files it under.
    pub fn evidence_hash(&self) -> B256 {
        crate::evidence::evidence_hash(&self.capsule, &self.cfrag)
    }

    /// Parses a fault from its JSON (a file's contents, or a request body), checking its version.
    pub fn from_json(json: &[u8]) -> Result<Self, FaultError> {
        let fault: Self = serde_json::from_slice(json).map_err(FaultError::Parse)?;
        if fault.version != FAULT_FILE_VERSION {
            return Err(FaultError::Version(fault.version));
        }
        Ok(fault)
    }

    /// Reads a fault file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, FaultError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| FaultError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let fault: Self = serde_json::from_str(&text).map_err(|source| FaultError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        if fault.version != FAULT_FILE_VERSION {
            return Err(FaultError::Version(fault.version));
        }
        Ok(fault)
    }

    /// Writes the fault file (pretty JSON), replacing one that exists.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), FaultError> {
        let path = path.as_ref();
        let mut text = serde_json::to_string_pretty(self).map_err(|source| FaultError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        text.push('\n');
        std::fs::write(path, text).map_err(|source| FaultError::Write {
            path: path.to_path_buf(),
            source,
        })
    }
}

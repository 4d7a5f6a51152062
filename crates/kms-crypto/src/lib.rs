//! Cryptography shared by the KMS node, the `kms` CLI and the Adjudicator's tests.
//!
//! - [`answer`]: the digest a node's worker signs for every capsule fragment it returns, and the
//!   EIP-191 signature over it.
//! - [`evidence`]: the [`Evidence`] struct that `IAdjudicator.evaluateCFrag`
//!   takes, built from the raw `to_bytes_simple` encodings (so it can be built for a wrong cfrag
//!   too), and a Rust model of what the contract decides.
//! - [`fault`]: the fault file, a node's wrong signed answer with what the Adjudicator needs (the
//!   file `kms retrieve --report` saves, the body of a node's `POST /v1/evidence`).
//! - [`umbral`]: small helpers around umbral-pre 0.11 (Ethereum address of a key, the byte layout
//!   of `to_bytes_simple`, parsing it back).
//! - [`wire`]: the JSON bodies of the node's HTTP API (`docs/node.md`), shared by the node and
//!   its clients, with both halves of each signed message (sealing and opening a kfrag upload,
//!   signing and checking a cfrag answer).
//! - [`revocation`]: the policy owner's signed revocation orders (EIP-712), as the nodes take
//!   them and `PolicyManager.revokeBySignature` carries them out.
//! - [`tls`]: a node's URL with its certificate pin (`#tls-sha256=…`).
//! - [`keys`]: the Umbral master-secret file and the Ethereum web3 keystore.
//! - [`fixtures`]: the deterministic test vectors the Solidity tests read
//!   (`test/fixtures/adjudicator/cases.json`).
//!
//! The formats are described in `docs/adjudicator.md`.

pub mod answer;
mod curve;
pub mod evidence;
pub mod fault;
pub mod fixtures;
pub mod keys;
pub mod revocation;
mod secp256k1;
#[cfg(feature = "test-utils")]
pub mod test_utils;
pub mod tls;
pub mod umbral;
pub mod wire;

pub use answer::{
    answer_digest, policy_id_of, recover_answer_signer, sign_answer, AnswerContext, AnswerError,
};
pub use evidence::{Evidence, EvidenceError, Outcome, Point, Verdict};
pub use umbral::ethereum_address;

/// Re-export of the umbral-pre version the formats are tied to.
pub use umbral_pre;

//! Rust side of the KMS contracts: typed bindings, the deployments file, and (with the
//! `test-utils` feature) a local chain with the contracts deployed for integration tests.
//!
//! The Solidity sources in `contracts/` are the single source of truth; this crate only mirrors
//! what `forge build` and `script/Deploy.s.sol` produce, so the two sides cannot drift apart
//! silently: a changed ABI changes these types at the next build.

pub mod bindings;
mod deployment;
pub mod errors;
#[cfg(feature = "test-utils")]
pub mod testing;

pub use bindings::{Adjudicator, KMSToken, PolicyManager, StakingEscrow};
pub use deployment::{Deployment, DeploymentError};
pub use errors::{decode_revert, describe_contract_error, describe_rpc_error};

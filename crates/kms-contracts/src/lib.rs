//! Rust side of the KMS contracts: typed bindings, the deployments file, and two optional
//! modules: `devchain` (feature `devnet`: anvil with the contracts deployed, for `kms devnet`)
//! and `test_utils` (feature `test-utils`: that chain with the steps integration tests repeat;
//! never enabled in a shipped binary).
//!
//! The Solidity sources in `contracts/` are the single source of truth; this crate only mirrors
//! what `forge build` and `script/Deploy.s.sol` produce, so the two sides cannot drift apart
//! silently: a changed ABI changes these types at the next build.

pub mod bindings;
mod deployment;
#[cfg(feature = "devnet")]
pub mod devchain;
pub mod errors;
#[cfg(feature = "test-utils")]
pub mod test_utils;

pub use bindings::{Adjudicator, KMSToken, PolicyManager, StakingEscrow};
pub use deployment::{Deployment, DeploymentError};
pub use errors::{decode_revert, describe_contract_error, describe_rpc_error};

//! The `kms` command's library: each subcommand's arguments and implementation, and the devnet,
//! which the benchmarks start too (`benches/`).

pub mod common;
pub mod devnet;
pub mod error;
pub mod keys;
pub mod node;
pub mod policy;
pub mod stake;

//! The `kms` command's library: each command's arguments and implementation (dispatched from
//! [`args`]), and the devnet, which the benchmarks start too (`benches/`).

pub mod args;
pub mod common;
pub mod devnet;
pub mod encrypt;
pub mod error;
pub mod files;
pub mod keys;
pub mod message;
pub mod network;
pub mod node;
pub mod node_check;
pub mod opts;
pub mod policy;
pub mod retrieve;
pub mod stake;

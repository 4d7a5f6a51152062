//! `kms devnet`: a local chain with the contracts, staked miners and their nodes, in one
//! process (`network`); `--demo` then tells the whole story (`demo`).
//!
//! The only code of the `kms` binary that uses `kms_contracts::devchain` (anvil and forge; feature `devnet`).

mod demo;
mod network;

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

pub use network::{
    alice_index, bob_index, print, start, start_with_node_rpc, Devnet, Miner, DEPLOYER,
};

/// `kms devnet`.
#[derive(Debug, Clone, Args)]
pub struct DevnetArgs {
    /// Anvil's port.
    #[arg(long, default_value_t = 8545)]
    pub port: u16,
    /// How many miners to stake and run.
    #[arg(long, default_value_t = 5)]
    pub nodes: usize,
    /// Length of a period, in seconds (the demo travels in time anyway).
    #[arg(long, default_value_t = 3600)]
    pub seconds_per_period: u64,
    /// The first node's API port; node i listens on this + i - 1 (0: any free ports).
    #[arg(long, default_value_t = 9151)]
    pub node_port: u16,
    /// Where to write the deployments file, relative to the repository root and under
    /// `deployments/` (the CLI's default for chain 31337 is deployments/31337.json).
    #[arg(long, default_value = "deployments/31337.json")]
    pub deployments_file: String,
    /// Where the nodes keep their stores (a fresh temporary directory by default).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Tell the whole story with real transactions and real cryptography, then exit (0 only if
    /// every step checked out).
    #[arg(long)]
    pub demo: bool,
    /// Make the last node answer with wrong (signed) cfrags, to show slashing (on by default
    /// with --demo).
    #[arg(long)]
    pub faulty_node: bool,
    /// Serve the nodes over plain HTTP instead of TLS with self-signed, pinned certificates
    /// (clients then need --allow-plain-http, KMS_ALLOW_PLAIN_HTTP=1).
    #[arg(long)]
    pub plain_http: bool,
}

impl DevnetArgs {
    /// Starts the devnet and prints it; then tells the story (`--demo`) or runs until SIGINT
    /// or SIGTERM.
    pub async fn run(self) -> Result<()> {
        let mut devnet = start(&self).await?;
        print(&devnet)?;
        if self.demo {
            let result = demo::run(&mut devnet).await;
            devnet.shutdown().await;
            return result;
        }
        println!();
        println!("devnet running; Ctrl-C (or SIGTERM) stops the nodes and anvil");
        crate::node::shutdown_signal().await;
        devnet.shutdown().await;
        Ok(())
    }
}

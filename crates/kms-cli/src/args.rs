//! The `kms` command line: every command's arguments, dispatched from one `match`.

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::{
    devnet::DevnetArgs,
    encrypt::EncryptArgs,
    keys::KeysSubcommand,
    message::MessageSubcommand,
    network::NetworkArgs,
    node::NodeSubcommand,
    policy::PolicyArgs,
    retrieve::{ReportArgs, RetrieveArgs},
    stake::{RewardsArgs, StakeArgs},
};

/// KMS: decentralized key management with threshold proxy re-encryption on Ethereum.
#[derive(Debug, Parser)]
#[command(name = "kms", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    /// The command to run.
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Umbral master secrets and Ethereum keystores.
    #[command(subcommand)]
    Keys(KeysSubcommand),
    /// Stake KMS tokens: deposit, prolong, divide, merge, withdraw, bond a worker, status.
    Stake(StakeArgs),
    /// Withdraw minted rewards (and fees).
    Rewards(RewardsArgs),
    /// Alice: grant, revoke, refund and list policies.
    Policy(PolicyArgs),
    /// Enrico: encrypt a file of any size to a policy (streaming, constant memory).
    ///
    /// Example: kms encrypt --policy-key photos.policy.json video.mp4 video.mp4.kms
    Encrypt(EncryptArgs),
    /// Bob: ask the policy's nodes for re-encryptions, verify them, decrypt a file.
    ///
    /// Example: kms retrieve --policy photos.policy.json --umbral bob/umbral.json video.mp4.kms video.mp4
    Retrieve(RetrieveArgs),
    /// Small messages at chat and sensor rates: Enrico seals lines into a feed of signed
    /// sessions, Bob reads it (one retrieval per session, not per message).
    #[command(subcommand)]
    Message(MessageSubcommand),
    /// File saved evidence of a wrong cfrag with the Adjudicator (the node is slashed, you are
    /// rewarded).
    ///
    /// Example: kms report video.mp4.fault-0.json --keystore bob/account.json --password-file pw
    Report(ReportArgs),
    /// Run and set up a miner node (the staker's worker).
    #[command(subcommand)]
    Node(NodeSubcommand),
    /// The network: every staker's node, whether it answers now, and what the nodes' audits saw.
    ///
    /// Example: kms network status
    Network(NetworkArgs),
    /// A local chain with the contracts, staked miners and their nodes; `--demo` tells the
    /// whole story and checks every step.
    ///
    /// Example: kms devnet --demo
    Devnet(DevnetArgs),
}

impl Command {
    /// Runs the command.
    pub async fn run(self) -> Result<()> {
        match self {
            Self::Keys(command) => command.run(),
            Self::Stake(args) => args.run().await,
            Self::Rewards(args) => args.run().await,
            Self::Policy(args) => args.run().await,
            Self::Encrypt(args) => args.run(),
            Self::Retrieve(args) => args.run().await,
            Self::Message(command) => command.run().await,
            Self::Report(args) => args.run().await,
            Self::Node(command) => command.run().await,
            Self::Network(args) => args.run().await,
            Self::Devnet(args) => args.run().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// clap's own consistency checks (conflicting names, globals, defaults) over every command.
    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}

//! `kms`: the command line of the KMS network (see `kms --help`).

use kms_cli::{common, devnet, error::exit_code, keys, node, policy, stake};

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// KMS: decentralized key management with threshold proxy re-encryption on Ethereum.
#[derive(Debug, Parser)]
#[command(name = "kms", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Umbral master secrets and Ethereum keystores.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Stake KMS tokens: deposit, prolong, divide, merge, withdraw, bond a worker, status.
    Stake {
        #[command(subcommand)]
        command: stake::StakeCommand,
        #[command(flatten)]
        connection: stake::Connection,
    },
    /// Withdraw minted rewards (and fees).
    Rewards {
        #[command(subcommand)]
        command: stake::RewardsCommand,
        #[command(flatten)]
        connection: stake::Connection,
    },
    /// Alice: grant, revoke, refund and list policies.
    Policy {
        #[command(subcommand)]
        command: policy::PolicyCommand,
        #[command(flatten)]
        chain: common::ChainArgs,
        #[command(flatten)]
        wallet: common::WalletArgs,
    },
    /// Enrico: encrypt a file of any size to a policy (streaming, constant memory).
    ///
    /// Example: kms encrypt --policy-key photos.policy.json video.mp4 video.mp4.kms
    Encrypt(policy::EncryptArgs),
    /// Bob: ask the policy's nodes for re-encryptions, verify them, decrypt a file.
    ///
    /// Example: kms retrieve --policy photos.policy.json --umbral bob/umbral.json video.mp4.kms video.mp4
    Retrieve {
        #[command(flatten)]
        args: policy::RetrieveArgs,
        #[command(flatten)]
        chain: common::ChainArgs,
        #[command(flatten)]
        wallet: common::WalletArgs,
    },
    /// File saved evidence of a wrong cfrag with the Adjudicator (the node is slashed, you are
    /// rewarded).
    ///
    /// Example: kms report video.mp4.fault-0.json --keystore bob/account.json --password-file pw
    Report {
        /// The evidence file `kms retrieve` saved.
        evidence: std::path::PathBuf,
        #[command(flatten)]
        chain: common::ChainArgs,
        #[command(flatten)]
        wallet: common::WalletArgs,
    },
    /// Run and set up a miner node (the staker's worker).
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// A local chain with the contracts, staked miners and their nodes; `--demo` tells the
    /// whole story and checks every step.
    ///
    /// Example: kms devnet --demo
    Devnet(devnet::DevnetArgs),
}

/// Logs go to stderr, filtered by `RUST_LOG`; by default a node logs what it does, and the other
/// commands (whose output is the result) only warnings.
fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(match cli.command {
        Command::Node(_) => "info",
        _ => "warn",
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Keys(command) => keys::run(command),
            Command::Stake {
                command,
                connection,
            } => stake::run(command, connection).await,
            Command::Rewards {
                command,
                connection,
            } => stake::run_rewards(command, connection).await,
            Command::Policy {
                command,
                chain,
                wallet,
            } => policy::run(command, chain, wallet).await,
            Command::Encrypt(args) => policy::encrypt(args),
            Command::Retrieve {
                args,
                chain,
                wallet,
            } => policy::retrieve(args, chain, wallet).await,
            Command::Report {
                evidence,
                chain,
                wallet,
            } => policy::report(evidence, chain, wallet).await,
            Command::Node(command) => node::run(command).await,
            Command::Devnet(args) => args.run().await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

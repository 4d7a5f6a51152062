//! `kms`: the command line of the KMS network (see `kms --help`).

mod common;
mod keys;
mod node;
mod stake;

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
    /// Run and set up a miner node (the staker's worker).
    #[command(subcommand)]
    Node(node::NodeCommand),
}

/// Exit codes: 1 for errors, 2 for usage (clap), 3 when a contract refused the transaction.
fn exit_code(error: &anyhow::Error) -> u8 {
    if error.chain().any(|e| e.is::<common::Reverted>()) {
        3
    } else {
        1
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
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
            Command::Node(command) => node::run(command).await,
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

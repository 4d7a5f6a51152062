//! The option groups commands flatten: the chain (endpoint, deployments file) and the account
//! that signs.

use std::path::{Path, PathBuf};

use alloy::{providers::DynProvider, signers::local::PrivateKeySigner};
use anyhow::{bail, Context, Result};
use clap::Args;
use kms_client::{Client, HttpConfig};
use kms_crypto::keys;

use crate::common::Chain;

/// `--rpc-url`, `--deployments` and the account: what every chain command needs. Global, so
/// that `kms stake --rpc-url URL status` works as well as `kms stake status --rpc-url URL`.
/// `--help` lists them under their own headings, after the command's own options.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Chain")]
pub struct ChainOpts {
    /// The RPC endpoint.
    #[arg(
        long,
        env = "ETH_RPC_URL",
        default_value = "http://127.0.0.1:8545",
        global = true
    )]
    pub rpc_url: String,
    /// The deployments file (default: deployments/<chain id>.json).
    // Help text (clap), written for a terminal: `<chain id>` is a placeholder, not HTML.
    #[allow(rustdoc::invalid_html_tags)]
    #[arg(long, env = "KMS_DEPLOYMENTS", global = true)]
    pub deployments: Option<PathBuf>,
    /// The account that signs.
    #[command(flatten)]
    pub wallet: WalletOpts,
}

/// Whether a command sends transactions, and so needs an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Account {
    /// It sends: fail early without an account.
    Required,
    /// It only reads: an account, if given, is the default owner or staker to read.
    Optional,
}

impl ChainOpts {
    /// Connects to the chain (with the account, if any) and loads the deployment.
    pub async fn connect(&self, account: Account) -> Result<Chain> {
        let signer = match account {
            Account::Required => Some(self.wallet.require()?),
            Account::Optional => self.wallet.signer()?,
        };
        Chain::connect(self, signer).await
    }

    /// [`connect`](Self::connect), and a KMS client on that connection.
    pub async fn client(&self, account: Account) -> Result<(Chain, Client<DynProvider>)> {
        let chain = self.connect(account).await?;
        let client = Client::connect(
            chain.provider.clone(),
            chain.deployment.clone(),
            HttpConfig::default(),
        )
        .await?;
        Ok((chain, client))
    }
}

/// The account that signs: `--private-key`, or `--keystore` with `--password-file`.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Account")]
pub struct WalletOpts {
    /// A raw private key (hex). Prefer a keystore outside devnets.
    #[arg(long, env = "ETH_PRIVATE_KEY", hide_env_values = true, global = true)]
    pub private_key: Option<String>,
    /// A web3 secret-storage keystore (`kms keys new` writes one).
    #[arg(long, env = "ETH_KEYSTORE", global = true)]
    pub keystore: Option<PathBuf>,
    /// The keystore's password file (first line).
    #[arg(long, env = "KMS_PASSWORD_FILE", global = true)]
    pub password_file: Option<PathBuf>,
}

impl WalletOpts {
    /// The signer, if an account was given.
    pub fn signer(&self) -> Result<Option<PrivateKeySigner>> {
        match (&self.private_key, &self.keystore) {
            (Some(_), Some(_)) => bail!("give either --private-key or --keystore, not both"),
            (Some(key), None) => {
                Ok(Some(key.trim().parse().context(
                    "--private-key is not a 32-byte hex private key",
                )?))
            }
            (None, Some(path)) => {
                let password = password(self.password_file.as_deref())?;
                Ok(Some(keys::load_keystore(path, &password)?))
            }
            (None, None) => Ok(None),
        }
    }

    /// The signer, required.
    pub fn require(&self) -> Result<PrivateKeySigner> {
        self.signer()?.context(
            "this command sends a transaction: pass --keystore FILE --password-file FILE (or --private-key)",
        )
    }
}

/// The keystore password from a file (refused if others can read it), or `KMS_PASSWORD`;
/// zeroed when dropped.
pub fn password(file: Option<&Path>) -> Result<keys::Zeroizing<Vec<u8>>> {
    if let Some(path) = file {
        return Ok(keys::read_password_file(path)?);
    }
    if let Ok(password) = std::env::var("KMS_PASSWORD") {
        return Ok(keys::Zeroizing::new(password.into_bytes()));
    }
    bail!("no keystore password: pass --password-file FILE (or set KMS_PASSWORD)")
}

//! The option groups commands flatten: the chain (endpoint, deployments file) and the account
//! that signs; and the [`Chain`] connection they make.

use std::path::{Path, PathBuf};

use alloy::{
    primitives::Address,
    providers::{DynProvider, Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};
use anyhow::{bail, Context, Result};
use clap::Args;
use kms_client::{Client, HttpConfig};
use kms_contracts::Deployment;
use kms_crypto::keys;

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
    /// Let node URLs be plain http:// (a devnet started with `kms devnet --plain-http`);
    /// refused otherwise: nodes serve https://.
    #[arg(
        long,
        env = "KMS_ALLOW_PLAIN_HTTP",
        global = true,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub allow_plain_http: bool,
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
    /// How to reach the nodes: the defaults, plain HTTP only if allowed.
    pub fn http_config(&self) -> HttpConfig {
        HttpConfig {
            allow_plain_http: self.allow_plain_http,
            ..HttpConfig::default()
        }
    }

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
            self.http_config(),
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

/// A connection to the chain with the deployment loaded.
#[derive(Debug, Clone)]
pub struct Chain {
    /// The provider (signing with the account, if one was given).
    pub provider: DynProvider,
    /// The contracts.
    pub deployment: Deployment,
    /// The signing account, if any.
    pub account: Option<Address>,
}

impl Chain {
    /// Connects, checks the chain id against the deployments file.
    pub async fn connect(chain: &ChainOpts, signer: Option<PrivateKeySigner>) -> Result<Self> {
        let account = signer.as_ref().map(|s| s.address());
        let provider = match signer {
            Some(signer) => ProviderBuilder::new()
                .wallet(signer)
                .connect(&chain.rpc_url)
                .await
                .map(|p| p.erased()),
            None => ProviderBuilder::new()
                .connect(&chain.rpc_url)
                .await
                .map(|p| p.erased()),
        }
        .with_context(|| {
            format!(
                "cannot reach the chain at {} (is anvil running? `kms devnet`)",
                chain.rpc_url
            )
        })?;
        let chain_id = provider
            .get_chain_id()
            .await
            .with_context(|| format!("cannot reach the chain at {}", chain.rpc_url))?;
        let path = chain
            .deployments
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("deployments/{chain_id}.json")));
        let deployment = Deployment::load(&path).with_context(|| {
            "pass --deployments FILE (the file script/Deploy.s.sol or `kms devnet` wrote)"
                .to_string()
        })?;
        if deployment.chain_id != chain_id {
            bail!(
                "{} is for chain {}, but {} is chain {chain_id}",
                path.display(),
                deployment.chain_id,
                chain.rpc_url
            );
        }
        Ok(Self {
            provider,
            deployment,
            account,
        })
    }

    /// The signing account, required.
    pub fn account(&self) -> Result<Address> {
        self.account
            .context("pass --keystore FILE --password-file FILE (or --private-key)")
    }

    /// The latest block's period.
    pub async fn current_period(&self) -> Result<u64> {
        let now = crate::common::chain_now(&self.provider).await?;
        Ok(now / self.deployment.seconds_per_period.max(1))
    }
}

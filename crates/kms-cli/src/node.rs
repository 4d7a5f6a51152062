//! `kms node init` and `kms node run`.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use alloy::primitives::Address;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use kms_contracts::Deployment;
use kms_crypto::keys::{self, MasterSecret};
use kms_node::{NodeConfig, Settings};

use crate::error::CliError;

/// `kms node ...`.
// The doc comments are the commands' help text (clap), written for a terminal, not rustdoc.
#[allow(rustdoc::bare_urls)]
#[derive(Debug, Subcommand)]
pub enum NodeSubcommand {
    /// Write a node's configuration, worker keystore and Umbral key into a directory.
    ///
    /// Example:
    ///   kms node init --dir ~/.kms/node --staker 0xStaker --rpc-url ws://127.0.0.1:8545 \
    ///     --deployments deployments/31337.json --listen 0.0.0.0:9151 \
    ///     --public-url https://node.example:9151 --password-file pw.txt
    ///
    /// It makes a self-signed TLS certificate for the public URL's host (clients pin it: the node
    /// publishes its SHA-256 with its URL); `--tls ca --tls-cert F --tls-key F` serves a
    /// CA-issued one instead (what web apps' browsers need), `--tls off` plain HTTP (devnets).
    ///
    /// Then, as the staker: `kms stake bond-worker --worker <printed worker address>`, and send
    /// the worker some ETH for gas.
    Init(InitArgs),
    /// Run the node: serve re-encryptions, follow the chain, commit, mint, withdraw fees.
    ///
    /// Example: KMS_PASSWORD_FILE=pw.txt kms node run --config ~/.kms/node/node.toml
    ///
    /// Stops cleanly on SIGINT or SIGTERM.
    Run(RunArgs),
    /// Check a node's configuration before running it (or while it runs): the keys readable and
    /// private, the RPC endpoint on the right chain, the worker bonded and funded, the stake
    /// locked, the node record, and the public URL reaching this machine from outside. Exits 1
    /// if a check fails; each failure says what to do.
    ///
    /// Example: KMS_PASSWORD_FILE=pw.txt kms node check --config ~/.kms/node/node.toml
    Check(CheckArgs),
}

impl NodeSubcommand {
    /// Runs the subcommand.
    pub async fn run(self) -> Result<()> {
        match self {
            Self::Init(args) => args.run().await,
            Self::Run(args) => args.run().await,
            Self::Check(args) => args.run().await,
        }
    }
}

/// Where the keystore's password comes from.
#[derive(Debug, Args)]
pub struct PasswordArgs {
    /// A file whose first line is the keystore password.
    #[arg(long, env = "KMS_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
}

impl PasswordArgs {
    /// The password, zeroed when dropped. A password file others can read is refused.
    fn read(&self, fallback: Option<&Path>) -> Result<keys::Zeroizing<Vec<u8>>> {
        if let Some(path) = self.password_file.as_deref().or(fallback) {
            return keys::read_password_file(path).map_err(Into::into);
        }
        if let Ok(password) = std::env::var("KMS_PASSWORD") {
            return Ok(keys::Zeroizing::new(password.into_bytes()));
        }
        bail!("no keystore password: pass --password-file FILE (or set KMS_PASSWORD_FILE or KMS_PASSWORD)")
    }
}

/// `kms node init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The directory to write node.toml, worker.json and umbral.json into.
    #[arg(long)]
    pub dir: PathBuf,
    /// The staker this node serves.
    #[arg(long)]
    pub staker: Address,
    /// The RPC endpoint (ws:// recommended: new blocks by subscription).
    #[arg(long, env = "ETH_RPC_URL")]
    pub rpc_url: String,
    /// The deployments file of the contracts.
    #[arg(long)]
    pub deployments: PathBuf,
    /// Where the API listens.
    #[arg(long, default_value = "127.0.0.1:9151")]
    pub listen: SocketAddr,
    /// The URL clients reach the API at (default: https:// + --listen, or http:// with --tls off).
    #[arg(long)]
    pub public_url: Option<String>,
    /// How the API is served: a self-signed certificate made now (pinned by clients), a
    /// CA-issued one (--tls-cert, --tls-key), or plain HTTP (devnets only).
    #[arg(long, value_enum, default_value = "self-signed")]
    pub tls: TlsArg,
    /// With --tls ca: the certificate chain (PEM, leaf first) issued for the public URL's host.
    #[arg(long, value_name = "FILE", required_if_eq("tls", "ca"))]
    pub tls_cert: Option<PathBuf>,
    /// With --tls ca: its private key (PEM, readable by the owner only).
    #[arg(long, value_name = "FILE", required_if_eq("tls", "ca"))]
    pub tls_key: Option<PathBuf>,
    /// Blocks an event must be deep before the node acts on it [default: 2, or 0 on a chain that
    /// mines a block only with a transaction (anvil's default), where a depth of 2 would wait
    /// for two more transactions]
    #[arg(long)]
    pub confirmations: Option<u64>,
    /// Import this worker private key (hex) instead of generating one.
    #[arg(long, env = "KMS_WORKER_PRIVATE_KEY", hide_env_values = true)]
    pub worker_private_key: Option<String>,
    /// Where the keystore's password comes from.
    #[command(flatten)]
    pub password: PasswordArgs,
}

/// `kms node init --tls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsArg {
    /// A self-signed certificate, made now; clients pin it.
    SelfSigned,
    /// A CA-issued certificate (--tls-cert, --tls-key).
    Ca,
    /// Plain HTTP: devnets only.
    Off,
}

impl InitArgs {
    /// Writes the node's directory and prints what the staker does next.
    pub async fn run(self) -> Result<()> {
        let password = self.password.read(None)?;
        let config_path = self.dir.join("node.toml");
        if config_path.exists() {
            bail!(
                "{} exists already: this directory holds a node (remove it or choose another --dir)",
                config_path.display()
            );
        }
        let scheme = if self.tls == TlsArg::Off {
            "http"
        } else {
            "https"
        };
        let public_url = self
            .public_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{}", self.listen));
        let deployments = std::path::absolute(&self.deployments)
            .with_context(|| format!("resolving {}", self.deployments.display()))?;
        Deployment::load(&deployments)?;
        let mut config = NodeConfig::new(
            self.rpc_url.clone(),
            deployments,
            self.staker,
            self.listen,
            public_url.clone(),
        );
        config.chain.confirmations = choose_confirmations(&self.rpc_url, self.confirmations).await;
        if let Some(password_file) = &self.password.password_file {
            config.node.password_file = Some(
                std::path::absolute(password_file)
                    .with_context(|| format!("resolving {}", password_file.display()))?,
            );
        }
        let keystore = self.dir.join(&config.node.worker_keystore);
        let worker = match &self.worker_private_key {
            Some(hex) => {
                let signer: alloy::signers::local::PrivateKeySigner = hex
                    .trim()
                    .parse()
                    .context("--worker-private-key is not a 32-byte hex private key")?;
                keys::save_keystore(&keystore, &signer, &password)?;
                signer
            }
            None => keys::create_keystore(&keystore, &password)?,
        };
        let master = MasterSecret::random();
        master.save(&self.dir.join(&config.node.umbral_key))?;
        let pin = self.write_tls(&mut config, &public_url)?;
        config.save(&config_path)?;
        println!("wrote {}", config_path.display());
        println!("worker address:    {}", worker.address());
        println!(
            "umbral public key: {}",
            kms_crypto::wire::encode_public_key(&master.node_key().public_key())
        );
        match pin {
            Some(url) => println!("published URL:     {url} (the certificate's pin included)"),
            None if self.tls == TlsArg::Off => println!(
                "plain HTTP (--tls off): for a devnet only; clients refuse it unless given \
                 --allow-plain-http"
            ),
            None => println!("published URL:     {public_url} (CA-issued certificate)"),
        }
        println!(
            "next: as the staker {} run `kms stake bond-worker --worker {}`, send the worker ETH for gas, then `kms node run --config {}`",
            self.staker,
            worker.address(),
            config_path.display()
        );
        Ok(())
    }
}

impl InitArgs {
    /// Sets `[tls]`: makes the self-signed pair (and returns the URL with its pin), points at the
    /// CA-issued files, or turns TLS off.
    fn write_tls(&self, config: &mut NodeConfig, public_url: &str) -> Result<Option<String>> {
        use kms_node::config::{TlsMode, TlsSection};
        let section = match self.tls {
            TlsArg::Off => {
                config.tls = Some(TlsSection {
                    mode: TlsMode::Off,
                    cert_file: None,
                    key_file: None,
                });
                return Ok(None);
            }
            TlsArg::Ca => {
                let absolute = |p: &Option<PathBuf>, flag: &str| -> Result<PathBuf> {
                    let p = p
                        .as_ref()
                        .with_context(|| format!("--tls ca needs {flag}"))?;
                    std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))
                };
                TlsSection {
                    mode: TlsMode::Ca,
                    cert_file: Some(absolute(&self.tls_cert, "--tls-cert")?),
                    key_file: Some(absolute(&self.tls_key, "--tls-key")?),
                }
            }
            TlsArg::SelfSigned => {
                let mut names = vec![host_of(public_url)?];
                let listen_ip = self.listen.ip().to_string();
                if !self.listen.ip().is_unspecified() && !names.contains(&listen_ip) {
                    names.push(listen_ip);
                }
                let (cert, key) = kms_node::tls::generate_self_signed(&names)?;
                let (cert_file, key_file) =
                    (PathBuf::from("tls/cert.pem"), PathBuf::from("tls/key.pem"));
                std::fs::create_dir_all(self.dir.join("tls"))?;
                std::fs::write(self.dir.join(&cert_file), cert)?;
                keys::write_secret_file(&self.dir.join(&key_file), key.as_bytes())?;
                TlsSection {
                    mode: TlsMode::SelfSigned,
                    cert_file: Some(cert_file),
                    key_file: Some(key_file),
                }
            }
        };
        config.tls = Some(section);
        // Loaded as `kms node run` will: the pair must serve.
        let mut resolved = config.clone();
        if let Some(tls) = resolved.tls.as_mut() {
            for file in [tls.cert_file.as_mut(), tls.key_file.as_mut()]
                .into_iter()
                .flatten()
            {
                if file.is_relative() {
                    *file = self.dir.join(&*file);
                }
            }
        }
        let identity = resolved.tls_identity()?.context("no TLS identity loaded")?;
        Ok((identity.kind() == kms_node::tls::TlsKind::SelfSigned)
            .then(|| identity.public_url(public_url)))
    }
}

/// The host of `url` (a DNS name or an IP address), for the certificate.
fn host_of(url: &str) -> Result<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '#', '?']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        // [IPv6]:port
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host),
    };
    if host.is_empty() {
        bail!("--public-url {url:?} has no host");
    }
    Ok(host.to_owned())
}

/// The depth a node acts at: `given`, or 2, or 0 on a chain that mines only on transactions
/// (an idle chain would never make a transaction 2 blocks deep). Says what it chose and why.
async fn choose_confirmations(rpc_url: &str, given: Option<u64>) -> u64 {
    const DEFAULT: u64 = 2;
    let on_demand = mines_only_on_transactions(rpc_url).await;
    match (given, on_demand) {
        (Some(depth), Some(true)) if depth > 0 => {
            println!(
                "note: {rpc_url} mines a block only with a transaction (anvil's automine): the \
                 node acts {depth} blocks deep, so at start it waits for {depth} more \
                 transactions after its own (its API says so with a 503 meanwhile)"
            );
            depth
        }
        (Some(depth), _) => depth,
        (None, Some(true)) => {
            println!(
                "confirmations = 0: {rpc_url} mines a block only with a transaction (anvil's \
                 automine), so a block is final as soon as it exists; on any other chain keep \
                 the default 2 or more (--confirmations)"
            );
            0
        }
        (None, Some(false)) => DEFAULT,
        (None, None) => {
            println!(
                "confirmations = {DEFAULT}: {rpc_url} could not be asked how it mines; on a \
                 devnet that mines only on transactions set --confirmations 0"
            );
            DEFAULT
        }
    }
}

/// Whether the chain at `rpc_url` is an anvil with automine on (a block per transaction, none
/// otherwise); `None` if it cannot be asked within a few seconds.
async fn mines_only_on_transactions(rpc_url: &str) -> Option<bool> {
    use alloy::providers::{ext::AnvilApi, Provider, ProviderBuilder};
    let ask = async {
        let provider = ProviderBuilder::new().connect(rpc_url).await.ok()?;
        let version = provider.get_client_version().await.ok()?;
        if !version.to_ascii_lowercase().contains("anvil") {
            return Some(false);
        }
        provider.anvil_get_auto_mine().await.ok()
    };
    tokio::time::timeout(Duration::from_secs(5), ask)
        .await
        .ok()
        .flatten()
}

/// `kms node check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The configuration file.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Where the keystore's password comes from.
    #[command(flatten)]
    pub password: PasswordArgs,
}

impl CheckArgs {
    /// Runs the checks; fails if one failed.
    pub async fn run(self) -> Result<()> {
        let config = NodeConfig::load(&self.config).ok();
        let fallback = config
            .as_ref()
            .and_then(|c| c.node.password_file.as_deref());
        let password = self.password.read(fallback).map_err(|e| e.to_string());
        let password = password
            .as_ref()
            .map(|p| p.as_slice())
            .map_err(String::as_str);
        crate::node_check::check(&self.config, password).await
    }
}

/// `kms node run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The configuration file.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Overrides the configuration's RPC endpoint.
    #[arg(long, env = "ETH_RPC_URL")]
    pub rpc_url: Option<String>,
    /// Overrides the configuration's listen address.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Where the keystore's password comes from.
    #[command(flatten)]
    pub password: PasswordArgs,
}

impl RunArgs {
    /// Runs the node until SIGINT or SIGTERM. A configuration it cannot use is a
    /// [`CliError::Config`] (exit code 78): restarting would not help.
    pub async fn run(self) -> Result<()> {
        let settings = self.settings().map_err(CliError::Config)?;
        // Starting waits as long as the chain takes (its API answers 503 meanwhile): a signal
        // stops it there too.
        let node = tokio::select! {
            node = kms_node::start(settings) => node.map_err(start_error)?,
            () = shutdown_signal() => {
                println!("stopped while starting");
                return Ok(());
            }
        };
        println!("listening on {}", node.local_addr());
        node.run_until(shutdown_signal()).await;
        Ok(())
    }

    /// The node's settings from its files: everything read before the chain is asked anything.
    fn settings(self) -> Result<Settings> {
        let config = NodeConfig::load(&self.config)?;
        let password = self.password.read(config.node.password_file.as_deref())?;
        let worker = keys::load_keystore(&config.node.worker_keystore, &password)?;
        let umbral = MasterSecret::load(&config.node.umbral_key)?.node_key();
        let deployment = Deployment::load(&config.chain.deployments)?;
        let tls = config.tls_identity()?;
        let settings = Settings {
            rpc_url: self.rpc_url.unwrap_or_else(|| config.chain.rpc_url.clone()),
            deployment,
            staker: config.node.staker,
            worker,
            umbral,
            listen: self.listen.unwrap_or(config.node.listen),
            public_url: Some(config.node.public_url.clone()),
            tls,
            store_path: config.store_path(),
            confirmations: config.chain.confirmations,
            poll_interval: Duration::from_millis(config.chain.poll_interval_ms.max(10)),
            max_log_range: config.chain.max_log_range,
            duties: config.duty_config(&self.config)?,
            limits: config.limits(),
            behaviour: kms_node::Behaviour::Honest,
            cors: config.cors_origins(&self.config)?,
        };
        Ok(settings)
    }
}

/// Why the node did not start, as an exit code sees it: the chain the RPC endpoint serves and
/// the store's schema are facts of the configuration and the files, which a restart meets again
/// (a [`CliError::Config`]); the chain unreachable or the worker not bonded yet may mend.
fn start_error(error: kms_node::DaemonError) -> anyhow::Error {
    use kms_node::{store::StoreError, DaemonError};
    match error {
        DaemonError::WrongChain { .. } | DaemonError::Store(StoreError::Schema { .. }) => {
            CliError::Config(error.into()).into()
        }
        other => other.into(),
    }
}

/// SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "no SIGTERM handler; SIGINT only");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

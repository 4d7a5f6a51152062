//! What the examples share: where the devnet is, the dev keys of its actors, and a provider that
//! signs with one of them. Every setting has a default that matches `kms devnet` (five nodes,
//! port 8545) started from the repository root, and an environment variable to change it:
//!
//! | variable | default |
//! | --- | --- |
//! | `KMS_RPC_URL` | `http://127.0.0.1:8545` |
//! | `KMS_DEPLOYMENTS` | `deployments/31337.json` (what `kms devnet` writes) |
//! | `KMS_EXAMPLES_DIR` | `target/kms-examples`: the key, policy and message files the examples pass on |
//! | `DEPLOYER_KEY`, `STAKER_KEY`, `ALICE_KEY`, `BOB_KEY` | anvil's dev accounts 0, 8, 6 and 7 |
//!
//! Relative paths are taken from the repository root.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use alloy::{
    contract::{CallBuilder, CallDecoder},
    providers::{DynProvider, Provider, ProviderBuilder},
    rpc::types::TransactionReceipt,
    signers::local::PrivateKeySigner,
};
use anyhow::{Context, Result};
use kms_client::{Client, HttpConfig};
use kms_contracts::Deployment;
use kms_crypto::keys::MasterSecret;

/// Anvil's dev account 0: deploys the contracts and holds the token supply.
pub const DEV_DEPLOYER_KEY: &str =
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
/// Anvil's dev account 6: Alice on a five-node `kms devnet`.
pub const DEV_ALICE_KEY: &str =
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e";
/// Anvil's dev account 7: Bob on a five-node `kms devnet`.
pub const DEV_BOB_KEY: &str = "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356";
/// Anvil's dev account 8: unused by `kms devnet`, the new staker of `staker.rs`.
pub const DEV_STAKER_KEY: &str =
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97";

/// Alice's Umbral key file in the examples' directory.
pub const ALICE_UMBRAL_FILE: &str = "alice.umbral.json";
/// Enrico's Umbral key file in the examples' directory: his sender key signs what he encrypts.
pub const ENRICO_UMBRAL_FILE: &str = "enrico.umbral.json";
/// Bob's Umbral key file in the examples' directory.
pub const BOB_UMBRAL_FILE: &str = "bob.umbral.json";
/// The policy file Alice writes for Bob and Enrico.
pub const POLICY_FILE: &str = "policy.json";
/// The message Enrico encrypts and Bob decrypts.
pub const MESSAGE_FILE: &str = "message.kms";

/// The repository root (relative settings are taken from it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn setting(variable: &str, default: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| default.to_owned())
}

fn path_setting(variable: &str, default: &str) -> PathBuf {
    let path = PathBuf::from(setting(variable, default));
    if path.is_absolute() {
        path
    } else {
        repo_root().join(path)
    }
}

/// The deployments file of the devnet (`KMS_DEPLOYMENTS`).
pub fn deployment() -> Result<Deployment> {
    let path = path_setting("KMS_DEPLOYMENTS", "deployments/31337.json");
    Deployment::load(&path).with_context(|| {
        format!(
            "no deployment at {}: start `kms devnet` first (examples/README.md)",
            path.display()
        )
    })
}

/// The directory the examples pass their files through (`KMS_EXAMPLES_DIR`), created if needed.
pub fn work_dir() -> Result<PathBuf> {
    let dir = path_setting("KMS_EXAMPLES_DIR", "target/kms-examples");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// The Umbral master secret in `file` of the examples' directory, created (`0600`) on first use.
pub fn umbral_key(file: &str) -> Result<MasterSecret> {
    let path = work_dir()?.join(file);
    if path.exists() {
        return MasterSecret::load(&path).with_context(|| format!("reading {}", path.display()));
    }
    let key = MasterSecret::random();
    key.save(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(key)
}

/// The account whose key is in `variable`, else `dev_key`.
pub fn signer(variable: &str, dev_key: &str) -> Result<PrivateKeySigner> {
    setting(variable, dev_key)
        .parse()
        .with_context(|| format!("{variable} is not a private key (0x + 64 hex digits)"))
}

/// A provider of the devnet (`KMS_RPC_URL`) that signs with `signer`.
pub async fn provider(signer: PrivateKeySigner) -> Result<DynProvider> {
    let url = setting("KMS_RPC_URL", "http://127.0.0.1:8545");
    let provider = ProviderBuilder::new()
        .wallet(signer)
        .connect(&url)
        .await
        .with_context(|| format!("cannot reach the devnet at {url}: is `kms devnet` running?"))?;
    Ok(provider.erased())
}

/// A KMS client of the devnet's deployment, paying and signing with `signer`.
pub async fn client(signer: PrivateKeySigner) -> Result<Client<DynProvider>> {
    let client = Client::connect(
        provider(signer).await?,
        deployment()?,
        HttpConfig::default(),
    )
    .await
    .context("connecting the KMS client")?;
    Ok(client)
}

/// Sends a contract call and waits for its receipt; a revert is decoded into the contract's
/// custom error.
pub async fn send<P: Provider, D: CallDecoder>(
    what: &str,
    call: CallBuilder<P, D>,
) -> Result<TransactionReceipt> {
    let receipt = kms_client::chain::transact(
        what,
        call,
        kms_client::chain::any_revert,
        Duration::from_secs(60),
    )
    .await?;
    Ok(receipt)
}

//! `kms keys ...`: Umbral master secrets and Ethereum keystores.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use kms_crypto::{
    ethereum_address,
    keys::{self, MasterSecret},
    wire::encode_public_key,
};
use serde_json::json;

use crate::{common::print_json, opts::password};

/// `kms keys ...`.
#[derive(Debug, Subcommand)]
pub enum KeysSubcommand {
    /// Create an Umbral master secret (umbral.json) and an Ethereum keystore (account.json).
    ///
    /// Every Umbral key derives from the master secret by label: Bob's receiving key, the kfrag
    /// signer, Alice's delegating key per policy label. Both files are written 0600 and never
    /// overwritten.
    ///
    /// Example: kms keys new --dir ~/.kms/alice --password-file pw
    New(NewArgs),
    /// Show the public keys of an Umbral master secret: the receiving key to give Alice, the
    /// kfrag signer's address, the sender key that signs what you encrypt, a label's policy
    /// (delegating) key.
    ///
    /// Example: kms keys show --umbral ~/.kms/bob/umbral.json --label photos
    Show(ShowArgs),
}

impl KeysSubcommand {
    /// Runs the subcommand.
    pub fn run(self) -> Result<()> {
        match self {
            Self::New(args) => args.run(),
            Self::Show(args) => args.run(),
        }
    }
}

/// `kms keys new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The directory to write the files into.
    #[arg(long)]
    pub dir: PathBuf,
    /// Only the Umbral master secret (no Ethereum account).
    #[arg(long)]
    pub umbral_only: bool,
    /// The keystore's password file (first line); also KMS_PASSWORD.
    #[arg(long, env = "KMS_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

impl NewArgs {
    /// Writes the master secret and (unless `--umbral-only`) the keystore, never over a file.
    pub fn run(self) -> Result<()> {
        let Self {
            dir,
            umbral_only,
            password_file,
            json,
        } = self;
        let umbral_path = dir.join("umbral.json");
        let account_path = dir.join("account.json");
        for path in [&umbral_path, &account_path] {
            if path.exists() {
                bail!("{} exists already: choose another --dir", path.display());
            }
        }
        let account = if umbral_only {
            None
        } else {
            let password = password(password_file.as_deref())?;
            Some(keys::create_keystore(&account_path, &password)?)
        };
        let master = MasterSecret::random();
        master.save(&umbral_path)?;
        let receiving = encode_public_key(&master.receiving_key().public_key());
        let sender = encode_public_key(&master.sender_key().public_key());
        if json {
            return print_json(&json!({
                "umbral": umbral_path,
                "receivingKey": receiving,
                "senderKey": sender,
                "keystore": account.as_ref().map(|_| &account_path),
                "address": account.as_ref().map(|a| a.address()),
            }));
        }
        println!("umbral master secret  {}", umbral_path.display());
        println!("receiving key         {receiving}   (give it to Alice)");
        println!("sender key            {sender}   (signs what you encrypt: give it to Alice)");
        if let Some(account) = account {
            println!("ethereum keystore     {}", account_path.display());
            println!("address               {}", account.address());
        }
        Ok(())
    }
}

/// `kms keys show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The Umbral master-secret file.
    #[arg(long)]
    pub umbral: PathBuf,
    /// Also show the policy public key of this label.
    #[arg(long)]
    pub label: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

impl ShowArgs {
    /// Prints the public keys.
    pub fn run(self) -> Result<()> {
        let Self {
            umbral,
            label,
            json,
        } = self;
        let master = MasterSecret::load(&umbral)?;
        let receiving = encode_public_key(&master.receiving_key().public_key());
        let signer = ethereum_address(&master.signing_key().public_key());
        let sender = encode_public_key(&master.sender_key().public_key());
        let policy_key = label
            .as_deref()
            .map(|l| encode_public_key(&master.delegating_key(l).public_key()));
        if json {
            return print_json(&json!({
                "receivingKey": receiving,
                "kfragSigner": signer,
                "senderKey": sender,
                "label": label,
                "policyKey": policy_key,
            }));
        }
        println!("receiving key  {receiving}");
        println!("kfrag signer   {signer}");
        println!("sender key     {sender}   (signs what you encrypt: Alice lists it with `kms policy grant --sender`)");
        if let (Some(label), Some(key)) = (label, policy_key) {
            println!("policy key of {label:?}  {key}");
        }
        Ok(())
    }
}

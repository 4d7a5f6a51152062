//! Bob reads Enrico's message with kms-client: he checks that a sender the policy authorizes
//! signed it (before asking anyone anything), asks the policy's nodes to re-encrypt the
//! file's capsule for him, checks every capsule fragment (Umbral's proof, and the node's signed
//! answer against the terms read from the chain), opens the data key with the threshold of
//! fragments, and decrypts the stream, each segment released once its signature verified.
//!
//! A node caught with a wrong fragment leaves a `Fault`: provable evidence that
//! `Client::report` files with the Adjudicator (`kms retrieve --report` does both).
//!
//! ```sh
//! cargo run -p kms-examples --example bob_retrieve
//! ```

use std::{fs::File, io::BufReader};

use anyhow::{Context, Result};
use kms_client::{stream, PolicyFile, RetrieveOptions, TrustedSenders};
use kms_examples::{
    client, signer, umbral_key, work_dir, BOB_UMBRAL_FILE, DEV_BOB_KEY, MESSAGE_FILE, POLICY_FILE,
};

#[tokio::main]
async fn main() -> Result<()> {
    let dir = work_dir()?;
    let bob = umbral_key(BOB_UMBRAL_FILE)?;
    let policy = PolicyFile::load(dir.join(POLICY_FILE))
        .context("no policy yet: run the alice_grant example first")?;
    let mut input = BufReader::new(
        File::open(dir.join(MESSAGE_FILE))
            .context("no message yet: run the enrico_encrypt example first")?,
    );
    let header = stream::read_header(&mut input)?;
    let trusted = TrustedSenders::of_policy(&policy);
    if let Some(sender) = header.check_sender(&trusted, false)? {
        println!(
            "signed by sender {}",
            kms_crypto::wire::encode_public_key(&sender)
        );
    }
    // Reading needs no transaction; the account would pay for a report.
    let client = client(signer("BOB_KEY", DEV_BOB_KEY)?).await?;

    let retrieval = client
        .retrieve(
            &policy,
            &bob.receiving_key(),
            std::slice::from_ref(header.capsule()),
            &RetrieveOptions::default(),
        )
        .await?;
    for node in &retrieval.nodes {
        println!("  node {}: {:?}", node.staker, node.outcome);
    }
    for fault in &retrieval.faults {
        println!(
            "  node {} gave a wrong cfrag: {}",
            fault.staker, fault.reason
        );
    }
    let cfrags = retrieval
        .cfrags
        .into_iter()
        .next()
        .context("no cfrags for the capsule")?;
    let key = stream::open_data_key_reencrypted(
        &bob.receiving_key(),
        &policy.delegating_key,
        &header,
        cfrags,
    )?;
    let mut message = Vec::new();
    stream::decrypt_stream_with_key(&key, &header, &trusted, &mut input, &mut message)?;
    println!("decrypted: {}", String::from_utf8_lossy(&message));
    Ok(())
}

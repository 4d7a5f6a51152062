//! Enrico encrypts a message to a policy with kms-client's streaming format: he needs only the
//! policy's public key (from Alice's policy file) and his own sender key, no account and no
//! chain. The file holds a capsule of a fresh data key, signed by Enrico, then the message in
//! authenticated chunks, each segment of them signed, encrypted in constant memory whatever its
//! size. Bob accepts it because Alice listed Enrico's sender key in the policy file.
//!
//! ```sh
//! cargo run -p kms-examples --example enrico_encrypt -- "the message"
//! ```

use std::{
    fs::File,
    io::{BufWriter, Write},
};

use anyhow::{Context, Result};
use kms_client::{stream, PolicyFile, SenderKey};
use kms_examples::{umbral_key, work_dir, ENRICO_UMBRAL_FILE, MESSAGE_FILE, POLICY_FILE};

fn main() -> Result<()> {
    let dir = work_dir()?;
    let enrico = SenderKey::new(umbral_key(ENRICO_UMBRAL_FILE)?.sender_key());
    let policy = PolicyFile::load(dir.join(POLICY_FILE))
        .context("no policy yet: run the alice_grant example first")?;
    let message = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "a message only Bob may read".to_owned());

    let path = dir.join(MESSAGE_FILE);
    let mut out = BufWriter::new(File::create(&path)?);
    let stats = stream::encrypt_stream(
        &policy.delegating_key,
        &enrico,
        &mut message.as_bytes(),
        &mut out,
    )?;
    out.flush()?;
    println!(
        "encrypted {} bytes to policy {} into {}",
        stats.plaintext_bytes,
        policy.policy_id_hex(),
        path.display()
    );
    Ok(())
}

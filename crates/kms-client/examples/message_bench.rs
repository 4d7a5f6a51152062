//! The client-side cost of messages, without nodes:
//!
//! ```sh
//! cargo run --release -p kms-client --example message_bench -- [messages (10000)] [bytes (64)]
//! ```
//!
//! Enrico seals the messages at the default rotation (a session every 1,000); Bob's inbox opens
//! each session as Alice would (`open_session_original`: the curve work of a capsule without
//! the nodes' re-encryption) and reads every message. Prints messages/s for sealing and
//! reading, and the bytes on the wire per message. The end-to-end rate with 5 local nodes is the
//! `messages` benchmark of `kms-cli`.

use std::{error::Error, time::Instant};

use kms_client::{
    message::MESSAGE_OVERHEAD, Inbox, MessageSender, SenderKey, SessionLimits, TrustedSenders,
};
use umbral_pre::SecretKey;

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count: usize = args.first().map_or(Ok(10_000), |a| a.parse())?;
    let size: usize = args.get(1).map_or(Ok(64), |a| a.parse())?;
    let policy = SecretKey::random();
    let enrico = SenderKey::random();
    let mut sender = MessageSender::new(
        policy.public_key(),
        enrico.clone(),
        SessionLimits::default(),
    );
    let plaintext = vec![0x5a; size];

    let start = Instant::now();
    let mut sessions = Vec::new();
    let mut messages = Vec::with_capacity(count);
    for _ in 0..count {
        let sealed = sender.seal(&plaintext)?;
        sessions.extend(sealed.session);
        messages.push(sealed.message);
    }
    let sealing = start.elapsed();

    let start = Instant::now();
    let mut inbox = Inbox::new(TrustedSenders::new([enrico.public_key()]));
    for record in &sessions {
        let id = inbox.add_session(record)?;
        inbox.open_session_original(id, &policy)?;
    }
    for message in &messages {
        inbox.open(message)?;
    }
    let reading = start.elapsed();

    let wire: usize =
        messages.iter().map(Vec::len).sum::<usize>() + sessions.iter().map(Vec::len).sum::<usize>();
    println!(
        "{count} messages of {size} bytes, {} sessions",
        sessions.len()
    );
    println!(
        "seal: {:.0} messages/s",
        count as f64 / sealing.as_secs_f64()
    );
    println!(
        "read: {:.0} messages/s (sessions opened without nodes)",
        count as f64 / reading.as_secs_f64()
    );
    println!(
        "overhead: {MESSAGE_OVERHEAD} bytes per message, {:.1} with the session records",
        wire as f64 / count as f64 - size as f64
    );
    Ok(())
}

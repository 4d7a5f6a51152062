//! Messages a Bob reads per second from a 3-of-5 policy with five local nodes (goal: >= 1,000
//! messages/s on 2 cores), fresh sessions included at the default rotation, and the size
//! overhead of a message.
//!
//! Starts a devnet (anvil, the contracts, five staked miners and their nodes in this process),
//! grants Bob a 3-of-5 policy with Enrico as its sender, and has Enrico seal `N` messages with
//! `MessageSender` at the default `SessionLimits` (a new session every 1,000 messages): the feed,
//! session records in place, as a chat log or a sensor feed would carry it. Then Bob reads it
//! with an `Inbox`, every message checked (AEAD, sender signature, sequence) and compared with
//! what was sent, two ways:
//!
//! - **live**: in feed order, as messages arrive; a message of a session not open yet makes Bob
//!   open it there and then (`Client::open_sessions`: the chain's node records, a request to
//!   the nodes, three cfrags verified, the key decrypted and checked against its commitment), so
//!   every session's threshold work is inside the time;
//! - **backlog**: a Bob catching up adds every session first and opens them all with one
//!   retrieval (one request per node for all the capsules), then reads.
//!
//! The sealing rate is Enrico's (new sessions included). Payloads of 64 bytes and 1 KiB.
//!
//! `cargo bench -p kms-cli --bench messages -- [--messages N] [--out PATH]`; `script/bench`
//! runs it.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use kms_cli::devnet;
use kms_client::{
    message::{Inbox, MessageError, MessageSender, SessionLimits, MESSAGE_OVERHEAD},
    Client, PolicyFile, RetrieveOptions, SenderKey, TrustedSenders,
};
use kms_crypto::keys::MasterSecret;
use serde_json::{json, Value};
use umbral_pre::SecretKey;

mod devnet_policy;

/// The nodes of the devnet (a 3-of-5 policy).
const NODES: usize = 5;
/// Payload sizes measured.
const PAYLOADS: [usize; 2] = [64, 1024];
/// The goal for the live reading rate.
const GOAL_MESSAGES_PER_SECOND: f64 = 1000.0;

#[tokio::main]
async fn main() -> Result<()> {
    let messages: usize = devnet_policy::arg("--messages").map_or(Ok(20_000), |s| s.parse())?;
    ensure!(messages > 0, "--messages must be positive");
    let out = devnet_policy::arg("--out").unwrap_or_else(|| "bench-results/messages.json".into());
    let args = devnet_policy::devnet_args(NODES)?;
    let devnet = devnet::start(&args).await?;
    let result = run(&devnet, messages, &out).await;
    let _ = std::fs::remove_file(&args.deployments_file);
    devnet.shutdown().await;
    result
}

/// One item of the feed, as it travels.
enum Item {
    Session(Vec<u8>),
    Message(Vec<u8>),
}

/// The plaintext of message `i` of a feed of `size`-byte messages: its number, then filler.
fn payload(i: usize, size: usize) -> Vec<u8> {
    let mut bytes = format!("{i:010}").into_bytes();
    bytes.resize(size, b'.');
    bytes
}

/// Enrico's feed of `n` messages of `size` bytes, and how long sealing it took.
fn seal_feed(
    policy: &PolicyFile,
    enrico: &SenderKey,
    n: usize,
    size: usize,
) -> Result<(Vec<Item>, Duration)> {
    let mut sender = MessageSender::new(
        policy.delegating_key,
        enrico.clone(),
        SessionLimits::default(),
    );
    let mut feed = Vec::with_capacity(n + n / 1000 + 1);
    let started = Instant::now();
    for i in 0..n {
        let sealed = sender.seal(&payload(i, size))?;
        if let Some(record) = sealed.session {
            feed.push(Item::Session(record));
        }
        feed.push(Item::Message(sealed.message));
    }
    Ok((feed, started.elapsed()))
}

/// What Bob needs to read.
struct Bob<'a> {
    client: &'a Client<alloy::providers::DynProvider>,
    policy: &'a PolicyFile,
    receiving: &'a SecretKey,
    trusted: &'a TrustedSenders,
}

/// A reading's outcome.
struct Reading {
    elapsed: Duration,
    /// Each retrieval's time (live: one per session; backlog: one).
    opens: Vec<Duration>,
}

impl Bob<'_> {
    async fn open_pending(&self, inbox: &mut Inbox) -> Result<Duration> {
        let started = Instant::now();
        let opened = self
            .client
            .open_sessions(
                self.policy,
                self.receiving,
                inbox,
                &RetrieveOptions::default(),
            )
            .await?;
        ensure!(
            opened.failed.is_empty(),
            "sessions failed: {:?}",
            opened.failed
        );
        Ok(started.elapsed())
    }

    /// Reads `feed` in order, opening each session when its first message arrives.
    async fn read_live(&self, feed: &[Item], size: usize) -> Result<Reading> {
        let mut inbox = Inbox::new(self.trusted.clone());
        let mut opens = Vec::new();
        let mut next = 0;
        let started = Instant::now();
        for item in feed {
            match item {
                Item::Session(record) => {
                    inbox.add_session(record)?;
                }
                Item::Message(message) => {
                    let opened = match inbox.open(message) {
                        Err(MessageError::NotOpen { .. }) => {
                            opens.push(self.open_pending(&mut inbox).await?);
                            inbox.open(message)?
                        }
                        other => other?,
                    };
                    check(&opened.plaintext, next, size)?;
                    next += 1;
                }
            }
        }
        Ok(Reading {
            elapsed: started.elapsed(),
            opens,
        })
    }

    /// Adds every session of `feed`, opens them with one retrieval, then reads the messages.
    async fn read_backlog(&self, feed: &[Item], size: usize) -> Result<Reading> {
        let mut inbox = Inbox::new(self.trusted.clone());
        let started = Instant::now();
        for item in feed {
            if let Item::Session(record) = item {
                inbox.add_session(record)?;
            }
        }
        let opens = vec![self.open_pending(&mut inbox).await?];
        let mut next = 0;
        for item in feed {
            if let Item::Message(message) = item {
                check(&inbox.open(message)?.plaintext, next, size)?;
                next += 1;
            }
        }
        Ok(Reading {
            elapsed: started.elapsed(),
            opens,
        })
    }
}

fn check(plaintext: &[u8], i: usize, size: usize) -> Result<()> {
    if plaintext != payload(i, size).as_slice() {
        bail!("message {i} is not what was sent");
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn reading_json(reading: &mut Reading, messages: usize) -> Value {
    reading.opens.sort();
    let median = reading.opens[reading.opens.len() / 2];
    let opening: Duration = reading.opens.iter().sum();
    json!({
        "seconds": reading.elapsed.as_secs_f64(),
        "messagesPerSecond": messages as f64 / reading.elapsed.as_secs_f64(),
        "retrievals": reading.opens.len(),
        "retrievalP50Ms": ms(median),
        "retrievalMaxMs": ms(*reading.opens.last().unwrap_or(&median)),
        "shareOfTimeOpeningSessions": opening.as_secs_f64() / reading.elapsed.as_secs_f64(),
    })
}

async fn run(devnet: &devnet::Devnet, messages: usize, out: &str) -> Result<()> {
    devnet_policy::wait_for_commitments(devnet).await?;
    let (alice, bob) = (MasterSecret::random(), MasterSecret::random());
    let enrico = SenderKey::new(MasterSecret::random().sender_key());
    let policy = devnet_policy::grant(
        devnet,
        &alice,
        &bob,
        "bench/messages",
        (3, 5),
        vec![enrico.public_key()],
    )
    .await?;
    let client = devnet_policy::bob_client(devnet).await?;
    let receiving = bob.receiving_key();
    let trusted = TrustedSenders::of_policy(&policy);
    let reader = Bob {
        client: &client,
        policy: &policy,
        receiving: &receiving,
        trusted: &trusted,
    };
    // Connections and the node records' first read.
    let (warm_up, _) = seal_feed(&policy, &enrico, 10, 64)?;
    reader.read_live(&warm_up, 64).await?;

    let mut results = Vec::new();
    for size in PAYLOADS {
        let (feed, sealing) = seal_feed(&policy, &enrico, messages, size)?;
        let records: Vec<usize> = feed
            .iter()
            .filter_map(|item| match item {
                Item::Session(record) => Some(record.len()),
                Item::Message(_) => None,
            })
            .collect();
        let message_bytes: usize = feed
            .iter()
            .map(|item| match item {
                Item::Message(m) => m.len(),
                Item::Session(_) => 0,
            })
            .sum();
        ensure!(message_bytes == messages * (size + MESSAGE_OVERHEAD));
        let record_bytes: usize = records.iter().sum();
        let mut live = reader.read_live(&feed, size).await?;
        let mut backlog = reader.read_backlog(&feed, size).await?;
        let live_json = reading_json(&mut live, messages);
        eprintln!(
            "{size}-byte messages: live {:.0}/s, backlog {:.0}/s, sealing {:.0}/s",
            live_json["messagesPerSecond"].as_f64().unwrap_or_default(),
            messages as f64 / backlog.elapsed.as_secs_f64(),
            messages as f64 / sealing.as_secs_f64(),
        );
        results.push(json!({
            "payloadBytes": size,
            "sessions": records.len(),
            "sessionRecordBytes": records.first().copied().unwrap_or(0),
            "overheadBytesPerMessage": MESSAGE_OVERHEAD,
            "overheadBytesPerMessageWithRecords":
                MESSAGE_OVERHEAD as f64 + record_bytes as f64 / messages as f64,
            "live": live_json,
            "backlog": reading_json(&mut backlog, messages),
            "sealingMessagesPerSecond": messages as f64 / sealing.as_secs_f64(),
        }));
    }
    let report = json!({
        "benchmark": "messages a Bob reads from a 3-of-5 policy with 5 local nodes",
        "messages": messages,
        "cores": std::thread::available_parallelism().map_or(1, usize::from),
        "sessionLimits": {
            "maxMessages": SessionLimits::default().max_messages,
            "maxAgeSeconds": SessionLimits::default().max_age.as_secs(),
        },
        "goalMessagesPerSecond": GOAL_MESSAGES_PER_SECOND,
        "results": results,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(dir) = std::path::Path::new(out).parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, serde_json::to_string_pretty(&report)?)?;
    eprintln!("written to {out}");
    Ok(())
}

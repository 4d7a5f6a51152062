//! `kms message seal` (Enrico: lines to signed messages in sessions, as a feed) and `kms message
//! read` (Bob, or Alice with `--owner`: a feed to the messages, every one checked). The feed is
//! `kms_client::message::feed`'s JSON lines; the formats are in docs/client.md, "Messages".

use std::{
    collections::HashMap,
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    time::Duration,
};

use alloy::providers::DynProvider;
use anyhow::{bail, ensure, Context, Result};
use clap::{Args, Subcommand};
use kms_client::{
    message::{FeedItem, Inbox, MessageError, MessageSender, Opened, SessionId, SessionLimits},
    Client, PolicyFile, RetrieveOptions, SenderKey,
};
use kms_crypto::{keys::MasterSecret, wire};

use crate::{
    encrypt::policy_key,
    files::load_master_secret,
    opts::{Account, ChainOpts},
    retrieve::trusted_senders,
};

/// `kms message`.
#[derive(Debug, Subcommand)]
pub enum MessageSubcommand {
    /// Enrico: seal each line of the input as a signed message to a policy, in sessions (one
    /// capsule per session), and write the feed: JSON lines of session records and messages.
    ///
    /// Example: sensor | kms message seal --policy-key room.policy.json --umbral enrico.json --append room.feed
    Seal(SealArgs),
    /// Bob: read a feed, opening each new session through the policy's nodes, and print every
    /// message that checks out (a refused line is reported and skipped; the exit code is 1 if
    /// any was). Alice reads her own policy's feed with `--owner`, without the nodes.
    ///
    /// Example: tail -f room.feed | kms message read --policy room.policy.json --umbral bob.json
    Read(ReadArgs),
}

impl MessageSubcommand {
    /// Runs the command.
    pub async fn run(self) -> Result<()> {
        match self {
            Self::Seal(args) => args.run(),
            Self::Read(args) => args.run().await,
        }
    }
}

/// `kms message seal`.
#[derive(Debug, Args)]
pub struct SealArgs {
    /// The policy's public key (hex), or a policy file.
    #[arg(long)]
    pub policy_key: String,
    /// Enrico's Umbral master secret (`kms keys new`): every message is signed with its sender
    /// key, which Bob must trust (the policy file's senders, or `kms message read --sender`).
    #[arg(long)]
    pub umbral: PathBuf,
    /// Messages per session before a new one (each session costs Bob one retrieval).
    #[arg(long, default_value_t = SessionLimits::default().max_messages,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_messages: u32,
    /// Seconds a session stays in use before a new one.
    #[arg(long, default_value_t = SessionLimits::default().max_age.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_age_secs: u64,
    /// Append the feed to this file (a shared log: each line is written at once) instead of
    /// writing it to stdout.
    #[arg(long)]
    pub append: Option<PathBuf>,
    /// A name written with each line as `from`: for display only, readers do not trust it.
    #[arg(long)]
    pub from: Option<String>,
    /// The lines to seal, one message each without its newline (`-`, the default: stdin,
    /// each line sealed as it arrives).
    #[arg(default_value = "-")]
    pub input: PathBuf,
}

impl SealArgs {
    /// Seals every line of the input and writes the feed, line by line.
    pub fn run(self) -> Result<()> {
        let key = policy_key(&self.policy_key)?;
        let sender = SenderKey::new(load_master_secret(&self.umbral)?.sender_key());
        let sender_hex = wire::encode_public_key(&sender.public_key());
        let mut messages = MessageSender::new(
            key,
            sender,
            SessionLimits {
                max_messages: self.max_messages,
                max_age: Duration::from_secs(self.max_age_secs),
            },
        );
        let mut input = open_input(&self.input)?;
        let mut out: Box<dyn Write> = match &self.append {
            Some(path) => Box::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("cannot append to {}", path.display()))?,
            ),
            None => Box::new(std::io::stdout().lock()),
        };
        let (mut count, mut sessions) = (0u64, 0u64);
        let mut line = Vec::new();
        loop {
            line.clear();
            if input.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            let text = strip_newline(&line);
            let sealed = messages
                .seal(text)
                .with_context(|| format!("line {} cannot be sealed", count + 1))?;
            sessions += u64::from(sealed.session.is_some());
            for item in FeedItem::of_sealed(sealed) {
                let mut entry = item.to_line(self.from.as_deref());
                entry.push('\n');
                // One write per line: concurrent writers appending to one file do not
                // interleave, and a reader following the feed sees whole lines.
                out.write_all(entry.as_bytes())?;
                out.flush()?;
            }
            count += 1;
        }
        eprintln!("sealed {count} messages in {sessions} sessions, signed by sender {sender_hex}");
        Ok(())
    }
}

/// `kms message read`.
#[derive(Debug, Args)]
pub struct ReadArgs {
    /// The policy file Alice gave.
    #[arg(long)]
    pub policy: PathBuf,
    /// Bob's Umbral master secret (with `--owner`: Alice's).
    #[arg(long)]
    pub umbral: PathBuf,
    /// Read as the policy's owner: open sessions with her delegating key for the policy's
    /// label, without the nodes (no chain either).
    #[arg(long)]
    pub owner: bool,
    /// Also trust this sender key (hex, 33 bytes; repeatable), besides the policy file's
    /// senders.
    #[arg(long = "sender", value_name = "KEY")]
    pub senders: Vec<String>,
    /// Print each message as a JSON line (line, sender, session, seq, skipped, base64 data,
    /// and the text when it is UTF-8) instead of its bytes and a newline.
    #[arg(long)]
    pub json: bool,
    /// The feed (`-`, the default: stdin, read as it arrives).
    #[arg(default_value = "-")]
    pub input: PathBuf,
    /// The chain and deployment to use (not with `--owner`).
    #[command(flatten)]
    pub chain: ChainOpts,
}

/// How a reader opens sessions.
enum Opener {
    /// Alice, with her delegating key.
    Owner(umbral_pre::SecretKey),
    /// Bob, through the nodes; connected at the first session to open.
    Bob {
        receiving: umbral_pre::SecretKey,
        client: Option<Box<Client<DynProvider>>>,
    },
}

impl ReadArgs {
    /// Reads the feed, printing each message that checks out and reporting each refused line.
    pub async fn run(self) -> Result<()> {
        let keys = load_master_secret(&self.umbral)?;
        let policy = PolicyFile::load(&self.policy)?;
        let trusted = trusted_senders(&policy, &self.senders)?;
        ensure!(
            !trusted.is_empty(),
            "the policy file lists no senders, so no message can be trusted: pass --sender KEY \
             (the sender key `kms keys show` prints for Enrico)"
        );
        let opener = self.opener(&keys, &policy)?;
        let mut reader = Reader {
            inbox: Inbox::new(trusted),
            opener,
            failed: HashMap::new(),
            policy: &policy,
            chain: &self.chain,
        };
        let mut input = open_input(&self.input)?;
        let mut out = std::io::stdout().lock();
        let (mut number, mut read, mut refused) = (0u64, 0u64, 0u64);
        let mut line = String::new();
        loop {
            line.clear();
            if input.read_line(&mut line)? == 0 {
                break;
            }
            number += 1;
            if line.trim().is_empty() {
                continue;
            }
            match reader.line(&line).await {
                Ok(None) => {}
                Ok(Some(opened)) => {
                    read += 1;
                    print_message(&mut out, number, &opened, self.json)?;
                }
                Err(reason) => {
                    refused += 1;
                    eprintln!("line {number} refused: {reason}");
                }
            }
        }
        eprintln!("read {read} messages; {refused} lines refused");
        if refused > 0 {
            bail!("{refused} of {number} lines were refused (reasons above)");
        }
        Ok(())
    }

    fn opener(&self, keys: &MasterSecret, policy: &PolicyFile) -> Result<Opener> {
        if self.owner {
            let delegating = keys.delegating_key(&policy.label);
            ensure!(
                delegating.public_key() == policy.delegating_key,
                "--owner: {} is not the policy's owner's key (its delegating key for label \
                 {:?} is not the policy's)",
                self.umbral.display(),
                policy.label
            );
            return Ok(Opener::Owner(delegating));
        }
        let receiving = keys.receiving_key();
        ensure!(
            receiving.public_key() == policy.receiving_key,
            "{} is not the policy's receiving key: pass Bob's key (or --owner with Alice's)",
            self.umbral.display()
        );
        Ok(Opener::Bob {
            receiving,
            client: None,
        })
    }
}

/// A feed reader's state.
struct Reader<'a> {
    inbox: Inbox,
    opener: Opener,
    /// Sessions that could not be opened, and why: their messages are refused with it.
    failed: HashMap<SessionId, String>,
    policy: &'a PolicyFile,
    chain: &'a ChainOpts,
}

impl Reader<'_> {
    /// One line: `Some` message read, `None` for a session record accepted, or why it is
    /// refused.
    async fn line(&mut self, line: &str) -> Result<Option<Opened>, String> {
        match FeedItem::parse_line(line).map_err(|e| e.to_string())?.0 {
            FeedItem::Session(record) => {
                self.inbox.add_session(&record).map_err(|e| e.to_string())?;
                Ok(None)
            }
            FeedItem::Message(message) => match self.inbox.open(&message) {
                Err(MessageError::NotOpen { session, .. }) => {
                    if let Some(reason) = self.failed.get(&session) {
                        return Err(format!("session {session} cannot be opened: {reason}"));
                    }
                    self.open_pending().await?;
                    match self.inbox.open(&message) {
                        Err(MessageError::NotOpen { session, .. }) => Err(format!(
                            "session {session} cannot be opened: {}",
                            self.failed.get(&session).map_or("", String::as_str)
                        )),
                        other => other.map(Some).map_err(|e| e.to_string()),
                    }
                }
                other => other.map(Some).map_err(|e| e.to_string()),
            },
        }
    }

    /// Opens every pending session (Bob: one retrieval for all); records the ones that fail.
    async fn open_pending(&mut self) -> Result<(), String> {
        match &mut self.opener {
            Opener::Owner(delegating) => {
                for (id, _) in self.inbox.pending() {
                    if let Err(e) = self.inbox.open_session_original(id, delegating) {
                        self.failed.insert(id, e.to_string());
                    }
                }
            }
            Opener::Bob { receiving, client } => {
                if client.is_none() {
                    let (_, connected) =
                        self.chain.client(Account::Optional).await.map_err(|e| {
                            format!("cannot reach the chain to open sessions: {e:#}")
                        })?;
                    *client = Some(Box::new(connected));
                }
                let Some(client) = client.as_ref() else {
                    return Err("no client".into());
                };
                let pending: Vec<SessionId> =
                    self.inbox.pending().into_iter().map(|(id, _)| id).collect();
                match client
                    .open_sessions(
                        self.policy,
                        receiving,
                        &mut self.inbox,
                        &RetrieveOptions::default(),
                    )
                    .await
                {
                    Ok(report) => {
                        for id in report.opened {
                            self.failed.remove(&id);
                        }
                        for (id, e) in report.failed {
                            self.failed.insert(id, e.to_string());
                        }
                        if !report.faults.is_empty() {
                            eprintln!(
                                "warning: {} node(s) returned a wrong cfrag (ignored); `kms \
                                 retrieve --report` files such evidence",
                                report.faults.len()
                            );
                        }
                    }
                    Err(e) => {
                        for id in pending {
                            self.failed.insert(id, e.to_string());
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// A message on stdout: its bytes and a newline, or a JSON line.
fn print_message(out: &mut impl Write, line: u64, opened: &Opened, json: bool) -> Result<()> {
    if json {
        let mut value = serde_json::json!({
            "line": line,
            "sender": wire::encode_public_key(&opened.sender),
            "session": opened.session.to_string(),
            "seq": opened.seq,
            "skipped": opened.skipped,
            "data": wire::encode_b64(&opened.plaintext),
        });
        if let Ok(text) = std::str::from_utf8(&opened.plaintext) {
            value["text"] = text.into();
        }
        writeln!(out, "{value}")?;
    } else {
        out.write_all(&opened.plaintext)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// A file, or stdin for `-`.
fn open_input(path: &Path) -> Result<Box<dyn BufRead>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(BufReader::new(std::io::stdin())));
    }
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(Box::new(BufReader::new(file)))
}

/// A line without its `\n` (or `\r\n`).
fn strip_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newlines_are_not_part_of_a_message() {
        assert_eq!(strip_newline(b"hi\n"), b"hi");
        assert_eq!(strip_newline(b"hi\r\n"), b"hi");
        assert_eq!(strip_newline(b"hi"), b"hi");
        assert_eq!(strip_newline(b"\n"), b"");
    }
}

//! An encrypted group chat on KMS: the room's owner grants each member a policy, members post
//! signed encrypted messages to a shared log, and every member reads the others'. The owner
//! removes a member: his policy is revoked, and from the revocation's block on the nodes refuse
//! to re-encrypt anything for him, so the sessions opened after it are closed to him; a message
//! he forges is shown as refused.
//!
//! How it works (the formats are in docs/client.md, "Messages"):
//! - The room is one of the owner's policy labels: every member's policy re-encrypts from the
//!   same delegating key, so a message is encrypted once, to the room's public key, whoever
//!   reads it.
//! - Each member writes with a `MessageSender`: a session key, carried by one Umbral capsule
//!   (the session record), encrypts a run of messages, each signed with the member's sender key.
//!   Readers open a session with one threshold retrieval (all new sessions in one request per
//!   node) and then read its messages with no node involved.
//! - Each member reads with an `Inbox` that trusts the room's current members' sender keys: a
//!   message whose signature is not a member's is refused, whatever key it decrypts with.
//! - Removing a member revokes his policy, takes his key out of the room, and makes every
//!   remaining sender start a new session at once: the removed member keeps the sessions he had
//!   opened (messages he could read before), and can open none of the new ones.
//!
//! The story runs against `kms devnet` (three nodes or more) and checks every step; it exits
//! non-zero if anything is not as it should be. From the repository root:
//!
//! ```sh
//! ./script/chat                                  # starts a devnet, runs this, stops the devnet
//! cargo run -p kms-examples --example chat      # against a `kms devnet` already running
//! ```

mod log;

use std::time::Duration;

use alloy::{
    primitives::{Address, U256},
    providers::{DynProvider, Provider},
};
use anyhow::{bail, ensure, Context, Result};
use kms_client::{
    message::{
        seal_in_session, FeedItem, Inbox, MessageError, MessageSender, SessionId, SessionLimits,
    },
    Client, GrantRequest, PolicyFile, RetrieveOptions, SenderKey, TrustedSenders,
};
use kms_crypto::keys::MasterSecret;
use kms_examples::{client, signer, work_dir, DEV_ALICE_KEY, DEV_BOB_KEY};
use umbral_pre::PublicKey;

use crate::log::Log;

/// The room: one of the owner's policy labels.
const ROOM_LABEL: &str = "chat/kms-examples";
/// Each member's policy: 2 of 3 nodes.
const THRESHOLD: usize = 2;
const SHARES: usize = 3;
const PERIODS: u64 = 3;
/// 0.001 ETH per node per period, as in `kms devnet --demo`.
const FEE_RATE_WEI: u64 = 1_000_000_000_000_000;
/// How long the owner waits for the nodes to read a revocation.
const REVOCATION_WAIT: Duration = Duration::from_secs(30);

/// One member of the room, as their own device would hold them.
struct Member {
    name: &'static str,
    keys: MasterSecret,
    /// The member's policy; the owner reads with her delegating key instead.
    policy: Option<PolicyFile>,
    sender: MessageSender,
    inbox: Inbox,
    /// Log lines already read.
    read: usize,
    /// The sessions accepted, with their (verified) senders, in log order.
    sessions: Vec<(SessionId, PublicKey)>,
    /// What the member has read so far: `(verified sender, text)`.
    seen: Vec<(String, String)>,
    /// Lines refused, with the reason.
    refused: Vec<(usize, String)>,
}

impl Member {
    /// A member with fresh keys (their own device makes them; the owner learns the public ones).
    fn new(name: &'static str, keys: MasterSecret, room_key: PublicKey) -> Self {
        let sender = MessageSender::new(
            room_key,
            SenderKey::new(keys.sender_key()),
            SessionLimits::default(),
        );
        Self {
            name,
            keys,
            policy: None,
            sender,
            inbox: Inbox::new(TrustedSenders::default()),
            read: 0,
            sessions: Vec::new(),
            seen: Vec::new(),
            refused: Vec::new(),
        }
    }

    fn sender_key(&self) -> PublicKey {
        self.keys.sender_key().public_key()
    }

    /// Seals `text` and appends it (after its session record, when it opens a session).
    fn post(&mut self, log: &Log, text: &str) -> Result<()> {
        let sealed = self.sender.seal(text.as_bytes())?;
        for item in FeedItem::of_sealed(sealed) {
            log.append(self.name, &item)?;
        }
        println!("  {:>5} posts: {text}", self.name);
        Ok(())
    }

    /// Reads the log's new lines: adds their sessions, opens the new sessions (one retrieval
    /// for all of them), then opens the messages. Returns the sessions that could not be opened,
    /// with why.
    async fn read(
        &mut self,
        log: &Log,
        room: &Room,
        reader: &Client<DynProvider>,
    ) -> Result<Vec<String>> {
        self.inbox.set_trusted(room.trusted());
        let lines = log.read_from(self.read)?;
        let mut messages = Vec::new();
        for (number, claimed, record) in lines {
            self.read = number + 1;
            match record {
                Ok(FeedItem::Session(bytes)) => match self.inbox.add_session(&bytes) {
                    Ok(id) => {
                        if let Some(record) = self.inbox.session(id) {
                            self.sessions.push((id, record.sender));
                        }
                    }
                    Err(e) => self.refuse(number, &claimed, &e.to_string()),
                },
                Ok(FeedItem::Message(bytes)) => messages.push((number, claimed, bytes)),
                Err(e) => self.refuse(number, &claimed, &e.to_string()),
            }
        }
        let mut unopened = Vec::new();
        if !self.inbox.pending().is_empty() {
            match &self.policy {
                Some(policy) => {
                    let opened = reader
                        .open_sessions(
                            policy,
                            &self.keys.receiving_key(),
                            &mut self.inbox,
                            &RetrieveOptions::default(),
                        )
                        .await;
                    match opened {
                        Ok(report) => unopened.extend(
                            report
                                .failed
                                .iter()
                                .map(|(id, e)| format!("session {id}: {e}")),
                        ),
                        Err(e) => unopened.push(e.to_string()),
                    }
                }
                None => {
                    let delegating = self.keys.delegating_key(ROOM_LABEL);
                    for (id, _) in self.inbox.pending() {
                        self.inbox.open_session_original(id, &delegating)?;
                    }
                }
            }
        }
        for (number, claimed, bytes) in messages {
            match self.inbox.open(&bytes) {
                Ok(opened) => {
                    let from = room.name_of(&opened.sender);
                    let text = String::from_utf8_lossy(&opened.plaintext).into_owned();
                    println!("  {:>5} reads {from}: {text}", self.name);
                    self.seen.push((from.to_owned(), text));
                }
                // The sessions this member cannot open: shown once, below.
                Err(MessageError::NotOpen { .. }) => {}
                Err(e) => self.refuse(number, &claimed, &e.to_string()),
            }
        }
        for reason in &unopened {
            println!("  {:>5} cannot open a session: {reason}", self.name);
        }
        Ok(unopened)
    }

    fn refuse(&mut self, line: usize, claimed: &str, reason: &str) {
        println!(
            "  {:>5} REFUSES line {line} (claims to be from {claimed}): {reason}",
            self.name
        );
        self.refused.push((line, reason.to_owned()));
    }

    fn has_seen(&self, from: &str, text: &str) -> bool {
        self.seen.iter().any(|(f, t)| f == from && t == text)
    }
}

/// Who is in the room: the owner publishes it; readers trust the members' sender keys.
struct Room {
    members: Vec<(&'static str, PublicKey)>,
}

impl Room {
    fn trusted(&self) -> TrustedSenders {
        TrustedSenders::new(self.members.iter().map(|(_, key)| *key))
    }

    fn name_of(&self, key: &PublicKey) -> &'static str {
        self.members
            .iter()
            .find(|(_, k)| k == key)
            .map_or("a former member", |(name, _)| *name)
    }
}

/// The owner grants `member` a policy of the room's label.
async fn grant(
    owner_client: &Client<DynProvider>,
    account: Address,
    owner: &MasterSecret,
    member: &mut Member,
    senders: Vec<PublicKey>,
) -> Result<()> {
    let now = owner_client
        .provider()
        .get_block_by_number(Default::default())
        .await?
        .context("no latest block")?
        .header
        .timestamp;
    let seconds_per_period = owner_client.deployment().seconds_per_period;
    let request = GrantRequest {
        label: ROOM_LABEL.to_owned(),
        owner: account,
        creator: account,
        delegating_key: owner.delegating_key(ROOM_LABEL).public_key(),
        verifying_key: owner.signing_key().public_key(),
        receiving_key: member.keys.receiving_key().public_key(),
        senders,
        threshold: THRESHOLD,
        shares: SHARES,
        end_timestamp: (now / seconds_per_period + PERIODS) * seconds_per_period,
        fee_rate: U256::from(FEE_RATE_WEI),
        seed: now,
        salt: None,
    };
    let plan = owner_client.plan_grant(&request).await?;
    let outcome = owner_client
        .execute_grant(
            &plan,
            &owner.delegating_key(ROOM_LABEL),
            &owner.signing_key(),
        )
        .await?;
    ensure!(
        outcome.is_usable(),
        "fewer nodes than the threshold took {}'s kfrag",
        member.name
    );
    println!(
        "  owner grants {}: policy {} ({THRESHOLD} of {SHARES} nodes)",
        member.name,
        outcome.policy.policy_id_hex()
    );
    outcome
        .policy
        .save(work_dir()?.join(format!("chat-{}.policy.json", member.name)))?;
    member.policy = Some(outcome.policy);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let dir = work_dir()?;
    let log = Log::create(&dir.join("chat.log"))?;
    // The owner pays for the policies; reading sends no transaction (any provider does).
    let owner_account = signer("ALICE_KEY", DEV_ALICE_KEY)?;
    let owner_client = client(owner_account.clone()).await?;
    let reader = client(signer("BOB_KEY", DEV_BOB_KEY)?).await?;

    // The owner is a member too: she reads with her delegating key, and needs no policy.
    let owner = MasterSecret::random();
    let room_key = owner.delegating_key(ROOM_LABEL).public_key();
    let mut members = vec![Member::new("alice", owner, room_key)];
    for name in ["bob", "carol", "dave"] {
        members.push(Member::new(name, MasterSecret::random(), room_key));
    }
    let mut room = Room {
        members: members.iter().map(|m| (m.name, m.sender_key())).collect(),
    };

    println!("1. alice opens the room and grants each member a policy");
    let senders: Vec<PublicKey> = room.members.iter().map(|(_, key)| *key).collect();
    let (owner, others) = members.split_at_mut(1);
    for member in others {
        grant(
            &owner_client,
            owner_account.address(),
            &owner[0].keys,
            member,
            senders.clone(),
        )
        .await?;
    }

    println!("2. everyone posts; everyone reads");
    let hello = |name: &str| format!("hello from {name}");
    for member in members.iter_mut() {
        let text = hello(member.name);
        member.post(&log, &text)?;
    }
    for member in members.iter_mut() {
        let unopened = member.read(&log, &room, &reader).await?;
        ensure!(
            unopened.is_empty(),
            "{} could not open: {unopened:?}",
            member.name
        );
    }
    for member in &members {
        for (name, _) in &room.members {
            ensure!(
                member.has_seen(name, &hello(name)),
                "{} did not read {name}'s message",
                member.name
            );
        }
    }

    println!("3. more messages in the same sessions: no node is asked again");
    members[1].post(&log, "the slides are ready")?;
    members[3].post(&log, "thanks, bob")?;
    for member in members.iter_mut() {
        ensure!(
            member.read(&log, &room, &reader).await?.is_empty(),
            "{} had a session to open",
            member.name
        );
    }

    println!("4. alice removes dave: his policy is revoked and every sender starts a new session");
    let dave_policy = members[3].policy.clone().context("dave has no policy")?;
    let revoked = owner_client.revoke(&dave_policy).await?;
    let heads = owner_client
        .wait_for_nodes_at(&dave_policy, revoked.block, REVOCATION_WAIT)
        .await;
    let read_it = heads
        .iter()
        .filter(|h| matches!(h.head, Ok(Some(head)) if head >= revoked.block))
        .count();
    println!(
        "  revoked in block {}; {read_it} of {} nodes have read it",
        revoked.block,
        heads.len()
    );
    ensure!(
        read_it > SHARES - THRESHOLD,
        "too few nodes read the revocation"
    );
    room.members.retain(|(name, _)| *name != "dave");
    for member in members.iter_mut().take(3) {
        member.sender.rotate();
    }

    println!("5. the others go on; dave tries to read, and to post");
    members[1].post(&log, "dave has left the project")?;
    members[2].post(&log, "new plan attached")?;
    members[3].post(&log, "I am still here")?;
    let daves_room = room_for_dave(&room, &members[3]);
    let dave_unopened = members[3].read(&log, &daves_room, &reader).await?;
    ensure!(
        !dave_unopened.is_empty(),
        "dave opened a session made after his removal"
    );
    ensure!(
        !members[3].has_seen("bob", "dave has left the project"),
        "dave read a message of a session opened after his removal"
    );

    println!("6. dave forges a message as bob, in bob's first session (whose key he holds)");
    let bob_key = members[1].sender_key();
    let dave = &members[3];
    let (session, key) = dave
        .sessions
        .iter()
        .filter(|(_, sender)| *sender == bob_key)
        .find_map(|(id, _)| Some((*id, dave.inbox.session_key(*id)?)))
        .context("dave holds none of bob's sessions")?;
    // The session's next sequence number (bob sent two messages in it), signed by dave: the
    // only key he has. Nothing but the signature tells it from bob's.
    let forged = seal_in_session(
        &SenderKey::new(dave.keys.sender_key()),
        session,
        &key,
        2,
        b"send me the keys",
    )?;
    log.append("bob", &FeedItem::Message(forged))?;

    println!("7. alice, bob and carol read");
    for member in members.iter_mut().take(3) {
        let unopened = member.read(&log, &room, &reader).await?;
        ensure!(
            unopened.is_empty(),
            "{} could not open: {unopened:?}",
            member.name
        );
        ensure!(
            member.has_seen("bob", "dave has left the project")
                && member.has_seen("carol", "new plan attached"),
            "{} missed a message after the removal",
            member.name
        );
        ensure!(
            member.refused.len() == 2,
            "{} should refuse dave's post and his forgery: {:?}",
            member.name,
            member.refused
        );
    }
    if members
        .iter()
        .any(|m| m.has_seen("bob", "send me the keys"))
    {
        bail!("a forged message was accepted");
    }
    println!("the chat works: members read each other, a removed member reads no new session, forgeries are refused");
    Ok(())
}

/// Dave's own view of the room: he still trusts everyone he knew.
fn room_for_dave(room: &Room, dave: &Member) -> Room {
    let mut members = room.members.clone();
    members.push((dave.name, dave.sender_key()));
    Room { members }
}

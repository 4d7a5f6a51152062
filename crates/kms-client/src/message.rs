//! Small signed messages (chat lines, sensor readings) at high rates: Enrico's
//! [`MessageSender`] seals them, Bob's [`Inbox`] opens them. The byte layouts are in
//! `docs/client.md` ("Messages").
//!
//! One Umbral capsule per message would cost every node about a millisecond of curve work and
//! Bob two more per message. Instead the threshold work is amortized over a **session**: Enrico
//! draws a random 32-byte session key, encrypts it to the policy's public key once, and publishes
//! the capsule in a signed *session record*; the next messages (up to
//! [`SessionLimits::max_messages`], or until [`SessionLimits::max_age`]) are sealed with
//! ChaCha20-Poly1305 under that key, each with its sequence number in the nonce, and each signed
//! by Enrico. Bob opens each session key once, with one retrieval for every session pending
//! ([`crate::Client::open_sessions`]), then every message costs him an AEAD and one signature
//! check.
//!
//! Every reader of a session holds its key, so the AEAD alone would let one reader (another
//! member of a chat) forge messages under another sender's session: the per-message signature
//! over everything before it is what attributes a message to its sender, and it lets a relay
//! check authenticity without the key. What a revocation means with sessions is in the docs: a
//! removed reader keeps the session keys he opened before, and opens no other.

use std::{
    collections::{HashMap, VecDeque},
    ops::Range,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use chacha20poly1305::{aead::AeadInPlace, ChaCha20Poly1305, Key, KeyInit, Nonce, Tag};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use umbral_pre::{
    Capsule, DefaultDeserialize, DefaultSerialize, PublicKey, SecretKey, VerifiedCapsuleFrag,
};
use zeroize::Zeroizing;

use alloy::providers::Provider;

pub mod feed;
pub use feed::FeedItem;

use crate::{
    client::Client,
    fault::Fault,
    policy::PolicyFile,
    retrieve::{NodeReport, RetrieveError, RetrieveOptions},
    sender::{self, SenderKey, TrustedSenders, SENDER_KEY_SIZE, SIGNATURE_SIZE},
};

/// The first 8 bytes of a session record; the last two digits are the format's version.
pub const SESSION_MAGIC: &[u8; 8] = b"KMSSES01";

/// The first byte of a message: its format's version.
pub const MESSAGE_VERSION: u8 = 0x01;

/// Bytes of a session id.
pub const SESSION_ID_SIZE: usize = 16;

/// Bytes of a session key.
pub const SESSION_KEY_SIZE: usize = 32;

/// Bytes of the Poly1305 tag after a message's ciphertext.
pub const TAG_SIZE: usize = 16;

/// Bytes of a message's header: version (1), session id (16), sequence number (4), plaintext
/// length (2). They are the AEAD's associated data.
pub const MESSAGE_HEADER_SIZE: usize = 1 + SESSION_ID_SIZE + 4 + 2;

/// Bytes a message adds to its plaintext: header, tag and signature (103).
pub const MESSAGE_OVERHEAD: usize = MESSAGE_HEADER_SIZE + TAG_SIZE + SIGNATURE_SIZE;

/// The largest plaintext of one message (its length is a u16); larger payloads are files
/// ([`crate::stream`]).
pub const MAX_PLAINTEXT_SIZE: usize = u16::MAX as usize;

/// The largest capsule or encrypted key a session record may declare: both are about a hundred
/// bytes, and a reader must not allocate whatever a corrupted length says.
pub const MAX_SESSION_FIELD: usize = 1024;

/// Domain tag of a session record's signature.
const SESSION_SIGNATURE_TAG: &[u8] = b"KMSSES01 session";

/// Domain tag of a message's signature.
const MESSAGE_SIGNATURE_TAG: &[u8] = b"KMSMSG01 message";

/// Domain tag of the key commitment: `sha256(KEY_COMMITMENT_TAG || session key)`.
const KEY_COMMITMENT_TAG: &[u8] = b"KMSSES01 key commitment";

/// How many gaps in a session's sequence the inbox remembers (to tell a late message from a
/// replayed one); older gaps are forgotten, and their late messages reported as replayed.
const REMEMBERED_GAPS: usize = 64;

/// A session's id: the first 16 bytes of the SHA-256 of its record without the signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub [u8; SESSION_ID_SIZE]);

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&alloy::hex::encode(self.0))
    }
}

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionId({self})")
    }
}

/// When a sender opens a new session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Messages per session (at least 1).
    pub max_messages: u32,
    /// Longest time a session is used for new messages, from its opening.
    pub max_age: Duration,
}

impl Default for SessionLimits {
    /// 1,000 messages or 10 minutes: the threshold work is about a thousandth of a capsule per
    /// message at chat or sensor rates, and a removed reader reads new messages for at most
    /// ten minutes after the senders learn of the removal (less: they rotate at once).
    fn default() -> Self {
        Self {
            max_messages: 1000,
            max_age: Duration::from_secs(600),
        }
    }
}

/// Why a message or session could not be sealed or opened. Each refusal of a reader has its own
/// variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The plaintext is larger than one message carries.
    #[error("the plaintext is {len} bytes, a message carries at most {max}: send a file instead")]
    TooLarge {
        /// Its length.
        len: usize,
        /// [`MAX_PLAINTEXT_SIZE`].
        max: usize,
    },
    /// The session key could not be encrypted to the policy key.
    #[error("cannot encrypt the session key: {0}")]
    Encrypt(String),
    /// The bytes end before the format says they do.
    #[error("truncated {what}: {len} bytes, the format needs {needed}")]
    Truncated {
        /// `session record` or `message`.
        what: &'static str,
        /// Bytes received.
        len: usize,
        /// Bytes the format needs (at least).
        needed: usize,
    },
    /// Bytes follow the end of the format.
    #[error("{extra} unexpected bytes after the end of the {what}")]
    TrailingBytes {
        /// `session record` or `message`.
        what: &'static str,
        /// How many.
        extra: usize,
    },
    /// Not this format, or a version this library does not read.
    #[error("not a {what} of a version this kms reads (starts with {found})")]
    UnknownFormat {
        /// `session record` or `message`.
        what: &'static str,
        /// The first bytes, hex.
        found: String,
    },
    /// A field does not decode.
    #[error("malformed session record: {0}")]
    Malformed(String),
    /// A line of a feed ([`FeedItem::parse_line`]) is not one.
    #[error("bad feed line: {0}")]
    BadFeedLine(String),
    /// The session record's signature is not its sender key's: the record was altered, or
    /// signed by another key than the one it names.
    #[error("session record {session}: its signature is not by the sender key it names ({sender}): altered or re-signed")]
    BadSessionSignature {
        /// The record's id as received.
        session: SessionId,
        /// The sender key it names, hex.
        sender: String,
    },
    /// The session's sender is not trusted.
    #[error(
        "session {session} is from {sender}, who is not a trusted sender (trusted: {trusted})"
    )]
    UntrustedSender {
        /// The session.
        session: SessionId,
        /// Its sender key, hex.
        sender: String,
        /// The trusted keys, hex.
        trusted: String,
    },
    /// The message names a session whose record this inbox has not accepted.
    #[error("message {seq} of unknown session {session}: add its session record first")]
    UnknownSession {
        /// The session the message names.
        session: SessionId,
        /// Its sequence number.
        seq: u32,
    },
    /// The message's session key has not been opened yet.
    #[error("message {seq} of session {session}, whose key is not open yet: open the pending sessions first")]
    NotOpen {
        /// The session.
        session: SessionId,
        /// The message's sequence number.
        seq: u32,
    },
    /// The session key could not be decrypted from its capsule.
    #[error("session {session}: cannot decrypt the session key: {reason}")]
    OpenFailed {
        /// The session.
        session: SessionId,
        /// Why.
        reason: String,
    },
    /// The decrypted session key is not the one the record commits to: the sender made a
    /// record that opens to a key other than the one its messages use, or readers to differing
    /// keys.
    #[error("session {session}: the session key does not match the record's key commitment")]
    KeyCommitment {
        /// The session.
        session: SessionId,
    },
    /// The message fails authentication under its session's key: altered (ciphertext, tag,
    /// header) or cut.
    #[error("message {seq} of session {session} fails authentication: altered or cut in transit")]
    Tampered {
        /// The session the message names.
        session: SessionId,
        /// The sequence number it carries.
        seq: u32,
    },
    /// The message opens under the session's key but is not signed by the session's sender: made
    /// by someone else who holds the session key (another reader), or its signature altered.
    #[error("message {seq} of session {session} is encrypted under the session's key but not signed by its sender {sender}: forged by another holder of the key")]
    Forged {
        /// The session.
        session: SessionId,
        /// The sequence number.
        seq: u32,
        /// The session's sender, hex.
        sender: String,
    },
    /// A message of this sequence number was already read.
    #[error("message {seq} of session {session} was already read: replayed")]
    Replayed {
        /// The session.
        session: SessionId,
        /// The sequence number.
        seq: u32,
    },
    /// The message arrived after a later one of its session: refused, since a session's
    /// messages are read in order.
    #[error("message {seq} of session {session} arrived after message {last}: out of order")]
    OutOfOrder {
        /// The session.
        session: SessionId,
        /// The sequence number.
        seq: u32,
        /// The latest sequence number read.
        last: u32,
    },
}

/// `sha256(KEY_COMMITMENT_TAG || key)`.
fn key_commitment(key: &[u8; SESSION_KEY_SIZE]) -> [u8; 32] {
    Sha256::new()
        .chain_update(KEY_COMMITMENT_TAG)
        .chain_update(key)
        .finalize()
        .into()
}

/// The signed bytes: `tag || body`.
fn tagged(tag: &[u8], body: &[u8]) -> Vec<u8> {
    [tag, body].concat()
}

/// `8 zero bytes || u32_be(seq)`: unique per message of a session, whose key is used by one
/// sender only.
fn nonce(seq: u32) -> Nonce {
    let mut nonce = Nonce::default();
    nonce[8..].copy_from_slice(&seq.to_be_bytes());
    nonce
}

fn hex_key(key: &PublicKey) -> String {
    kms_crypto::wire::encode_public_key(key)
}

/// A session record, parsed and its signature verified (whether its sender is trusted is the
/// inbox's question).
#[derive(Debug, Clone)]
pub struct SessionRecord {
    /// Its id.
    pub id: SessionId,
    /// The sender who signed it, and signs its messages.
    pub sender: PublicKey,
    /// The session key's capsule.
    pub capsule: Capsule,
    /// The session key, encrypted under the capsule's key.
    pub encrypted_key: Box<[u8]>,
    /// `sha256("KMSSES01 key commitment" || session key)`.
    pub key_commitment: [u8; 32],
    /// When the sender opened it, Unix seconds, by the sender's clock (informative).
    pub opened_at: u64,
}

/// Reads `N` bytes at `*at`, or says how many the record needed.
fn take<'a>(bytes: &'a [u8], at: &mut usize, n: usize) -> Result<&'a [u8], MessageError> {
    let end = at.saturating_add(n);
    let slice = bytes.get(*at..end).ok_or(MessageError::Truncated {
        what: "session record",
        len: bytes.len(),
        needed: end,
    })?;
    *at = end;
    Ok(slice)
}

/// A u32 length and that many bytes, at most [`MAX_SESSION_FIELD`].
fn take_field<'a>(bytes: &'a [u8], at: &mut usize, name: &str) -> Result<&'a [u8], MessageError> {
    let mut len = [0u8; 4];
    len.copy_from_slice(take(bytes, at, 4)?);
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_SESSION_FIELD {
        return Err(MessageError::Malformed(format!(
            "the {name} is declared {len} bytes long, more than {MAX_SESSION_FIELD}"
        )));
    }
    take(bytes, at, len)
}

impl SessionRecord {
    /// Parses a session record and verifies its signature by the sender key it names.
    pub fn parse(bytes: &[u8]) -> Result<Self, MessageError> {
        if bytes.len() < SESSION_MAGIC.len() || &bytes[..SESSION_MAGIC.len()] != SESSION_MAGIC {
            if bytes.len() < SESSION_MAGIC.len() && SESSION_MAGIC.starts_with(bytes) {
                return Err(MessageError::Truncated {
                    what: "session record",
                    len: bytes.len(),
                    needed: SESSION_MAGIC.len(),
                });
            }
            return Err(MessageError::UnknownFormat {
                what: "session record",
                found: alloy::hex::encode(&bytes[..bytes.len().min(8)]),
            });
        }
        let mut at = SESSION_MAGIC.len();
        let sender_bytes = take(bytes, &mut at, SENDER_KEY_SIZE)?;
        let capsule_bytes = take_field(bytes, &mut at, "capsule")?;
        let encrypted_key = take_field(bytes, &mut at, "encrypted key")?;
        let mut key_commitment = [0u8; 32];
        key_commitment.copy_from_slice(take(bytes, &mut at, 32)?);
        let mut opened_at = [0u8; 8];
        opened_at.copy_from_slice(take(bytes, &mut at, 8)?);
        let signed_len = at;
        let mut signature = [0u8; SIGNATURE_SIZE];
        signature.copy_from_slice(take(bytes, &mut at, SIGNATURE_SIZE)?);
        if bytes.len() > at {
            return Err(MessageError::TrailingBytes {
                what: "session record",
                extra: bytes.len() - at,
            });
        }
        let body = &bytes[..signed_len];
        let id = session_id(body);
        let sender = PublicKey::try_from_compressed_bytes(sender_bytes)
            .map_err(|e| MessageError::Malformed(format!("the sender key: {e}")))?;
        if !sender::verify(&sender, &tagged(SESSION_SIGNATURE_TAG, body), &signature) {
            return Err(MessageError::BadSessionSignature {
                session: id,
                sender: hex_key(&sender),
            });
        }
        let capsule = Capsule::from_bytes(capsule_bytes)
            .map_err(|e| MessageError::Malformed(format!("the capsule: {e}")))?;
        Ok(Self {
            id,
            sender,
            capsule,
            encrypted_key: encrypted_key.into(),
            key_commitment,
            opened_at: u64::from_be_bytes(opened_at),
        })
    }
}

/// `sha256(record without its signature)[0..16]`.
fn session_id(body: &[u8]) -> SessionId {
    let digest = Sha256::digest(body);
    let mut id = [0u8; SESSION_ID_SIZE];
    id.copy_from_slice(&digest[..SESSION_ID_SIZE]);
    SessionId(id)
}

/// What [`MessageSender::seal`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// A new session's record, when this message opened one: publish it before the message.
    pub session: Option<Vec<u8>>,
    /// The message.
    pub message: Vec<u8>,
}

/// The session a sender is sealing with.
struct OpenSession {
    id: SessionId,
    key: Zeroizing<[u8; SESSION_KEY_SIZE]>,
    next_seq: u32,
    opened_at: SystemTime,
}

/// Enrico: seals messages to a policy's public key, in sessions rotated by
/// [`SessionLimits`].
pub struct MessageSender {
    policy_key: PublicKey,
    sender: SenderKey,
    limits: SessionLimits,
    session: Option<OpenSession>,
}

impl std::fmt::Debug for MessageSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageSender")
            .field("policy_key", &hex_key(&self.policy_key))
            .field("sender", &self.sender)
            .field("limits", &self.limits)
            .field("session", &self.session_id())
            .finish()
    }
}

impl MessageSender {
    /// A sender to `policy_key` (the policy's delegating key) signing with `sender`. No session
    /// is open until the first [`seal`](Self::seal).
    pub fn new(policy_key: PublicKey, sender: SenderKey, limits: SessionLimits) -> Self {
        Self {
            policy_key,
            sender,
            limits,
            session: None,
        }
    }

    /// The sender's public key (Bob must trust it).
    pub fn sender_key(&self) -> PublicKey {
        self.sender.public_key()
    }

    /// The session the next message goes into, if one is open and not used up by count (it may
    /// still have aged out by the time of the next seal).
    pub fn session_id(&self) -> Option<SessionId> {
        self.session
            .as_ref()
            .filter(|s| s.next_seq < self.limits.max_messages.max(1))
            .map(|s| s.id)
    }

    /// Ends the current session: the next message opens a new one (after a reader's removal, so
    /// that he reads nothing sent from now on).
    pub fn rotate(&mut self) {
        self.session = None;
    }

    /// Seals `plaintext` as the next message, opening a new session first when none is open or
    /// the current one reached its limits.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Sealed, MessageError> {
        self.seal_at(plaintext, SystemTime::now())
    }

    /// [`seal`](Self::seal) with the clock reading `now` (simulations and tests).
    pub fn seal_at(&mut self, plaintext: &[u8], now: SystemTime) -> Result<Sealed, MessageError> {
        if plaintext.len() > MAX_PLAINTEXT_SIZE {
            return Err(MessageError::TooLarge {
                len: plaintext.len(),
                max: MAX_PLAINTEXT_SIZE,
            });
        }
        let limits = self.limits;
        let usable = |s: &OpenSession| {
            s.next_seq < limits.max_messages.max(1)
                // A clock set back counts as aged: the session must not outlive its bound.
                && now
                    .duration_since(s.opened_at)
                    .is_ok_and(|age| age < limits.max_age)
        };
        let mut record = None;
        let session = match self.session.take() {
            Some(session) if usable(&session) => session,
            _ => {
                let (bytes, session) = open_session(&self.policy_key, &self.sender, now)?;
                record = Some(bytes);
                session
            }
        };
        let session = self.session.insert(session);
        let seq = session.next_seq;
        // `max_messages` is a u32, so `seq` stays below u32::MAX and this never wraps.
        session.next_seq = seq.saturating_add(1);
        let message = seal_in_session(&self.sender, session.id, &session.key, seq, plaintext)?;
        Ok(Sealed {
            session: record,
            message,
        })
    }
}

/// A new session of `sender` to `policy_key`: its record and its state.
fn open_session(
    policy_key: &PublicKey,
    sender: &SenderKey,
    now: SystemTime,
) -> Result<(Vec<u8>, OpenSession), MessageError> {
    let mut key = Zeroizing::new([0u8; SESSION_KEY_SIZE]);
    OsRng.fill_bytes(key.as_mut());
    let (capsule, encrypted_key) = umbral_pre::encrypt(policy_key, key.as_ref())
        .map_err(|e| MessageError::Encrypt(e.to_string()))?;
    let capsule = capsule
        .to_bytes()
        .map_err(|e| MessageError::Encrypt(format!("cannot serialize the capsule: {e}")))?;
    let opened_at = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut record = Vec::with_capacity(
        SESSION_MAGIC.len()
            + SENDER_KEY_SIZE
            + 8
            + capsule.len()
            + encrypted_key.len()
            + 40
            + SIGNATURE_SIZE,
    );
    record.extend_from_slice(SESSION_MAGIC);
    record.extend_from_slice(&sender.public_key_bytes());
    // Both are about a hundred bytes: the u32 lengths cannot overflow.
    record.extend_from_slice(&(capsule.len() as u32).to_be_bytes());
    record.extend_from_slice(&capsule);
    record.extend_from_slice(&(encrypted_key.len() as u32).to_be_bytes());
    record.extend_from_slice(&encrypted_key);
    record.extend_from_slice(&key_commitment(&key));
    record.extend_from_slice(&opened_at.to_be_bytes());
    let id = session_id(&record);
    let signature = sender.sign(&tagged(SESSION_SIGNATURE_TAG, &record));
    record.extend_from_slice(&signature);
    Ok((
        record,
        OpenSession {
            id,
            key,
            next_seq: 0,
            opened_at: now,
        },
    ))
}

/// One message of session `session` (whose key is `key`) with sequence number `seq`, signed by
/// `sender`: header, ciphertext, tag, signature ([`MessageSender::seal`] inside its session).
/// For a sender that keeps its session across restarts. Each `seq` must be used once per
/// session: the nonce is derived from it, and readers refuse a repeated one as a replay.
pub fn seal_in_session(
    sender: &SenderKey,
    session: SessionId,
    key: &[u8; SESSION_KEY_SIZE],
    seq: u32,
    plaintext: &[u8],
) -> Result<Vec<u8>, MessageError> {
    if plaintext.len() > MAX_PLAINTEXT_SIZE {
        return Err(MessageError::TooLarge {
            len: plaintext.len(),
            max: MAX_PLAINTEXT_SIZE,
        });
    }
    let mut message = Vec::with_capacity(MESSAGE_OVERHEAD + plaintext.len());
    message.push(MESSAGE_VERSION);
    message.extend_from_slice(&session.0);
    message.extend_from_slice(&seq.to_be_bytes());
    // At most MAX_PLAINTEXT_SIZE, checked by the caller.
    message.extend_from_slice(&(plaintext.len() as u16).to_be_bytes());
    message.extend_from_slice(plaintext);
    let cipher = ChaCha20Poly1305::new(&Key::from(*key));
    let (header, body) = message.split_at_mut(MESSAGE_HEADER_SIZE);
    let tag = cipher
        .encrypt_in_place_detached(&nonce(seq), header, body)
        // ChaCha20-Poly1305 refuses only plaintexts above 256 GiB.
        .unwrap_or_else(|_| unreachable!("a message is at most 64 KiB"));
    message.extend_from_slice(&tag);
    let signature = sender.sign(&tagged(MESSAGE_SIGNATURE_TAG, &message));
    message.extend_from_slice(&signature);
    Ok(message)
}

/// A message's fields, as parsed (nothing verified yet).
struct Parsed<'a> {
    session: SessionId,
    seq: u32,
    /// Header, ciphertext and tag: what the signature covers.
    signed: &'a [u8],
    ciphertext: &'a [u8],
    tag: [u8; TAG_SIZE],
    signature: [u8; SIGNATURE_SIZE],
}

fn parse_message(bytes: &[u8]) -> Result<Parsed<'_>, MessageError> {
    match bytes.first() {
        None => {
            return Err(MessageError::Truncated {
                what: "message",
                len: 0,
                needed: MESSAGE_OVERHEAD,
            })
        }
        Some(&MESSAGE_VERSION) => {}
        Some(_) => {
            return Err(MessageError::UnknownFormat {
                what: "message",
                found: alloy::hex::encode(&bytes[..bytes.len().min(4)]),
            })
        }
    }
    if bytes.len() < MESSAGE_HEADER_SIZE {
        return Err(MessageError::Truncated {
            what: "message",
            len: bytes.len(),
            needed: MESSAGE_OVERHEAD,
        });
    }
    let mut session = [0u8; SESSION_ID_SIZE];
    session.copy_from_slice(&bytes[1..17]);
    let mut seq = [0u8; 4];
    seq.copy_from_slice(&bytes[17..21]);
    let len = usize::from(u16::from_be_bytes([bytes[21], bytes[22]]));
    let needed = MESSAGE_OVERHEAD + len;
    if bytes.len() < needed {
        return Err(MessageError::Truncated {
            what: "message",
            len: bytes.len(),
            needed,
        });
    }
    if bytes.len() > needed {
        return Err(MessageError::TrailingBytes {
            what: "message",
            extra: bytes.len() - needed,
        });
    }
    let tag_at = MESSAGE_HEADER_SIZE + len;
    let signed_len = tag_at + TAG_SIZE;
    let mut signature = [0u8; SIGNATURE_SIZE];
    signature.copy_from_slice(&bytes[signed_len..]);
    let mut tag = [0u8; TAG_SIZE];
    tag.copy_from_slice(&bytes[tag_at..signed_len]);
    Ok(Parsed {
        session: SessionId(session),
        seq: u32::from_be_bytes(seq),
        signed: &bytes[..signed_len],
        ciphertext: &bytes[MESSAGE_HEADER_SIZE..tag_at],
        tag,
        signature,
    })
}

/// A message read by an [`Inbox`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Its sender (trusted: the inbox accepts sessions of trusted senders only).
    pub sender: PublicKey,
    /// Its session.
    pub session: SessionId,
    /// Its sequence number in the session.
    pub seq: u32,
    /// How many messages of the session were skipped since the previous one read (lost, or
    /// still to come out of order, which will be refused): `seq - (last + 1)`, or `seq` for
    /// the first message read of the session.
    pub skipped: u32,
    /// The content.
    pub plaintext: Vec<u8>,
}

/// Where a session's key stands in an inbox.
enum KeyState {
    /// Not opened yet.
    Pending,
    /// Opened.
    Open(Zeroizing<[u8; SESSION_KEY_SIZE]>),
    /// Cannot be opened (the error says why): its messages are refused with it.
    Failed(MessageError),
}

/// An inbox's session.
struct InboxSession {
    record: SessionRecord,
    key: KeyState,
    /// The latest sequence number read.
    last: Option<u32>,
    /// Gaps of sequence numbers skipped (most recent last), to tell late messages from replays.
    gaps: VecDeque<Range<u32>>,
}

/// Bob (or Alice): accepts session records of trusted senders, opens their keys, and reads their
/// messages, each at most once and in order.
pub struct Inbox {
    trusted: TrustedSenders,
    sessions: HashMap<SessionId, InboxSession>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox")
            .field("trusted", &self.trusted.describe())
            .field("sessions", &self.sessions.len())
            .finish()
    }
}

impl Inbox {
    /// An inbox accepting sessions of `trusted` senders only.
    pub fn new(trusted: TrustedSenders) -> Self {
        Self {
            trusted,
            sessions: HashMap::new(),
        }
    }

    /// The senders trusted.
    pub fn trusted(&self) -> &TrustedSenders {
        &self.trusted
    }

    /// Replaces the senders trusted (a member joined or left a group). A sender no longer
    /// trusted is refused from now on, in the sessions already accepted too: their messages
    /// fail with [`MessageError::UntrustedSender`].
    pub fn set_trusted(&mut self, trusted: TrustedSenders) {
        self.trusted = trusted;
    }

    /// The session's key, once opened: for a reader that keeps its opened sessions across
    /// restarts, or reads them with another implementation of the layout. Whoever holds it
    /// decrypts the session's messages, yet cannot make one that verifies as the sender's.
    pub fn session_key(&self, id: SessionId) -> Option<Zeroizing<[u8; SESSION_KEY_SIZE]>> {
        match &self.sessions.get(&id)?.key {
            KeyState::Open(key) => Some(key.clone()),
            KeyState::Pending | KeyState::Failed(_) => None,
        }
    }

    /// Accepts a session record: parsed, its signature verified, its sender trusted. Adding a
    /// session already known changes nothing.
    pub fn add_session(&mut self, record: &[u8]) -> Result<SessionId, MessageError> {
        let record = SessionRecord::parse(record)?;
        if !self.trusted.contains(&record.sender) {
            return Err(MessageError::UntrustedSender {
                session: record.id,
                sender: hex_key(&record.sender),
                trusted: self.trusted.describe(),
            });
        }
        let id = record.id;
        self.sessions.entry(id).or_insert(InboxSession {
            record,
            key: KeyState::Pending,
            last: None,
            gaps: VecDeque::new(),
        });
        Ok(id)
    }

    /// The sessions of trusted senders whose key is not open yet, with their capsules (to
    /// retrieve cfrags for), in no particular order. A sender no longer trusted
    /// ([`set_trusted`](Self::set_trusted)) gets no key asked of the nodes: its messages would be
    /// refused anyway.
    pub fn pending(&self) -> Vec<(SessionId, Capsule)> {
        self.sessions
            .iter()
            .filter(|(_, s)| {
                matches!(s.key, KeyState::Pending) && self.trusted.contains(&s.record.sender)
            })
            .map(|(id, s)| (*id, s.record.capsule.clone()))
            .collect()
    }

    /// Whether the session's key is open.
    pub fn is_open(&self, id: SessionId) -> bool {
        self.sessions
            .get(&id)
            .is_some_and(|s| matches!(s.key, KeyState::Open(_)))
    }

    /// The session's record, if accepted.
    pub fn session(&self, id: SessionId) -> Option<&SessionRecord> {
        self.sessions.get(&id).map(|s| &s.record)
    }

    /// Forgets a session (its key included): its messages become unknown.
    pub fn forget(&mut self, id: SessionId) -> bool {
        self.sessions.remove(&id).is_some()
    }

    /// Opens a session's key as the policy's Bob: `cfrags` are verified cfrags of its capsule
    /// (at least the threshold), `delegating_pk` the policy's public key. A key that fails its
    /// commitment marks the session failed: its messages are refused with that error.
    pub fn open_session(
        &mut self,
        id: SessionId,
        receiving_sk: &SecretKey,
        delegating_pk: &PublicKey,
        cfrags: impl IntoIterator<Item = VerifiedCapsuleFrag>,
    ) -> Result<(), MessageError> {
        self.open_with(id, |record| {
            umbral_pre::decrypt_reencrypted(
                receiving_sk,
                delegating_pk,
                &record.capsule,
                cfrags,
                &record.encrypted_key,
            )
            .map_err(|e| e.to_string())
        })
    }

    /// Opens a session's key with the policy's delegating secret key (Alice reading her own
    /// policy's messages, without the nodes).
    pub fn open_session_original(
        &mut self,
        id: SessionId,
        delegating_sk: &SecretKey,
    ) -> Result<(), MessageError> {
        self.open_with(id, |record| {
            umbral_pre::decrypt_original(delegating_sk, &record.capsule, &record.encrypted_key)
                .map_err(|e| e.to_string())
        })
    }

    fn open_with(
        &mut self,
        id: SessionId,
        decrypt: impl FnOnce(&SessionRecord) -> Result<Box<[u8]>, String>,
    ) -> Result<(), MessageError> {
        let session = self
            .sessions
            .get_mut(&id)
            .ok_or(MessageError::UnknownSession {
                session: id,
                seq: 0,
            })?;
        match &session.key {
            KeyState::Open(_) => return Ok(()),
            KeyState::Failed(e) => return Err(e.clone()),
            KeyState::Pending => {}
        }
        let decrypted = match decrypt(&session.record) {
            // A wrong secret key or cfrags for another capsule: the session stays pending.
            Err(reason) => {
                return Err(MessageError::OpenFailed {
                    session: id,
                    reason,
                })
            }
            Ok(key) => Zeroizing::new(key.into_vec()),
        };
        let mut key = Zeroizing::new([0u8; SESSION_KEY_SIZE]);
        if decrypted.len() != SESSION_KEY_SIZE {
            let error = MessageError::OpenFailed {
                session: id,
                reason: format!(
                    "the session key is {} bytes, not {SESSION_KEY_SIZE}",
                    decrypted.len()
                ),
            };
            session.key = KeyState::Failed(error.clone());
            return Err(error);
        }
        key.copy_from_slice(&decrypted);
        if key_commitment(&key) != session.record.key_commitment {
            let error = MessageError::KeyCommitment { session: id };
            session.key = KeyState::Failed(error.clone());
            return Err(error);
        }
        session.key = KeyState::Open(key);
        Ok(())
    }

    /// Reads a message: its session known and open, authenticated under the session key, signed
    /// by the session's sender, and later than every message of the session read before.
    pub fn open(&mut self, message: &[u8]) -> Result<Opened, MessageError> {
        let parsed = parse_message(message)?;
        let (id, seq) = (parsed.session, parsed.seq);
        let session = self
            .sessions
            .get_mut(&id)
            .ok_or(MessageError::UnknownSession { session: id, seq })?;
        if !self.trusted.contains(&session.record.sender) {
            return Err(MessageError::UntrustedSender {
                session: id,
                sender: hex_key(&session.record.sender),
                trusted: self.trusted.describe(),
            });
        }
        let key = match &session.key {
            KeyState::Open(key) => key,
            KeyState::Pending => return Err(MessageError::NotOpen { session: id, seq }),
            KeyState::Failed(e) => return Err(e.clone()),
        };
        let mut plaintext = parsed.ciphertext.to_vec();
        ChaCha20Poly1305::new(&Key::from(**key))
            .decrypt_in_place_detached(
                &nonce(seq),
                &message[..MESSAGE_HEADER_SIZE],
                &mut plaintext,
                &Tag::from(parsed.tag),
            )
            .map_err(|_| MessageError::Tampered { session: id, seq })?;
        let sender = session.record.sender;
        if !sender::verify(
            &sender,
            &tagged(MESSAGE_SIGNATURE_TAG, parsed.signed),
            &parsed.signature,
        ) {
            return Err(MessageError::Forged {
                session: id,
                seq,
                sender: hex_key(&sender),
            });
        }
        let skipped = match session.last {
            None => seq,
            Some(last) if seq > last => seq - last - 1,
            Some(last) => {
                return Err(if session.gaps.iter().any(|gap| gap.contains(&seq)) {
                    MessageError::OutOfOrder {
                        session: id,
                        seq,
                        last,
                    }
                } else {
                    MessageError::Replayed { session: id, seq }
                })
            }
        };
        if skipped > 0 {
            if session.gaps.len() == REMEMBERED_GAPS {
                session.gaps.pop_front();
            }
            session.gaps.push_back(seq - skipped..seq);
        }
        session.last = Some(seq);
        Ok(Opened {
            sender,
            session: id,
            seq,
            skipped,
            plaintext,
        })
    }
}

/// What [`Client::open_sessions`] did.
#[derive(Debug, Clone, Default)]
pub struct SessionsOpened {
    /// The sessions whose key was opened.
    pub opened: Vec<SessionId>,
    /// The sessions whose key could not be opened, and why (a key commitment mismatch is
    /// final: their messages are refused with it).
    pub failed: Vec<(SessionId, MessageError)>,
    /// Provable faults of nodes seen on the way: report them with [`Client::report`].
    pub faults: Vec<Fault>,
    /// Each node's part, in the policy's node order (empty when nothing was pending).
    pub nodes: Vec<NodeReport>,
}

impl<P: Provider> Client<P> {
    /// Opens the keys of every session pending in `inbox` with one retrieval from the policy's
    /// nodes ([`Client::retrieve`]: each node is asked for all the capsules at once, in batches
    /// of its advertised limit). A session that fails to open does not keep the others closed:
    /// it is listed in [`SessionsOpened::failed`]. The retrieval itself fails as a whole (the
    /// policy revoked or expired, too few nodes answering): then no session is opened.
    pub async fn open_sessions(
        &self,
        policy: &PolicyFile,
        receiving_sk: &SecretKey,
        inbox: &mut Inbox,
        options: &RetrieveOptions,
    ) -> Result<SessionsOpened, RetrieveError> {
        let pending = inbox.pending();
        if pending.is_empty() {
            return Ok(SessionsOpened::default());
        }
        let capsules: Vec<Capsule> = pending.iter().map(|(_, c)| c.clone()).collect();
        let retrieval = self
            .retrieve(policy, receiving_sk, &capsules, options)
            .await?;
        let mut opened = SessionsOpened {
            faults: retrieval.faults,
            nodes: retrieval.nodes,
            ..SessionsOpened::default()
        };
        for ((id, _), cfrags) in pending.into_iter().zip(retrieval.cfrags) {
            match inbox.open_session(id, receiving_sk, &policy.delegating_key, cfrags) {
                Ok(()) => opened.opened.push(id),
                Err(e) => opened.failed.push((id, e)),
            }
        }
        Ok(opened)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use umbral_pre::{generate_kfrags, reencrypt, Signer};

    use super::*;

    /// A policy of threshold 2 of 3, with its kfrags held by the test (the nodes' part).
    struct Policy {
        delegating: SecretKey,
        bob: SecretKey,
        kfrags: Vec<umbral_pre::VerifiedKeyFrag>,
    }

    impl Policy {
        fn new() -> Self {
            let delegating = SecretKey::random();
            let bob = SecretKey::random();
            let kfrags = generate_kfrags(
                &delegating,
                &bob.public_key(),
                &Signer::new(SecretKey::random()),
                2,
                3,
                true,
                true,
            )
            .into_vec();
            Self {
                delegating,
                bob,
                kfrags,
            }
        }

        fn key(&self) -> PublicKey {
            self.delegating.public_key()
        }

        /// Bob opens every pending session, as the nodes would let him.
        fn open_all(&self, inbox: &mut Inbox) {
            for (id, capsule) in inbox.pending() {
                let cfrags = self.kfrags[..2]
                    .iter()
                    .map(|k| reencrypt(&capsule, k.clone()));
                inbox
                    .open_session(id, &self.bob, &self.key(), cfrags)
                    .unwrap();
            }
        }
    }

    fn inbox_of(senders: &[&SenderKey]) -> Inbox {
        Inbox::new(TrustedSenders::new(senders.iter().map(|s| s.public_key())))
    }

    /// A sender, an inbox trusting it with the session of its first message open, and that
    /// message.
    fn opened_session() -> (Policy, SenderKey, MessageSender, Inbox, Sealed) {
        let policy = Policy::new();
        let enrico = SenderKey::random();
        let mut sender = MessageSender::new(policy.key(), enrico.clone(), SessionLimits::default());
        let mut inbox = inbox_of(&[&enrico]);
        let first = sender.seal(b"hello").unwrap();
        inbox.add_session(first.session.as_ref().unwrap()).unwrap();
        policy.open_all(&mut inbox);
        (policy, enrico, sender, inbox, first)
    }

    #[test]
    fn round_trips_of_any_size() {
        let (_, enrico, mut sender, mut inbox, first) = opened_session();
        let opened = inbox.open(&first.message).unwrap();
        assert_eq!(opened.plaintext, b"hello");
        assert_eq!((opened.seq, opened.skipped), (0, 0));
        assert_eq!(opened.sender, enrico.public_key());
        assert_eq!(Some(opened.session), sender.session_id());
        for (i, len) in [0usize, 1, 3000, MAX_PLAINTEXT_SIZE]
            .into_iter()
            .enumerate()
        {
            let plaintext: Vec<u8> = (0..len).map(|b| b as u8).collect();
            let sealed = sender.seal(&plaintext).unwrap();
            assert!(sealed.session.is_none(), "one session for all");
            assert_eq!(sealed.message.len(), MESSAGE_OVERHEAD + len);
            let opened = inbox.open(&sealed.message).unwrap();
            assert_eq!(opened.plaintext, plaintext);
            assert_eq!(opened.seq as usize, i + 1);
        }
        assert_eq!(MESSAGE_OVERHEAD, 103);
        assert!(matches!(
            sender.seal(&vec![0; MAX_PLAINTEXT_SIZE + 1]),
            Err(MessageError::TooLarge { .. })
        ));
    }

    #[test]
    fn alice_opens_her_own_policys_sessions() {
        let policy = Policy::new();
        let enrico = SenderKey::random();
        let mut sender = MessageSender::new(policy.key(), enrico.clone(), SessionLimits::default());
        let sealed = sender.seal(b"to alice").unwrap();
        let mut inbox = inbox_of(&[&enrico]);
        let id = inbox.add_session(&sealed.session.unwrap()).unwrap();
        assert!(!inbox.is_open(id));
        assert!(matches!(
            inbox.open(&sealed.message),
            Err(MessageError::NotOpen { seq: 0, .. })
        ));
        // Another key does not open it, and it stays pending.
        let err = inbox
            .open_session_original(id, &SecretKey::random())
            .unwrap_err();
        assert!(matches!(err, MessageError::OpenFailed { .. }), "{err}");
        inbox.open_session_original(id, &policy.delegating).unwrap();
        assert!(inbox.is_open(id) && inbox.pending().is_empty());
        assert_eq!(inbox.open(&sealed.message).unwrap().plaintext, b"to alice");
    }

    #[test]
    fn sessions_rotate_by_count_by_age_and_on_demand() {
        let policy = Policy::new();
        let enrico = SenderKey::random();
        let limits = SessionLimits {
            max_messages: 3,
            max_age: Duration::from_secs(60),
        };
        let mut sender = MessageSender::new(policy.key(), enrico.clone(), limits);
        let mut inbox = inbox_of(&[&enrico]);
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut read = |sealed: Sealed| {
            let new = sealed
                .session
                .map(|record| inbox.add_session(&record).unwrap());
            policy.open_all(&mut inbox);
            let opened = inbox.open(&sealed.message).unwrap();
            (new, opened.session, opened.seq)
        };
        // By count: three messages per session.
        let (first, s1, _) = read(sender.seal_at(b"0", t0).unwrap());
        assert_eq!(first, Some(s1));
        assert_eq!(read(sender.seal_at(b"1", t0).unwrap()), (None, s1, 1));
        assert_eq!(read(sender.seal_at(b"2", t0).unwrap()), (None, s1, 2));
        assert_eq!(sender.session_id(), None, "used up");
        let (new, s2, seq) = read(sender.seal_at(b"3", t0).unwrap());
        assert_eq!((new, seq), (Some(s2), 0));
        assert_ne!(s1, s2);
        // By age: just before the bound the session goes on; at it, a new one.
        let later = t0 + Duration::from_secs(59);
        assert_eq!(read(sender.seal_at(b"4", later).unwrap()), (None, s2, 1));
        let (new, s3, seq) = read(sender.seal_at(b"5", t0 + Duration::from_secs(60)).unwrap());
        assert_eq!((new, seq), (Some(s3), 0));
        assert_ne!(s3, s2);
        // A clock set back ends the session too.
        let (new, s4, _) = read(sender.seal_at(b"6", t0).unwrap());
        assert!(new.is_some() && s4 != s3);
        // On demand (a member removed).
        sender.rotate();
        let (new, s5, seq) = read(sender.seal_at(b"7", t0).unwrap());
        assert_eq!((new, seq), (Some(s5), 0));
        assert_ne!(s5, s4);
        // The record carries the opening time.
        assert_eq!(
            inbox.session(s5).unwrap().opened_at,
            1_800_000_000,
            "opened-at"
        );
    }

    #[test]
    fn tampered_and_truncated_messages_are_refused() {
        let (_, _, mut sender, mut inbox, _) = opened_session();
        let sealed = sender.seal(b"pay 10 to carol").unwrap().message;
        let id = sender.session_id().unwrap();
        let flip = |at: usize| {
            let mut m = sealed.clone();
            m[at] ^= 1;
            m
        };
        let len = sealed.len();
        // Ciphertext, tag, sequence number: authentication fails.
        for at in [MESSAGE_HEADER_SIZE + 3, len - SIGNATURE_SIZE - 1, 20] {
            let err = inbox.open(&flip(at)).unwrap_err();
            assert!(
                matches!(err, MessageError::Tampered { .. }),
                "byte {at}: {err}"
            );
        }
        // The session id: no such session.
        let err = inbox.open(&flip(5)).unwrap_err();
        assert!(matches!(err, MessageError::UnknownSession { .. }), "{err}");
        // The version.
        let err = inbox.open(&flip(0)).unwrap_err();
        assert!(matches!(err, MessageError::UnknownFormat { .. }), "{err}");
        // The length: the message is then cut or too long.
        let err = inbox.open(&flip(22)).unwrap_err();
        assert!(
            matches!(err, MessageError::TrailingBytes { extra: 1, .. }),
            "{err}"
        );
        let err = inbox.open(&flip(21)).unwrap_err();
        assert!(matches!(err, MessageError::Truncated { .. }), "{err}");
        // Cut anywhere, or extended.
        for cut in [0, 1, 22, MESSAGE_HEADER_SIZE + 2, len - 1] {
            let err = inbox.open(&sealed[..cut]).unwrap_err();
            assert!(
                matches!(
                    err,
                    MessageError::Truncated {
                        what: "message",
                        ..
                    }
                ),
                "cut at {cut}: {err}"
            );
        }
        let mut longer = sealed.clone();
        longer.push(0);
        let err = inbox.open(&longer).unwrap_err();
        assert!(
            matches!(err, MessageError::TrailingBytes { extra: 1, .. }),
            "{err}"
        );
        // The signature: it opens, but is not the sender's.
        let err = inbox.open(&flip(len - 5)).unwrap_err();
        assert!(matches!(err, MessageError::Forged { .. }), "{err}");
        // None of it counted: the original reads.
        let opened = inbox.open(&sealed).unwrap();
        assert_eq!((opened.session, opened.seq), (id, 1));
        assert_eq!(opened.plaintext, b"pay 10 to carol");
    }

    #[test]
    fn replayed_and_reordered_messages_are_refused_and_gaps_counted() {
        let (_, _, mut sender, mut inbox, first) = opened_session();
        let m: Vec<Vec<u8>> = (1..=5)
            .map(|i| sender.seal(format!("{i}").as_bytes()).unwrap().message)
            .collect();
        inbox.open(&first.message).unwrap();
        assert!(matches!(
            inbox.open(&first.message),
            Err(MessageError::Replayed { seq: 0, .. })
        ));
        // 1 is lost, 3 overtakes 2.
        let opened = inbox.open(&m[2]).unwrap();
        assert_eq!((opened.seq, opened.skipped), (3, 2));
        let err = inbox.open(&m[1]).unwrap_err();
        assert!(
            matches!(
                err,
                MessageError::OutOfOrder {
                    seq: 2,
                    last: 3,
                    ..
                }
            ),
            "{err}"
        );
        assert!(matches!(
            inbox.open(&m[2]),
            Err(MessageError::Replayed { seq: 3, .. })
        ));
        let opened = inbox.open(&m[3]).unwrap();
        assert_eq!((opened.seq, opened.skipped), (4, 0));
        // The first message read of a session may be a later one.
        let (_, _, mut sender, mut inbox, _) = opened_session();
        let later = (0..3).map(|_| sender.seal(b"x").unwrap()).last().unwrap();
        assert_eq!(inbox.open(&later.message).unwrap().skipped, 3);
    }

    /// A member of the chat holds the session key: he can make a message that opens under it,
    /// but cannot sign it as the session's sender.
    #[test]
    fn a_reader_holding_the_session_key_cannot_forge_messages() {
        let (policy, _, mut sender, mut inbox, first) = opened_session();
        let id = sender.session_id().unwrap();
        // Mallory is a reader and even a trusted sender herself.
        let mallory = SenderKey::random();
        inbox.trusted.add(mallory.public_key());
        let record = SessionRecord::parse(first.session.as_ref().unwrap()).unwrap();
        let key = umbral_pre::decrypt_original(
            &policy.delegating,
            &record.capsule,
            &record.encrypted_key,
        )
        .unwrap();
        let key: [u8; 32] = key.as_ref().try_into().unwrap();
        // Her message in Enrico's session, with the next sequence number, signed by her.
        let forged = seal_in_session(&mallory, id, &key, 1, b"send the keys to mallory").unwrap();
        let err = inbox.open(&forged).unwrap_err();
        assert!(matches!(err, MessageError::Forged { seq: 1, .. }), "{err}");
        assert!(
            err.to_string().contains("not signed by its sender"),
            "{err}"
        );
        // Re-signing a genuine message with her key: the same.
        let genuine = sender.seal(b"hi").unwrap().message;
        let mut resigned = genuine[..genuine.len() - SIGNATURE_SIZE].to_vec();
        let signature = mallory.sign(&tagged(MESSAGE_SIGNATURE_TAG, &resigned));
        resigned.extend_from_slice(&signature);
        assert!(matches!(
            inbox.open(&resigned),
            Err(MessageError::Forged { .. })
        ));
        // The genuine one still reads: refusals do not move the sequence.
        assert_eq!(inbox.open(&genuine).unwrap().plaintext, b"hi");
    }

    /// A sender taken out of the trusted set is refused in the sessions already open too; the
    /// key of an open session is what its messages decrypt under, and a pending one has none.
    #[test]
    fn a_sender_no_longer_trusted_is_refused_and_open_keys_can_be_kept() {
        let (policy, enrico, mut sender, mut inbox, first) = opened_session();
        let id = sender.session_id().unwrap();
        let key = inbox.session_key(id).unwrap();
        let again = seal_in_session(&enrico, id, &key, 1, b"resumed").unwrap();
        inbox.set_trusted(TrustedSenders::default());
        let err = inbox.open(&first.message).unwrap_err();
        assert!(matches!(err, MessageError::UntrustedSender { .. }), "{err}");
        inbox.set_trusted(TrustedSenders::new([enrico.public_key()]));
        assert_eq!(inbox.open(&first.message).unwrap().plaintext, b"hello");
        assert_eq!(inbox.open(&again).unwrap().plaintext, b"resumed");
        // A new session is pending until opened: no key yet.
        sender.rotate();
        let next = sender.seal(b"next").unwrap();
        let next_id = inbox.add_session(next.session.as_ref().unwrap()).unwrap();
        assert!(inbox.session_key(next_id).is_none());
        // ... and asked of the nodes only while its sender is trusted.
        inbox.set_trusted(TrustedSenders::default());
        assert!(inbox.pending().is_empty());
        inbox.set_trusted(TrustedSenders::new([enrico.public_key()]));
        assert_eq!(inbox.pending().len(), 1);
        policy.open_all(&mut inbox);
        assert!(inbox.session_key(next_id).is_some());
        assert!(matches!(
            seal_in_session(&enrico, id, &key, 2, &vec![0; MAX_PLAINTEXT_SIZE + 1]),
            Err(MessageError::TooLarge { .. })
        ));
    }

    #[test]
    fn session_records_altered_resigned_or_untrusted_are_refused() {
        let policy = Policy::new();
        let enrico = SenderKey::random();
        let mallory = SenderKey::random();
        let mut sender = MessageSender::new(policy.key(), enrico.clone(), SessionLimits::default());
        let record = sender.seal(b"x").unwrap().session.unwrap();
        let mut inbox = inbox_of(&[&enrico]);
        let body = &record[..record.len() - SIGNATURE_SIZE];

        // Re-signed by another key, the sender key left as is.
        let mut resigned = body.to_vec();
        resigned.extend_from_slice(&mallory.sign(&tagged(SESSION_SIGNATURE_TAG, body)));
        let err = inbox.add_session(&resigned).unwrap_err();
        assert!(
            matches!(err, MessageError::BadSessionSignature { .. }),
            "{err}"
        );
        // Altered (the opening time).
        let mut altered = record.clone();
        let at = record.len() - SIGNATURE_SIZE - 1;
        altered[at] ^= 1;
        let err = inbox.add_session(&altered).unwrap_err();
        assert!(
            matches!(err, MessageError::BadSessionSignature { .. }),
            "{err}"
        );
        // Taken over: Mallory's key in it, signed by her: a valid record of an untrusted sender.
        let mut taken = body.to_vec();
        taken[8..8 + SENDER_KEY_SIZE].copy_from_slice(&mallory.public_key_bytes());
        let signature = mallory.sign(&tagged(SESSION_SIGNATURE_TAG, &taken));
        taken.extend_from_slice(&signature);
        let err = inbox.add_session(&taken).unwrap_err();
        assert!(
            matches!(err, MessageError::UntrustedSender { ref sender, .. } if *sender == hex_key(&mallory.public_key())),
            "{err}"
        );
        // Cut, extended, not a record, an absurd length.
        for cut in [0, 5, 8, 40, 60, record.len() - 1] {
            let err = inbox.add_session(&record[..cut]).unwrap_err();
            assert!(
                matches!(err, MessageError::Truncated { .. }),
                "cut at {cut}: {err}"
            );
        }
        let mut longer = record.clone();
        longer.push(0);
        assert!(matches!(
            inbox.add_session(&longer),
            Err(MessageError::TrailingBytes { extra: 1, .. })
        ));
        assert!(matches!(
            inbox.add_session(b"KMSENC01 a file"),
            Err(MessageError::UnknownFormat { .. })
        ));
        let mut huge = record.clone();
        huge[41..45].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            inbox.add_session(&huge),
            Err(MessageError::Malformed(_))
        ));
        // The genuine record, twice: one session.
        let id = inbox.add_session(&record).unwrap();
        assert_eq!(inbox.add_session(&record).unwrap(), id);
        assert_eq!(inbox.pending().len(), 1);
    }

    /// A sender who commits to one key and encrypts another (so that readers could be shown
    /// different messages) is caught when the key is opened; the session's messages are refused.
    #[test]
    fn a_key_commitment_mismatch_fails_the_session() {
        let policy = Policy::new();
        let enrico = SenderKey::random();
        let (record, session) = open_session(&policy.key(), &enrico, SystemTime::now()).unwrap();
        // Rebuild the record with another commitment, properly signed.
        let mut body = record[..record.len() - SIGNATURE_SIZE].to_vec();
        let at = body.len() - 8 - 32;
        body[at..at + 32].copy_from_slice(&key_commitment(&[7; 32]));
        let signature = enrico.sign(&tagged(SESSION_SIGNATURE_TAG, &body));
        let id = session_id(&body);
        body.extend_from_slice(&signature);
        let mut inbox = inbox_of(&[&enrico]);
        assert_eq!(inbox.add_session(&body).unwrap(), id);
        let err = inbox
            .open_session_original(id, &policy.delegating)
            .unwrap_err();
        assert_eq!(err, MessageError::KeyCommitment { session: id });
        assert!(inbox.pending().is_empty() && !inbox.is_open(id));
        let message = seal_in_session(&enrico, id, &session.key, 0, b"x").unwrap();
        assert_eq!(
            inbox.open(&message),
            Err(MessageError::KeyCommitment { session: id })
        );
    }

    /// The layouts of `docs/client.md`, byte by byte.
    #[test]
    fn layouts_are_as_documented() {
        let policy = Policy::new();
        let enrico = SenderKey::random();
        let mut sender = MessageSender::new(policy.key(), enrico.clone(), SessionLimits::default());
        let sealed = sender.seal(b"abc").unwrap();
        let record = sealed.session.unwrap();
        let be32 = |at: usize| u32::from_be_bytes(record[at..at + 4].try_into().unwrap()) as usize;
        assert_eq!(&record[..8], b"KMSSES01");
        assert_eq!(record[8..41], enrico.public_key_bytes());
        let c = be32(41);
        let k = be32(45 + c);
        assert_eq!(k, 72, "umbral-pre 0.11's DEM: nonce, key, tag");
        assert_eq!(record.len(), 89 + c + k + 64);
        eprintln!("session record: {} bytes (capsule {c})", record.len());
        let id = session_id(&record[..89 + c + k]);
        assert_eq!(sender.session_id(), Some(id));
        let m = &sealed.message;
        assert_eq!(m[0], 1);
        assert_eq!(m[1..17], id.0);
        assert_eq!(m[17..21], [0, 0, 0, 0]);
        assert_eq!(m[21..23], [0, 3]);
        assert_eq!(m.len(), 23 + 3 + 16 + 64);
        let signature: [u8; 64] = m[42..].try_into().unwrap();
        assert!(sender::verify(
            &enrico.public_key(),
            &[b"KMSMSG01 message".as_slice(), &m[..42]].concat(),
            &signature
        ));
    }

    #[test]
    fn session_ids_display_as_hex() {
        let id = SessionId([0xab; 16]);
        assert_eq!(id.to_string(), "ab".repeat(16));
        assert_eq!(format!("{id:?}"), format!("SessionId({})", "ab".repeat(16)));
    }
}

/**
 * Small messages at high rates (`KMSSES01` sessions), byte-compatible with the Rust client's
 * `message` module (docs/client.md, "Messages"). Enrico's {@link MessageSender} encrypts a random
 * session key to the policy's key once per session and seals each message under it, signed;
 * Bob's (or Alice's) {@link Inbox} accepts sessions of trusted senders, opens their keys once
 * (cfrags, or Alice's delegating key) and reads each message at most once, in order. Feeds carry
 * records and messages as JSON lines ({@link feedLine}, {@link parseFeedLine}).
 */
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { sha256 } from "@noble/hashes/sha2.js";

import { bytesEqual, concatBytes, fromBase64, readU16, readU32, readU64, toBase64, toHex, u16be, u32be, u64be, utf8 } from "./bytes.js";
import { KmsError } from "./errors.js";
import { SENDER_KEY_SIZE, SIGNATURE_SIZE, type SenderKey, type TrustedSenders, verifySenderSignature } from "./sender.js";
import { umbral } from "./umbral.js";

/** A session record's first 8 bytes. */
export const SESSION_MAGIC = "KMSSES01";
/** A message's first byte. */
export const MESSAGE_VERSION = 0x01;
/** Bytes of a session id. */
export const SESSION_ID_SIZE = 16;
/** Bytes of a session key. */
export const SESSION_KEY_SIZE = 32;
/** Version, session id, `seq`, length: what the AEAD authenticates as associated data. */
export const MESSAGE_HEADER_SIZE = 1 + SESSION_ID_SIZE + 4 + 2;
/** Bytes a message adds to its plaintext: header, tag and signature (103). */
export const MESSAGE_OVERHEAD = MESSAGE_HEADER_SIZE + 16 + SIGNATURE_SIZE;
/** The largest plaintext one message carries. */
export const MAX_PLAINTEXT_SIZE = 0xffff;
/** The largest capsule or encrypted key a record may declare. */
export const MAX_SESSION_FIELD = 1024;

const SESSION_SIGNATURE_TAG = utf8("KMSSES01 session");
const MESSAGE_SIGNATURE_TAG = utf8("KMSMSG01 message");
const KEY_COMMITMENT_TAG = utf8("KMSSES01 key commitment");
/** Gaps in a session's sequence remembered, to tell a late message from a replayed one. */
const REMEMBERED_GAPS = 64;

/** The conditions a {@link MessageError} names, as the Rust `MessageError` variants. */
export type MessageErrorCode =
  | "TooLarge"
  | "Encrypt"
  | "Truncated"
  | "TrailingBytes"
  | "UnknownFormat"
  | "Malformed"
  | "BadFeedLine"
  | "BadSessionSignature"
  | "UntrustedSender"
  | "UnknownSession"
  | "NotOpen"
  | "OpenFailed"
  | "KeyCommitment"
  | "Tampered"
  | "Forged"
  | "Replayed"
  | "OutOfOrder";

/** The variant's fields: session ids and keys as `0x…` hex. */
export interface MessageErrorDetails {
  what?: "session record" | "message";
  len?: number;
  needed?: number;
  extra?: number;
  session?: string;
  seq?: number;
  last?: number;
  sender?: string;
  trusted?: string;
}

/** Why a message or session could not be sealed or opened; `code` matches the Rust variant. */
export class MessageError extends KmsError {
  declare readonly code: MessageErrorCode;
  readonly details: MessageErrorDetails;

  constructor(code: MessageErrorCode, message: string, details: MessageErrorDetails = {}, options: { hint?: string; cause?: unknown } = {}) {
    super(code, message, options);
    this.details = details;
  }
}

/** A session id as hex (the inbox's map key and the errors' `session`). */
export function sessionIdHex(id: Uint8Array): string {
  return toHex(id);
}

function keyCommitment(key: Uint8Array): Uint8Array {
  return sha256(concatBytes(KEY_COMMITMENT_TAG, key));
}

/** `8 zero bytes ‖ u32(seq)`. */
function nonce(seq: number): Uint8Array {
  const out = new Uint8Array(12);
  out.set(u32be(seq), 8);
  return out;
}

/** A parsed session record whose signature verified (trust is the inbox's question). */
export interface SessionRecord {
  /** `sha256(record without its signature)[0..16]`. */
  id: Uint8Array;
  /** The sender who signed it and signs its messages (33 bytes). */
  sender: Uint8Array;
  /** The session key's capsule, umbral-pre's default serialization. */
  capsuleBytes: Uint8Array;
  /** The session key encrypted under the capsule. */
  encryptedKey: Uint8Array;
  /** `sha256("KMSSES01 key commitment" ‖ session key)`. */
  keyCommitment: Uint8Array;
  /** When the sender opened it, Unix seconds by its clock (informative). */
  openedAt: bigint;
}

/** Parses a session record and verifies its signature by the sender key it names. */
export function parseSessionRecord(bytes: Uint8Array): SessionRecord {
  const what = "session record";
  const magic = utf8(SESSION_MAGIC);
  if (bytes.length < magic.length || !bytesEqual(bytes.subarray(0, magic.length), magic)) {
    if (bytes.length < magic.length && bytesEqual(bytes, magic.subarray(0, bytes.length))) {
      throw new MessageError("Truncated", `truncated ${what}: ${bytes.length} bytes, the format needs ${magic.length}`, { what, len: bytes.length, needed: magic.length });
    }
    const found = toHex(bytes.subarray(0, 8)).slice(2);
    throw new MessageError("UnknownFormat", `not a ${what} of a version this SDK reads (starts with ${found})`, { what });
  }
  let at = magic.length;
  const take = (n: number): Uint8Array => {
    const end = at + n;
    if (end > bytes.length) throw new MessageError("Truncated", `truncated ${what}: ${bytes.length} bytes, the format needs ${end}`, { what, len: bytes.length, needed: end });
    const slice = bytes.subarray(at, end);
    at = end;
    return slice;
  };
  const field = (name: string): Uint8Array => {
    const length = readU32(take(4), 0);
    if (length > MAX_SESSION_FIELD) throw new MessageError("Malformed", `malformed session record: the ${name} is declared ${length} bytes long, more than ${MAX_SESSION_FIELD}`);
    return take(length);
  };
  const sender = take(SENDER_KEY_SIZE);
  const capsuleBytes = field("capsule");
  const encryptedKey = field("encrypted key");
  const commitment = take(32);
  const openedAt = readU64(take(8), 0);
  const signedLength = at;
  const signature = take(SIGNATURE_SIZE);
  if (bytes.length > at) {
    throw new MessageError("TrailingBytes", `${bytes.length - at} unexpected bytes after the end of the ${what}`, { what, extra: bytes.length - at });
  }
  const body = bytes.subarray(0, signedLength);
  const id = sha256(body).slice(0, SESSION_ID_SIZE);
  try {
    umbral.PublicKey.fromCompressedBytes(sender).free();
  } catch (cause) {
    throw new MessageError("Malformed", `malformed session record: the sender key: ${String(cause)}`, {}, { cause });
  }
  if (!verifySenderSignature(sender, concatBytes(SESSION_SIGNATURE_TAG, body), signature)) {
    const session = sessionIdHex(id);
    throw new MessageError("BadSessionSignature", `session record ${session}: its signature is not by the sender key it names (${toHex(sender)}): altered or re-signed`, { session, sender: toHex(sender) });
  }
  try {
    umbral.Capsule.fromBytes(capsuleBytes).free();
  } catch (cause) {
    throw new MessageError("Malformed", `malformed session record: the capsule: ${String(cause)}`, {}, { cause });
  }
  return { id, sender: sender.slice(), capsuleBytes: capsuleBytes.slice(), encryptedKey: encryptedKey.slice(), keyCommitment: commitment.slice(), openedAt };
}

/** What {@link MessageSender.seal} made: a new session's record (publish it first) and the message. */
export interface Sealed {
  session?: Uint8Array;
  message: Uint8Array;
}

/** When a sender opens a new session: default 1,000 messages or 10 minutes. */
export interface SessionLimits {
  /** Messages per session (at least 1). */
  maxMessages?: number;
  /** Longest time a session is used for new messages, from its opening, in milliseconds. */
  maxAgeMs?: number;
}

interface OpenSession {
  id: Uint8Array;
  key: Uint8Array;
  nextSeq: number;
  openedAtMs: number;
}

/** Enrico: seals messages to a policy's public key, in sessions rotated by {@link SessionLimits}. */
export class MessageSender {
  readonly #policyKey: Uint8Array;
  readonly #sender: SenderKey;
  readonly #maxMessages: number;
  readonly #maxAgeMs: number;
  #session: OpenSession | undefined;

  /** A sender to `policyKey` (the policy's delegating key; copied, the caller still owns it) signing with `sender`. */
  constructor(policyKey: umbral.PublicKey, sender: SenderKey, limits: SessionLimits = {}) {
    this.#policyKey = policyKey.toCompressedBytes();
    this.#sender = sender;
    this.#maxMessages = Math.max(1, Math.min(limits.maxMessages ?? 1000, 0xffffffff));
    this.#maxAgeMs = limits.maxAgeMs ?? 600_000;
  }

  /** The sender's public key (Bob must trust it). */
  senderKey(): Uint8Array {
    return this.#sender.publicKey();
  }

  /** The session the next message goes into, if one is open and not used up by count. */
  sessionId(): Uint8Array | undefined {
    const session = this.#session;
    return session !== undefined && session.nextSeq < this.#maxMessages ? session.id.slice() : undefined;
  }

  /** Ends the current session: the next message opens a new one (after a reader's removal). */
  rotate(): void {
    this.#session = undefined;
  }

  /** Seals `plaintext` as the next message, opening a new session first when needed; `now` in ms (tests). */
  seal(plaintext: Uint8Array, now: number = Date.now()): Sealed {
    checkPlaintext(plaintext);
    let session = this.#session;
    let record: Uint8Array | undefined;
    const age = session === undefined ? 0 : now - session.openedAtMs;
    // A clock set back counts as aged: the session must not outlive its bound.
    if (session === undefined || session.nextSeq >= this.#maxMessages || age < 0 || age >= this.#maxAgeMs) {
      [record, session] = this.#openSession(now);
      this.#session = session;
    }
    const seq = session.nextSeq;
    session.nextSeq = seq + 1;
    const message = sealInSession(this.#sender, session.id, session.key, seq, plaintext);
    return record === undefined ? { message } : { session: record, message };
  }

  #openSession(now: number): [Uint8Array, OpenSession] {
    const key = crypto.getRandomValues(new Uint8Array(SESSION_KEY_SIZE));
    const policyKey = umbral.PublicKey.fromCompressedBytes(this.#policyKey);
    let capsuleBytes: Uint8Array;
    let encryptedKey: Uint8Array;
    try {
      const [capsule, ciphertext] = umbral.encrypt(policyKey, key);
      capsuleBytes = capsule.toBytes();
      capsule.free();
      encryptedKey = ciphertext;
    } catch (cause) {
      throw new MessageError("Encrypt", `cannot encrypt the session key: ${String(cause)}`, {}, { cause });
    } finally {
      policyKey.free();
    }
    const openedAt = BigInt(Math.max(0, Math.floor(now / 1000)));
    const body = concatBytes(
      utf8(SESSION_MAGIC),
      this.#sender.publicKey(),
      u32be(capsuleBytes.length),
      capsuleBytes,
      u32be(encryptedKey.length),
      encryptedKey,
      keyCommitment(key),
      u64be(openedAt),
    );
    const id = sha256(body).slice(0, SESSION_ID_SIZE);
    const record = concatBytes(body, this.#sender.sign(concatBytes(SESSION_SIGNATURE_TAG, body)));
    return [record, { id, key, nextSeq: 0, openedAtMs: now }];
  }
}

function checkPlaintext(plaintext: Uint8Array): void {
  if (plaintext.length > MAX_PLAINTEXT_SIZE) {
    throw new MessageError("TooLarge", `the plaintext is ${plaintext.length} bytes, a message carries at most ${MAX_PLAINTEXT_SIZE}`, {}, { hint: "send a file instead" });
  }
}

/**
 * One message of session `session` (key `key`) with sequence number `seq`, signed by `sender`:
 * for a sender that keeps its session across restarts. Each `seq` once per session.
 */
export function sealInSession(sender: SenderKey, session: Uint8Array, key: Uint8Array, seq: number, plaintext: Uint8Array): Uint8Array {
  checkPlaintext(plaintext);
  if (session.length !== SESSION_ID_SIZE || key.length !== SESSION_KEY_SIZE || !Number.isInteger(seq) || seq < 0 || seq > 0xffffffff) {
    throw new MessageError("Malformed", "a session id is 16 bytes, a session key 32 and seq a u32");
  }
  const header = concatBytes(new Uint8Array([MESSAGE_VERSION]), session, u32be(seq), u16be(plaintext.length));
  const sealed = chacha20poly1305(key, nonce(seq), header).encrypt(plaintext);
  const signed = concatBytes(header, sealed);
  return concatBytes(signed, sender.sign(concatBytes(MESSAGE_SIGNATURE_TAG, signed)));
}

interface Parsed {
  session: Uint8Array;
  seq: number;
  header: Uint8Array;
  sealed: Uint8Array;
  signed: Uint8Array;
  signature: Uint8Array;
}

function parseMessage(bytes: Uint8Array): Parsed {
  const what = "message";
  if (bytes.length === 0) throw new MessageError("Truncated", `truncated ${what}: 0 bytes, the format needs ${MESSAGE_OVERHEAD}`, { what, len: 0, needed: MESSAGE_OVERHEAD });
  if (bytes[0] !== MESSAGE_VERSION) {
    const found = toHex(bytes.subarray(0, 4)).slice(2);
    throw new MessageError("UnknownFormat", `not a ${what} of a version this SDK reads (starts with ${found})`, { what });
  }
  if (bytes.length < MESSAGE_HEADER_SIZE) {
    throw new MessageError("Truncated", `truncated ${what}: ${bytes.length} bytes, the format needs ${MESSAGE_OVERHEAD}`, { what, len: bytes.length, needed: MESSAGE_OVERHEAD });
  }
  const needed = MESSAGE_OVERHEAD + readU16(bytes, 21);
  if (bytes.length < needed) throw new MessageError("Truncated", `truncated ${what}: ${bytes.length} bytes, the format needs ${needed}`, { what, len: bytes.length, needed });
  if (bytes.length > needed) {
    throw new MessageError("TrailingBytes", `${bytes.length - needed} unexpected bytes after the end of the ${what}`, { what, extra: bytes.length - needed });
  }
  const signedLength = needed - SIGNATURE_SIZE;
  return {
    session: bytes.slice(1, 17),
    seq: readU32(bytes, 17),
    header: bytes.subarray(0, MESSAGE_HEADER_SIZE),
    sealed: bytes.subarray(MESSAGE_HEADER_SIZE, signedLength),
    signed: bytes.subarray(0, signedLength),
    signature: bytes.subarray(signedLength),
  };
}

/** A message read by an {@link Inbox}. */
export interface Opened {
  /** Its sender (trusted). */
  sender: Uint8Array;
  /** Its session id. */
  session: Uint8Array;
  /** Its sequence number in the session. */
  seq: number;
  /** Messages of the session skipped since the previous one read (`seq` for the first read). */
  skipped: number;
  /** The content. */
  plaintext: Uint8Array;
}

type KeyState = { state: "pending" } | { state: "open"; key: Uint8Array } | { state: "failed"; error: MessageError };

interface InboxSession {
  record: SessionRecord;
  key: KeyState;
  last: number | undefined;
  /** Skipped ranges `[from, to)`, most recent last. */
  gaps: Array<[number, number]>;
}

/** Bob (or Alice): accepts trusted senders' sessions, opens their keys, reads each message once and in order. */
export class Inbox {
  #trusted: TrustedSenders;
  readonly #sessions = new Map<string, InboxSession>();

  /** An inbox accepting sessions of `trusted` senders only. */
  constructor(trusted: TrustedSenders) {
    this.#trusted = trusted;
  }

  /** The senders trusted. */
  get trusted(): TrustedSenders {
    return this.#trusted;
  }

  /** Replaces the senders trusted: one no longer trusted is refused from now on, in accepted sessions too. */
  setTrusted(trusted: TrustedSenders): void {
    this.#trusted = trusted;
  }

  /** Accepts a session record: parsed, signature verified, sender trusted. Adding one already known changes nothing. */
  addSession(record: Uint8Array): Uint8Array {
    const parsed = parseSessionRecord(record);
    if (!this.#trusted.has(parsed.sender)) throw this.#untrusted(parsed);
    const key = sessionIdHex(parsed.id);
    if (!this.#sessions.has(key)) this.#sessions.set(key, { record: parsed, key: { state: "pending" }, last: undefined, gaps: [] });
    return parsed.id.slice();
  }

  /** The sessions of trusted senders whose key is not open yet, with their capsules' bytes (to retrieve cfrags for). */
  pending(): Array<{ id: Uint8Array; capsuleBytes: Uint8Array }> {
    // A sender no longer trusted (setTrusted) gets no key asked of the nodes.
    return [...this.#sessions.values()].filter((s) => s.key.state === "pending" && this.#trusted.has(s.record.sender)).map((s) => ({ id: s.record.id.slice(), capsuleBytes: s.record.capsuleBytes }));
  }

  /** Whether the session's key is open. */
  isOpen(id: Uint8Array): boolean {
    return this.#sessions.get(sessionIdHex(id))?.key.state === "open";
  }

  /** The session's record, if accepted. */
  session(id: Uint8Array): SessionRecord | undefined {
    return this.#sessions.get(sessionIdHex(id))?.record;
  }

  /** The session's key once opened (with the record, all a reader needs to read it again). */
  sessionKey(id: Uint8Array): Uint8Array | undefined {
    const key = this.#sessions.get(sessionIdHex(id))?.key;
    return key?.state === "open" ? key.key.slice() : undefined;
  }

  /** Forgets a session and its key: its messages become unknown. */
  forget(id: Uint8Array): boolean {
    return this.#sessions.delete(sessionIdHex(id));
  }

  /** Opens a session's key as the policy's Bob, from verified cfrags of its capsule (the caller keeps owning them). */
  openSession(id: Uint8Array, receivingSk: umbral.SecretKey, delegatingPk: umbral.PublicKey, cfrags: umbral.VerifiedCapsuleFrag[]): void {
    this.#openWith(id, (record, capsule) => umbral.decryptReencrypted(receivingSk, delegatingPk, capsule, cfrags, record.encryptedKey));
  }

  /** Opens a session's key with the policy's delegating secret key (Alice, without the nodes). */
  openSessionOriginal(id: Uint8Array, delegatingSk: umbral.SecretKey): void {
    this.#openWith(id, (record, capsule) => umbral.decryptOriginal(delegatingSk, capsule, record.encryptedKey));
  }

  #openWith(id: Uint8Array, decrypt: (record: SessionRecord, capsule: umbral.Capsule) => Uint8Array): void {
    const hex = sessionIdHex(id);
    const session = this.#sessions.get(hex);
    if (session === undefined) {
      throw new MessageError("UnknownSession", `message 0 of unknown session ${hex}: add its session record first`, { session: hex, seq: 0 });
    }
    if (!this.#trusted.has(session.record.sender)) throw this.#untrusted(session.record);
    if (session.key.state === "open") return;
    if (session.key.state === "failed") throw session.key.error;
    const capsule = umbral.Capsule.fromBytes(session.record.capsuleBytes);
    let key: Uint8Array;
    try {
      key = decrypt(session.record, capsule);
    } catch (cause) {
      // A wrong secret key or cfrags of another capsule: the session stays pending.
      throw new MessageError("OpenFailed", `session ${hex}: cannot decrypt the session key: ${String(cause)}`, { session: hex }, { cause });
    } finally {
      capsule.free();
    }
    if (key.length !== SESSION_KEY_SIZE) {
      const error = new MessageError("OpenFailed", `session ${hex}: cannot decrypt the session key: the session key is ${key.length} bytes, not ${SESSION_KEY_SIZE}`, { session: hex });
      session.key = { state: "failed", error };
      throw error;
    }
    if (!bytesEqual(keyCommitment(key), session.record.keyCommitment)) {
      const error = new MessageError("KeyCommitment", `session ${hex}: the session key does not match the record's key commitment`, { session: hex });
      session.key = { state: "failed", error };
      throw error;
    }
    session.key = { state: "open", key };
  }

  /** Reads a message: its session known and open, authentic under the key, signed by the session's sender, later than any read. */
  open(message: Uint8Array): Opened {
    const parsed = parseMessage(message);
    const { seq } = parsed;
    const hex = sessionIdHex(parsed.session);
    const session = this.#sessions.get(hex);
    if (session === undefined) {
      throw new MessageError("UnknownSession", `message ${seq} of unknown session ${hex}: add its session record first`, { session: hex, seq });
    }
    if (!this.#trusted.has(session.record.sender)) throw this.#untrusted(session.record);
    if (session.key.state === "pending") {
      throw new MessageError("NotOpen", `message ${seq} of session ${hex}, whose key is not open yet: open the pending sessions first`, { session: hex, seq });
    }
    if (session.key.state === "failed") throw session.key.error;
    let plaintext: Uint8Array;
    try {
      plaintext = chacha20poly1305(session.key.key, nonce(seq), parsed.header).decrypt(parsed.sealed);
    } catch {
      throw new MessageError("Tampered", `message ${seq} of session ${hex} fails authentication: altered or cut in transit`, { session: hex, seq });
    }
    const sender = session.record.sender;
    if (!verifySenderSignature(sender, concatBytes(MESSAGE_SIGNATURE_TAG, parsed.signed), parsed.signature)) {
      throw new MessageError(
        "Forged",
        `message ${seq} of session ${hex} is encrypted under the session's key but not signed by its sender ${toHex(sender)}: forged by another holder of the key`,
        { session: hex, seq, sender: toHex(sender) },
      );
    }
    // The sequence is checked last, so that a refusal never moves it.
    const last = session.last;
    let skipped: number;
    if (last === undefined) skipped = seq;
    else if (seq > last) skipped = seq - last - 1;
    else if (session.gaps.some(([from, to]) => seq >= from && seq < to)) {
      throw new MessageError("OutOfOrder", `message ${seq} of session ${hex} arrived after message ${last}: out of order`, { session: hex, seq, last });
    } else {
      throw new MessageError("Replayed", `message ${seq} of session ${hex} was already read: replayed`, { session: hex, seq });
    }
    if (skipped > 0) {
      if (session.gaps.length === REMEMBERED_GAPS) session.gaps.shift();
      session.gaps.push([seq - skipped, seq]);
    }
    session.last = seq;
    return { sender: sender.slice(), session: parsed.session, seq, skipped, plaintext };
  }

  #untrusted(record: SessionRecord): MessageError {
    const session = sessionIdHex(record.id);
    const sender = toHex(record.sender);
    const trusted = this.#trusted.describe();
    return new MessageError("UntrustedSender", `session ${session} is from ${sender}, who is not a trusted sender (trusted: ${trusted})`, { session, sender, trusted });
  }
}

/** One item of a feed: a session record's bytes or a message's. */
export type FeedItem = { kind: "session"; bytes: Uint8Array } | { kind: "message"; bytes: Uint8Array };

/** The items of one sealed message: its session record first, when it opened one. */
export function feedItemsOfSealed(sealed: Sealed): FeedItem[] {
  const items: FeedItem[] = [];
  if (sealed.session !== undefined) items.push({ kind: "session", bytes: sealed.session });
  items.push({ kind: "message", bytes: sealed.message });
  return items;
}

/** The item as one JSON line (no newline), with the writer's claimed name if any: `{"session":…}` or `{"message":…,"from":…}`. */
export function feedLine(item: FeedItem, from?: string): string {
  const line: Record<string, string> = { [item.kind]: toBase64(item.bytes) };
  if (from !== undefined) line.from = from;
  return JSON.stringify(line);
}

/** Parses one feed line: the item and the claimed name (display only). A bad line is `BadFeedLine`, saying why. */
export function parseFeedLine(line: string): { item: FeedItem; from?: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line.trimEnd());
  } catch (cause) {
    throw new MessageError("BadFeedLine", `bad feed line: not JSON of a feed line: ${String(cause)}`, {}, { cause });
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new MessageError("BadFeedLine", "bad feed line: not JSON of a feed line: expected an object");
  }
  const fields = parsed as Record<string, unknown>;
  for (const [name, value] of Object.entries(fields)) {
    // serde reads a null as an absent optional field.
    if (value === null) {
      delete fields[name];
      continue;
    }
    if (name !== "session" && name !== "message" && name !== "from") throw new MessageError("BadFeedLine", `bad feed line: not JSON of a feed line: unknown field \`${name}\``);
    if (typeof value !== "string") throw new MessageError("BadFeedLine", `bad feed line: not JSON of a feed line: \`${name}\` must be a string`);
  }
  const session = fields.session as string | undefined;
  const message = fields.message as string | undefined;
  const from = fields.from as string | undefined;
  if ((session === undefined) === (message === undefined)) {
    throw new MessageError("BadFeedLine", "bad feed line: a feed line holds exactly one of `session` and `message`");
  }
  const decode = (field: string, value: string): Uint8Array => {
    // atob is lenient (whitespace, missing padding): the Rust reader is strict standard base64.
    if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(value)) {
      throw new MessageError("BadFeedLine", `bad feed line: \`${field}\`: expected standard base64 with padding`);
    }
    try {
      return fromBase64(value, field);
    } catch (cause) {
      throw new MessageError("BadFeedLine", `bad feed line: \`${field}\`: expected standard base64 with padding`, {}, { cause });
    }
  };
  const item: FeedItem = session !== undefined ? { kind: "session", bytes: decode("session", session) } : { kind: "message", bytes: decode("message", message as string) };
  return from === undefined ? { item } : { item, from };
}

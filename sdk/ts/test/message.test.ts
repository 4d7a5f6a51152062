import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

import { concatBytes, toHex, u32be, u64be, utf8 } from "../src/bytes.js";
import {
  Inbox,
  MESSAGE_OVERHEAD,
  MessageError,
  MessageSender,
  feedItemsOfSealed,
  feedLine,
  parseFeedLine,
  parseSessionRecord,
  sealInSession,
} from "../src/message.js";
import { SenderKey, TrustedSenders } from "../src/sender.js";
import { umbral } from "../src/umbral.js";
import { RUST_FIXTURES, about, delegatingKey, kmsBinary, privateCopy, senderSecret } from "./fixtures/rust.js";

function refused(action: () => unknown, code: string, details: Record<string, unknown> = {}): MessageError {
  try {
    action();
  } catch (error) {
    assert.ok(error instanceof MessageError, `expected a MessageError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    for (const [key, value] of Object.entries(details)) assert.equal((error.details as Record<string, unknown>)[key], value, `${key} of ${error.message}`);
    return error;
  }
  assert.fail(`expected ${code}, nothing was refused`);
}

function flip(bytes: Uint8Array, at: number): Uint8Array {
  const out = bytes.slice();
  out[at]! ^= 1;
  return out;
}

/** Alice's policy, Enrico's sender, and an inbox trusting him with every session opened by Alice's key. */
function setup(limits = {}) {
  const alice = umbral.SecretKey.random();
  const enrico = SenderKey.random();
  const sender = new MessageSender(alice.publicKey(), enrico, limits);
  const inbox = new Inbox(new TrustedSenders([enrico.publicKey()]));
  const deliver = (plaintext: string, now?: number) => {
    const sealed = sender.seal(utf8(plaintext), now);
    if (sealed.session !== undefined) inbox.openSessionOriginal(inbox.addSession(sealed.session), alice);
    return sealed;
  };
  return { alice, enrico, sender, inbox, deliver };
}

test("a feed made by `kms message seal` reads with Alice's key, in order", () => {
  const facts = about();
  const alice = delegatingKey(readFileSync(RUST_FIXTURES + "alice.umbral.json", "utf8"), facts.label);
  const inbox = new Inbox(new TrustedSenders([facts.senderKey]));
  const read: string[] = [];
  let sessions = 0;
  for (const line of readFileSync(RUST_FIXTURES + "messages.feed", "utf8").split("\n").filter((l) => l !== "")) {
    const { item, from } = parseFeedLine(line);
    assert.equal(from, "enrico");
    if (item.kind === "session") {
      sessions += 1;
      const id = inbox.addSession(item.bytes);
      assert.equal(item.bytes.length, 330);
      inbox.openSessionOriginal(id, alice);
      assert.ok(inbox.isOpen(id));
    } else {
      const opened = inbox.open(item.bytes);
      assert.equal(toHex(opened.sender), facts.senderKey);
      assert.equal(opened.skipped, 0);
      read.push(new TextDecoder().decode(opened.plaintext));
    }
  }
  assert.equal(sessions, 2);
  assert.deepEqual(read, facts.feedMessages);
  // A reader that does not trust Enrico refuses his sessions.
  const first = parseFeedLine(readFileSync(RUST_FIXTURES + "messages.feed", "utf8").split("\n")[0]!).item;
  refused(() => new Inbox(new TrustedSenders()).addSession(first.bytes), "UntrustedSender", { sender: facts.senderKey });
});

test("messages round trip; sessions rotate by count, by age, and on demand", () => {
  const { sender, inbox, deliver } = setup({ maxMessages: 3, maxAgeMs: 60_000 });
  const t0 = 1_700_000_000_000;
  const sealed = [0, 1, 2, 3].map((i) => deliver(`m${i}`, t0 + i));
  assert.deepEqual(sealed.map((s) => s.session !== undefined), [true, false, false, true]);
  for (const [i, s] of sealed.entries()) {
    const opened = inbox.open(s.message);
    assert.equal(new TextDecoder().decode(opened.plaintext), `m${i}`);
    assert.equal(opened.seq, i % 3);
    assert.equal(s.message.length, MESSAGE_OVERHEAD + 2);
  }
  // Age: a minute later a new session; a clock set back also.
  assert.equal(deliver("late", t0 + 60_010).session !== undefined, true);
  assert.equal(deliver("same", t0 + 60_020).session === undefined, true);
  assert.equal(deliver("back", t0).session !== undefined, true);
  const id = sender.sessionId();
  assert.ok(id !== undefined && inbox.isOpen(id));
  sender.rotate();
  assert.equal(sender.sessionId(), undefined);
  const rotated = deliver("rotated", t0 + 1);
  assert.ok(rotated.session !== undefined);
  assert.equal(new TextDecoder().decode(inbox.open(rotated.message).plaintext), "rotated");
  const record = parseSessionRecord(rotated.session);
  assert.equal(record.openedAt, BigInt(Math.floor((t0 + 1) / 1000)));
  assert.equal(record.sender.length, 33);
  refused(() => sender.seal(new Uint8Array(65_536)), "TooLarge");
  assert.equal(sender.seal(new Uint8Array(65_535)).message.length, 65_535 + MESSAGE_OVERHEAD);
});

test("records refused: cut, extended, other format, altered, re-signed, untrusted, uncommitted key", () => {
  const { alice, enrico, sender, inbox } = setup();
  const record = sender.seal(utf8("x")).session!;
  refused(() => inbox.addSession(record.subarray(0, 5)), "Truncated", { what: "session record", needed: 8 });
  refused(() => inbox.addSession(record.subarray(0, record.length - 1)), "Truncated", { what: "session record" });
  refused(() => inbox.addSession(concatBytes(record, new Uint8Array(1))), "TrailingBytes", { extra: 1 });
  refused(() => inbox.addSession(flip(record, 0)), "UnknownFormat");
  refused(() => inbox.addSession(flip(record, 300)), "BadSessionSignature", { sender: toHex(enrico.publicKey()) });
  const oversized = record.slice();
  oversized.set(u32be(5000), 41);
  refused(() => inbox.addSession(oversized), "Malformed");
  // Re-signed by another key while naming Enrico; taken over (Mallory's key, re-signed).
  const mallory = SenderKey.random();
  const body = record.subarray(0, record.length - 64);
  const tag = utf8("KMSSES01 session");
  refused(() => inbox.addSession(concatBytes(body, mallory.sign(concatBytes(tag, body)))), "BadSessionSignature");
  const takenBody = concatBytes(body.subarray(0, 8), mallory.publicKey(), body.subarray(41));
  refused(() => inbox.addSession(concatBytes(takenBody, mallory.sign(concatBytes(tag, takenBody)))), "UntrustedSender", { sender: toHex(mallory.publicKey()) });
  // A record committing to another key than the one encrypted: refused at opening and for each message.
  const key = crypto.getRandomValues(new Uint8Array(32));
  const [capsule, encryptedKey] = umbral.encrypt(alice.publicKey(), key);
  const capsuleBytes = capsule.toBytes();
  const liar = concatBytes(utf8("KMSSES01"), enrico.publicKey(), u32be(capsuleBytes.length), capsuleBytes, u32be(encryptedKey.length), encryptedKey, new Uint8Array(32), u64be(0));
  const id = inbox.addSession(concatBytes(liar, enrico.sign(concatBytes(tag, liar))));
  refused(() => inbox.openSessionOriginal(id, alice), "KeyCommitment");
  refused(() => inbox.open(sealInSession(enrico, id, key, 0, utf8("hi"))), "KeyCommitment");
  // Opening with a wrong key leaves the session pending.
  const good = inbox.addSession(record);
  refused(() => inbox.openSessionOriginal(good, umbral.SecretKey.random()), "OpenFailed");
  assert.ok(!inbox.isOpen(good));
  assert.equal(inbox.pending().length, 1);
  inbox.openSessionOriginal(good, alice);
  assert.equal(inbox.pending().length, 0);
});

test("messages refused with the Rust client's errors, and a refusal never moves the sequence", () => {
  const { alice, enrico, sender, inbox, deliver } = setup();
  const m = [0, 1, 2, 3, 4].map((i) => deliver(`m${i}`).message);
  const first = inbox.open(m[0]!);
  const session = toHex(first.session);
  refused(() => inbox.open(new Uint8Array(0)), "Truncated", { what: "message", len: 0 });
  refused(() => inbox.open(m[1]!.subarray(0, 30)), "Truncated", { what: "message", needed: MESSAGE_OVERHEAD + 2 });
  refused(() => inbox.open(concatBytes(m[1]!, new Uint8Array(2))), "TrailingBytes", { extra: 2 });
  refused(() => inbox.open(flip(m[1]!, 0)), "UnknownFormat");
  refused(() => inbox.open(flip(m[1]!, 3)), "UnknownSession");
  refused(() => inbox.open(flip(m[1]!, 19)), "Tampered", { session });
  refused(() => inbox.open(flip(m[1]!, 24)), "Tampered", { session, seq: 1 });
  refused(() => inbox.open(flip(m[1]!, m[1]!.length - 1)), "Forged", { session, seq: 1, sender: toHex(enrico.publicKey()) });
  // Another holder of the session key seals a message: opens under the key, not Enrico's signature.
  const key = inbox.sessionKey(first.session)!;
  refused(() => inbox.open(sealInSession(SenderKey.random(), first.session, key, 1, utf8("forged"))), "Forged", { seq: 1 });
  // None of these moved the sequence: message 1 still reads; then a skip, a late one, a replay.
  assert.equal(inbox.open(m[1]!).skipped, 0);
  assert.equal(inbox.open(m[3]!).skipped, 1);
  refused(() => inbox.open(m[2]!), "OutOfOrder", { seq: 2, last: 3 });
  refused(() => inbox.open(m[3]!), "Replayed", { seq: 3 });
  refused(() => inbox.open(m[0]!), "Replayed", { seq: 0 });
  // A session added but not opened; a sender no longer trusted.
  const other = new Inbox(new TrustedSenders([enrico.publicKey()]));
  sender.rotate();
  const fresh = sender.seal(utf8("new"));
  const freshId = other.addSession(fresh.session!);
  refused(() => other.open(fresh.message), "NotOpen", { seq: 0 });
  // A sender no longer trusted: its pending session is not listed and its key not opened.
  assert.equal(other.pending().length, 1);
  other.setTrusted(new TrustedSenders());
  assert.equal(other.pending().length, 0);
  refused(() => other.openSessionOriginal(freshId, alice), "UntrustedSender");
  assert.ok(!other.isOpen(freshId));
  inbox.setTrusted(new TrustedSenders());
  refused(() => inbox.open(m[4]!), "UntrustedSender", { sender: toHex(enrico.publicKey()) });
  assert.ok(inbox.forget(first.session));
  inbox.setTrusted(new TrustedSenders([enrico.publicKey()]));
  refused(() => inbox.open(m[4]!), "UnknownSession");
});

test("feed lines: the Rust encoding, and bad lines say why", () => {
  assert.equal(feedLine({ kind: "message", bytes: utf8("hi") }), '{"message":"aGk="}');
  assert.equal(feedLine({ kind: "session", bytes: new Uint8Array([1, 2, 3]) }, "bob"), '{"session":"AQID","from":"bob"}');
  for (const item of [{ kind: "session", bytes: new Uint8Array([1, 2, 3]) }, { kind: "message", bytes: new Uint8Array() }] as const) {
    assert.deepEqual(parseFeedLine(feedLine(item, "bob")), { item, from: "bob" });
    assert.deepEqual(parseFeedLine(feedLine(item) + "\n"), { item });
  }
  const bad: Array<[string, string]> = [
    ["", "not JSON"],
    ["{}", "exactly one"],
    ['{"session":"AA==","message":"AA=="}', "exactly one"],
    ['{"message":"not base64!"}', "base64"],
    ['{"message":"AA"}', "base64"],
    ['{"message":"AA==","extra":1}', "unknown field"],
    ['{"message":5}', "string"],
    ["[1]", "object"],
  ];
  for (const [line, why] of bad) {
    const error = refused(() => parseFeedLine(line), "BadFeedLine");
    assert.ok(error.message.includes(why), `${line}: ${error.message}`);
  }
  const { sender } = setup();
  const items = feedItemsOfSealed(sender.seal(utf8("a")));
  assert.deepEqual(items.map((i) => i.kind), ["session", "message"]);
  assert.deepEqual(feedItemsOfSealed(sender.seal(utf8("b"))).map((i) => i.kind), ["message"]);
});

test("a feed sealed here is read by the Rust `kms message read --owner`", (t) => {
  const kms = kmsBinary();
  if (kms === undefined) {
    t.skip("the kms binary is not built");
    return;
  }
  const facts = about();
  const dir = mkdtempSync(join(tmpdir(), "kms-h1-"));
  try {
    privateCopy("alice.umbral.json", dir, "alice.json");
    const enrico = SenderKey.fromSecretKey(senderSecret(readFileSync(RUST_FIXTURES + "enrico.umbral.json", "utf8")));
    const sender = new MessageSender(umbral.PublicKey.fromCompressedBytes(Buffer.from(facts.policyKey.slice(2), "hex")), enrico, { maxMessages: 2 });
    const texts = ["one", "two", "", "four é", "five"];
    const lines = texts.flatMap((text) => feedItemsOfSealed(sender.seal(utf8(text))).map((item) => feedLine(item, "ts")));
    writeFileSync(join(dir, "ts.feed"), lines.join("\n") + "\n");
    const out = execFileSync(kms, ["message", "read", "--owner", "--policy", RUST_FIXTURES + "policy.json", "--umbral", join(dir, "alice.json"), "--json", join(dir, "ts.feed")], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
      timeout: 30_000,
    });
    const read = out.trim().split("\n").map((line) => JSON.parse(line) as { text: string; sender: string; seq: number });
    assert.deepEqual(read.map((m) => m.text), texts);
    assert.deepEqual(read.map((m) => m.seq), [0, 1, 0, 1, 0]);
    assert.ok(read.every((m) => m.sender === facts.senderKey));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

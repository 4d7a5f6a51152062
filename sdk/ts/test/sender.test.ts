import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { concatBytes, fromHex, toHex, utf8 } from "../src/bytes.js";
import { SenderKey, TrustedSenders, verifySenderSignature } from "../src/sender.js";
import { umbral } from "../src/umbral.js";
import { RUST_FIXTURES, STREAM_VECTORS, about, senderSecret } from "./fixtures/rust.js";

const ORDER = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

function highS(signature: Uint8Array): Uint8Array {
  const s = BigInt(toHex(signature.subarray(32)));
  const flipped = fromHex((ORDER - s).toString(16).padStart(64, "0"), "s", 32);
  return concatBytes(signature.subarray(0, 32), flipped);
}

test("signatures verify only for their key and bytes", () => {
  const enrico = SenderKey.random();
  const other = SenderKey.random();
  const message = utf8("message");
  const signature = enrico.sign(message);
  assert.equal(signature.length, 64);
  assert.equal(enrico.publicKey().length, 33);
  assert.ok(verifySenderSignature(enrico.publicKey(), message, signature));
  assert.ok(!verifySenderSignature(enrico.publicKey(), utf8("messagE"), signature));
  assert.ok(!verifySenderSignature(other.publicKey(), message, signature));
  const flipped = signature.slice();
  flipped[10]! ^= 1;
  assert.ok(!verifySenderSignature(enrico.publicKey(), message, flipped));
  assert.ok(!verifySenderSignature(enrico.publicKey(), message, new Uint8Array(64)));
  assert.ok(!verifySenderSignature(enrico.publicKey(), message, signature.subarray(0, 63)));
  assert.ok(!verifySenderSignature(new Uint8Array(33), message, signature));
  assert.ok(!String(enrico).includes("secret"));
});

test("a high s is refused (as the Rust client refuses it; umbral-pre 0.10's WASM would accept it)", () => {
  const secret = umbral.SecretKey.random();
  const enrico = SenderKey.fromSecretKey(secret);
  const message = utf8("message");
  const signature = enrico.sign(message);
  const high = highS(signature);
  assert.ok(verifySenderSignature(enrico.publicKey(), message, signature));
  assert.ok(!verifySenderSignature(enrico.publicKey(), message, high));
  // Why verification is not umbral's WASM here: @nucypher/umbral-pre 0.10 verifies the high-s
  // twin, where the Rust client (umbral-pre 0.11, k256) refuses it (sender.rs a_high_s_is_refused).
  const pk = secret.publicKey();
  assert.ok(umbral.Signature.fromBEBytes(signature).verify(pk, message));
  secret.free();
});

test("umbral-pre's Signer and this SenderKey agree both ways, and on the public key", () => {
  const secret = umbral.SecretKey.random();
  const signer = new umbral.Signer(secret);
  const enrico = SenderKey.fromSecretKey(secret);
  const pk = secret.publicKey();
  assert.equal(toHex(enrico.publicKey()), toHex(pk.toCompressedBytes()));
  for (const text of ["", "a", "KMSENC02 header and more"]) {
    const message = utf8(text);
    const theirs = signer.sign(message).toBEBytes();
    assert.ok(verifySenderSignature(enrico.publicKey(), message, theirs), "umbral's signature verifies here");
    assert.ok(umbral.Signature.fromBEBytes(enrico.sign(message)).verify(pk, message), "ours verifies in umbral");
  }
});

test("a Rust signature verifies: the v2 vector's header, by the vector's sender", () => {
  const vectors = JSON.parse(readFileSync(STREAM_VECTORS + "vectors.json", "utf8")) as { senderPublicKey: string };
  const file = new Uint8Array(readFileSync(STREAM_VECTORS + "v2.kms"));
  const headerLength = 331; // 154 + c + k of this file (checked by stream.test.ts through readHeader)
  const sender = file.subarray(headerLength - 97, headerLength - 64);
  assert.equal(toHex(sender).slice(2), vectors.senderPublicKey);
  const signed = concatBytes(utf8("KMSENC02 header"), file.subarray(0, headerLength - 64));
  assert.ok(verifySenderSignature(sender, signed, file.subarray(headerLength - 64, headerLength)));
  const altered = signed.slice();
  altered[20]! ^= 1;
  assert.ok(!verifySenderSignature(sender, altered, file.subarray(headerLength - 64, headerLength)));
});

test("the sender key derived from a kms master secret is the one `kms keys show` prints", () => {
  const secret = senderSecret(readFileSync(RUST_FIXTURES + "enrico.umbral.json", "utf8"));
  assert.equal(toHex(SenderKey.fromSecretKey(secret).publicKey()), about().senderKey);
});

test("trusted senders hold each key once and refuse what is not a key", () => {
  const [a, b] = [SenderKey.random(), SenderKey.random()];
  const trusted = new TrustedSenders([a.publicKey(), toHex(a.publicKey())]);
  assert.equal(trusted.size, 1);
  assert.ok(trusted.has(a.publicKey()) && !trusted.has(b.publicKey()));
  trusted.add(b.publicKey());
  assert.ok(trusted.has(b.publicKey()));
  assert.equal(trusted.keys().length, 2);
  assert.equal(new TrustedSenders().describe(), "none");
  assert.equal(trusted.describe(), `${toHex(a.publicKey())}, ${toHex(b.publicKey())}`);
  assert.throws(() => trusted.add(new Uint8Array(33)), { code: "BadSenderKey" });
  assert.throws(() => trusted.add("0x1234"), { code: "BadLength" });
  assert.throws(() => SenderKey.fromBytes(new Uint8Array(32)), { code: "BadSenderKey" });
});

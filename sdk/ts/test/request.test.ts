import { test } from "node:test";
import assert from "node:assert/strict";
import { sha256 } from "@noble/hashes/sha2.js";
import { concatBytes, fromBase64, fromHex, utf8 } from "../src/bytes.js";
import { capsulesDigest, reencryptMessage, RequestClock, signReencryptRequest } from "../src/request.js";
import { umbral } from "../src/umbral.js";

const POLICY_ID = "0x00112233445566778899aabbccddeeff";
const STAKER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

test("the signed message is laid out as docs/node.md says", () => {
  const capsules = [new Uint8Array([1, 2, 3]), new Uint8Array(300).fill(7)];
  const nonce = new Uint8Array(16).fill(0x5a);
  const message = reencryptMessage(POLICY_ID, STAKER, 1_700_000_000, nonce, capsules);
  const digest = sha256(concatBytes(new Uint8Array([0, 0, 0, 3, 1, 2, 3]), new Uint8Array([0, 0, 1, 0x2c]), capsules[1]!));
  const expected = concatBytes(
    utf8("KMS_REENCRYPT_V1"),
    fromHex(POLICY_ID, "id"),
    fromHex(STAKER, "staker"),
    new Uint8Array([0, 0, 0, 0, 0x65, 0x53, 0xf1, 0x00]),
    nonce,
    digest,
  );
  assert.equal(message.length, 16 + 16 + 20 + 8 + 16 + 32);
  assert.deepEqual(message, expected);
  assert.deepEqual(capsulesDigest(capsules), digest);
});

test("the request is signed by the receiving key over that message, with a fresh nonce", () => {
  const sk = umbral.SecretKey.random();
  const capsule = umbral.encrypt(sk.publicKey(), new Uint8Array([1]))[0];
  const bytes = capsule.toBytes();
  const body = signReencryptRequest({ receivingSecretKey: sk, policyId: POLICY_ID, staker: STAKER, timestamp: 1_700_000_000, capsules: [bytes] });
  assert.deepEqual(fromBase64(body.capsules[0]!, "capsule"), bytes);
  assert.equal(body.timestamp, 1_700_000_000);
  assert.match(body.nonce, /^0x[0-9a-f]{32}$/);
  assert.match(body.signature, /^0x[0-9a-f]{128}$/);
  const message = reencryptMessage(POLICY_ID, STAKER, body.timestamp, fromHex(body.nonce, "nonce", 16), [bytes]);
  const signature = umbral.Signature.fromBEBytes(fromHex(body.signature, "signature", 64));
  assert.ok(signature.verify(sk.publicKey(), message));
  // Bound to the node: the same request for another staker does not verify.
  const other = reencryptMessage(POLICY_ID, "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC", body.timestamp, fromHex(body.nonce, "nonce", 16), [bytes]);
  assert.ok(!signature.verify(sk.publicKey(), other));
  const second = signReencryptRequest({ receivingSecretKey: sk, policyId: POLICY_ID, staker: STAKER, timestamp: 1_700_000_000, capsules: [bytes] });
  assert.notEqual(second.nonce, body.nonce);
});

test("timestamps increase strictly per policy, node and capsules, and follow the clock", () => {
  let now = 1000;
  const clock = new RequestClock(() => now);
  const a = [new Uint8Array([1])];
  const b = [new Uint8Array([2])];
  assert.equal(clock.next(POLICY_ID, STAKER, a), 1000);
  assert.equal(clock.next(POLICY_ID, STAKER, a), 1001);
  assert.equal(clock.next(POLICY_ID, STAKER, a), 1002);
  assert.equal(clock.next(POLICY_ID, STAKER, b), 1000, "other capsules: their own sequence");
  assert.equal(clock.next(POLICY_ID, "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC", a), 1000, "another node");
  now = 2000;
  assert.equal(clock.next(POLICY_ID, STAKER, a), 2000);
});

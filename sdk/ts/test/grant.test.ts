import { test } from "node:test";
import assert from "node:assert/strict";
import type { Address, Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { umbral } from "../src/umbral.js";
import { fromBase64, fromHex, toHex } from "../src/bytes.js";
import { publicKeyBytes } from "../src/keys.js";
import { executeGrant, kfragUploadMessage, planGrant, policyPeriods, sealKfrag, GrantError } from "../src/grant.js";

test("a sealed kfrag opens for its node only, signed for this policy and node", () => {
  const alice = umbral.SecretKey.random();
  const bob = umbral.SecretKey.random();
  const signerSk = umbral.SecretKey.random();
  const nodeSk = umbral.SecretKey.random();
  const signer = new umbral.Signer(signerSk);
  const [kfrag] = umbral.generateKFrags(alice, bob.publicKey(), signer, 1, 1, true, true);
  const policy = { policyId: "0x5f0c8a4d0e2b1c3d4e5f60718293a4b5" as Hex, delegatingKey: toHex(publicKeyBytes(alice)), receivingKey: toHex(publicKeyBytes(bob)) };
  const staker: Address = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";
  const body = sealKfrag(kfrag!, { staker, umbralPublicKey: toHex(publicKeyBytes(nodeSk)) }, policy, signer);
  assert.equal(body.verifyingKey, toHex(publicKeyBytes(signerSk)));
  // The node decrypts the kfrag with its key, and it verifies with the three keys.
  const capsule = umbral.Capsule.fromBytes(fromBase64(body.capsule, "capsule"));
  const ciphertext = fromBase64(body.ciphertext, "ciphertext");
  const plaintext = umbral.decryptOriginal(nodeSk, capsule, ciphertext);
  assert.deepEqual(plaintext, kfrag!.toBytes());
  const verified = umbral.KeyFrag.fromBytes(plaintext).verify(signerSk.publicKey(), alice.publicKey(), bob.publicKey());
  assert.ok(verified);
  assert.throws(() => umbral.decryptOriginal(umbral.SecretKey.random(), umbral.Capsule.fromBytes(fromBase64(body.capsule, "c")), ciphertext));
  // The signature is over the documented message, for this node only.
  const message = kfragUploadMessage(policy.policyId, staker, policy.delegatingKey, policy.receivingKey, fromBase64(body.capsule, "c"), ciphertext);
  assert.equal(message.length, 19 + 16 + 20 + 33 + 33 + 32 + 32);
  const signature = umbral.Signature.fromBEBytes(fromHex(body.signature, "signature", 64));
  assert.ok(signature.verify(signerSk.publicKey(), message));
  const other = kfragUploadMessage(policy.policyId, "0x90F79bf6EB2c4f870365E785982E1f101E93b906", policy.delegatingKey, policy.receivingKey, fromBase64(body.capsule, "c"), ciphertext);
  assert.ok(!umbral.Signature.fromBEBytes(fromHex(body.signature, "signature", 64)).verify(signerSk.publicKey(), other));
});

test("policyPeriods counts as createPolicy", () => {
  assert.deepEqual(policyPeriods(7200n, 7200n + 3600n * 10n, 3600n), { currentPeriod: 2n, lastPeriod: 11n, periods: 10n });
  assert.deepEqual(policyPeriods(7300n, 7201n, 3600n), undefined);
  assert.deepEqual(policyPeriods(7300n, 10801n, 3600n), { currentPeriod: 2n, lastPeriod: 3n, periods: 2n });
});

test("invalid requests are refused before any chain call", async () => {
  const base = {
    publicClient: undefined as never,
    deployment: undefined as never,
    nodeClient: undefined as never,
    label: "x",
    delegatingKey: `0x02${"11".repeat(32)}` as Hex,
    verifyingKey: `0x02${"11".repeat(32)}` as Hex,
    receivingKey: `0x02${"11".repeat(32)}` as Hex,
    senders: [],
    threshold: 2,
    shares: 3,
    endTimestamp: 2_000_000_000,
    feeRate: 1n,
    owner: "0x976EA74026E726554dB657fA54763abd0C3a0aa9" as Address,
    creator: "0x976EA74026E726554dB657fA54763abd0C3a0aa9" as Address,
  };
  for (const [change, pattern] of [
    [{ shares: 0 }, /shares is 0/],
    [{ shares: 33 }, /shares is 33/],
    [{ threshold: 4 }, /threshold is 4/],
    [{ feeRate: 0n }, /above zero/],
    [{ feeRate: 1n << 80n }, /80 bits/],
    [{ endTimestamp: 2n ** 32n }, /2106/],
    [{ owner: "0x0000000000000000000000000000000000000000" }, /owner/],
  ] as const) {
    await assert.rejects(planGrant({ ...base, ...change } as never), (e: unknown) => e instanceof GrantError && e.code === "InvalidGrant" && pattern.test(e.message));
  }
});

// On a devnet (TS grant → Rust retrieve, revoke, signed orders, revokeNode, refund): test/cross/sdk-grants-and-revokes.test.mjs,
// run by `node test/cross/run.mjs`.

test("executeGrant refuses a wallet that is not the plan's creator before any chain call", async () => {
  const alice = umbral.SecretKey.random();
  const signerSk = umbral.SecretKey.random();
  const creator: Address = "0x976EA74026E726554dB657fA54763abd0C3a0aa9";
  const salt16 = "0x00112233445566778899aabbccddeeff" as Hex;
  const { policyIdOf } = await import("../src/policy-id.js");
  const deployment = { chainId: 31337n, policyManager: "0x5FbDB2315678afecb367f032d93F642f64180aa3", secondsPerPeriod: 3600n };
  const untouchable = new Proxy({}, { get: () => { throw new Error("the chain was called"); } });
  const plan = {
    policy: {
      chainId: 31337,
      policyManager: deployment.policyManager,
      policyId: policyIdOf(creator, salt16),
      label: "x",
      owner: creator,
      delegatingKey: toHex(publicKeyBytes(alice)),
      verifyingKey: toHex(publicKeyBytes(signerSk)),
      receivingKey: toHex(publicKeyBytes(umbral.SecretKey.random())),
      senders: [],
      threshold: 1,
      shares: 1,
      endTimestamp: 2_000_000_000,
      feeRate: 1n,
      nodes: [],
    },
    policySalt: salt16,
    publicClient: untouchable,
    deployment,
    nodeClient: untouchable,
  };
  const otherWallet = { account: privateKeyToAccount(`0x${"42".repeat(32)}`) };
  await assert.rejects(
    executeGrant(plan as never, alice, signerSk, otherWallet as never),
    (e: unknown) => e instanceof GrantError && e.code === "CreatorMismatch",
  );
});

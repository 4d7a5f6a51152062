import { test } from "node:test";
import assert from "node:assert/strict";
import { getAddress } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { answerDigest, AnswerError, recoverAnswerSigner, type AnswerContext } from "../src/answer.js";
import { concatBytes, fromHex, toHex } from "../src/bytes.js";
import { loadFixtures, type FixtureCase } from "./fixtures/adjudicator.js";

const fixtures = loadFixtures();

function contextOf(c: FixtureCase): AnswerContext {
  return {
    chainId: fixtures.chainId,
    adjudicator: fixtures.adjudicator,
    staker: c.evidence.staker,
    period: c.evidence.period,
    policyId: c.evidence.policyId,
  };
}

test("the worker address is recovered from every fixture answer, as the contract recovers it", () => {
  assert.equal(fixtures.cases.length, 112);
  for (const c of fixtures.cases) {
    const signer = recoverAnswerSigner(contextOf(c), fromHex(c.evidence.capsule, "capsule"), fromHex(c.evidence.cfrag, "cfrag"), fromHex(c.evidence.workerSignature, "sig"));
    assert.equal(signer, getAddress(c.signer), c.name);
    // The honest cases are signed by the node's own worker.
    if (c.expect === "correct") assert.equal(signer, getAddress(c.worker), c.name);
  }
});

test("another chain, adjudicator, staker, period or policy recovers another address", () => {
  const c = fixtures.cases[0]!;
  const args = [fromHex(c.evidence.capsule, "c"), fromHex(c.evidence.cfrag, "f"), fromHex(c.evidence.workerSignature, "s")] as const;
  const base = contextOf(c);
  const variants: AnswerContext[] = [
    { ...base, chainId: 1 },
    { ...base, adjudicator: "0x0000000000000000000000000000000000000001" },
    { ...base, staker: "0x0000000000000000000000000000000000000002" },
    { ...base, period: BigInt(base.period) + 1n },
    { ...base, policyId: "0x000102030405060708090a0b0c0d0e0f" },
  ];
  for (const context of variants) assert.notEqual(recoverAnswerSigner(context, ...args), getAddress(c.signer));
});

test("a signature signed here with EIP-191 recovers its signer; malformed ones are refused as OpenZeppelin does", async () => {
  const account = privateKeyToAccount("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d");
  const c = fixtures.cases[0]!;
  const capsule = fromHex(c.evidence.capsule, "c");
  const cfrag = fromHex(c.evidence.cfrag, "f");
  const digest = answerDigest(contextOf(c), capsule, cfrag);
  const signature = fromHex(await account.signMessage({ message: { raw: digest } }), "sig", 65);
  assert.equal(recoverAnswerSigner(contextOf(c), capsule, cfrag, signature), account.address);

  const refused = (sig: Uint8Array, pattern: RegExp) =>
    assert.throws(() => recoverAnswerSigner(contextOf(c), capsule, cfrag, sig), (e: unknown) => e instanceof AnswerError && pattern.test(e.message));
  refused(signature.subarray(0, 64), /expected 65 bytes/);
  refused(concatBytes(signature.subarray(0, 64), new Uint8Array([1])), /v must be 27 or 28/);
  // The same signature with a high s (n - s, v flipped) recovers the same key in plain ECDSA,
  // but OpenZeppelin refuses it.
  const n = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
  const s = BigInt(toHex(signature.subarray(32, 64)));
  const high = concatBytes(signature.subarray(0, 32), fromHex((n - s).toString(16).padStart(64, "0"), "s", 32), new Uint8Array([signature[64] === 27 ? 28 : 27]));
  refused(high, /not a low-s signature/);
  assert.throws(() => recoverAnswerSigner(contextOf(c), capsule.subarray(1), cfrag, signature), (e: unknown) => e instanceof AnswerError && e.code === "AnswerBytes");
});

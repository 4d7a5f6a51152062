import { test } from "node:test";
import assert from "node:assert/strict";
import { getAddress } from "viem";
import { fromHex } from "../src/bytes.js";
import { evidenceHash, faultToJson, parseFaultFile, predictOutcome, type Fault } from "../src/evidence.js";
import { loadFixtures } from "./fixtures/adjudicator.js";

const fixtures = loadFixtures();

test("the ported model agrees with the Adjudicator's test vectors", () => {
  let slashes = 0;
  for (const c of fixtures.cases) {
    const e = c.evidence;
    const outcome = predictOutcome({
      capsuleSimple: fromHex(e.capsule, "capsule"),
      cfragSimple: fromHex(e.cfrag, "cfrag"),
      delegatingKey: fromHex(e.delegatingKey, "d"),
      receivingKey: fromHex(e.receivingKey, "r"),
      kfragSigner: c.kfragSigner,
      kfragSignatureV: e.kfragSignatureV,
    });
    switch (c.expect) {
      case "correct":
        assert.deepEqual(outcome, { verdict: "Correct" }, c.name);
        break;
      case "slash":
        // Any tampered point changes h, so the first equation fails; a tampered z too.
        assert.deepEqual(outcome, { verdict: "WrongE" }, c.name);
        slashes++;
        break;
      case "kfrag-signature":
        assert.deepEqual(outcome, { refusal: "KfragSignature" }, c.name);
        break;
      case "not-bonded":
        // The bond is not modelled here (retrieve checks the signer against the bonded worker
        // first): the bytes are those of a slashable (e1) or an honest (workerSignature) cfrag.
        assert.deepEqual(outcome, { verdict: c.field === "e1" ? "WrongE" : "Correct" }, c.name);
        break;
      default:
        assert.fail(`unknown expectation ${c.expect}`);
    }
  }
  assert.equal(slashes, 48);
});

test("without the recovery bit, the model finds it as Evidence::from_parts does", () => {
  const honest = fixtures.cases.find((c) => c.expect === "correct")!;
  const e = honest.evidence;
  const parts = {
    capsuleSimple: fromHex(e.capsule, "capsule"),
    cfragSimple: fromHex(e.cfrag, "cfrag"),
    delegatingKey: fromHex(e.delegatingKey, "d"),
    receivingKey: fromHex(e.receivingKey, "r"),
    kfragSigner: honest.kfragSigner,
  };
  assert.deepEqual(predictOutcome(parts), { verdict: "Correct" });
  assert.deepEqual(predictOutcome({ ...parts, kfragSignatureV: !e.kfragSignatureV }), { refusal: "KfragSignature" });
  assert.deepEqual(predictOutcome({ ...parts, kfragSigner: "0x0000000000000000000000000000000000000001" }), { refusal: "KfragSignature" });
  // z = 0 and z >= n: InvalidZ before any equation.
  for (const z of ["00".repeat(32), "ff".repeat(32)]) {
    const cfrag = Uint8Array.from(parts.cfragSimple);
    cfrag.set(fromHex(z, "z", 32), 263);
    assert.deepEqual(predictOutcome({ ...parts, cfragSimple: cfrag }), { verdict: "InvalidZ" });
  }
});

function sampleFault(): Fault {
  const c = fixtures.cases.find((x) => x.expect === "slash")!;
  const e = c.evidence;
  return {
    version: 2,
    chainId: fixtures.chainId,
    policyId: e.policyId,
    adjudicator: getAddress(fixtures.adjudicator),
    period: Number(e.period),
    staker: getAddress(c.staker),
    worker: getAddress(c.worker),
    url: "https://127.0.0.1:9151#tls-sha256=" + "ab".repeat(32),
    capsule: e.capsule,
    cfrag: e.cfrag,
    delegatingKey: e.delegatingKey,
    receivingKey: e.receivingKey,
    kfragSigner: getAddress(c.kfragSigner),
    workerSignature: e.workerSignature,
    expectedVerdict: "WrongE",
    reason: "Verification failed: the cfrag is wrong",
  };
}

test("the fault file has the Rust field order and round-trips", () => {
  const fault = sampleFault();
  const json = faultToJson(fault);
  assert.deepEqual(Object.keys(JSON.parse(json) as object), [
    "version", "chainId", "policyId", "adjudicator", "period", "staker", "worker", "url", "capsule", "cfrag",
    "delegatingKey", "receivingKey", "kfragSigner", "workerSignature", "expectedVerdict", "reason",
  ]);
  assert.ok(json.endsWith("}\n"));
  assert.deepEqual(parseFaultFile(json), fault);
  assert.match(evidenceHash(fault), /^0x[0-9a-f]{64}$/);
});

test("a fault file with an unknown field, another version or a short cfrag is refused", () => {
  const raw = JSON.parse(faultToJson(sampleFault())) as Record<string, unknown>;
  assert.throws(() => parseFaultFile(JSON.stringify({ ...raw, extra: 1 })), /unknown field `extra`/);
  assert.throws(() => parseFaultFile(JSON.stringify({ ...raw, version: 1 })), /version 1 is not supported/);
  assert.throws(() => parseFaultFile(JSON.stringify({ ...raw, cfrag: "0x00" })), /cfrag: expected 359 bytes/);
});

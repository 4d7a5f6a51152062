/**
 * Bob's checks of each cfrag (docs/client.md "Retrieval", checks 1–4) without a devnet: a fake
 * chain (node records, worker bonds, the latest block) and fake nodes answering cfrags made here,
 * signed by their workers, some of them wrong in one way each.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { getAddress, type Address, type Hex } from "viem";
import { privateKeyToAccount, sign } from "viem/accounts";
import { answerDigest, eip191Hash } from "../src/answer.js";
import { toBase64, toHex } from "../src/bytes.js";
import { KmsError } from "../src/errors.js";
import { RequestClock } from "../src/request.js";
import { retrieve, RetrieveError, type NodeOutcome } from "../src/retrieve.js";
import type { PolicyFile } from "../src/policy-file.js";
import { NodeError, type SignedCFragBody } from "../src/http.js";
import { umbral } from "../src/umbral.js";

const ADJUDICATOR: Address = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0";
const SECONDS_PER_PERIOD = 3600n;
const PERIOD = 500;
const OPEN_BOND = 0xffffffffn;

type Behaviour = "honest" | "futurePeriod" | "stalePeriod" | "bondedLater" | "closedBond" | "wrongSigner" | "wrongCfrag";

function pk33(sk: umbral.SecretKey): Hex {
  const pk = sk.publicKey();
  const bytes = pk.toCompressedBytes();
  pk.free();
  return toHex(bytes);
}

/** How the fake chain and nodes take their time: per node, ms before answering; a chain read that never ends. */
interface Timing {
  answerDelays?: number[];
  chainHangs?: boolean;
  /** Capsules per request (every node's limit), and the request (0-based, per node) that fails. */
  batchLimit?: number;
  failingRequest?: number;
  /** The node client cannot load undici. */
  moduleMissing?: boolean;
}

async function scenario(behaviours: Behaviour[], threshold: number, timing: Timing = {}) {
  const alice = umbral.SecretKey.random();
  const bob = umbral.SecretKey.random();
  const signerSk = umbral.SecretKey.random();
  const signer = new umbral.Signer(signerSk);
  const kfrags = umbral.generateKFrags(alice, bob.publicKey(), signer, threshold, behaviours.length, true, true);
  const workers = behaviours.map((_, i) => privateKeyToAccount(`0x${(i + 1).toString(16).padStart(64, "0")}`));
  const stakers = behaviours.map((_, i) => getAddress(`0x${(0x10 + i).toString(16).padStart(40, "0")}`));
  const policy: PolicyFile = {
    chainId: 31337,
    policyManager: "0x5FbDB2315678afecb367f032d93F642f64180aa3",
    policyId: "0x00112233445566778899aabbccddeeff",
    label: "x",
    owner: stakers[0]!,
    delegatingKey: pk33(alice),
    verifyingKey: pk33(signerSk),
    receivingKey: pk33(bob),
    senders: [],
    threshold,
    shares: behaviours.length,
    endTimestamp: 2_000_000_000,
    feeRate: 1n,
    nodes: behaviours.map((_, i) => ({ staker: stakers[i]!, worker: workers[i]!.address, url: `https://node${i}.example`, umbralPublicKey: pk33(umbral.SecretKey.random()) })),
  };
  const alicePk = alice.publicKey();
  const [capsule, ciphertext] = umbral.encrypt(alicePk, new Uint8Array(32).fill(7));
  const [otherCapsule] = umbral.encrypt(alicePk, new Uint8Array(32).fill(8));
  const publicClient = {
    async getBlock() {
      return { number: 1n, timestamp: BigInt(PERIOD) * SECONDS_PER_PERIOD + 5n };
    },
    async readContract({ functionName, args }: { functionName: string; args: readonly unknown[] }) {
      if (timing.chainHangs) await new Promise(() => {});
      if (functionName === "nodeRecordOf") {
        const i = stakers.indexOf(args[0] as Address);
        return { worker: workers[i]!.address, url: policy.nodes[i]!.url, umbralPublicKey: policy.nodes[i]!.umbralPublicKey };
      }
      if (functionName === "workerBond") {
        const i = workers.findIndex((w) => w.address === args[0]);
        const behaviour = behaviours[i];
        return [stakers[i]!, behaviour === "bondedLater" ? BigInt(PERIOD + 1) : 1n, behaviour === "closedBond" ? BigInt(PERIOD) : OPEN_BOND];
      }
      throw new Error(`unexpected read ${functionName}`);
    },
  };
  const limit = timing.batchLimit ?? 64;
  const requests = new Map<string, number>();
  const nodeClient = {
    clock: new RequestClock(),
    knownCapsuleLimit: () => limit,
    capsuleLimit: async () => limit,
    refreshCapsuleLimit: async () => limit,
    async reencrypt(url: string, _policyId: string, signRequest: () => unknown): Promise<SignedCFragBody[]> {
      signRequest();
      const request = requests.get(url) ?? 0;
      requests.set(url, request + 1);
      if (request === timing.failingRequest) throw new NodeError("Unreachable", url, "the connection dropped");
      if (timing.moduleMissing) throw new KmsError("ModuleMissing", "cannot load undici: not found");
      const i = policy.nodes.findIndex((n) => n.url === url);
      const behaviour = behaviours[i]!;
      // A node that answers whatever the abort: its answer arrives after the retrieval ended.
      const delay = timing.answerDelays?.[i] ?? 0;
      if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
      const cfrag = umbral.reencrypt(behaviour === "wrongCfrag" ? otherCapsule : capsule, kfrags[i]!);
      const cfragBytes = cfrag.toBytes();
      const cfragSimple = umbral.CapsuleFrag.fromBytes(cfragBytes).toBytesSimple();
      cfrag.free();
      const period = behaviour === "futurePeriod" ? PERIOD + 1 : behaviour === "stalePeriod" ? PERIOD - 2 : PERIOD;
      const digest = answerDigest(
        { chainId: policy.chainId, adjudicator: ADJUDICATOR, staker: stakers[i]!, period, policyId: policy.policyId },
        capsule.toBytesSimple(),
        cfragSimple,
      );
      const key = behaviour === "wrongSigner" ? `0x${"77".repeat(32)}` : `0x${(i + 1).toString(16).padStart(64, "0")}`;
      const signature = await sign({ hash: toHex(eip191Hash(digest)), privateKey: key as Hex, to: "hex" });
      return [{ cfrag: toBase64(cfragBytes), signature, period }];
    },
  };
  const run = (auditAll = true, signal?: AbortSignal, capsuleCount = 1) =>
    retrieve({
      signal,
      publicClient: publicClient as never,
      deployment: { stakingEscrow: "0x0000000000000000000000000000000000000001", adjudicator: ADJUDICATOR, secondsPerPeriod: SECONDS_PER_PERIOD },
      nodeClient: nodeClient as never,
      policy,
      receivingSecretKey: bob,
      capsules: Array.from({ length: capsuleCount }, () => capsule.toBytes()),
      auditAll,
    });
  return { run, bob, alicePk, capsule, ciphertext };
}

test("retrieve counts only cfrags of the right period, a bond in force, the worker's signature and a verifying cfrag", async () => {
  const behaviours: Behaviour[] = ["honest", "futurePeriod", "stalePeriod", "bondedLater", "closedBond", "wrongSigner", "wrongCfrag", "honest"];
  const { run } = await scenario(behaviours, 3);
  const error = await run().catch((e: unknown) => e);
  assert.ok(error instanceof RetrieveError, String(error));
  assert.equal(error.code, "NotEnoughCFrags");
  assert.equal(error.got, 2, "only the two honest nodes count");
  const reasons = Object.fromEntries(error.failures.map((f) => [behaviours[Number(f.url.slice(12, 13))], f.reason]));
  assert.match(reasons.futurePeriod!, /names period 501, the chain is in period 500/);
  assert.match(reasons.stalePeriod!, /names period 498/);
  assert.match(reasons.bondedLater!, /before its worker .* was bonded/);
  assert.match(reasons.closedBond!, /is not bonded to the node's staker/);
  assert.match(reasons.wrongSigner!, /is signed by 0x.*, not by the node's worker/);
  assert.match(reasons.wrongCfrag!, /fails verification .*provable, verdict Wrong/);
  assert.equal(Object.keys(reasons).length, 6, "the honest nodes have no failure");
  // Only the worker-signed wrong cfrag is a fault: no honest node, no unsigned answer is reported.
  assert.equal(error.faults.length, 1);
  assert.equal(error.faults[0]!.url, "https://node6.example");
});

test("with threshold honest nodes the cfrags open the capsule", async () => {
  const { run, bob, alicePk, capsule, ciphertext } = await scenario(["honest", "wrongCfrag", "honest"], 2);
  const retrieval = await run();
  assert.equal(retrieval.cfrags[0]!.length, 2);
  assert.deepEqual(retrieval.faults.map((f) => f.url), ["https://node1.example"]);
  const outcomes: NodeOutcome[] = retrieval.nodes.map((n) => n.outcome);
  assert.deepEqual(outcomes, [
    { kind: "Answered", valid: 1, wrong: 0 },
    { kind: "Answered", valid: 0, wrong: 1 },
    { kind: "Answered", valid: 1, wrong: 0 },
  ]);
  const key = umbral.decryptReencrypted(bob, alicePk, capsule, retrieval.cfrags[0]!, ciphertext);
  assert.deepEqual(key, new Uint8Array(32).fill(7));
});

test("a caller's abort ends a retrieval waiting on the chain", { timeout: 10_000 }, async () => {
  const { run } = await scenario(["honest"], 1, { chainHangs: true });
  const controller = new AbortController();
  const retrieval = run(true, controller.signal);
  setTimeout(() => controller.abort(new Error("the user left")), 20);
  const error = await retrieval.catch((e: unknown) => e);
  assert.ok(error instanceof RetrieveError, String(error));
  assert.equal(error.code, "Aborted");
  assert.match(String((error.cause as Error).message), /the user left/);
  // Aborted before it starts: no chain read at all.
  const early = await run(true, AbortSignal.abort()).catch((e: unknown) => e);
  assert.ok(early instanceof RetrieveError && early.code === "Aborted", String(early));
});

test("a node client that cannot load its modules is said so, not NotEnoughCFrags", async () => {
  const { run } = await scenario(["honest", "honest"], 1, { moduleMissing: true });
  const error = await run().catch((e: unknown) => e);
  assert.ok(error instanceof KmsError, String(error));
  assert.equal(error.code, "ModuleMissing");
});

test("cfrags checked but not returned are freed; answers after the end are not checked", { timeout: 10_000 }, async () => {
  // Watch the cfrags retrieve verifies (not the ones the fake nodes make and free themselves).
  const verify = umbral.CapsuleFrag.prototype.verify;
  const free = umbral.VerifiedCapsuleFrag.prototype.free;
  let verifications = 0;
  const verified = new Set<unknown>();
  const freed = new Set<unknown>();
  umbral.CapsuleFrag.prototype.verify = function (this: umbral.CapsuleFrag, ...args: Parameters<typeof verify>) {
    verifications++;
    const cfrag = verify.apply(this, args);
    verified.add(cfrag);
    return cfrag;
  };
  umbral.VerifiedCapsuleFrag.prototype.free = function (this: umbral.VerifiedCapsuleFrag) {
    if (verified.has(this)) freed.add(this);
    free.call(this);
  };
  const reset = () => {
    verifications = 0;
    verified.clear();
    freed.clear();
  };
  const settle = () => new Promise((resolve) => setTimeout(resolve, 150));
  try {
    // Three answers at once, all checked before the first is counted: the two beside the one
    // that met the threshold are freed.
    const together = await scenario(["honest", "honest", "honest"], 1);
    const first = await together.run(false);
    await settle();
    const kept = first.cfrags[0]!;
    assert.equal(kept.length, 1);
    assert.equal(verified.size, 3, "all three answers were checked");
    assert.ok(!freed.has(kept[0]), "the returned cfrag is the caller's");
    assert.equal(freed.size, 2, "the other two are freed");

    // Two answers after the threshold was met: not checked at all (the capsules are gone).
    reset();
    const late = await scenario(["honest", "honest", "honest"], 1, { answerDelays: [0, 40, 60] });
    const second = await late.run(false);
    assert.deepEqual(
      second.nodes.map((n) => n.outcome.kind),
      ["Answered", "NotNeeded", "NotNeeded"],
    );
    await settle();
    assert.equal(verifications, 1, "only the answer that counted was checked");
    assert.equal(freed.size, 0);

    // A node answering in batches whose second request fails: its first batch's cfrag is freed.
    reset();
    const batches = await scenario(["honest"], 1, { batchLimit: 1, failingRequest: 1 });
    const error = await batches.run(true, undefined, 2).catch((e: unknown) => e);
    assert.ok(error instanceof RetrieveError && error.code === "NotEnoughCFrags", String(error));
    assert.match(error.failures[0]!.reason, /the connection dropped/);
    assert.equal(verified.size, 1, "the first batch was checked");
    assert.equal(freed.size, 1, "and its cfrag freed");
  } finally {
    umbral.CapsuleFrag.prototype.verify = verify;
    umbral.VerifiedCapsuleFrag.prototype.free = free;
  }
});

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
import { RequestClock } from "../src/request.js";
import { retrieve, RetrieveError, type NodeOutcome } from "../src/retrieve.js";
import type { PolicyFile } from "../src/policy-file.js";
import type { SignedCFragBody } from "../src/http.js";
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

async function scenario(behaviours: Behaviour[], threshold: number) {
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
  const nodeClient = {
    clock: new RequestClock(),
    knownCapsuleLimit: () => 64,
    capsuleLimit: async () => 64,
    refreshCapsuleLimit: async () => 64,
    async reencrypt(url: string, _policyId: string, signRequest: () => unknown): Promise<SignedCFragBody[]> {
      signRequest();
      const i = policy.nodes.findIndex((n) => n.url === url);
      const behaviour = behaviours[i]!;
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
  const run = (auditAll = true) =>
    retrieve({
      publicClient: publicClient as never,
      deployment: { stakingEscrow: "0x0000000000000000000000000000000000000001", adjudicator: ADJUDICATOR, secondsPerPeriod: SECONDS_PER_PERIOD },
      nodeClient: nodeClient as never,
      policy,
      receivingSecretKey: bob,
      capsules: [capsule.toBytes()],
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

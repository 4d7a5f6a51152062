/**
 * Retrieval against a real devnet (`kms devnet`, TLS with pinned URLs by default), with a policy
 * granted and a file encrypted by the Rust CLI. Set, to run it (skipped otherwise):
 *
 *   KMS_TEST_RPC_URL      e.g. http://127.0.0.1:8601
 *   KMS_TEST_DEPLOYMENTS  the devnet's deployments file
 *   KMS_TEST_POLICY       `kms policy grant … --out p.json` (threshold below shares)
 *   KMS_TEST_BOB_UMBRAL   Bob's `umbral.json` (`kms keys new --umbral-only`)
 *   KMS_TEST_ENCRYPTED    `kms encrypt --policy-key p.json … data data.kms`
 * optional:
 *   KMS_TEST_PLAINTEXT    the file encrypted, to compare the decryption with
 *   KMS_TEST_FAULTY=1     the devnet's last node is faulty (`kms devnet --faulty-node`): a fault
 *                         must be found, and with
 *   KMS_TEST_KMS_BIN      the `kms` binary: `kms retrieve` then reads a policy file written here
 *   KMS_TEST_REPORTER_KEY with KMS_TEST_KMS_BIN and KMS_TEST_FAULTY: the fault file written here
 *                         is reported with `kms report FILE --private-key` (a dev key that is not
 *                         the faulty node's), which must slash.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { createPublicClient, http } from "viem";
import { fromHex, utf8 } from "../src/bytes.js";
import { faultToJson, parseFaultFile } from "../src/evidence.js";
import { NodeClient, NodeError } from "../src/http.js";
import { parsePolicyFile, policyFileToJson, withPin, type PolicyFile } from "../src/policy-file.js";
import { retrieve, RetrieveError, type RetrievalDeployment } from "../src/retrieve.js";
import { decryptBytes, openDataKeyReencrypted, readHeader } from "../src/stream.js";
import { TrustedSenders } from "../src/sender.js";
import { umbral } from "../src/umbral.js";

const env = process.env;
const missing = ["KMS_TEST_RPC_URL", "KMS_TEST_DEPLOYMENTS", "KMS_TEST_POLICY", "KMS_TEST_BOB_UMBRAL", "KMS_TEST_ENCRYPTED"].filter((k) => !env[k]);
const skip = missing.length ? `needs a devnet: set ${missing.join(", ")} (see the top of test/retrieve.test.ts)` : false;

async function setup() {
  const policy = parsePolicyFile(await readFile(env.KMS_TEST_POLICY!, "utf8"), env.KMS_TEST_POLICY);
  const deployment = JSON.parse(await readFile(env.KMS_TEST_DEPLOYMENTS!, "utf8")) as RetrievalDeployment;
  const seed = fromHex((JSON.parse(await readFile(env.KMS_TEST_BOB_UMBRAL!, "utf8")) as { seed: string }).seed, "seed", 32);
  const factory = umbral.SecretKeyFactory.fromSecureRandomness(seed);
  const receivingSecretKey = factory.makeKey(utf8("KMS_RECEIVING_KEY_V1"));
  factory.free();
  const file = new Uint8Array(await readFile(env.KMS_TEST_ENCRYPTED!));
  const header = readHeader(file);
  const publicClient = createPublicClient({ transport: http(env.KMS_TEST_RPC_URL!) });
  return { policy, deployment, receivingSecretKey, file, header, publicClient };
}

test("a file encrypted by the CLI is retrieved over pinned TLS and decrypted", { skip }, async () => {
  const { policy, deployment, receivingSecretKey, file, header, publicClient } = await setup();
  assert.ok(policy.nodes.every((n) => n.url.includes("#tls-sha256=")), "the devnet serves pinned TLS");
  const nodeClient = new NodeClient();
  const capsule = header.capsule();
  const result = await retrieve({ publicClient, deployment, nodeClient, policy, receivingSecretKey, capsules: [capsule] });
  assert.equal(result.cfrags.length, 1);
  assert.ok(result.cfrags[0]!.length >= policy.threshold);
  const delegatingPk = umbral.PublicKey.fromCompressedBytes(fromHex(policy.delegatingKey, "delegatingKey", 33));
  const dataKey = openDataKeyReencrypted(receivingSecretKey, delegatingPk, header, result.cfrags[0]!);
  assert.equal(dataKey.length, 32);
  const plaintext = await decryptBytes(dataKey, file, new TrustedSenders(policy.senders));
  if (env.KMS_TEST_PLAINTEXT) {
    assert.deepEqual(plaintext, new Uint8Array(await readFile(env.KMS_TEST_PLAINTEXT)));
  }
  // Capsules given as bytes, more than one request takes (64): two batches per node.
  const many = Array.from({ length: 70 }, () => capsule.toBytes());
  const again = await retrieve({ publicClient, deployment, nodeClient, policy, receivingSecretKey, capsules: many });
  assert.equal(again.cfrags.length, 70);
  assert.ok(again.cfrags.every((c) => c.length >= policy.threshold));
  assert.equal(nodeClient.knownCapsuleLimit(policy.nodes[0]!.url), 64, "the limit was asked for the large retrieval");
  capsule.free();
  // The Rust CLI reads a policy file this SDK wrote, and retrieves with it.
  if (env.KMS_TEST_KMS_BIN) {
    const dir = await mkdtemp(join(tmpdir(), "kms-policy-"));
    await writeFile(join(dir, "p.json"), policyFileToJson(policy));
    await promisify(execFile)(env.KMS_TEST_KMS_BIN, [
      "retrieve", "--policy", join(dir, "p.json"), "--umbral", env.KMS_TEST_BOB_UMBRAL!, env.KMS_TEST_ENCRYPTED!, join(dir, "out"),
      "--rpc-url", env.KMS_TEST_RPC_URL!, "--deployments", env.KMS_TEST_DEPLOYMENTS!,
    ]);
    assert.deepEqual(new Uint8Array(await readFile(join(dir, "out"))), plaintext);
  }
});

test("a wrong pin is refused at once, with both fingerprints, and not retried", { skip }, async () => {
  const { policy } = await setup();
  const node = policy.nodes[0]!;
  const wrong = withPin(node.url, new Uint8Array(32).fill(0xab));
  const client = new NodeClient({ backoffMs: 5_000 });
  const started = Date.now();
  const error = await client.node(wrong).then(
    () => assert.fail("a wrong pin must be refused"),
    (e: unknown) => e,
  );
  assert.ok(error instanceof NodeError, String(error));
  assert.equal(error.code, "Certificate");
  assert.match(error.message, /pinned sha256 (ab){32}, presented [0-9a-f]{64}/);
  assert.ok(Date.now() - started < 5_000, "not retried (the backoff is 5 s)");
  // The right pin passes, and the node is the policy's.
  const info = await client.node(node.url);
  assert.equal(info.staker.toLowerCase(), node.staker.toLowerCase());
  assert.ok(info.maxCapsulesPerRequest >= 1);
  // Plain http is refused unless allowed.
  await assert.rejects(client.node(node.url.replace(/^https/, "http").replace(/#.*/, "")), (e: unknown) => e instanceof NodeError && e.code === "BadUrl");
});

test("a stranger's key is refused before any request; a policy the nodes do not hold fails naming each node", { skip }, async () => {
  const { policy, deployment, receivingSecretKey, header, publicClient } = await setup();
  const nodeClient = new NodeClient({ attempts: 1 });
  await assert.rejects(
    retrieve({ publicClient, deployment, nodeClient, policy, receivingSecretKey: umbral.SecretKey.random(), capsules: [header.capsule()] }),
    (e: unknown) => e instanceof RetrieveError && e.code === "WrongReceivingKey",
  );
  // Another policy id: every node answers 404 (it holds no kfrag for it).
  const unknown: PolicyFile = { ...policy, policyId: "0x00000000000000000000000000000001" };
  const error = await retrieve({ publicClient, deployment, nodeClient, policy: unknown, receivingSecretKey, capsules: [header.capsule()] }).then(
    () => assert.fail("an unknown policy must fail"),
    (e: unknown) => e,
  );
  assert.ok(error instanceof RetrieveError, String(error));
  assert.equal(error.code, "NotEnoughCFrags");
  assert.equal(error.got, 0);
  assert.equal(error.needed, policy.threshold);
  assert.equal(error.failures.length, policy.nodes.length);
  for (const failure of error.failures) assert.match(failure.reason, /HTTP 404: this node holds no kfrag/);
  assert.match(error.message, /got 0 verified cfrags of the 2 needed/);
});

test("auditAll hears every node; a faulty node's wrong cfrag is a fault that `kms report` slashes", { skip }, async (t) => {
  const { policy, deployment, receivingSecretKey, header, publicClient } = await setup();
  const nodeClient = new NodeClient();
  const result = await retrieve({ publicClient, deployment, nodeClient, policy, receivingSecretKey, capsules: [header.capsule()], auditAll: true });
  assert.ok(result.nodes.every((n) => n.outcome.kind === "Answered"), JSON.stringify(result.nodes));
  if (env.KMS_TEST_FAULTY !== "1") {
    assert.equal(result.faults.length, 0, "no node is faulty");
    return;
  }
  assert.equal(result.faults.length, 1, JSON.stringify(result.failures));
  const fault = result.faults[0]!;
  const faulty = policy.nodes.find((n) => n.staker === fault.staker);
  assert.ok(faulty, "the fault names a node of the policy");
  assert.equal(fault.expectedVerdict, "WrongE");
  t.diagnostic(`reason: ${fault.reason}`);
  assert.ok(fault.reason.length > 0);
  assert.equal(fault.capsule.length, 2 + 2 * 98);
  assert.equal(fault.cfrag.length, 2 + 2 * 359);
  const json = faultToJson(fault);
  assert.deepEqual(parseFaultFile(json), fault);
  if (!env.KMS_TEST_KMS_BIN || !env.KMS_TEST_REPORTER_KEY) return;
  const dir = await mkdtemp(join(tmpdir(), "kms-fault-"));
  const path = join(dir, "fault.json");
  await writeFile(path, json);
  const { stdout } = await promisify(execFile)(env.KMS_TEST_KMS_BIN, [
    "report",
    path,
    "--rpc-url",
    env.KMS_TEST_RPC_URL!,
    "--deployments",
    env.KMS_TEST_DEPLOYMENTS!,
    "--private-key",
    env.KMS_TEST_REPORTER_KEY,
  ]);
  t.diagnostic(stdout);
  assert.match(stdout, /WrongE/, stdout);
  assert.match(stdout, /slash/i, stdout);
});

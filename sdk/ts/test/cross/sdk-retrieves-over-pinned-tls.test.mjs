// SPDX-License-Identifier: GPL-3.0-or-later
// (d) Retrieval in depth, on the devnet (pinned TLS, a faulty node): a file the Rust CLI granted
// and encrypted (`kms policy grant`, `kms encrypt`) is retrieved and decrypted whole in memory;
// 70 capsules take two requests per node (the devnet's limit is 64); `kms retrieve` reads a policy
// file the SDK wrote; a wrong TLS pin is refused at once; a stranger's receiving key is refused
// before any request and a policy the nodes do not hold fails naming every node; auditAll hears
// every node and turns the faulty node's wrong cfrag into a WrongE fault that `kms report` slashes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { devnet, workDir, clients, deployment, sdk, runKms, newUmbralKeys, cliGrant } from "./fixture.mjs";

let prepared;
/** Once per file: a CLI grant (2 of the devnet's 3 nodes, the faulty one among them) and a CLI-encrypted file. */
function setup() {
  prepared ??= (async () => {
    const net = await devnet();
    const dir = await workDir();
    const [alice, bob, enrico] = await Promise.all(["alice", "bob", "enrico"].map((w) => newUmbralKeys(path.join(dir, w))));
    const policyPath = await cliGrant(net, {
      alice: alice.path, label: "cross/sdk-retrieves", bobKey: bob.receivingKey, senders: [enrico.senderKey],
      threshold: 2, shares: 3, out: path.join(dir, "policy.json"),
    });
    const plainPath = path.join(dir, "plain");
    const plaintext = randomBytes(200_000 + 17);
    await writeFile(plainPath, plaintext);
    const encryptedPath = path.join(dir, "plain.kms");
    await runKms(["encrypt", "--policy-key", policyPath, "--umbral", enrico.path, plainPath, encryptedPath]);

    const api = await sdk();
    const policy = api.parsePolicyFile(await readFile(policyPath, "utf8"), policyPath);
    // Bob's receiving key derived from the key file's seed as docs/client.md says (not through
    // MasterSecret): it must be the key the CLI printed.
    const { seed } = JSON.parse(await readFile(bob.path, "utf8"));
    const factory = api.umbral.SecretKeyFactory.fromSecureRandomness(api.fromHex(seed, "seed", 32));
    const receivingSecretKey = factory.makeKey(api.utf8("KMS_RECEIVING_KEY_V1"));
    factory.free();
    assert.equal(api.toHex(api.publicKeyBytes(receivingSecretKey)).toLowerCase(), bob.receivingKey.toLowerCase(), "the receiving key of Bob's key file");
    const file = new Uint8Array(await readFile(encryptedPath));
    return {
      net, dir, api, bob, policy, plaintext, encryptedPath, file, receivingSecretKey,
      header: api.readHeader(file),
      publicClient: clients(net).publicClient,
      deployment: await deployment(net),
    };
  })();
  return prepared;
}

test("a file encrypted by the CLI is retrieved over pinned TLS and decrypted; 70 capsules in batches; kms retrieve reads the SDK's policy file", { timeout: 300_000 }, async () => {
  const { net, dir, api, bob, policy, plaintext, encryptedPath, file, receivingSecretKey, header, publicClient, deployment: parsed } = await setup();
  const { NodeClient, retrieve, umbral, fromHex, openDataKeyReencrypted, decryptBytes, TrustedSenders, policyFileToJson } = api;
  assert.ok(policy.nodes.every((n) => n.url.includes("#tls-sha256=")), "the devnet serves pinned TLS");
  const nodeClient = new NodeClient();
  const capsule = header.capsule();
  const result = await retrieve({ publicClient, deployment: parsed, nodeClient, policy, receivingSecretKey, capsules: [capsule] });
  assert.equal(result.cfrags.length, 1);
  assert.ok(result.cfrags[0].length >= policy.threshold);
  const delegatingPk = umbral.PublicKey.fromCompressedBytes(fromHex(policy.delegatingKey, "delegatingKey", 33));
  const dataKey = openDataKeyReencrypted(receivingSecretKey, delegatingPk, header, result.cfrags[0]);
  assert.equal(dataKey.length, 32);
  const decrypted = await decryptBytes(dataKey, file, new TrustedSenders(policy.senders));
  assert.ok(Buffer.from(decrypted).equals(plaintext), "the SDK's plaintext differs from the file the CLI encrypted");

  // Capsules given as bytes, more than one request takes (64): two batches per node.
  const many = Array.from({ length: 70 }, () => capsule.toBytes());
  const again = await retrieve({ publicClient, deployment: parsed, nodeClient, policy, receivingSecretKey, capsules: many });
  assert.equal(again.cfrags.length, 70);
  assert.ok(again.cfrags.every((c) => c.length >= policy.threshold));
  assert.equal(nodeClient.knownCapsuleLimit(policy.nodes[0].url), 64, "the limit was asked for the large retrieval");
  capsule.free();

  // The Rust CLI reads a policy file this SDK wrote, and retrieves with it.
  const sdkPolicyPath = path.join(dir, "sdk-written-policy.json");
  await writeFile(sdkPolicyPath, policyFileToJson(policy));
  const out = path.join(dir, "rust.out");
  await runKms(["retrieve", "--policy", sdkPolicyPath, "--umbral", bob.path, encryptedPath, out, ...net.cliChainArgs]);
  assert.ok((await readFile(out)).equals(plaintext), "kms retrieve with the SDK's policy file gave other bytes");
});

test("a wrong pin is refused at once, with both fingerprints, and not retried", { timeout: 120_000 }, async () => {
  const { api, policy } = await setup();
  const { NodeClient, NodeError, withPin } = api;
  const node = policy.nodes[0];
  const wrong = withPin(node.url, new Uint8Array(32).fill(0xab));
  // A backoff far above a handshake's time on a loaded CI machine: "not retried" is then the
  // elapsed time below it, with room for a slow handshake.
  const client = new NodeClient({ backoffMs: 30_000 });
  const started = Date.now();
  const error = await client.node(wrong).then(
    () => assert.fail("a wrong pin must be refused"),
    (e) => e,
  );
  assert.ok(error instanceof NodeError, String(error));
  assert.equal(error.code, "Certificate");
  assert.match(error.message, /pinned sha256 (ab){32}, presented [0-9a-f]{64}/);
  assert.ok(Date.now() - started < 20_000, `not retried (the backoff is 30 s; it took ${Date.now() - started} ms)`);
  // The right pin passes, and the node is the policy's.
  const info = await client.node(node.url);
  assert.equal(info.staker.toLowerCase(), node.staker.toLowerCase());
  assert.ok(info.maxCapsulesPerRequest >= 1);
  // Plain http is refused unless allowed.
  await assert.rejects(client.node(node.url.replace(/^https/, "http").replace(/#.*/, "")), (e) => e instanceof NodeError && e.code === "BadUrl");
});

test("a stranger's key is refused before any request; a policy the nodes do not hold fails naming each node", { timeout: 60_000 }, async () => {
  const { api, policy, receivingSecretKey, header, publicClient, deployment: parsed } = await setup();
  const { NodeClient, retrieve, RetrieveError, umbral } = api;
  const nodeClient = new NodeClient({ attempts: 1 });
  await assert.rejects(
    retrieve({ publicClient, deployment: parsed, nodeClient, policy, receivingSecretKey: umbral.SecretKey.random(), capsules: [header.capsule()] }),
    (e) => e instanceof RetrieveError && e.code === "WrongReceivingKey",
  );
  // Another policy id: every node answers 404 (it holds no kfrag for it).
  const unknown = { ...policy, policyId: "0x00000000000000000000000000000001" };
  const error = await retrieve({ publicClient, deployment: parsed, nodeClient, policy: unknown, receivingSecretKey, capsules: [header.capsule()] }).then(
    () => assert.fail("an unknown policy must fail"),
    (e) => e,
  );
  assert.ok(error instanceof RetrieveError, String(error));
  assert.equal(error.code, "NotEnoughCFrags");
  assert.equal(error.got, 0);
  assert.equal(error.needed, policy.threshold);
  assert.equal(error.failures.length, policy.nodes.length);
  for (const failure of error.failures) assert.match(failure.reason, /HTTP 404: this node holds no kfrag/);
  assert.match(error.message, /got 0 verified cfrags of the 2 needed/);
});

test("auditAll hears every node; the faulty node's wrong cfrag is a WrongE fault that `kms report` slashes", { timeout: 120_000 }, async (t) => {
  const { net, dir, api, policy, receivingSecretKey, header, publicClient, deployment: parsed } = await setup();
  const { NodeClient, retrieve, faultToJson, parseFaultFile, stakingEscrowAbi } = api;
  const faultyNode = net.nodes.find((n) => n.faulty);
  assert.ok(faultyNode, "the devnet has no faulty node (--faulty-node)");
  assert.ok(policy.nodes.some((n) => n.staker.toLowerCase() === faultyNode.staker.toLowerCase()), "3 of 3 nodes: the faulty one is in the policy");
  const result = await retrieve({ publicClient, deployment: parsed, nodeClient: new NodeClient(), policy, receivingSecretKey, capsules: [header.capsule()], auditAll: true });
  assert.ok(result.nodes.every((n) => n.outcome.kind === "Answered"), JSON.stringify(result.nodes));
  assert.equal(result.faults.length, 1, JSON.stringify(result.failures));
  const fault = result.faults[0];
  assert.equal(fault.staker.toLowerCase(), faultyNode.staker.toLowerCase(), "the fault names the faulty node");
  assert.equal(fault.expectedVerdict, "WrongE");
  t.diagnostic(`reason: ${fault.reason}`);
  assert.ok(fault.reason.length > 0);
  assert.equal(fault.capsule.length, 2 + 2 * 98);
  assert.equal(fault.cfrag.length, 2 + 2 * 359);
  const json = faultToJson(fault);
  assert.deepEqual(parseFaultFile(json), fault);

  const faultPath = path.join(dir, "fault.json");
  await writeFile(faultPath, json);
  const stakeOf = () => publicClient.readContract({
    address: parsed.stakingEscrow, abi: stakingEscrowAbi, functionName: "stakeOf", args: [faultyNode.staker],
  });
  const before = await stakeOf();
  // Reported from Bob's dev account, not the faulty node's.
  const stdout = await runKms(["report", faultPath, "--private-key", net.accounts.bob.privateKey, ...net.cliChainArgs]);
  t.diagnostic(stdout);
  assert.match(stdout, /WrongE/, stdout);
  assert.match(stdout, /slash/i, stdout);
  const after = await stakeOf();
  assert.ok(after < before, `the faulty staker's stake did not drop (${before} → ${after})`);
});

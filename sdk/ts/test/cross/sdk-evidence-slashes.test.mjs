// SPDX-License-Identifier: GPL-3.0-or-later
// (c) The SDK catches the devnet's faulty node (--faulty-node: its cfrags are wrong, signed by its
// worker all the same) while retrieving with auditAll, writes the fault file (faultToJson), and
// the Rust CLI's `kms report FILE` has the Adjudicator slash it: the staker's stake drops, and the
// same evidence is refused a second time.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { devnet, workDir, clients, deployment, sdk, runKms, newUmbralKeys, cliGrant } from "./fixture.mjs";

test("evidence the SDK makes from a wrong cfrag is accepted by kms report and slashes the node", { timeout: 300_000 }, async () => {
  const net = await devnet();
  const faulty = net.nodes.find((n) => n.faulty);
  assert.ok(faulty, "the devnet has no faulty node (--faulty-node)");
  const dir = await workDir();
  const [alice, bob] = await Promise.all(["alice", "bob"].map((w) => newUmbralKeys(path.join(dir, w))));
  // 3 of 3 nodes: the faulty one is in the policy.
  const policyPath = await cliGrant(net, {
    alice: alice.path, label: "cross/evidence", bobKey: bob.receivingKey, threshold: 2, shares: 3, out: path.join(dir, "policy.json"),
  });

  const {
    parsePolicyFile, MasterSecret, retrieve, NodeClient, faultToJson, parseFaultFile, umbral, fromHex, stakingEscrowAbi,
  } = await sdk();

  const policy = parsePolicyFile(await readFile(policyPath, "utf8"), policyPath);
  const receivingSecretKey = MasterSecret.parse(await readFile(bob.path, "utf8"), bob.path).receivingKey();
  const delegatingPk = umbral.PublicKey.fromCompressedBytes(fromHex(policy.delegatingKey, "delegating key", 33));
  const [capsule] = umbral.encrypt(delegatingPk, new Uint8Array([1, 2, 3]));
  const { publicClient } = clients(net);
  const parsed = await deployment(net);
  const retrieval = await retrieve({
    publicClient, deployment: parsed, nodeClient: new NodeClient(), policy, receivingSecretKey,
    capsules: [capsule], auditAll: true,
  });
  assert.equal(retrieval.cfrags[0].length, 2, "the two honest nodes' cfrags verify");
  assert.equal(retrieval.faults.length, 1, `faults: ${JSON.stringify(retrieval.failures)}`);
  const [fault] = retrieval.faults;
  assert.equal(fault.staker.toLowerCase(), faulty.staker.toLowerCase());

  const faultFile = path.join(dir, "fault.json");
  const json = faultToJson(fault);
  await writeFile(faultFile, json);
  assert.deepEqual(parseFaultFile(json, faultFile), fault, "the fault file reads back");

  const stakeOf = () => publicClient.readContract({
    address: parsed.stakingEscrow, abi: stakingEscrowAbi, functionName: "stakeOf", args: [faulty.staker],
  });
  const before = await stakeOf();
  const reported = await runKms(["report", faultFile, "--private-key", net.accounts.bob.privateKey, ...net.cliChainArgs]);
  const after = await stakeOf();
  assert.ok(after < before, `the faulty staker's stake did not drop (${before} → ${after}); kms report said:\n${reported}`);
  assert.match(reported, /WrongE/, "the verdict is WrongE");
  await assert.rejects(
    runKms(["report", faultFile, "--private-key", net.accounts.bob.privateKey, ...net.cliChainArgs]),
    /already|evaluated/i,
    "the same evidence a second time",
  );
});

// SPDX-License-Identifier: GPL-3.0-or-later
// (e) Alice's life cycle from the SDK, checked with the Rust CLI on the devnet: a TS grant that
// `kms encrypt`/`kms retrieve` use; a TS revocation the nodes follow (Bob refused) and that
// cannot be repeated; a signed revocation order sent from TS (the nodes refuse at once, with no
// block), fetched back from them and settled on chain by Bob's account, the refund to Alice; one
// node's arrangement revoked from TS with Bob still served by the other two, and the refund.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { devnet, workDir, clients, deployment, sdk, runKms } from "./fixture.mjs";

const PLAINTEXT = "the plaintext Bob must read\n";

test("TS grant → Rust retrieve; TS revoke → refused; a TS signed order → refused, settled by Bob; revokeNode; refund", { timeout: 300_000 }, async () => {
  const net = await devnet();
  const dir = await workDir();
  const {
    MasterSecret, publicKeyBytes, planGrant, executeGrant, NodeClient, policyFileToJson, ChainError,
    revoke, revokeNode, refund, signOrder, sendOrder, fetchOrders, settleOrder, retrieve: sdkRetrieve, readHeader,
  } = await sdk();
  const parsed = await deployment(net);
  const { publicClient, walletClient: wallet } = clients(net, net.accounts.alice.privateKey);
  const { walletClient: bobWallet } = clients(net, net.accounts.bob.privateKey);
  const aliceAccount = wallet.account;
  const chain = { publicClient, walletClient: wallet, deployment: parsed };
  const nodeClient = new NodeClient();

  const alice = MasterSecret.random();
  const bob = MasterSecret.random();
  await writeFile(path.join(dir, "alice.json"), alice.toJson(), { mode: 0o600 });
  await writeFile(path.join(dir, "bob.json"), bob.toJson(), { mode: 0o600 });
  await writeFile(path.join(dir, "plain.txt"), PLAINTEXT);
  const now = (await publicClient.getBlock()).timestamp;

  const grant = async (label) => {
    const plan = await planGrant({
      publicClient,
      deployment: parsed,
      nodeClient,
      label,
      delegatingKey: publicKeyBytes(alice.delegatingKey(label)),
      verifyingKey: publicKeyBytes(alice.signingKey()),
      receivingKey: publicKeyBytes(bob.receivingKey()),
      senders: [publicKeyBytes(alice.senderKey())],
      threshold: 2,
      shares: 3,
      endTimestamp: now + 10n * parsed.secondsPerPeriod,
      feeRate: 1_000_000_000n,
      seed: 42n,
      owner: aliceAccount.address,
      creator: aliceAccount.address,
    });
    assert.equal(plan.totalFee, 1_000_000_000n * 3n * plan.periods);
    const outcome = await executeGrant(plan, alice.delegatingKey(label), alice.signingKey(), wallet);
    assert.ok(outcome.usable, JSON.stringify(outcome.uploads.map((u) => u.outcome)));
    assert.equal(outcome.uploaded, 3);
    const policyPath = path.join(dir, `${label}.policy.json`);
    await writeFile(policyPath, policyFileToJson(outcome.policy));
    return { policy: outcome.policy, path: policyPath };
  };
  // Alice's sender key encrypts with `kms encrypt`; Bob retrieves with `kms retrieve`.
  const kmsRetrieve = async (policyPath, tag) => {
    const encrypted = path.join(dir, `${tag}.kms`);
    await runKms(["encrypt", "--policy-key", policyPath, "--umbral", path.join(dir, "alice.json"), path.join(dir, "plain.txt"), encrypted]);
    const out = path.join(dir, `${tag}.out`);
    try {
      await runKms(["retrieve", "--policy", policyPath, "--umbral", path.join(dir, "bob.json"), encrypted, out, ...net.cliChainArgs]);
      return { ok: true, out: "", text: await readFile(out, "utf8") };
    } catch (error) {
      return { ok: false, out: error.message, text: "" };
    }
  };

  // 1. A TS-made policy file: Rust encrypts to it and Bob retrieves with the Rust CLI.
  const first = await grant("sdk-first");
  const got = await kmsRetrieve(first.path, "first");
  assert.ok(got.ok, got.out);
  assert.equal(got.text, PLAINTEXT);

  // 2. The owner revokes from TS: the refund is read from the event, and the nodes refuse Bob
  //    once they have read the block.
  const revoked = await revoke(chain, first.policy);
  assert.ok(revoked.amount > 0n);
  let refused = false;
  for (let i = 0; i < 30 && !refused; i++) {
    const attempt = await kmsRetrieve(first.path, `first-after-${i}`);
    refused = !attempt.ok;
    if (refused) assert.match(attempt.out, /revoked|410/i, attempt.out);
    else await new Promise((r) => setTimeout(r, 1000));
  }
  assert.ok(refused, "Rust retrieve still succeeds 30 s after the revocation");
  // A second revocation reverts with the contract's error, decoded.
  await assert.rejects(revoke(chain, first.policy), (e) => e instanceof ChainError && e.errorName === "PolicyManager_AlreadyRevoked");

  // 3. A signed order sent from TS: the nodes refuse at once, with no block; Bob's account then
  //    fetches it from the nodes and settles it, the refund going to Alice.
  const second = await grant("sdk-second");
  const secondGot = await kmsRetrieve(second.path, "second");
  assert.ok(secondGot.ok, secondGot.out);
  const order = await signOrder(second.policy, aliceAccount, undefined, now + 100_000n);
  const deliveries = await sendOrder(nodeClient, second.policy, order);
  assert.ok(deliveries.every((d) => d.outcome.ok), JSON.stringify(deliveries.map((d) => d.outcome)));
  const afterOrder = await kmsRetrieve(second.path, "second-after");
  assert.ok(!afterOrder.ok && /by a signed order/.test(afterOrder.out), afterOrder.out);
  const fetched = await fetchOrders(nodeClient, second.policy);
  assert.equal(fetched.length, 1);
  assert.equal(fetched[0].signature.toLowerCase(), order.signature.toLowerCase());
  const before = await publicClient.getBalance({ address: aliceAccount.address });
  const bobChain = { publicClient, walletClient: bobWallet, deployment: parsed };
  const settled = await settleOrder(bobChain, second.policy, fetched[0]);
  assert.ok(settled.amount > 0n);
  assert.equal(await publicClient.getBalance({ address: aliceAccount.address }), before + settled.amount);
  await assert.rejects(settleOrder(bobChain, second.policy, fetched[0]), (e) => e instanceof ChainError && e.errorName === "PolicyManager_AlreadyRevoked");

  // 4. One node's arrangement revoked from TS: Bob still retrieves from the other two (2 of 3);
  //    the refund is read from RefundPaid, and a second one, with nothing owed, comes back as the
  //    contract's error, decoded. The devnet has 3 nodes, one of them faulty (its cfrags never
  //    verify): revoking an honest one would leave Bob a single good cfrag, so the arrangement
  //    revoked is the faulty node's, and the two left are the honest ones.
  const third = await grant("sdk-third");
  const faulty = net.nodes.find((n) => n.faulty);
  assert.ok(faulty, "the devnet has no faulty node (--faulty-node)");
  const node = third.policy.nodes.find((n) => n.staker.toLowerCase() === faulty.staker.toLowerCase())?.staker;
  assert.ok(node, "3 of 3 nodes: the faulty one is in the policy");
  const one = await revokeNode(chain, third.policy, node);
  assert.ok(one.amount > 0n && one.amount < 1_000_000_000n * 3n * 10n);
  const stillOk = await kmsRetrieve(third.path, "third");
  assert.ok(stillOk.ok, stillOk.out);
  assert.equal(stillOk.text, PLAINTEXT);
  // And the revoked node refuses Bob once it has read the block, the two others still answering.
  const capsule = readHeader(new Uint8Array(await readFile(path.join(dir, "third.kms")))).capsule();
  let nodeRefused;
  for (let i = 0; i < 30 && !nodeRefused; i++) {
    const audit = await sdkRetrieve({
      publicClient, deployment: parsed, nodeClient, policy: third.policy, receivingSecretKey: bob.receivingKey(),
      capsules: [capsule], auditAll: true,
    });
    const report = audit.nodes.find((n) => n.staker.toLowerCase() === node.toLowerCase());
    if (report.outcome.kind === "Failed") nodeRefused = report.outcome.reason;
    else await new Promise((r) => setTimeout(r, 1000));
    assert.ok(audit.cfrags[0].length >= 2, "the two honest nodes still answer");
  }
  assert.ok(nodeRefused, "the revoked node still answers 30 s after revokeNode");
  assert.match(nodeRefused, /revoked|410/i, nodeRefused);
  const refunded = await refund(chain, third.policy);
  assert.ok(refunded.amount >= 0n && refunded.block > 0n);
  await assert.rejects(refund(chain, third.policy), (e) => e instanceof ChainError && e.errorName === "PolicyManager_NothingToPay");
});

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { createPublicClient, createWalletClient, http, type Address, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { foundry } from "viem/chains";
import { umbral } from "../src/umbral.js";
import { fromBase64, fromHex, toHex } from "../src/bytes.js";
import { MasterSecret, publicKeyBytes } from "../src/keys.js";
import { loadDeployment } from "../src/deployments.js";
import { NodeClient } from "../src/http.js";
import { policyFileToJson } from "../src/policy-file.js";
import { executeGrant, kfragUploadMessage, planGrant, policyPeriods, sealKfrag, GrantError, ChainError } from "../src/grant.js";
import { fetchOrders, refund, revoke, revokeNode, sendOrder, settleOrder, signOrder } from "../src/revocation.js";

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

// ---- On a devnet (`kms devnet --nodes 3+`): set KMS_SDK_DEVNET_RPC, KMS_SDK_DEVNET_DEPLOYMENTS,
// KMS_SDK_DEVNET_ALICE_KEY (the `alice` key it prints), KMS_SDK_DEVNET_BOB_KEY and KMS_BIN (the
// `kms` binary). Skipped otherwise.
const RPC = process.env.KMS_SDK_DEVNET_RPC;
const DEPLOYMENTS = process.env.KMS_SDK_DEVNET_DEPLOYMENTS;
const ALICE_KEY = process.env.KMS_SDK_DEVNET_ALICE_KEY as Hex | undefined;
const BOB_KEY = process.env.KMS_SDK_DEVNET_BOB_KEY as Hex | undefined;
const KMS = process.env.KMS_BIN;
const devnet = RPC && DEPLOYMENTS && ALICE_KEY && BOB_KEY && KMS ? {} : { skip: "no devnet (KMS_SDK_DEVNET_* and KMS_BIN unset)" };
const run = promisify(execFile);

async function kms(args: string[]): Promise<{ ok: boolean; out: string }> {
  try {
    const { stdout, stderr } = await run(KMS!, args, { env: { ...process.env, ETH_RPC_URL: RPC, KMS_DEPLOYMENTS: DEPLOYMENTS } });
    return { ok: true, out: stdout + stderr };
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string };
    return { ok: false, out: `${e.stdout ?? ""}${e.stderr ?? ""}` };
  }
}

test("devnet: TS grant → Rust retrieve; TS revoke → refused; a TS signed order → refused, settled by Bob", devnet, async () => {
  const deployment = await loadDeployment(DEPLOYMENTS!);
  const publicClient = createPublicClient({ chain: foundry, transport: http(RPC) });
  const aliceAccount = privateKeyToAccount(ALICE_KEY!);
  const wallet = createWalletClient({ account: aliceAccount, chain: foundry, transport: http(RPC) });
  const bobWallet = createWalletClient({ account: privateKeyToAccount(BOB_KEY!), chain: foundry, transport: http(RPC) });
  const nodeClient = new NodeClient();
  const dir = await mkdtemp(join(tmpdir(), "kms-sdk-grant-"));
  try {
    const alice = MasterSecret.random();
    const bob = MasterSecret.random();
    await writeFile(join(dir, "alice.json"), alice.toJson(), { mode: 0o600 });
    await writeFile(join(dir, "bob.json"), bob.toJson(), { mode: 0o600 });
    await writeFile(join(dir, "plain.txt"), "the plaintext Bob must read\n");
    const now = (await publicClient.getBlock()).timestamp;

    const grant = async (label: string) => {
      const plan = await planGrant({
        publicClient,
        deployment,
        nodeClient,
        label,
        delegatingKey: publicKeyBytes(alice.delegatingKey(label)),
        verifyingKey: publicKeyBytes(alice.signingKey()),
        receivingKey: publicKeyBytes(bob.receivingKey()),
        senders: [publicKeyBytes(alice.senderKey())],
        threshold: 2,
        shares: 3,
        endTimestamp: now + 10n * deployment.secondsPerPeriod,
        feeRate: 1_000_000_000n,
        seed: 42n,
        owner: aliceAccount.address,
        creator: aliceAccount.address,
      });
      assert.equal(plan.totalFee, 1_000_000_000n * 3n * plan.periods);
      const outcome = await executeGrant(plan, alice.delegatingKey(label), alice.signingKey(), wallet);
      assert.ok(outcome.usable, JSON.stringify(outcome.uploads.map((u) => u.outcome)));
      assert.equal(outcome.uploaded, 3);
      const path = join(dir, `${label}.policy.json`);
      await writeFile(path, policyFileToJson(outcome.policy));
      return { policy: outcome.policy, path };
    };
    const retrieve = async (policyPath: string, tag: string) => {
      const encrypted = join(dir, `${tag}.kms`);
      const enc = await kms(["encrypt", "--policy-key", policyPath, "--umbral", join(dir, "alice.json"), join(dir, "plain.txt"), encrypted]);
      assert.ok(enc.ok, enc.out);
      const out = join(dir, `${tag}.out`);
      const result = await kms(["retrieve", "--policy", policyPath, "--umbral", join(dir, "bob.json"), encrypted, out]);
      return { ...result, text: result.ok ? await readFile(out, "utf8") : "" };
    };

    // 1. A TS-made policy file: Rust encrypts to it and Bob retrieves with the Rust CLI.
    const first = await grant("sdk-first");
    const got = await retrieve(first.path, "first");
    assert.ok(got.ok, got.out);
    assert.equal(got.text, "the plaintext Bob must read\n");

    // 2. The owner revokes from TS: the refund is read from the event, and the nodes refuse Bob
    //    once they have read the block.
    const revoked = await revoke({ publicClient, walletClient: wallet, deployment }, first.policy);
    assert.ok(revoked.amount > 0n);
    let refused = false;
    for (let i = 0; i < 30 && !refused; i++) {
      const attempt = await retrieve(first.path, `first-after-${i}`);
      refused = !attempt.ok;
      if (refused) assert.match(attempt.out, /revoked|410/i, attempt.out);
      if (process.env.KMS_SDK_DEBUG) console.log(attempt.out);
      if (!refused) await new Promise((r) => setTimeout(r, 1000));
    }
    assert.ok(refused, "Rust retrieve still succeeds 30 s after the revocation");
    // A second revocation reverts with the contract's error, decoded.
    await assert.rejects(revoke({ publicClient, walletClient: wallet, deployment }, first.policy), (e: unknown) => e instanceof ChainError && e.errorName === "PolicyManager_AlreadyRevoked");

    // 3. A signed order sent from TS: the nodes refuse at once, with no block; Bob's account then
    //    fetches it from the nodes and settles it, the refund going to Alice.
    const second = await grant("sdk-second");
    assert.ok((await retrieve(second.path, "second")).ok);
    const order = await signOrder(second.policy, aliceAccount, undefined, now + 100_000n);
    const deliveries = await sendOrder(nodeClient, second.policy, order);
    assert.ok(deliveries.every((d) => d.outcome.ok), JSON.stringify(deliveries.map((d) => d.outcome)));
    const after = await retrieve(second.path, "second-after");
    if (process.env.KMS_SDK_DEBUG) console.log(after.out, got.out);
    assert.ok(!after.ok && /by a signed order/.test(after.out), after.out);
    const fetched = await fetchOrders(nodeClient, second.policy);
    assert.equal(fetched.length, 1);
    assert.equal(fetched[0]!.signature.toLowerCase(), order.signature.toLowerCase());
    const before = await publicClient.getBalance({ address: aliceAccount.address });
    const settled = await settleOrder({ publicClient, walletClient: bobWallet, deployment }, second.policy, fetched[0]!);
    assert.ok(settled.amount > 0n);
    assert.equal(await publicClient.getBalance({ address: aliceAccount.address }), before + settled.amount);
    await assert.rejects(settleOrder({ publicClient, walletClient: bobWallet, deployment }, second.policy, fetched[0]!), (e: unknown) => e instanceof ChainError && e.errorName === "PolicyManager_AlreadyRevoked");

    // 4. One node's arrangement revoked from TS: Bob still retrieves from the other two (2 of 3);
    //    the refund is read from RefundPaid, and a second one, with nothing owed, comes back as the
    //    contract's error, decoded.
    const third = await grant("sdk-third");
    const node = third.policy.nodes[0]!.staker;
    const one = await revokeNode({ publicClient, walletClient: wallet, deployment }, third.policy, node);
    assert.ok(one.amount > 0n && one.amount < 1_000_000_000n * 3n * 10n);
    const stillOk = await retrieve(third.path, "third");
    assert.ok(stillOk.ok, stillOk.out);
    const refunded = await refund({ publicClient, walletClient: wallet, deployment }, third.policy);
    if (process.env.KMS_SDK_DEBUG) console.log("refund", refunded);
    assert.ok(refunded.amount >= 0n && refunded.block > 0n);
    await assert.rejects(
      refund({ publicClient, walletClient: wallet, deployment }, third.policy),
      (e: unknown) => e instanceof ChainError && e.errorName === "PolicyManager_NothingToPay",
    );
  } finally {
    await rm(dir, { recursive: true });
  }
});

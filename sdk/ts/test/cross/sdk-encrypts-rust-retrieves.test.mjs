// SPDX-License-Identifier: GPL-3.0-or-later
// (a) The SDK grants (planGrant, executeGrant: sampling, kfrags, createPolicy from Alice's dev
// account through viem, uploads over pinned TLS) and encrypts (encryptStream, signed by an
// authorized sender); the Rust CLI's `kms retrieve` reads the SDK's policy file and decrypts the
// file with Bob's key file from `kms keys new`: the bytes must be the plaintext's.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { createWriteStream } from "node:fs";
import { Writable } from "node:stream";
import path from "node:path";
import { devnet, workDir, clients, deployment, sdk, runKms, newUmbralKeys } from "./fixture.mjs";

test("a file the SDK encrypted to a policy the SDK granted is retrieved and decrypted by the Rust CLI", { timeout: 300_000 }, async () => {
  const net = await devnet();
  const dir = await workDir();
  const bob = await newUmbralKeys(path.join(dir, "bob"));

  const {
    MasterSecret, publicKeyBytes, SenderKey, planGrant, executeGrant, NodeClient, policyFileToJson, encryptStream, streamOfBytes, umbral, fromHex,
  } = await sdk();

  const { publicClient, walletClient } = clients(net, net.accounts.alice.privateKey);
  const parsed = await deployment(net);
  const alice = MasterSecret.random();
  const label = "cross/sdk-to-rust";
  const enrico = SenderKey.fromSecretKey(MasterSecret.random().senderKey());
  const latest = await publicClient.getBlock({ blockTag: "latest" });
  const plan = await planGrant({
    publicClient,
    deployment: parsed,
    nodeClient: new NodeClient(),
    label,
    delegatingKey: publicKeyBytes(alice.delegatingKey(label)),
    verifyingKey: publicKeyBytes(alice.signingKey()),
    receivingKey: bob.receivingKey,
    senders: [enrico.publicKey()],
    threshold: 2,
    shares: 3,
    endTimestamp: latest.timestamp + 10n * parsed.secondsPerPeriod,
    feeRate: 1_000_000_000n,
    owner: walletClient.account.address,
    creator: walletClient.account.address,
  });
  const outcome = await executeGrant(plan, alice.delegatingKey(label), alice.signingKey(), walletClient);
  assert.equal(outcome.uploaded, 3, `uploads: ${JSON.stringify(outcome.uploads)}`);
  const policyPath = path.join(dir, "policy.json");
  await writeFile(policyPath, policyFileToJson(outcome.policy));

  const plaintext = randomBytes(2 * 1024 * 1024 + 777);
  const encrypted = path.join(dir, "sdk.kms");
  const policyKey = umbral.PublicKey.fromCompressedBytes(fromHex(outcome.policy.delegatingKey, "delegating key", 33));
  // Pieces of an odd size, so that chunk boundaries fall inside them.
  await streamOfBytes(plaintext, 100_003).pipeThrough(encryptStream(policyKey, enrico)).pipeTo(Writable.toWeb(createWriteStream(encrypted)));

  const out = path.join(dir, "rust.out");
  await runKms(["retrieve", "--policy", policyPath, "--umbral", bob.path, encrypted, out, ...net.cliChainArgs]);
  const decrypted = await readFile(out);
  assert.equal(decrypted.length, plaintext.length);
  assert.ok(decrypted.equals(plaintext), "the CLI's plaintext differs from what the SDK encrypted");
});

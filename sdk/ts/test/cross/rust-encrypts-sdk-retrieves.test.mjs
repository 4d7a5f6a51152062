// SPDX-License-Identifier: GPL-3.0-or-later
// (b) The Rust CLI grants (`kms policy grant`) and encrypts (`kms encrypt`); the SDK reads the
// CLI's policy file and Bob's key file, retrieves the cfrags from the nodes (pinned TLS, through
// undici) and decrypts the stream: the bytes must be the plaintext's.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { devnet, workDir, clients, deployment, sdk, runKms, newUmbralKeys, cliGrant, fileStream } from "./fixture.mjs";

test("a file the Rust CLI encrypted and granted is retrieved and decrypted by the SDK", { timeout: 300_000 }, async () => {
  const net = await devnet();
  const dir = await workDir();
  const [alice, bob, enrico] = await Promise.all(["alice", "bob", "enrico"].map((w) => newUmbralKeys(path.join(dir, w))));
  const policyPath = await cliGrant(net, {
    alice: alice.path, label: "cross/rust-to-sdk", bobKey: bob.receivingKey, senders: [enrico.senderKey],
    threshold: 2, shares: 3, out: path.join(dir, "policy.json"),
  });
  // Several segments and a partial last chunk.
  const plaintext = randomBytes(3 * 1024 * 1024 + 1234);
  await writeFile(path.join(dir, "plain"), plaintext);
  await runKms(["encrypt", "--policy-key", policyPath, "--umbral", enrico.path, path.join(dir, "plain"), path.join(dir, "plain.kms")]);

  const {
    parsePolicyFile, MasterSecret, readHeaderFromStream, openDataKeyReencrypted, decryptStream, collectStream, TrustedSenders, retrieve, NodeClient, umbral, fromHex,
  } = await sdk();

  const policy = parsePolicyFile(await readFile(policyPath, "utf8"), policyPath);
  const bobSecret = MasterSecret.parse(await readFile(bob.path, "utf8"), bob.path);
  const receivingSecretKey = bobSecret.receivingKey();
  const { header, payload } = await readHeaderFromStream(fileStream(path.join(dir, "plain.kms")));
  const { publicClient } = clients(net);
  const retrieval = await retrieve({
    publicClient,
    deployment: await deployment(net),
    nodeClient: new NodeClient(),
    policy,
    receivingSecretKey,
    capsules: [header.capsule()],
  });
  assert.ok(retrieval.cfrags[0].length >= policy.threshold, `${retrieval.cfrags[0].length} cfrags, threshold ${policy.threshold}`);
  const delegatingPk = umbral.PublicKey.fromCompressedBytes(fromHex(policy.delegatingKey, "delegating key", 33));
  const dataKey = openDataKeyReencrypted(receivingSecretKey, delegatingPk, header, retrieval.cfrags[0]);
  const decrypted = await collectStream(payload.pipeThrough(decryptStream(dataKey, header, new TrustedSenders(policy.senders))));
  assert.equal(decrypted.length, plaintext.length);
  assert.ok(Buffer.from(decrypted).equals(plaintext), "the SDK's plaintext differs from the file the CLI encrypted");

  // A sender the policy does not authorize is refused before any byte is released.
  const { header: again } = await readHeaderFromStream(fileStream(path.join(dir, "plain.kms")));
  assert.throws(() => decryptStream(dataKey, again, new TrustedSenders([])), (e) => e.code === "UntrustedSender");
});

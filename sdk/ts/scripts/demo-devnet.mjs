#!/usr/bin/env node
// SPDX-License-Identifier: GPL-3.0-or-later
// The demo page against a devnet of its own, in one command (`./script/demo-web` from the
// repository root, or `npm run demo:devnet` here):
//   1. `kms devnet --plain-http --nodes 3` (browsers cannot accept the nodes' pinned self-signed
//      certificates: docs/node.md#tls), on anvil port 8545 unless --chain-port says otherwise;
//   2. with the CLI: Alice, Bob and Enrico make keys, Alice grants Bob a 2-of-3 policy that
//      authorizes Enrico, Enrico encrypts the file given (--file PATH, e.g. a fragmented MP4 or a
//      WebM) or 8 MiB of random bytes;
//   3. the demo server (scripts/serve.mjs) on --port (8080) serves the page, the policy file, Bob's
//      key file and the encrypted file under /files/, and prints the URL that opens them.
// Bob's key file is served only because this is a devnet: a real Bob opens his from his own disk.
// Ctrl-C stops the server, the devnet and its anvil.
//
//   node scripts/demo-devnet.mjs [--file PATH] [--mime 'video/mp4; codecs="avc1.42E01E"'] [--port 8080] [--chain-port 8545]
import { randomBytes } from "node:crypto";
import { copyFile, mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { cliGrant, makeTempDir, newUmbralKeys, removeTempDir, runKms, startDevnet } from "./devnet.mjs";
import { startServer } from "./serve.mjs";
import { flagValue } from "./args.mjs";

const args = process.argv.slice(2);
const value = (flag) => flagValue(args, flag);
const port = Number(value("--port") ?? 8080);
const chainPort = Number(value("--chain-port") ?? 8545);
const given = value("--file");
const mime = value("--mime");

// Removed at exit whatever happens (Bob's key file is in it).
const work = await makeTempDir("kms-demo-web-");
let devnet;
let server;
const stop = async () => {
  await server?.close();
  await devnet?.stop();
  await removeTempDir(work);
};
try {
  console.log(`kms devnet --plain-http --nodes 3 (anvil on port ${chainPort}) ...`);
  devnet = await startDevnet({ nodes: 3, plainHttp: true, port: chainPort, deploymentsFile: "deployments/demo-web.json" });
  const files = path.join(work, "files");
  await mkdir(files);
  const [alice, bob, enrico] = await Promise.all(["alice", "bob", "enrico"].map((who) => newUmbralKeys(path.join(work, who))));
  const policy = await cliGrant(devnet, {
    alice: alice.path, label: "demo/web", bobKey: bob.receivingKey, senders: [enrico.senderKey], out: path.join(files, "policy.json"),
  });
  let plain = given ? path.resolve(given) : path.join(work, "random.bin");
  if (!given) await writeFile(plain, randomBytes(8 << 20));
  const encryptedName = `${path.basename(plain)}.kms`;
  await runKms(["encrypt", "--policy-key", policy, "--umbral", enrico.path, plain, path.join(files, encryptedName)]);
  await copyFile(bob.path, path.join(files, "bob-umbral.json"));
  server = await startServer({ port, rpc: devnet.rpc, deployments: devnet.deploymentsPath, files });
  const query = new URLSearchParams({ policy: "/files/policy.json", key: "/files/bob-umbral.json", file: `/files/${encryptedName}` });
  if (mime) query.set("mime", mime);
  console.log(`
The demo page: ${server.url}?${query}
  Bob retrieves from the devnet's 3 nodes and decrypts ${given ? given : "8 MiB of random bytes"} as it streams.
  Alice can grant from the page: her dev key ${devnet.accounts.alice.privateKey}, Bob's key ${bob.receivingKey}.
  The chain: ${devnet.rpc}; the deployments: ${devnet.deploymentsPath}.
Ctrl-C stops everything.`);
  await new Promise((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
} catch (error) {
  console.error(`demo: ${error.message ?? error}`);
  process.exitCode = 1;
} finally {
  await stop();
}

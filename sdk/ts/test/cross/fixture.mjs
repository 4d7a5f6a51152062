// SPDX-License-Identifier: GPL-3.0-or-later
// What the cross-language tests share: the devnet (the one test/cross/run.mjs started, described
// in $KMS_CROSS_DEVNET; or, when a file runs alone, one of its own, stopped after it), viem
// clients on it, the SDK (compiled to build/src by `tsc -p tsconfig.test.json`) and the CLI.
import { after } from "node:test";
import { createReadStream } from "node:fs";
import { Readable } from "node:stream";
import path from "node:path";
import { createPublicClient, createWalletClient, http } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { startDevnet, runKms, newUmbralKeys, cliGrant, sdkRoot, makeTempDir, removeTempDir } from "../../scripts/devnet.mjs";

export { runKms, newUmbralKeys, cliGrant };

/** The compiled SDK's public API (build/src/index.js: what `import … from "@kms/sdk"` gives). */
export function sdk() {
  return import(path.join(sdkRoot, "build", "src", "index.js"));
}

// What to undo after the file's tests, newest first. One hook registered when the file imports
// this module (at its top level: the file's root); an `after` called from inside a test would
// attach to that test and run when it ends, under the file's later tests.
const cleanups = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

let shared;
/** The devnet (started once per process when $KMS_CROSS_DEVNET is not set). */
export async function devnet() {
  if (process.env.KMS_CROSS_DEVNET) return JSON.parse(process.env.KMS_CROSS_DEVNET);
  shared ??= startDevnet({ nodes: 3, faulty: true, plainHttp: false }).then((d) => {
    cleanups.push(() => d.stop());
    return d;
  });
  return shared;
}

/** A temporary directory, removed after the file's tests (or at exit, on a signal too). */
export async function workDir() {
  const dir = await makeTempDir("kms-sdk-cross-");
  cleanups.push(() => removeTempDir(dir));
  return dir;
}

/** viem clients on the devnet; the wallet signs as `privateKey`. */
export function clients(net, privateKey) {
  const chain = {
    id: net.chainId,
    name: "kms devnet",
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [net.rpc] } },
  };
  const publicClient = createPublicClient({ chain, transport: http(net.rpc) });
  const walletClient = privateKey
    ? createWalletClient({ account: privateKeyToAccount(privateKey), chain, transport: http(net.rpc) })
    : undefined;
  return { chain, publicClient, walletClient };
}

/** The devnet's deployments file, read by the SDK (loadDeployment of a path). */
export async function deployment(net) {
  const { loadDeployment } = await sdk();
  return loadDeployment(net.deploymentsPath);
}

/** A file as a web ReadableStream of Uint8Array. */
export function fileStream(file) {
  return Readable.toWeb(createReadStream(file));
}

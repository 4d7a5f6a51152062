#!/usr/bin/env node
// SPDX-License-Identifier: GPL-3.0-or-later
// The cross-language tests, self-starting: compiles the SDK (tsc -p tsconfig.test.json, into
// build/), starts a `kms devnet --nodes 3 --faulty-node` (TLS with pinned certificates: the
// Node.js path of the SDK), runs test/cross/*.test.mjs one file at a time against it (they share
// the chain's accounts), then stops the devnet and its anvil whatever happened.
//
//   node sdk/ts/test/cross/run.mjs [--echo] [--built]
import { spawn } from "node:child_process";
import { readdir, access } from "node:fs/promises";
import path from "node:path";
import { startDevnet, sdkRoot } from "../../scripts/devnet.mjs";

const here = path.join(sdkRoot, "test", "cross");
// The test runner must not outlive this process (a SIGTERM to it alone, from a CI timeout): its
// tests would go on against the stopped devnet, spawning kms after kms.
const children = new Set();
process.on("exit", () => {
  for (const child of children) child.kill("SIGTERM");
});
const run = (command, args, env = process.env) => new Promise((resolve) => {
  const child = spawn(command, args, { cwd: sdkRoot, stdio: "inherit", env });
  children.add(child);
  child.once("exit", (code, signal) => {
    children.delete(child);
    resolve(code ?? (signal ? 1 : 0));
  });
  child.once("error", (error) => {
    children.delete(child);
    console.error(`cross tests: ${command}: ${error.message}`);
    resolve(1);
  });
});

// Type errors in modules under construction must not stop the tests: tsc emits anyway, and the
// tests fail if what they import is missing. `--built`: build/ is fresh already (script/test runs
// `npm test` just before, which compiles it).
if (!process.argv.includes("--built")) {
  await run(process.execPath, [path.join(sdkRoot, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.test.json"]);
}
try {
  await access(path.join(sdkRoot, "build", "src", "index.js"));
} catch {
  console.error("cross tests: tsc emitted nothing (build/src/index.js missing)");
  process.exit(1);
}

let devnet;
let code = 1;
try {
  devnet = await startDevnet({ nodes: 3, faulty: true, plainHttp: false, echo: process.argv.includes("--echo") });
  const described = {
    rpc: devnet.rpc, chainId: devnet.chainId, deploymentsFile: devnet.deploymentsFile,
    deploymentsPath: devnet.deploymentsPath, nodes: devnet.nodes, accounts: devnet.accounts,
    cliChainArgs: devnet.cliChainArgs,
  };
  const files = (await readdir(here)).filter((f) => f.endsWith(".test.mjs")).sort().map((f) => path.join(here, f));
  code = await run(process.execPath, ["--test", "--test-concurrency=1", "--test-reporter=spec", ...files],
    { ...process.env, KMS_CROSS_DEVNET: JSON.stringify(described) });
} catch (error) {
  console.error(`cross tests: ${error.stack ?? error}`);
} finally {
  await devnet?.stop();
}
process.exit(code);

#!/usr/bin/env node
// SPDX-License-Identifier: GPL-3.0-or-later
// A measurement, not a test: the SDK's decryptStream throughput in headless Chromium on a file
// held in memory, against the Rust client (`kms retrieve`, the binary as built) on the same file.
//
//   node scripts/bench-browser.mjs [--mib 64] [--runs 3]
//
// Starts a `kms devnet --plain-http --nodes 3`; Alice grants Bob a 2-of-3 policy and Enrico
// encrypts MIB MiB of random data with the CLI. Then:
// - Rust: `kms retrieve` of the file, RUNS times (wall clock of the whole command: the
//   retrieval from the nodes, a few ms, then reading, decrypting and writing the file on disk);
// - Chromium: scripts/bench-page.js fetches the file into memory, retrieves the cfrags (not
//   timed), then times decryptStream over the in-memory payload (1 MiB pieces), RUNS times, and
//   encryptStream over as many random bytes; the decrypted SHA-256 is checked.
// Prints a JSON report with the machine (CPU, cores, Chromium, Node) and the best run of each.
// A debug build of kms (target/debug) is far slower than a release build: the report says which.
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, copyFile, rm, open } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { startDevnet, runKms, newUmbralKeys, cliGrant, kmsBin, sdkRoot, makeTempDir, removeTempDir } from "./devnet.mjs";
import { startServer } from "./serve.mjs";
import { bundle, defaultOutdir } from "./bundle.mjs";
import { withPage } from "./chromium.mjs";
import { flagValue } from "./args.mjs";

const args = process.argv.slice(2);
const option = (flag, fallback) => {
  const text = flagValue(args, flag);
  return text === undefined ? fallback : Number(text);
};
const MIB = option("--mib", 64);
const RUNS = option("--runs", 3);
if (!(Number.isInteger(MIB) && MIB > 0 && Number.isInteger(RUNS) && RUNS > 0)) {
  console.error("bench: --mib and --runs take whole numbers above 0");
  process.exit(2);
}
const log = (text) => console.error(`bench: ${text}`);

/** Random bytes written to `file` in 1 MiB pieces; their SHA-256. */
async function randomFile(file, size) {
  const hash = createHash("sha256");
  const handle = await open(file, "w");
  try {
    for (let written = 0; written < size; written += 1 << 20) {
      const piece = randomBytes(Math.min(1 << 20, size - written));
      hash.update(piece);
      await handle.write(piece);
    }
  } finally {
    await handle.close();
  }
  return hash.digest("hex");
}

const work = await makeTempDir("kms-sdk-bench-");
let devnet;
let server;
try {
  log(`kms devnet --plain-http --nodes 3; ${MIB} MiB of random data; ${RUNS} runs each`);
  devnet = await startDevnet({ nodes: 3, plainHttp: true });
  const files = path.join(work, "files");
  await mkdir(files);
  const [alice, bob, enrico] = await Promise.all(["alice", "bob", "enrico"].map((w) => newUmbralKeys(path.join(work, w))));
  const policy = await cliGrant(devnet, {
    alice: alice.path, label: "bench", bobKey: bob.receivingKey, senders: [enrico.senderKey], out: path.join(files, "policy.json"),
  });
  const plain = path.join(work, "plain");
  const expected = await randomFile(plain, MIB * 1048576);
  const encrypted = path.join(files, "plain.kms");
  await runKms(["encrypt", "--policy-key", policy, "--umbral", enrico.path, plain, encrypted]);
  await copyFile(bob.path, path.join(files, "bob-umbral.json"));

  log("Rust: kms retrieve");
  const rustSeconds = [];
  for (let run = 0; run < RUNS; run++) {
    const out = path.join(work, `rust-${run}.out`);
    const start = process.hrtime.bigint();
    await runKms(["retrieve", "--policy", policy, "--umbral", bob.path, encrypted, out, ...devnet.cliChainArgs]);
    rustSeconds.push(Number(process.hrtime.bigint() - start) / 1e9);
    await rm(out);
  }

  // The format's own speed in Rust, one thread, in memory: the figure comparable with the page's
  // (a page decrypts on one thread). Needs the release example, which `cargo build --release -p
  // kms-client --example stream_bench` (or ./script/bench) builds; skipped, saying so, without it.
  const targetDir = process.env.CARGO_TARGET_DIR ?? path.join(sdkRoot, "..", "..", "target");
  const streamBench = path.join(targetDir, "release", "examples", "stream_bench");
  let rustMemory;
  try {
    log(`Rust: ${streamBench} ${MIB} 1 mem`);
    const runs = [];
    for (let run = 0; run < RUNS; run++) {
      const { stdout } = await promisify(execFile)(streamBench, [String(MIB), "1", "mem"], { cwd: work });
      const line = stdout.split("\n").find((l) => l.startsWith("json: "));
      if (!line) throw new Error(`no json line in ${stdout}`);
      runs.push(JSON.parse(line.slice(6)));
    }
    const best = (key) => Math.max(...runs.map((r) => r[key] / 1.048576)); // MB/s to MiB/s
    rustMemory = { decryptMiBs: Number(best("decryptMBps").toFixed(1)), encryptMiBs: Number(best("encryptMBps").toFixed(1)) };
  } catch (error) {
    log(`the release stream_bench could not run (${error.message.split("\n")[0]}): build it for the in-memory Rust figure`);
  }

  log("Chromium: decryptStream from memory");
  await bundle({ entry: path.join(sdkRoot, "scripts", "bench-page.js"), name: "bench.js", outdir: defaultOutdir });
  server = await startServer({ port: 0, rpc: devnet.rpc, deployments: devnet.deploymentsPath, files, buildBundle: false });
  const browser = await withPage(`${server.url}config.json`, async (page, errors) => {
    await page.addScriptTag({ url: "/dist/bench.js", type: "module" });
    await page.waitForFunction(() => window.kmsBenchReady === true);
    const result = await page.evaluate((o) => window.kmsBench(o), {
      rpc: devnet.rpc, deployments: "/deployments.json", policy: "/files/policy.json", key: "/files/bob-umbral.json",
      file: "/files/plain.kms", runs: RUNS,
    });
    return { ...result, errors, version: await page.browser().version() };
  }, { timeoutMs: 600_000 });
  if (browser.sha256 !== expected) throw new Error(`the browser decrypted other bytes (SHA-256 ${browser.sha256}, expected ${expected})`);
  if (browser.errors.length > 0) throw new Error(`page errors: ${browser.errors.join("; ")}`);

  const cpus = os.cpus();
  const kmsBuild = kmsBin.includes(`${path.sep}release${path.sep}`) ? "release" : kmsBin.includes(`${path.sep}debug${path.sep}`) ? "debug" : "unknown";
  const { stdout: kmsVersion } = await promisify(execFile)(kmsBin, ["--version"]);
  const report = {
    file: { mib: MIB, bytes: MIB * 1048576 },
    machine: {
      cpu: cpus[0]?.model, cores: cpus.length, memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      os: `${os.type()} ${os.release()} ${os.arch()}`, node: process.version, chromium: browser.version,
    },
    chromium: {
      decryptMiBs: Number(browser.decryptMiBs.toFixed(1)),
      decryptSeconds: browser.decryptSeconds.map((s) => Number(s.toFixed(3))),
      encryptMiBs: Number(browser.encryptMiBs.toFixed(1)),
      encryptSeconds: browser.encryptSeconds.map((s) => Number(s.toFixed(3))),
      note: "decryptStream/encryptStream over the file in memory, 1 MiB pieces; best run",
    },
    rust: {
      binary: kmsBin, build: kmsBuild, version: kmsVersion.trim(),
      retrieveMiBs: Number((MIB / Math.min(...rustSeconds)).toFixed(1)),
      retrieveSeconds: rustSeconds.map((s) => Number(s.toFixed(3))),
      note: "wall clock of `kms retrieve` (retrieval, then read, decrypt, write on disk); best run",
    },
    rustInMemory: rustMemory
      ? { ...rustMemory, note: "stream_bench MIB 1 mem (release): the format alone, one thread, in memory; best run" }
      : "not measured: no release stream_bench",
  };
  if (rustMemory) {
    report.ratio = {
      chromiumDecryptToRust: Number((report.chromium.decryptMiBs / rustMemory.decryptMiBs).toFixed(4)),
      chromiumEncryptToRust: Number((report.chromium.encryptMiBs / rustMemory.encryptMiBs).toFixed(4)),
    };
  }
  console.log(JSON.stringify(report, null, 2));
} catch (error) {
  console.error(`bench: FAILED: ${error.stack ?? error}`);
  process.exitCode = 1;
} finally {
  await server?.close();
  await devnet?.stop();
  await removeTempDir(work);
}

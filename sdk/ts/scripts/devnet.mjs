// SPDX-License-Identifier: GPL-3.0-or-later
// A `kms devnet` for the SDK's tests and measurements: spawned as a child process in its own
// process group (so that stopping it stops its anvil too, even when kms itself died), ready when
// it prints `devnet running`, described by parsing what it prints (RPC, deployments file, nodes,
// dev keys), and stopped at exit whatever happens (exception, Ctrl-C, SIGTERM).
//
//   import { startDevnet, runKms } from "../../scripts/devnet.mjs";
//   const devnet = await startDevnet({ nodes: 3, plainHttp: true });
//   try { ... runKms(["policy", "grant", ...devnet.cliChainArgs, ...]) ... } finally { await devnet.stop(); }
//
// The kms binary is $KMS_BIN, else $CARGO_TARGET_DIR/debug/kms, else <repo>/target/debug/kms.
import { spawn, execFile } from "node:child_process";
import { rm, access, constants, mkdtemp } from "node:fs/promises";
import { rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { flagValue } from "./args.mjs";

export const sdkRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const repoRoot = path.resolve(sdkRoot, "..", "..");
export const kmsBin = process.env.KMS_BIN
  ?? path.join(process.env.CARGO_TARGET_DIR ?? path.join(repoRoot, "target"), "debug", "kms");

/** A TCP port free right now on 127.0.0.1 (the OS's pick). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * Runs `kms ARGS` from the repository root (the CLI resolves `deployments/…` from there) and
 * returns its stdout; throws with its stderr when it fails.
 * @param {string[]} args
 * @param {{ env?: Record<string, string>, timeoutMs?: number }} [options]
 * @returns {Promise<string>}
 */
export function runKms(args, { env = {}, timeoutMs = 300_000 } = {}) {
  return new Promise((resolve, reject) => {
    execFile(kmsBin, args, {
      cwd: repoRoot,
      env: { ...process.env, ...env },
      timeout: timeoutMs,
      maxBuffer: 64 << 20,
    }, (error, stdout, stderr) => {
      if (error) {
        reject(new Error(`kms ${args.join(" ")}: ${error.code ?? error.signal}\n${stderr || stdout}`));
      } else {
        resolve(stdout);
      }
    });
  });
}

/** What `kms devnet` printed, parsed (devnet/network.rs::print). */
export function parseDevnetOutput(text) {
  const field = (name) => text.match(new RegExp(`^\\s+${name}\\s{2,}(\\S+)`, "m"))?.[1];
  const nodes = [...text.matchAll(/^\s+(\d+)\s+(0x[0-9a-fA-F]{40})\s+(0x[0-9a-fA-F]{40})\s+(https?:\/\/\S+)\s+([\d.]+)(.*)$/gm)]
    .map((m) => ({ index: Number(m[1]), staker: m[2], worker: m[3], url: m[4], stake: m[5], faulty: /faulty/.test(m[6]) }));
  const accounts = {};
  for (const m of text.matchAll(/^\s+(deployer|alice|bob|staker \d+)\s+(0x[0-9a-fA-F]{40})\s+(0x[0-9a-fA-F]{64})\s*$/gm)) {
    accounts[m[1].replace(" ", "")] = { address: m[2], privateKey: m[3] };
  }
  return {
    rpc: field("rpc"),
    chainId: Number(field("chain id")),
    deployments: field("deployments"),
    contracts: {
      token: field("token"),
      stakingEscrow: field("staking escrow"),
      policyManager: field("policy manager"),
      adjudicator: field("adjudicator"),
    },
    stores: field("node stores"),
    nodes,
    accounts,
  };
}

const running = new Set();
const tempDirs = new Set();
let hooked = false;
let signalled = false;
function hookExit() {
  if (hooked) return;
  hooked = true;
  // Last resort, synchronous: whatever is still running when this process exits, and the
  // temporary directories (key files among them) nobody removed.
  process.on("exit", () => {
    for (const devnet of running) devnet.killNow();
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  });
  // A signal would end the process without 'exit': stop the devnets, then exit (which runs the
  // hook above). A second signal while they stop exits at once (the hook SIGKILLs them).
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
    process.on(signal, async () => {
      const code = 128 + (signal === "SIGINT" ? 2 : signal === "SIGTERM" ? 15 : 1);
      if (signalled) process.exit(code);
      signalled = true;
      await Promise.allSettled([...running].map((d) => d.stop()));
      process.exit(code);
    });
  }
}

/**
 * A new temporary directory (under the OS's), removed by {@link removeTempDir} or, failing that,
 * when this process exits, by a signal too.
 * @param {string} prefix
 * @returns {Promise<string>}
 */
export async function makeTempDir(prefix) {
  hookExit();
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

/** Removes a directory made by {@link makeTempDir}. */
export async function removeTempDir(dir) {
  await rm(dir, { recursive: true, force: true });
  tempDirs.delete(dir);
}

/**
 * Starts `kms devnet` and resolves once it runs.
 * @param {{ nodes?: number, port?: number, nodePort?: number, faulty?: boolean, plainHttp?: boolean,
 *   deploymentsFile?: string, echo?: boolean, readyTimeoutMs?: number }} [options]
 *   `port` defaults to a free port, `nodePort` to 0 (any free ports), `deploymentsFile` to
 *   deployments/test-sdk-<port>.json (removed at stop); `echo` copies its output to stderr.
 */
export async function startDevnet({
  nodes = 3, port, nodePort = 0, faulty = false, plainHttp = true, deploymentsFile, echo = false,
  readyTimeoutMs = 180_000,
} = {}) {
  port ??= await freePort();
  deploymentsFile ??= `deployments/test-sdk-${port}.json`;
  const args = ["devnet", "--nodes", String(nodes), "--port", String(port), "--node-port", String(nodePort),
    "--deployments-file", deploymentsFile];
  if (faulty) args.push("--faulty-node");
  if (plainHttp) args.push("--plain-http");
  await access(kmsBin, constants.X_OK).catch(() => {
    throw new Error(`no kms binary at ${kmsBin}: build it (cargo build -p kms-cli) or set KMS_BIN (or CARGO_TARGET_DIR)`);
  });
  hookExit();
  // detached: its own process group, led by kms; anvil (its child) is in it too.
  const child = spawn(kmsBin, args, { cwd: repoRoot, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  let exited = null;
  const exit = new Promise((resolve) => {
    child.once("exit", (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    });
    child.once("error", (error) => {
      exited = { code: error.message, signal: null };
      resolve(exited);
    });
  });
  const collect = (chunk) => {
    output += chunk;
    // A devnet left running for hours (the demo) logs on: keep the last 1 MiB, not all of it.
    if (output.length > 2 << 20) output = output.slice(-(1 << 20));
    if (echo) process.stderr.write(chunk);
  };
  child.stdout.setEncoding("utf8").on("data", collect);
  child.stderr.setEncoding("utf8").on("data", collect);

  const killGroup = (signal) => {
    try {
      process.kill(-child.pid, signal);
    } catch {
      // ESRCH: the group is gone already.
    }
  };
  let stopping;
  const devnet = {
    args,
    port,
    process: child,
    output: () => output,
    /** SIGKILL to the whole group, synchronous (for the exit hook). */
    killNow() {
      killGroup("SIGKILL");
      running.delete(devnet);
      rmSync(path.join(repoRoot, deploymentsFile), { force: true });
    },
    /** SIGTERM (kms stops its nodes and anvil), SIGKILL to the group after 10 s, then removes the deployments file. */
    stop() {
      stopping ??= (async () => {
        killGroup("SIGTERM");
        const timer = setTimeout(() => killGroup("SIGKILL"), 10_000);
        await exit;
        clearTimeout(timer);
        // anvil may outlive a kms that died: the group is ours, finish it.
        killGroup("SIGKILL");
        running.delete(devnet);
        await rm(path.join(repoRoot, deploymentsFile), { force: true });
      })();
      return stopping;
    },
  };
  running.add(devnet);

  const ready = await Promise.race([
    new Promise((resolve) => {
      const check = () => {
        if (output.includes("devnet running")) {
          child.stdout.off("data", check);
          resolve("ready");
        }
      };
      child.stdout.on("data", check);
      check();
    }),
    exit.then(() => "exited"),
    new Promise((resolve) => setTimeout(() => resolve("timeout"), readyTimeoutMs).unref()),
  ]);
  if (ready !== "ready") {
    await devnet.stop();
    const why = ready === "exited" ? `exited (${exited.code ?? exited.signal})` : `not ready within ${readyTimeoutMs / 1000} s`;
    throw new Error(`kms devnet ${why}; its output:\n${output.split("\n").slice(-30).join("\n")}`);
  }
  const info = parseDevnetOutput(output);
  if (!info.rpc || info.nodes.length !== nodes || !info.accounts.alice || !info.accounts.bob) {
    await devnet.stop();
    throw new Error(`kms devnet's output did not parse (rpc ${info.rpc}, ${info.nodes.length} nodes):\n${output}`);
  }
  return Object.assign(devnet, info, {
    rpc: info.rpc.replace(/\/$/, ""),
    deploymentsFile,
    deploymentsPath: path.join(repoRoot, deploymentsFile),
    /** The flags that point a `kms` command at this devnet. */
    cliChainArgs: ["--rpc-url", info.rpc, "--deployments", deploymentsFile, ...(plainHttp ? ["--allow-plain-http"] : [])],
  });
}

// `node scripts/devnet.mjs [--nodes N] [--port P] [--node-port P] [--faulty-node]`: starts one,
// prints what it parsed as JSON, keeps it running until Ctrl-C.
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const value = (flag) => {
    const text = flagValue(args, flag);
    return text === undefined ? undefined : Number(text);
  };
  const devnet = await startDevnet({
    nodes: value("--nodes"), port: value("--port"), nodePort: value("--node-port"),
    faulty: args.includes("--faulty-node"), plainHttp: !args.includes("--tls"),
  });
  const { process: _child, output: _output, ...shown } = devnet;
  console.log(JSON.stringify(shown, (k, v) => (typeof v === "function" ? undefined : v), 2));
  console.log("devnet running; Ctrl-C stops it");
}

/**
 * `kms keys new --umbral-only --dir DIR`: an Umbral master secret (DIR/umbral.json, 0600) and its
 * public keys as the CLI prints them.
 * @returns {Promise<{ path: string, receivingKey: string, senderKey: string }>}
 */
export async function newUmbralKeys(dir) {
  const shown = JSON.parse(await runKms(["keys", "new", "--umbral-only", "--dir", dir, "--json"]));
  return { path: path.join(dir, "umbral.json"), receivingKey: shown.receivingKey, senderKey: shown.senderKey };
}

/**
 * Alice grants with the CLI: `kms policy grant` from the devnet's Alice account, `threshold` of
 * `shares` nodes for 10 periods at 1 gwei, the given sender keys authorized. Returns the policy
 * file's path (`out`).
 */
export async function cliGrant(devnet, { alice, label, bobKey, senders = [], threshold = 2, shares = 3, out }) {
  await runKms([
    "policy", "grant", "--umbral", alice, "--label", label, "--bob", bobKey, "--yes",
    "--threshold", String(threshold), "--shares", String(shares), "--expires", "10", "--fee-rate", "1gwei",
    "--out", out, "--private-key", devnet.accounts.alice.privateKey,
    ...senders.flatMap((s) => ["--sender", s]), ...devnet.cliChainArgs,
  ]);
  return out;
}

/**
 * Whether a node answers a CORS preflight from `origin` for a re-encryption request (the browser
 * sends one before every POST with a JSON body). Returns the reason when it does not.
 */
export async function corsProblem(nodeUrl, origin = "http://127.0.0.1") {
  let response;
  try {
    response = await fetch(new URL("/v1/policies/0x00000000000000000000000000000000/reencrypt", nodeUrl), {
      method: "OPTIONS",
      headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "content-type" },
    });
  } catch (error) {
    return `${nodeUrl} unreachable: ${error.cause?.code ?? error.message}`;
  }
  const allowed = response.headers.get("access-control-allow-origin");
  if (response.ok && (allowed === "*" || allowed === origin)) return undefined;
  return `${nodeUrl} does not answer CORS preflights (OPTIONS: HTTP ${response.status}, access-control-allow-origin: ${allowed ?? "absent"}): a kms built with CORS is needed`;
}

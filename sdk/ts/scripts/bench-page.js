// SPDX-License-Identifier: GPL-3.0-or-later
// The browser side of scripts/bench-browser.mjs, bundled into examples/web/dist/bench.js:
// `window.kmsBench(options)` fetches an encrypted file into memory, retrieves its cfrags from the
// policy's nodes (not timed), then times decryptStream over the in-memory payload, `runs` times,
// and Enrico's encryptStream of as many random bytes. Returns MiB/s and the plaintext's SHA-256.
import { createPublicClient, http } from "viem";
import {
  parseDeployment, parsePolicyFile, MasterSecret, readHeader, openDataKeyReencrypted, decryptStream,
  encryptStream, streamOfBytes, SenderKey, TrustedSenders, fromHex, toHex, retrieve, NodeClient, umbral,
} from "../src/index.js";

/** A response of `url`, or an error naming it (not a parse error about an error page). */
async function get(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url}: HTTP ${response.status}`);
  return response;
}
const text = async (url) => (await get(url)).text();
const PIECE = 1 << 20;

/** Reads a stream to the end; the bytes, counted, and optionally kept. */
async function drain(stream, keep) {
  const reader = stream.getReader();
  const parts = [];
  let bytes = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return { bytes, parts };
    bytes += value.length;
    if (keep) parts.push(value);
  }
}

window.kmsBench = async ({ rpc, deployments, policy: policyUrl, key, file, runs = 3 }) => {
  const deployment = parseDeployment(await text(deployments), deployments);
  const policy = parsePolicyFile(await text(policyUrl), policyUrl);
  const receivingSecretKey = MasterSecret.parse(await text(key), key).receivingKey();
  const encrypted = new Uint8Array(await (await get(file)).arrayBuffer());
  const header = readHeader(encrypted);
  const payload = encrypted.subarray(header.length);
  const retrieval = await retrieve({
    publicClient: createPublicClient({ transport: http(rpc) }),
    deployment,
    nodeClient: new NodeClient({ allowPlainHttp: true }),
    policy,
    receivingSecretKey,
    capsules: [header.capsule()],
  });
  const delegatingPk = umbral.PublicKey.fromCompressedBytes(fromHex(policy.delegatingKey, "delegating key", 33));
  const dataKey = openDataKeyReencrypted(receivingSecretKey, delegatingPk, header, retrieval.cfrags[0]);
  const trusted = new TrustedSenders(policy.senders);

  const decryptSeconds = [];
  let sha256;
  let plaintextBytes = 0;
  for (let run = 0; run < runs; run++) {
    const first = run === 0;
    const start = performance.now();
    const { bytes, parts } = await drain(streamOfBytes(payload, PIECE).pipeThrough(decryptStream(dataKey, header, trusted)), first);
    decryptSeconds.push((performance.now() - start) / 1000);
    plaintextBytes = bytes;
    if (first) {
      const digest = await crypto.subtle.digest("SHA-256", await new Blob(parts).arrayBuffer());
      sha256 = toHex(new Uint8Array(digest)).replace(/^0x/, "");
    }
  }

  // Enrico's side, for reference: as many random bytes, encrypted in memory.
  const plaintext = new Uint8Array(plaintextBytes);
  for (let i = 0; i < plaintext.length; i += 65536) crypto.getRandomValues(plaintext.subarray(i, i + 65536));
  const policyKey = umbral.PublicKey.fromCompressedBytes(fromHex(policy.delegatingKey, "delegating key", 33));
  const sender = SenderKey.random();
  const encryptSeconds = [];
  for (let run = 0; run < runs; run++) {
    const start = performance.now();
    await drain(streamOfBytes(plaintext, PIECE).pipeThrough(encryptStream(policyKey, sender)), false);
    encryptSeconds.push((performance.now() - start) / 1000);
  }
  const mib = plaintextBytes / 1048576;
  return {
    bytes: plaintextBytes,
    sha256,
    decryptSeconds,
    decryptMiBs: mib / Math.min(...decryptSeconds),
    encryptSeconds,
    encryptMiBs: mib / Math.min(...encryptSeconds),
    userAgent: navigator.userAgent,
    hardwareConcurrency: navigator.hardwareConcurrency,
  };
};
window.kmsBenchReady = true;

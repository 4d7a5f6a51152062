// SPDX-License-Identifier: GPL-3.0-or-later
// The browser bundle loads in a real (headless) Chromium and its umbral-pre WebAssembly works:
// builds examples/web/dist/kms-sdk.js (scripts/bundle.mjs), serves it (scripts/serve.mjs), imports
// it in a page and runs a whole Umbral round trip there (encrypt to Alice, 2-of-3 kfrags for Bob,
// re-encrypt, Bob decrypts), plus a byte check against this Node's umbral-pre: a capsule made in
// the browser parses in Node. Exits 1, saying what failed, otherwise.
//
//   node test/browser/bundle.mjs
import path from "node:path";
import * as umbral from "@nucypher/umbral-pre";
import { bundle, defaultOutdir } from "../../scripts/bundle.mjs";
import { startServer } from "../../scripts/serve.mjs";
import { withPage } from "../../scripts/chromium.mjs";

// Both ways of shipping the WebAssembly: embedded (dist/kms-sdk.js, built by the server) and as a
// file fetched next to the bundle (dist/wasm-file/).
const server = await startServer({ port: 0 });
try {
  await bundle({ outdir: path.join(defaultOutdir, "wasm-file"), wasm: "file" });
  // A page of the server's origin that runs nothing itself (not the demo page, which needs a chain).
  const result = await withPage(`${server.url}config.json`, async (page, errors) => {
    const runs = [];
    for (const url of ["/dist/kms-sdk.js", "/dist/wasm-file/kms-sdk.js"]) runs.push({ url, ...await page.evaluate(async (url) => {
      const sdk = await import(url);
      const u = sdk.umbral;
      const alice = u.SecretKey.random();
      const bob = u.SecretKey.random();
      const signer = new u.Signer(u.SecretKey.random());
      const plaintext = new TextEncoder().encode("umbral in the browser");
      const [capsule, ciphertext] = u.encrypt(alice.publicKey(), plaintext);
      const kfrags = u.generateKFrags(alice, bob.publicKey(), signer, 2, 3, true, true);
      const cfrags = kfrags.slice(0, 2).map((k) => u.reencrypt(capsule, k));
      const back = u.decryptReencrypted(bob, alice.publicKey(), capsule, cfrags, ciphertext);
      return {
        exports: Object.keys(sdk).length,
        decrypted: new TextDecoder().decode(back),
        capsule: Array.from(capsule.toBytes()),
      };
    }, url) });
    return { runs, errors };
  });
  const problems = [];
  for (const run of result.runs) {
    if (run.decrypted !== "umbral in the browser") problems.push(`${run.url}: round trip gave ${JSON.stringify(run.decrypted)}`);
    try {
      umbral.Capsule.fromBytes(Uint8Array.from(run.capsule)).free();
    } catch (e) {
      problems.push(`${run.url}: the browser's capsule does not parse in Node: ${e}`);
    }
  }
  problems.push(...result.errors);
  if (problems.length > 0) {
    console.error(`browser bundle: FAILED\n  ${problems.join("\n  ")}`);
    process.exitCode = 1;
  } else {
    console.log(`browser bundle: ok (umbral round trip in Chromium, .wasm embedded and as a file; ${result.runs[0].exports} exports)`);
  }
} finally {
  await server.close();
}

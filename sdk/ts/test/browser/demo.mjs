#!/usr/bin/env node
// SPDX-License-Identifier: GPL-3.0-or-later
// The demo page end to end in headless Chromium, with no flag that weakens the browser (CORS is
// the nodes' own):
//   1. a `kms devnet --plain-http --nodes 3` (scripts/devnet.mjs; stopped at exit, whatever happens);
//   2. the CLI: Alice, Bob and Enrico make keys, Alice grants Bob a 2-of-3 policy authorizing
//      Enrico, Enrico encrypts 6 MiB + 17 bytes of random data (`kms encrypt`);
//   3. the demo server (scripts/serve.mjs) serves the page, the bundles, the deployments file and
//      the policy, Bob's key and the encrypted file;
//   4. the page, opened with ?policy=…&key=…&file=…&auto=1, reads the header off the download,
//      retrieves the cfrags from the nodes, decrypts the stream; its SHA-256 must be the
//      plaintext's;
//   5. a WebM clip recorded in the page (MediaRecorder), encrypted by the CLI, plays through
//      MediaSource as the page decrypts it (buffered, no media error), and its bytes are identical;
//   6. Alice grants Bob a policy from the page (dev key): all 3 kfrags uploaded (CORS POSTs);
//   7. refusals: the same file with a byte flipped in its third segment stops with the SDK's
//      Tampered error shown and no Blob offered; a file from a sender the policy does not
//      authorize stops with UntrustedSender before any request to a node;
//   and the page must have logged no other error.
// Exits 1 with the reason on any failure.
//
//   node sdk/ts/test/browser/demo.mjs [--echo]      (from anywhere; --echo: the devnet's and the page's output)
import { createHash, randomBytes } from "node:crypto";
import { mkdir, writeFile, copyFile, readFile } from "node:fs/promises";
import path from "node:path";
import { startDevnet, runKms, newUmbralKeys, cliGrant, corsProblem, makeTempDir, removeTempDir } from "../../scripts/devnet.mjs";
import { startServer } from "../../scripts/serve.mjs";
import { withPage } from "../../scripts/chromium.mjs";

const echo = process.argv.includes("--echo");
const SIZE = 6 * 1024 * 1024 + 17;
const step = (text) => console.log(`demo test: ${text}`);

/**
 * Runs in the page: 3 s of a canvas animation with noise (so that the clip spans several 1 MiB
 * segments) recorded by MediaRecorder as WebM/VP8; its bytes in base64.
 */
async function recordWebm() {
  const canvas = document.createElement("canvas");
  canvas.width = 320;
  canvas.height = 240;
  const context = canvas.getContext("2d");
  const recorder = new MediaRecorder(canvas.captureStream(25), { mimeType: "video/webm;codecs=vp8", videoBitsPerSecond: 8_000_000 });
  const parts = [];
  recorder.ondataavailable = (event) => parts.push(event.data);
  let frame = 0;
  const noise = context.createImageData(320, 120);
  const timer = setInterval(() => {
    context.fillStyle = `hsl(${(frame * 9) % 360} 80% 50%)`;
    context.fillRect(0, 0, 320, 240);
    crypto.getRandomValues(noise.data.subarray(0, 65536));
    context.putImageData(noise, 0, 120);
    context.fillStyle = "#fff";
    context.font = "48px sans-serif";
    context.fillText(String(frame++), 120, 80);
  }, 40);
  recorder.start(250);
  await new Promise((resolve) => setTimeout(resolve, 3000));
  const stopped = new Promise((resolve) => (recorder.onstop = resolve));
  recorder.stop();
  await stopped;
  clearInterval(timer);
  const bytes = new Uint8Array(await new Blob(parts).arrayBuffer());
  let binary = "";
  for (let i = 0; i < bytes.length; i += 32768) binary += String.fromCharCode(...bytes.subarray(i, i + 32768));
  return btoa(binary);
}

const work = await makeTempDir("kms-sdk-demo-");
let devnet;
let server;
try {
  step("starting kms devnet --plain-http --nodes 3");
  devnet = await startDevnet({ nodes: 3, plainHttp: true, echo });
  const cors = await corsProblem(devnet.nodes[0].url);
  if (cors) throw new Error(cors);

  step("keys, grant (kms policy grant), encryption of 6 MiB (kms encrypt)");
  const files = path.join(work, "files");
  await mkdir(files);
  const [alice, bob, enrico] = await Promise.all(["alice", "bob", "enrico"].map((who) => newUmbralKeys(path.join(work, who))));
  const policy = await cliGrant(devnet, {
    alice: alice.path, label: "demo/browser", bobKey: bob.receivingKey, senders: [enrico.senderKey],
    threshold: 2, shares: 3, out: path.join(files, "policy.json"),
  });
  const plaintext = randomBytes(SIZE);
  const expected = createHash("sha256").update(plaintext).digest("hex");
  await writeFile(path.join(work, "data.bin"), plaintext);
  await runKms(["encrypt", "--policy-key", policy, "--umbral", enrico.path, path.join(work, "data.bin"), path.join(files, "data.bin.kms")]);
  // Served for the test only: a real Bob opens his key file from his own disk (the file input).
  await copyFile(bob.path, path.join(files, "bob-umbral.json"));
  // For the refusals: one byte flipped 3 MiB in (the third segment), and Alice as the sender.
  const tampered = await readFile(path.join(files, "data.bin.kms"));
  tampered[3 << 20] ^= 0x01;
  await writeFile(path.join(files, "tampered.kms"), tampered);
  await runKms(["encrypt", "--policy-key", policy, "--umbral", alice.path, path.join(work, "data.bin"), path.join(files, "untrusted.kms")]);

  step("serving the page");
  server = await startServer({ port: 0, rpc: devnet.rpc, deployments: devnet.deploymentsPath, files });
  const query = (file, extra = "") => `${server.url}?policy=/files/policy.json&key=/files/bob-umbral.json&file=/files/${file}&auto=1${extra}`;
  const url = query("data.bin.kms");

  step(`Chromium: ${url}`);
  let clip;
  const outcome = await withPage(url, async (page, errors) => {
    await page.waitForFunction(() => ["done", "error"].includes(window.kmsDemo?.state), { timeout: 180_000, polling: 250 });
    const demo = await page.evaluate(() => ({ ...window.kmsDemo }));
    const shownSha256 = await page.$eval('[data-field="sha256"]', (e) => e.textContent.trim());
    const rate = await page.$eval('[data-field="rate"]', (e) => e.textContent.trim());

    step("refusals: a tampered file, a file from an unauthorized sender");
    const nodeOrigins = new Set(devnet.nodes.map((n) => new URL(n.url).origin));
    const refusals = {};
    for (const [file, code] of [["tampered.kms", "Tampered"], ["untrusted.kms", "UntrustedSender"]]) {
      const mark = errors.length;
      const nodeRequests = [];
      const watch = (r) => nodeOrigins.has(new URL(r.url()).origin) && nodeRequests.push(`${r.method()} ${r.url()}`);
      page.on("request", watch);
      await page.goto(query(file), { waitUntil: "load" });
      await page.waitForFunction(() => ["done", "error"].includes(window.kmsDemo?.state), { timeout: 180_000, polling: 250 });
      page.off("request", watch);
      refusals[file] = {
        code,
        ...await page.evaluate(() => ({
          state: window.kmsDemo.state,
          error: window.kmsDemo.error,
          shown: document.querySelector('[data-field="state"]').textContent,
          links: document.querySelectorAll("#output a").length,
          released: document.querySelector('[data-field="bytes"]').textContent,
        })),
        nodeRequests,
      };
      // The page reports the refusal on its console: expected, and nothing else.
      const logged = errors.splice(mark);
      errors.push(...logged.filter((e) => !e.includes(`${code}:`)));
    }

    step("a video: recorded in the browser (WebM, VP8), kms encrypt, then played through MediaSource as it decrypts");
    const webm = Buffer.from(await page.evaluate(recordWebm), "base64");
    clip = { bytes: webm.length, sha256: createHash("sha256").update(webm).digest("hex") };
    await writeFile(path.join(work, "clip.webm"), webm);
    await runKms(["encrypt", "--policy-key", policy, "--umbral", enrico.path, path.join(work, "clip.webm"), path.join(files, "clip.webm.kms")]);
    await page.goto(query("clip.webm.kms", `&mime=${encodeURIComponent('video/webm; codecs="vp8"')}`), { waitUntil: "load" });
    await page.waitForFunction(() => ["done", "error"].includes(window.kmsDemo?.state), { timeout: 180_000, polling: 250 });
    const video = await page.evaluate(() => ({ ...window.kmsDemo }));
    // Then Alice grants from the page, to Bob, with the devnet's Alice key.
    await page.type("#alice-key", devnet.accounts.alice.privateKey);
    await page.type("#bob-key", bob.receivingKey);
    await page.click("#grant");
    await page.waitForFunction(() => window.kmsDemo?.grant || /^error/.test(document.querySelector('[data-field="grant"]').textContent),
      { timeout: 120_000, polling: 250 });
    const grant = await page.evaluate(() => window.kmsDemo.grant);
    const fields = await page.$$eval("[data-field]", (elements) =>
      Object.fromEntries(elements.map((e) => [e.dataset.field, e.textContent.trim()])));
    return { demo, shownSha256, rate, refusals, video, grant, fields, errors };
  }, { echo });

  const problems = [];
  if (outcome.demo.state !== "done") problems.push(`the page failed: ${outcome.demo.error}`);
  const result = outcome.demo.result ?? {};
  if (result.bytes !== SIZE) problems.push(`decrypted ${result.bytes} bytes, expected ${SIZE}`);
  if (result.sha256 !== expected) problems.push(`SHA-256 ${result.sha256}, expected ${expected}`);
  if (outcome.shownSha256 !== expected) problems.push(`the page shows SHA-256 ${outcome.shownSha256}`);
  if (!(result.cfrags >= 2)) problems.push(`${result.cfrags} cfrags, the threshold is 2`);
  if (result.faults !== 0) problems.push(`${result.faults} faults from honest nodes`);
  for (const [file, r] of Object.entries(outcome.refusals)) {
    if (r.state !== "error" || !r.error?.startsWith(`${r.code}: `) || !r.shown.includes(`error: ${r.code}: `)) {
      problems.push(`${file}: expected the SDK's ${r.code} error shown, got state ${r.state}, error ${r.error}, shown ${JSON.stringify(r.shown)}`);
    }
    if (r.links !== 0) problems.push(`${file}: the page offered the refused file for download`);
  }
  if (outcome.refusals["untrusted.kms"].nodeRequests.length > 0) {
    problems.push(`an unauthorized sender's file was refused only after asking the nodes: ${outcome.refusals["untrusted.kms"].nodeRequests.join(", ")}`);
  }
  if (outcome.refusals["untrusted.kms"].released !== "—") problems.push(`plaintext of an unauthorized sender's file was released: ${outcome.refusals["untrusted.kms"].released}`);
  const video = outcome.video.result ?? {};
  if (outcome.video.state !== "done") problems.push(`the video failed: ${outcome.video.error}`);
  if (video.sha256 !== clip.sha256 || video.bytes !== clip.bytes) problems.push(`the video decrypted to ${video.bytes} bytes, SHA-256 ${video.sha256}; expected ${clip.bytes}, ${clip.sha256}`);
  if (video.media?.mode !== "mediasource" || !(video.media.readyState >= 2) || !(video.media.bufferedSeconds > 1) || video.media.error) {
    problems.push(`the video did not play through MediaSource: ${JSON.stringify(video.media)}`);
  }
  if (outcome.grant?.uploaded !== 3) problems.push(`the page's grant: ${outcome.grant ? `${outcome.grant.uploaded} of 3 kfrags uploaded` : outcome.fields.grant}`);
  problems.push(...outcome.errors);
  if (problems.length > 0) {
    console.error(`demo test: FAILED\n  ${problems.join("\n  ")}\n  page fields: ${JSON.stringify(outcome.fields)}`);
    process.exitCode = 1;
  } else {
    step(`ok: ${result.bytes} bytes decrypted in the browser in ${result.chunks} pieces, SHA-256 identical (${expected.slice(0, 16)}…), ${result.cfrags} cfrags, ${outcome.rate}; a ${clip.bytes}-byte WebM played through MediaSource (${video.media.bufferedSeconds.toFixed(1)} s buffered, identical); the page's grant: ${outcome.grant.policyId}, 3 kfrags uploaded`);
  }
} catch (error) {
  console.error(`demo test: FAILED: ${error.stack ?? error}`);
  process.exitCode = 1;
} finally {
  await server?.close();
  await devnet?.stop();
  await removeTempDir(work);
}

// SPDX-License-Identifier: GPL-3.0-or-later
// Loads a KMS node's status page (`GET /`) in a real headless Chromium and checks that every
// field an operator reads is filled: each value sits in an element with a `data-field` attribute
// (crates/kms-node/src/api/page.rs). Prints the fields as JSON on success; exits 1 with what is
// missing otherwise.
//
//   node test/browser/status-page.mjs http://127.0.0.1:PORT [field ...]
//
// The fields default to all of them. Chromium is Debian's (`/usr/bin/chromium`, installed by
// script/lib.sh `ensure_chromium`), or the one $CHROMIUM names.
import puppeteer from "puppeteer-core";

const [url, ...wanted] = process.argv.slice(2);
if (!url) {
  console.error("usage: status-page.mjs NODE_URL [field ...]");
  process.exit(2);
}
const fields = wanted.length > 0 ? wanted : [
  "version", "chainId", "staker", "worker", "uptimeSeconds", "headBlock", "headAgeMs",
  "cursorBlock", "lagBlocks", "kfrags", "policies", "requestsServed", "reencryptions",
  "currentPeriod", "lastCommittedPeriod", "nextCommitmentPeriod", "workerBalanceWei",
  "pendingDuties", "standingAgeSeconds", "warnings",
];

const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  // As root (CI), Chromium refuses to start sandboxed.
  args: process.getuid?.() === 0 ? ["--no-sandbox"] : [],
});
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  const response = await page.goto(url, { waitUntil: "load", timeout: 30_000 });
  if (!response || response.status() !== 200) {
    throw new Error(`GET ${url}: HTTP ${response?.status()}`);
  }
  const found = await page.$$eval("[data-field]", (elements) =>
    Object.fromEntries(elements.map((e) => [e.dataset.field, e.innerText.trim()])));
  const missing = fields.filter((f) => !found[f] || found[f] === "—");
  if (missing.length > 0 || errors.length > 0) {
    console.error(`not filled: ${missing.join(", ") || "none"}; page errors: ${errors.join("; ") || "none"}`);
    console.error(JSON.stringify(found, null, 2));
    process.exitCode = 1;
  } else {
    console.log(JSON.stringify({ title: await page.title(), fields: found }));
  }
} finally {
  await browser.close();
}

// SPDX-License-Identifier: GPL-3.0-or-later
// Headless Chromium for the SDK's browser tests and measurements, as test/browser/status-page.mjs
// runs it: Debian's /usr/bin/chromium (or $CHROMIUM) through puppeteer-core (a dev dependency of
// the repository root). No flag weakens the browser's security: the page must work as a user's
// would (CORS from the nodes, no --disable-web-security).
import puppeteer from "puppeteer-core";

/**
 * Opens a page at `url`, with every page error and console error collected in `errors` (and
 * console lines echoed to stderr when `echo` is set), and closes the browser after `use` returns
 * or throws.
 * @template T
 * @param {string} url
 * @param {(page: import("puppeteer-core").Page, errors: string[]) => Promise<T>} use
 * @param {{ echo?: boolean, timeoutMs?: number }} [options]
 * @returns {Promise<T>}
 */
export async function withPage(url, use, { echo = false, timeoutMs = 60_000 } = {}) {
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    // As root (CI), Chromium refuses to start sandboxed.
    args: process.getuid?.() === 0 ? ["--no-sandbox"] : [],
    protocolTimeout: 600_000,
  });
  try {
    const page = await browser.newPage();
    page.setDefaultTimeout(timeoutMs);
    const errors = [];
    page.on("pageerror", (e) => errors.push(`page error: ${e.message ?? e}`));
    page.on("console", (m) => {
      if (echo) console.error(`  [page ${m.type()}] ${m.text()}`);
      if (m.type() === "error") errors.push(`console: ${m.text()}`);
    });
    page.on("requestfailed", (r) => {
      // ERR_ABORTED: the page cancelled it (a retrieval drops the requests it no longer needs).
      if (r.failure()?.errorText !== "net::ERR_ABORTED") errors.push(`request failed: ${r.method()} ${r.url()}: ${r.failure()?.errorText}`);
    });
    const response = await page.goto(url, { waitUntil: "load", timeout: timeoutMs });
    if (!response || response.status() !== 200) throw new Error(`GET ${url}: HTTP ${response?.status()}`);
    return await use(page, errors);
  } finally {
    await browser.close();
  }
}

// SPDX-License-Identifier: GPL-3.0-or-later
// The demo page's server (scripts/serve.mjs) serves what it should and nothing else: no path out
// of its directories (`..`, encoded or not; symlinks pointing out), no dotfiles, no answer to a
// foreign Host (DNS rebinding), no MIME sniffing; and the page it serves declares its CSP.
import assert from "node:assert/strict";
import http from "node:http";
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";

// build/test/serve.test.js → scripts/serve.mjs (plain JS, typed `any` here).
const serveModule = new URL("../../scripts/serve.mjs", import.meta.url).href;

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

let server: { url: string; close: () => Promise<void> };
let port: number;
const dirs: string[] = [];

/** A raw request: the path exactly as given (fetch would normalize `..` away), any Host. */
function request(path: string, options: { host?: string; method?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port, path, method: options.method ?? "GET", headers: { host: options.host ?? `127.0.0.1:${port}` } },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (body += chunk));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on("error", reject);
    req.end();
  });
}

before(async () => {
  const files = mkdtempSync(join(tmpdir(), "kms-serve-files-"));
  const outside = mkdtempSync(join(tmpdir(), "kms-serve-outside-"));
  dirs.push(files, outside);
  writeFileSync(join(files, "policy.json"), '{"policy":1}');
  writeFileSync(join(files, "clip.webm"), "webm");
  writeFileSync(join(files, ".secret"), "dotfile");
  writeFileSync(join(outside, "secret.json"), '{"secret":"outside"}');
  symlinkSync(join(outside, "secret.json"), join(files, "out-link.json"));
  symlinkSync(join(files, "policy.json"), join(files, "in-link.json"));
  const { startServer } = await import(serveModule);
  server = await startServer({ port: 0, files, buildBundle: false });
  port = Number(new URL(server.url).port);
});

after(async () => {
  await server?.close();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

test("binds 127.0.0.1 by default and serves the files directory, with nosniff", async () => {
  assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
  const answer = await request("/files/policy.json");
  assert.equal(answer.status, 200);
  assert.equal(answer.body, '{"policy":1}');
  assert.equal(answer.headers["content-type"], "application/json");
  assert.equal(answer.headers["x-content-type-options"], "nosniff");
  assert.equal((await request("/files/clip.webm")).headers["content-type"], "video/webm");
  assert.equal((await request("/files/in-link.json")).status, 200, "a link to a file inside is served");
});

test("no path out of the served directories", async () => {
  for (const path of [
    "/files/../../../../etc/passwd",
    "/files/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/files/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/%2e%2e/package.json",
    "/dist/../../../package.json",
    "/files/%00",
    "/files/%zz",
  ]) {
    const answer = await request(path);
    assert.equal(answer.status, 404, `${path}: HTTP ${answer.status} ${answer.body.slice(0, 80)}`);
  }
});

test("a symlink pointing out of the files directory is not followed", async () => {
  const answer = await request("/files/out-link.json");
  assert.equal(answer.status, 404, answer.body);
  assert.ok(!answer.body.includes("outside"));
});

test("no dotfiles, under /files/ too", async () => {
  assert.equal((await request("/files/.secret")).status, 404);
  assert.equal((await request("/.git/config")).status, 404);
});

test("a foreign Host is refused (DNS rebinding); loopback names are served", async () => {
  const rebound = await request("/files/policy.json", { host: `attacker.example:${port}` });
  assert.equal(rebound.status, 403);
  assert.ok(!rebound.body.includes("policy"));
  assert.equal((await request("/config.json", { host: "attacker.example" })).status, 403);
  assert.equal((await request("/files/policy.json", { host: `localhost:${port}` })).status, 200);
});

test("only GET and HEAD", async () => {
  assert.equal((await request("/files/policy.json", { method: "POST" })).status, 405);
  const head = await request("/files/policy.json", { method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal(head.body, "");
});

test("the page declares a Content-Security-Policy and takes Alice's key in a password field", async () => {
  const page = await request("/");
  assert.equal(page.status, 200);
  assert.match(page.headers["content-type"] ?? "", /^text\/html/);
  const csp = page.body.match(/<meta http-equiv="Content-Security-Policy" content="([^"]+)"/)?.[1];
  assert.ok(csp, "no CSP meta tag");
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'self' 'wasm-unsafe-eval';/, "scripts of the origin only (no 'unsafe-eval', no inline)");
  assert.match(page.body, /<input type="password" id="alice-key"[^>]*autocomplete="off"/);
});

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createTlsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MAX_ANSWER_BYTES, NodeClient, NodeError } from "../src/http.js";
import { certificateFingerprint, withPin } from "../src/policy-file.js";

type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void;

async function serve(
  handler: Handler,
  server: Server = createServer(),
  scheme = "http",
  host = "127.0.0.1",
): Promise<{ url: string; close: () => Promise<void> }> {
  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    let body = "";
    req.on("data", (chunk: Buffer) => (body += chunk.toString()));
    req.on("end", () => handler(req, res, body));
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `${scheme}://${host.includes(":") ? `[${host}]` : host}:${port}`,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify(body));
}

const NODE_INFO = {
  staker: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
  worker: "0x235b8B154c0512d6CC20612Bf474d3092796Fa15",
  umbralPublicKey: "0x03ab2e0c60d32169aca7a5537daf6176a927213ac287042ead2809a2a62ad023d6",
  chainId: 31337,
  version: "0.1.0",
};

test("plain http is refused unless allowed", async () => {
  const server = await serve((_req, res) => json(res, 200, NODE_INFO));
  try {
    await assert.rejects(new NodeClient().node(server.url), (e: unknown) => e instanceof NodeError && e.code === "BadUrl" && /plain http/.test(e.message));
    const info = await new NodeClient({ allowPlainHttp: true }).node(server.url);
    assert.equal(info.staker, NODE_INFO.staker);
    assert.equal(info.maxCapsulesPerRequest, 64, "a node without the field takes 64");
  } finally {
    await server.close();
  }
});

test("5xx and 429 are retried, waiting at least the node's Retry-After; 4xx are not", async () => {
  let calls = 0;
  const times: number[] = [];
  const server = await serve((req, res) => {
    calls++;
    times.push(Date.now());
    if (req.url === "/flaky") return calls < 3 ? json(res, 503, { error: "the node is starting: x" }, { "retry-after": "1" }) : json(res, 200, { ok: true });
    if (req.url === "/quota") return json(res, 429, { error: "too many" }, { "retry-after": "0" });
    return json(res, 400, { error: "capsules[0]: invalid base64" });
  });
  const client = new NodeClient({ allowPlainHttp: true, backoffMs: 10 });
  try {
    assert.deepEqual(await client.getJson(server.url, "/flaky"), { ok: true });
    assert.equal(calls, 3);
    assert.ok(times[1]! - times[0]! >= 950, "waited the Retry-After of 1 s, not the 10 ms backoff");

    calls = 0;
    await assert.rejects(client.getJson(server.url, "/quota"), (e: unknown) => e instanceof NodeError && e.code === "Refused" && e.status === 429);
    assert.equal(calls, 3, "three attempts");

    calls = 0;
    const error = await client.postJson(server.url, "/bad", { a: 1 }).catch((e: unknown) => e);
    assert.ok(error instanceof NodeError);
    assert.equal(error.status, 400);
    assert.equal(error.reason, "capsules[0]: invalid base64");
    assert.equal(error.message, "refused with HTTP 400: capsules[0]: invalid base64");
    assert.equal(calls, 1, "a 400 is not retried");
  } finally {
    await server.close();
  }
});

test("a re-encryption refused as a replay (409) is retried, signed anew", async () => {
  const bodies: { timestamp: number }[] = [];
  const server = await serve((_req, res, body) => {
    bodies.push(JSON.parse(body) as { timestamp: number });
    if (bodies.length === 1) return json(res, 409, { error: "replayed" });
    json(res, 200, { cfrags: [{ cfrag: "AAAA", signature: "0x00", period: 7 }] });
  });
  let signed = 0;
  try {
    const answer = await new NodeClient({ allowPlainHttp: true, backoffMs: 1 }).reencrypt(server.url, "0x00112233445566778899AABBCCDDEEFF", () => ({
      capsules: ["AAAA"],
      timestamp: 100 + signed++,
      nonce: "0x00",
      signature: "0x00",
    }));
    assert.deepEqual(answer, [{ cfrag: "AAAA", signature: "0x00", period: 7 }]);
    assert.deepEqual(bodies.map((b) => b.timestamp), [100, 101]);
  } finally {
    await server.close();
  }
});

test("an answer that is not the API's is InvalidAnswer; an unreachable node is retried then reported", async () => {
  const server = await serve((_req, res) => json(res, 200, { cfrags: "nope" }));
  const client = new NodeClient({ allowPlainHttp: true, backoffMs: 1, attempts: 2 });
  try {
    await assert.rejects(
      client.reencrypt(server.url, "0x00", () => ({ capsules: [], timestamp: 0, nonce: "", signature: "" })),
      (e: unknown) => e instanceof NodeError && e.code === "InvalidAnswer",
    );
  } finally {
    await server.close();
  }
  // The server is closed: nothing listens on its port any more.
  await assert.rejects(client.node(server.url), (e: unknown) => e instanceof NodeError && e.code === "Unreachable");
});

test("an endless answer is cut at MAX_ANSWER_BYTES, not read into memory", async () => {
  let written = 0;
  const server = await serve((_req, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    const piece = Buffer.alloc(1 << 20, 0x20);
    const more = (): void => {
      while (written <= MAX_ANSWER_BYTES + (4 << 20)) {
        written += piece.length;
        if (!res.write(piece)) return void res.once("drain", more);
      }
      res.end("{}");
    };
    more();
  });
  const client = new NodeClient({ allowPlainHttp: true, backoffMs: 1, attempts: 1 });
  try {
    await assert.rejects(client.node(server.url), (e: unknown) =>
      e instanceof NodeError && e.code === "InvalidAnswer" && /exceeds 16777216 bytes/.test(e.message));
  } finally {
    await server.close();
  }
});

test("a request is aborted by the caller's signal, and times out on a silent node", async () => {
  const server = await serve(() => {
    /* never answers */
  });
  try {
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error("stop")), 100);
    await assert.rejects(
      new NodeClient({ allowPlainHttp: true }).getJson(server.url, "/x", { signal: controller.signal }),
      (e: unknown) => e instanceof NodeError && e.code === "Aborted",
    );
    const started = Date.now();
    await assert.rejects(
      new NodeClient({ allowPlainHttp: true, requestTimeoutMs: 200, attempts: 1 }).getJson(server.url, "/x"),
      (e: unknown) => e instanceof NodeError && e.code === "Unreachable" && /no answer within 200 ms/.test(e.message),
    );
    assert.ok(Date.now() - started < 5_000);
  } finally {
    await server.close();
  }
});

/** A self-signed certificate for 127.0.0.1 made with openssl (the test is skipped without it). */
function selfSigned(): { key: Buffer; cert: Buffer } | undefined {
  try {
    const dir = mkdtempSync(join(tmpdir(), "kms-tls-"));
    execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
      "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem")], { stdio: "ignore" });
    return { key: readFileSync(join(dir, "key.pem")), cert: readFileSync(join(dir, "cert.pem")) };
  } catch {
    return undefined;
  }
}

const tls = selfSigned();

test("a pinned URL reaches exactly the pinned certificate; a wrong pin is refused at once", { skip: tls ? false : "needs openssl" }, async () => {
  let requests = 0;
  const server = await serve((_req, res) => {
    requests++;
    json(res, 200, { ...NODE_INFO, maxCapsulesPerRequest: 5 });
  }, createTlsServer({ key: tls!.key, cert: tls!.cert }), "https");
  const der = new Uint8Array(new X509Certificate(tls!.cert).raw);
  const pin = certificateFingerprint(der);
  try {
    const client = new NodeClient({ backoffMs: 5_000 });
    assert.equal(await client.capsuleLimit(withPin(server.url, pin)), 5);
    assert.equal(client.knownCapsuleLimit(withPin(server.url, pin)), 5);
    // Unpinned, the self-signed certificate fails the web PKI.
    await assert.rejects(new NodeClient({ attempts: 1 }).node(server.url), (e: unknown) => e instanceof NodeError && e.code === "Unreachable");
    const wrong = new Uint8Array(32).fill(1);
    const started = Date.now();
    const error = await client.node(withPin(server.url, wrong)).catch((e: unknown) => e);
    assert.ok(error instanceof NodeError, String(error));
    assert.equal(error.code, "Certificate");
    assert.ok(error.message.includes(`pinned sha256 ${"01".repeat(32)}, presented ${Buffer.from(pin).toString("hex")}`), error.message);
    assert.ok(Date.now() - started < 5_000, "not retried");
    assert.equal(requests, 1, "no request reached the server through the wrong pin");
  } finally {
    await server.close();
  }
});

/** Whether this host has an IPv6 loopback (a container may not). */
async function hasIpv6Loopback(): Promise<boolean> {
  const probe = createServer();
  return new Promise((resolve) => {
    probe.once("error", () => resolve(false));
    probe.listen(0, "::1", () => probe.close(() => resolve(true)));
  });
}

const ipv6Skip = !tls ? "needs openssl" : (await hasIpv6Loopback()) ? false : "no IPv6 loopback here";

test("a pinned URL with an IPv6 address connects to that address", { skip: ipv6Skip }, async () => {
  // The certificate names 127.0.0.1: a pin stands for the certificate, whatever names it holds.
  const server = await serve((_req, res) => json(res, 200, { ...NODE_INFO, maxCapsulesPerRequest: 7 }), createTlsServer({ key: tls!.key, cert: tls!.cert }), "https", "::1");
  const pin = certificateFingerprint(new Uint8Array(new X509Certificate(tls!.cert).raw));
  try {
    assert.match(server.url, /^https:\/\/\[::1\]:\d+$/);
    assert.equal(await new NodeClient({ attempts: 1 }).capsuleLimit(withPin(server.url, pin)), 7);
  } finally {
    await server.close();
  }
});

test("a redirect is not followed (not even to plain http from an https-only client)", async () => {
  let reached = 0;
  const target = await serve((_req, res) => {
    reached++;
    json(res, 200, NODE_INFO);
  });
  const redirecting = await serve((_req, res) => {
    res.writeHead(302, { location: `${target.url}/v1/node` });
    res.end();
  });
  try {
    const error = await new NodeClient({ allowPlainHttp: true, attempts: 1 }).node(redirecting.url).catch((e: unknown) => e);
    assert.ok(error instanceof NodeError, String(error));
    assert.equal(error.code, "InvalidAnswer");
    assert.match(error.message, /redirects to http:\/\/127\.0\.0\.1/);
    assert.equal(reached, 0, "the redirect's target was never asked");
  } finally {
    await redirecting.close();
    await target.close();
  }
});

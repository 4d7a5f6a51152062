#!/usr/bin/env node
// SPDX-License-Identifier: GPL-3.0-or-later
// The demo page's server: a tiny static server (node:http, no framework) for the page
// (examples/web/), the SDK's browser bundle (built at start, examples/web/dist/), the deployments
// file and, optionally, a directory of files (policy files, encrypted files) under /files/.
//
//   npm run demo -- --rpc http://127.0.0.1:8545 --deployments ../../deployments/31337.json \
//     [--port 8080] [--host 127.0.0.1] [--files DIR] [--no-bundle]
//
// The page reads /config.json (the RPC URL and where the deployments file is) and then talks to
// the chain's RPC and the nodes directly from the browser: run the devnet with --plain-http
// (browsers cannot accept the nodes' self-signed, pinned certificates) and nodes that answer CORS.
import http from "node:http";
import { createReadStream } from "node:fs";
import { stat, readFile, realpath } from "node:fs/promises";
import { pipeline } from "node:stream";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { flagValue } from "./args.mjs";
import { bundle, bundleDemo, defaultOutdir } from "./bundle.mjs";

const sdkRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const pageDir = path.join(sdkRoot, "examples", "web");

const contentTypes = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".map": "application/json",
  ".wasm": "application/wasm",
  ".mp4": "video/mp4",
  ".webm": "video/webm",
  ".txt": "text/plain; charset=utf-8",
  ".svg": "image/svg+xml",
};

/**
 * `root` + the URL path, or undefined when the path escapes `root` (`..`, absolute) or names a
 * dotfile or dot directory (`.git/`, `.env`) anywhere along it.
 */
function inside(root, urlPath) {
  let decoded;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return undefined;
  }
  if (decoded.includes("\0") || decoded.split("/").some((part) => part.startsWith("."))) return undefined;
  const file = path.resolve(root, "." + path.posix.normalize("/" + decoded));
  return file === root || file.startsWith(root + path.sep) ? file : undefined;
}

/** Headers on every answer: no MIME sniffing (a served file is never run as another type), no framing. */
const commonHeaders = { "x-content-type-options": "nosniff", "x-frame-options": "DENY" };

const notFound = (response) => response.writeHead(404, { ...commonHeaders, "content-type": "text/plain" }).end("not found\n");

/**
 * Sends `file` if it is a regular file whose real path is still under `root` (when given): a symlink inside
 * a served directory that points out of it (`files/x -> /etc/passwd`, `~/.ssh`) is not followed.
 */
async function sendFile(response, root, file, method) {
  let info;
  // The type goes by the name asked for (a link's target may have another).
  const type = contentTypes[path.extname(file)] ?? "application/octet-stream";
  try {
    const real = await realpath(file);
    if (root !== undefined) {
      const realRoot = await realpath(root);
      if (real !== realRoot && !real.startsWith(realRoot + path.sep)) throw new Error("outside");
    }
    info = await stat(real);
    file = real;
  } catch {
    info = undefined;
  }
  if (!info?.isFile()) {
    notFound(response);
    return;
  }
  response.writeHead(200, {
    ...commonHeaders,
    "content-type": type,
    "content-length": info.size,
    // The page is development material: always the file on disk.
    "cache-control": "no-store",
  });
  if (method === "HEAD") response.end();
  // pipeline, not pipe: a read error (the file gone or unreadable since stat) ends this
  // response instead of being an unhandled 'error' event that stops the server.
  else pipeline(createReadStream(file), response, () => {});
}

/**
 * Whether the request's Host is this server's own loopback name. A page on another site can
 * make its own name resolve to 127.0.0.1 (DNS rebinding) and then read this server as
 * same-origin, Bob's key file under /files/ included; its requests carry its own Host.
 */
function loopbackHost(hostHeader, port) {
  const names = ["127.0.0.1", "localhost", "[::1]"];
  return names.some((name) => hostHeader === `${name}:${port}` || (port === 80 && hostHeader === name));
}

/**
 * Starts the server.
 * @param {{ port?: number, host?: string, rpc: string, deployments: string, files?: string, buildBundle?: boolean }} options
 * @returns {Promise<{ url: string, close: () => Promise<void> }>}
 */
export async function startServer({ port = 8080, host = "127.0.0.1", rpc, deployments, files, buildBundle = true }) {
  // Both are optional for the page's own smoke test (bundle only); the CLI requires them.
  const deploymentsFile = deployments ? path.resolve(deployments) : undefined;
  if (deploymentsFile) {
    await readFile(deploymentsFile).catch((e) => {
      throw new Error(`deployments file ${deploymentsFile}: ${e.code ?? e.message}: is the devnet running?`);
    });
  }
  const filesDir = files ? path.resolve(files) : undefined;
  if (buildBundle) {
    await bundle({ outdir: defaultOutdir });
    await bundleDemo({ outdir: defaultOutdir });
  }
  const config = JSON.stringify({ rpc: rpc ?? null, deployments: deploymentsFile ? "/deployments.json" : null });

  // On a loopback address only browsers of this machine reach the server, and only by a
  // loopback name; bound elsewhere (--host 0.0.0.0), its names are the operator's business.
  const loopback = host === "127.0.0.1" || host === "localhost" || host === "::1";
  const server = http.createServer((request, response) => {
    const url = new URL(request.url ?? "/", "http://localhost");
    if (loopback && !loopbackHost(request.headers.host ?? "", server.address().port)) {
      response.writeHead(403, { ...commonHeaders, "content-type": "text/plain" }).end(`the Host header must name this server (127.0.0.1:${server.address().port})\n`);
      return;
    }
    if (request.method !== "GET" && request.method !== "HEAD") {
      response.writeHead(405, { ...commonHeaders, allow: "GET, HEAD" }).end();
      return;
    }
    const route = url.pathname;
    let file;
    let root;
    if (route === "/favicon.ico") {
      // No icon: say so without a 404 (which a page's console reports as an error).
      response.writeHead(204).end();
      return;
    } else if (route === "/config.json") {
      response.writeHead(200, { ...commonHeaders, "content-type": "application/json", "cache-control": "no-store" }).end(config);
      return;
    } else if (route === "/deployments.json" && deploymentsFile) {
      // The one file named on the command line, wherever it (or its link) points.
      file = deploymentsFile;
    } else if (route.startsWith("/dist/")) {
      root = defaultOutdir;
      file = inside(root, route.slice("/dist".length));
    } else if (route.startsWith("/files/") && filesDir) {
      root = filesDir;
      file = inside(root, route.slice("/files".length));
    } else {
      root = pageDir;
      file = inside(root, route === "/" ? "/index.html" : route);
      // The page's own sources only: not its dist/ by another path.
      if (file && (file === defaultOutdir || file.startsWith(defaultOutdir + path.sep))) file = undefined;
    }
    if (!file) {
      notFound(response);
      return;
    }
    sendFile(response, root, file, request.method).catch((error) => {
      if (!response.headersSent) response.writeHead(500, { "content-type": "text/plain" });
      response.end(`${error.message}\n`);
    });
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  const address = server.address();
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${address.port}/`,
    close: () => new Promise((resolve) => {
      server.closeAllConnections?.();
      server.close(() => resolve());
    }),
  };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const value = (flag) => flagValue(args, flag);
  try {
    if (!value("--rpc")) throw new Error("--rpc is required (the devnet's RPC URL, e.g. http://127.0.0.1:8545)");
    if (!value("--deployments")) throw new Error("--deployments is required (the devnet's deployments file)");
    const server = await startServer({
      port: Number(value("--port") ?? 8080),
      host: value("--host") ?? "127.0.0.1",
      rpc: value("--rpc"),
      deployments: value("--deployments"),
      files: value("--files"),
      buildBundle: !args.includes("--no-bundle"),
    });
    console.log(`KMS demo page: ${server.url} (Ctrl-C stops)`);
    console.log("The nodes must be reachable over plain http with CORS: `kms devnet --plain-http`.");
  } catch (error) {
    console.error(`serve: ${error.message}`);
    process.exit(1);
  }
}

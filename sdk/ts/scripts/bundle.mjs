#!/usr/bin/env node
// SPDX-License-Identifier: GPL-3.0-or-later
// The browser build of the SDK: one ES module, src/index.ts with its dependencies (viem, noble,
// umbral-pre's WebAssembly), for <script type="module"> or a bundler.
//
//   node scripts/bundle.mjs [--outdir DIR] [--wasm embed|file] [--no-minify] [--sizes [--entry FILE]]
//
// Writes DIR/kms-sdk.js (+ .map; + umbral_pre_wasm_bg.wasm with --wasm file) and the demo page's
// DIR/app.js, DIR defaulting to examples/web/dist/ (the demo page serves them from there). --sizes prints the bundle's size
// raw (unminified), minified and minified+gzip, as JSON, for the README.
//
// Node-only modules (node:*, undici: src/http.ts imports them dynamically, for pinned TLS) stay
// out: they are left as external dynamic imports, which a browser never reaches (http.ts uses
// fetch there). A *static* import of one would break loading the bundle in a browser, so the
// build fails on one and names the importer.
import * as esbuild from "esbuild";
import { gzipSync } from "node:zlib";
import { writeFile, mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { flagValue } from "./args.mjs";
import { wasmBindgenPlugin } from "./esbuild-wasm-plugin.mjs";

const sdkRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const defaultOutdir = path.join(sdkRoot, "examples", "web", "dist");
export const bundleName = "kms-sdk.js";

const nodeOnly = /^(node:.*|undici(\/.*)?)$/;

/** Leaves Node-only modules out of the bundle and remembers who imports them, and how. */
function nodeOnlyExternals(seen) {
  return {
    name: "node-only-externals",
    setup(build) {
      build.onResolve({ filter: nodeOnly }, (args) => {
        seen.push({ module: args.path, importer: path.relative(sdkRoot, args.importer), kind: args.kind });
        return { path: args.path, external: true };
      });
    },
  };
}

/**
 * Builds the browser bundle.
 * @param {{ outdir?: string, wasm?: "embed" | "file", minify?: boolean, write?: boolean, entry?: string }} [options]
 * @returns {Promise<{ file: string, code: Uint8Array, nodeOnlyImports: object[] }>}
 */
export async function bundle({ outdir = defaultOutdir, wasm = "embed", minify = true, write = true, entry, name = bundleName } = {}) {
  const nodeOnlyImports = [];
  const result = await esbuild.build({
    entryPoints: [entry ?? path.join(sdkRoot, "src", "index.ts")],
    bundle: true,
    format: "esm",
    platform: "browser",
    // Top-level await (the WebAssembly instantiation) needs ES2022 modules.
    target: ["es2022", "chrome100", "firefox100", "safari15"],
    mainFields: ["browser", "module", "main"],
    conditions: ["browser", "import"],
    minify,
    sourcemap: write ? "linked" : false,
    legalComments: "eof",
    outfile: path.join(outdir, name),
    write: false,
    logLevel: "warning",
    plugins: [nodeOnlyExternals(nodeOnlyImports), wasmBindgenPlugin({ mode: wasm, outdir })],
  });
  const staticNodeImports = nodeOnlyImports.filter((i) => i.kind !== "dynamic-import");
  if (staticNodeImports.length > 0) {
    const list = staticNodeImports.map((i) => `${i.importer} imports ${i.module} (${i.kind})`).join("; ");
    throw new Error(`Node-only modules imported statically, the bundle would not load in a browser: ${list}; import them with await import() on the Node path only`);
  }
  const main = result.outputFiles.find((f) => f.path.endsWith(".js"));
  if (write) {
    await mkdir(outdir, { recursive: true });
    for (const f of result.outputFiles) await writeFile(f.path, f.contents);
  }
  return { file: main.path, code: main.contents, nodeOnlyImports };
}

/**
 * The demo page's script, examples/web/app.js with the SDK's sources and viem, into
 * examples/web/dist/app.js (the page shows how an application bundles the SDK).
 */
export function bundleDemo({ outdir = defaultOutdir, minify = true } = {}) {
  return bundle({ outdir, minify, entry: path.join(sdkRoot, "examples", "web", "app.js"), name: "app.js" });
}

/**
 * Sizes of the embedded-wasm bundle of `entry` (default src/index.ts): unminified, minified,
 * minified + gzip (level 9), in bytes; and of the JS and the .wasm apart (--wasm file).
 */
export async function bundleSizes({ entry } = {}) {
  const raw = await bundle({ entry, minify: false, write: false });
  const min = await bundle({ entry, minify: true, write: false });
  const outdir = path.join(sdkRoot, "build", "bundle-sizes");
  const file = await bundle({ entry, minify: true, write: false, wasm: "file", outdir });
  const wasm = await readFile(path.join(outdir, "umbral_pre_wasm_bg.wasm"));
  return {
    raw: raw.code.length,
    minified: min.code.length,
    gzip: gzipSync(min.code, { level: 9 }).length,
    // With --wasm file: the JS alone, and the .wasm beside it (what a page downloads).
    jsWithoutWasm: { minified: file.code.length, gzip: gzipSync(file.code, { level: 9 }).length },
    wasm: { raw: wasm.length, gzip: gzipSync(wasm, { level: 9 }).length },
  };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const value = (flag) => flagValue(args, flag);
  try {
    const outdir = path.resolve(value("--outdir") ?? defaultOutdir);
    const wasm = value("--wasm") ?? "embed";
    const { file, code, nodeOnlyImports } = await bundle({ outdir, wasm, minify: !args.includes("--no-minify") });
    await bundleDemo({ outdir });
    console.log(`${path.relative(process.cwd(), file)}: ${code.length} bytes (${gzipSync(code, { level: 9 }).length} gzipped)`);
    for (const i of nodeOnlyImports) console.log(`  left out (Node only): ${i.module}, dynamically imported by ${i.importer}`);
    if (args.includes("--sizes")) console.log(JSON.stringify(await bundleSizes({ entry: value("--entry") }), null, 2));
  } catch (error) {
    console.error(`bundle: ${error.message}`);
    process.exit(1);
  }
}

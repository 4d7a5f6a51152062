// SPDX-License-Identifier: GPL-3.0-or-later
// An esbuild plugin for wasm-bindgen's "bundler" output (what @nucypher/umbral-pre's `browser`
// entry, pkg-bundler/, is): its JS does `import * as wasm from "./umbral_pre_wasm_bg.wasm"`, an
// ES module import of WebAssembly that webpack understands and esbuild does not. The plugin
// replaces that import with a JS module that instantiates the WebAssembly itself, with top-level
// await (so the output must be ESM), and re-exports the instance's exports by name.
//
// The module's imports (the `__wbg_*` glue functions) come from the JS module(s) the .wasm names
// in its import section (`./umbral_pre_wasm_bg.js`), imported here as namespaces: that is what a
// bundler with WebAssembly-ESM integration would hand the instance.
//
// Two ways to ship the bytes:
// - "embed" (default): base64 in the bundle, one self-contained file (+33% on the .wasm, most of
//   which gzip takes back);
// - "file": the .wasm is copied next to the bundle and fetched relative to `import.meta.url`
//   with WebAssembly.instantiateStreaming (compiles while downloading; needs the server to send
//   `application/wasm`).
// Browsers refuse to compile WebAssembly over 4 KiB synchronously on the main thread, hence the
// asynchronous instantiate and the top-level await.
import { readFile, copyFile, mkdir } from "node:fs/promises";
import path from "node:path";

/**
 * @param {{ mode?: "embed" | "file", outdir?: string }} [options]
 * @returns {import("esbuild").Plugin}
 */
export function wasmBindgenPlugin({ mode = "embed", outdir } = {}) {
  if (mode !== "embed" && mode !== "file") throw new Error(`wasm mode must be "embed" or "file", got ${mode}`);
  return {
    name: "wasm-bindgen-bundler",
    setup(build) {
      build.onResolve({ filter: /\.wasm$/ }, (args) => {
        // Only ES imports of a .wasm (not a `new URL(...)` asset or a `file` loader use).
        if (args.kind !== "import-statement") return undefined;
        return { path: path.resolve(args.resolveDir, args.path), namespace: "wasm-module" };
      });
      build.onLoad({ filter: /.*/, namespace: "wasm-module" }, async (args) => {
        const bytes = await readFile(args.path);
        const module = await WebAssembly.compile(bytes);
        const importModules = [...new Set(WebAssembly.Module.imports(module).map((i) => i.module))];
        const exportNames = WebAssembly.Module.exports(module).map((e) => e.name);
        for (const name of exportNames) {
          if (!/^[A-Za-z_$][\w$]*$/.test(name)) throw new Error(`${args.path}: export ${name} is not a JS identifier`);
        }
        const lines = [];
        importModules.forEach((specifier, i) => {
          // Resolved by esbuild from the .wasm's directory, like the import was written next to it.
          lines.push(`import * as imports${i} from ${JSON.stringify(specifier)};`);
        });
        const importObject = `{ ${importModules.map((s, i) => `${JSON.stringify(s)}: imports${i}`).join(", ")} }`;
        if (mode === "embed") {
          lines.push(
            `const base64 = ${JSON.stringify(bytes.toString("base64"))};`,
            // atob is in browsers, workers and Node >= 16.
            `const binary = atob(base64);`,
            `const bytes = new Uint8Array(binary.length);`,
            `for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);`,
            `const { instance } = await WebAssembly.instantiate(bytes, ${importObject});`,
          );
        } else {
          if (!outdir) throw new Error(`wasm mode "file" needs the bundle's outdir`);
          const fileName = path.basename(args.path);
          await mkdir(outdir, { recursive: true });
          await copyFile(args.path, path.join(outdir, fileName));
          lines.push(
            `const url = new URL(${JSON.stringify(`./${fileName}`)}, import.meta.url);`,
            // A 404 would otherwise surface as a MIME-type or a compile error about the error page.
            `const response = fetch(url).then((r) => { if (!r.ok) throw new Error(\`GET \${url}: HTTP \${r.status} (umbral-pre's WebAssembly, served next to the bundle)\`); return r; });`,
            `const { instance } = typeof WebAssembly.instantiateStreaming === "function"`,
            `  ? await WebAssembly.instantiateStreaming(response, ${importObject})`,
            `  : await WebAssembly.instantiate(await (await response).arrayBuffer(), ${importObject});`,
          );
        }
        for (const name of exportNames) lines.push(`export const ${name} = instance.exports.${name};`);
        return { contents: lines.join("\n"), loader: "js", resolveDir: path.dirname(args.path), watchFiles: [args.path] };
      });
    },
  };
}

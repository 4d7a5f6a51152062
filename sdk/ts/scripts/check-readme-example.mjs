#!/usr/bin/env node
// SPDX-License-Identifier: GPL-3.0-or-later
// The READMEs' TypeScript must compile against the SDK as it is. Two documents, two ways:
//
// - The repository's README.md: every ```ts block that imports "@kms/sdk" is a whole program of
//   its own, checked as its own file.
// - sdk/ts/README.md: its ```ts blocks are one program told in pieces (a later block uses what an
//   earlier one declared: `deployment`, `alice`, `plan`, `policy`, …), so they are checked in order
//   as one file. Each import stays where it is (ESM hoists imports; TypeScript accepts them after
//   statements), minus the names an earlier block already imported from the same module; a
//   statement left with none becomes blank lines, so that every line keeps its README line number.
//
// In both, `from "@kms/sdk"` becomes the SDK's src/index.ts, and tsc --noEmit checks them with the
// package's strict options. Errors are reported at the README's file and line. Run by script/test.
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const sdkRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const repoRoot = path.resolve(sdkRoot, "..", "..");
const outDir = path.join(sdkRoot, "build", "readme");
const SDK_IMPORT = 'from "@kms/sdk"';
const SDK_SOURCE = 'from "../../src/index.js"';

// What sdk/ts/README.md's snippets leave to the reader, declared so the rest type-checks; nothing
// here stands in for an SDK name. Keep it to values a reader has to supply.
const SDK_README_PREAMBLE = [
  "// Alice's Ethereum private key (`kms devnet` prints the dev keys): never written in a README.",
  "declare const ALICE_KEY: `0x${string}`;",
];

/** The ```ts blocks of `text`, each with the README line its first code line is on (1-based). */
function tsBlocks(text) {
  return [...text.matchAll(/^```ts\n([\s\S]*?)^```/gm)].map((m) => ({
    code: m[1],
    line: text.slice(0, m.index).split("\n").length + 1,
  }));
}

/** Whitespace that keeps `text`'s line count. */
function blankLines(text) {
  return "\n".repeat(text.split("\n").length - 1);
}

/**
 * Drops from `code`'s `import { … } from "m";` statements the names `imported` already has from
 * `m` (and records the new ones), keeping the line count. Other import forms are left as they are.
 */
function dedupeImports(code, imported) {
  return code.replace(/^import\s+(type\s+)?\{([^}]*)\}\s*from\s*("[^"]+");/gm, (statement, typeOnly, names, module) => {
    const key = `${typeOnly ? "type " : ""}${module}`;
    const seen = imported.get(key) ?? new Set();
    imported.set(key, seen);
    const fresh = names
      .split(",")
      .map((name) => name.trim())
      .filter((name) => name !== "" && !seen.has(name));
    for (const name of fresh) seen.add(name);
    if (fresh.length === 0) return blankLines(statement);
    return `import ${typeOnly ?? ""}{ ${fresh.join(", ")} } from ${module};${blankLines(statement)}`;
  });
}

const sources = []; // { file, readme, lineOf(generatedLine) → README line | undefined }

// The repository README: each block importing the SDK is a program.
const rootReadme = path.join(repoRoot, "README.md");
const rootBlocks = tsBlocks(readFileSync(rootReadme, "utf8")).filter((b) => b.code.includes(SDK_IMPORT));
if (rootBlocks.length === 0) {
  console.error("error: README.md has no TypeScript example importing @kms/sdk");
  process.exit(1);
}

// The SDK's README: every ```ts block, in order, one program.
const sdkReadme = path.join(sdkRoot, "README.md");
const sdkBlocks = tsBlocks(readFileSync(sdkReadme, "utf8"));
if (sdkBlocks.length === 0) {
  console.error("error: sdk/ts/README.md has no TypeScript block");
  process.exit(1);
}

rmSync(outDir, { recursive: true, force: true });
mkdirSync(outDir, { recursive: true });

rootBlocks.forEach((block, i) => {
  const file = path.join(outDir, `root-readme-${i}.ts`);
  writeFileSync(file, `${block.code.replaceAll(SDK_IMPORT, SDK_SOURCE)}\nexport {};\n`);
  sources.push({ file, readme: rootReadme, lineOf: (n) => block.line + n - 1 });
});

{
  const file = path.join(outDir, "sdk-readme.ts");
  const imported = new Map();
  const lines = [...SDK_README_PREAMBLE];
  const origin = SDK_README_PREAMBLE.map(() => undefined); // generated line i → README line
  for (const block of sdkBlocks) {
    const code = dedupeImports(block.code, imported).replaceAll(SDK_IMPORT, SDK_SOURCE);
    code.replace(/\n$/, "").split("\n").forEach((text, i) => {
      lines.push(text);
      origin.push(block.line + i);
    });
  }
  lines.push("export {};");
  writeFileSync(file, `${lines.join("\n")}\n`);
  sources.push({ file, readme: sdkReadme, lineOf: (n) => origin[n - 1] });
}

const tsc = path.join(sdkRoot, "node_modules", "typescript", "bin", "tsc");
const args = [tsc, "--noEmit", "--pretty", "false", "--strict", "--noUncheckedIndexedAccess", "--target", "ES2022",
  "--module", "NodeNext", "--moduleResolution", "NodeNext", "--skipLibCheck", "--types", "node",
  "--lib", "ES2022,DOM,DOM.Iterable", ...sources.map((s) => s.file)];
try {
  execFileSync(process.execPath, args, { cwd: sdkRoot, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
} catch (error) {
  // tsc names the generated file; point at the README's line instead (the generated one follows).
  const output = `${error.stdout ?? ""}${error.stderr ?? ""}`;
  for (const line of output.split("\n")) {
    const match = /^(.*?)\((\d+),(\d+)\): (.*)$/.exec(line);
    const source = match && sources.find((s) => path.resolve(sdkRoot, match[1]) === s.file);
    const readmeLine = source?.lineOf(Number(match[2]));
    if (source && readmeLine !== undefined) {
      console.error(`${path.relative(repoRoot, source.readme)}:${readmeLine}:${match[3]}: ${match[4]}  [${match[1]}:${match[2]}]`);
    } else if (line !== "") {
      console.error(line);
    }
  }
  console.error("error: a README's TypeScript does not compile against sdk/ts/src (above)");
  process.exit(1);
}
console.log(
  `README.md: ${rootBlocks.length} TypeScript example(s), sdk/ts/README.md: ${sdkBlocks.length} block(s) as one program: all compile against the SDK`,
);

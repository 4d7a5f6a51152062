#!/usr/bin/env node
// SPDX-License-Identifier: GPL-3.0-or-later
// The repository README's TypeScript example must compile against the SDK as it is: this takes
// every ```ts block of ../../README.md that imports "@kms/sdk", points the import at src/index.ts
// and type-checks it (tsc --noEmit, the package's strict options). Run by script/test.
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const sdkRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const readme = readFileSync(path.join(sdkRoot, "..", "..", "README.md"), "utf8");
const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]).filter((b) => b.includes('from "@kms/sdk"'));
if (blocks.length === 0) {
  console.error("error: README.md has no TypeScript example importing @kms/sdk");
  process.exit(1);
}
const dir = path.join(sdkRoot, "build", "readme");
rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });
const files = blocks.map((block, i) => {
  const file = path.join(dir, `example-${i}.ts`);
  writeFileSync(file, `${block.replaceAll('from "@kms/sdk"', 'from "../../src/index.js"')}\nexport {};\n`);
  return file;
});
const tsc = path.join(sdkRoot, "node_modules", "typescript", "bin", "tsc");
try {
  execFileSync(process.execPath, [tsc, "--noEmit", "--strict", "--noUncheckedIndexedAccess", "--target", "ES2022",
    "--module", "NodeNext", "--moduleResolution", "NodeNext", "--skipLibCheck", "--types", "node", "--lib", "ES2022,DOM,DOM.Iterable", ...files],
  { stdio: "inherit", cwd: sdkRoot });
} catch {
  console.error("error: the README's TypeScript example does not compile against sdk/ts/src (above)");
  process.exit(1);
}
console.log(`README.md: ${files.length} TypeScript example(s) compile against the SDK`);

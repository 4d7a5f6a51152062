#!/usr/bin/env node
// SPDX-License-Identifier: GPL-3.0-or-later
// What `npm pack` would publish must be a working package: its entry points (package.json's
// "exports", "main", "types") in the tarball, built by the "prepack" script. Run by script/test
// (no network: a dry run of the pack).
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const sdkRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const manifest = JSON.parse(readFileSync(path.join(sdkRoot, "package.json"), "utf8"));
const packed = JSON.parse(execFileSync("npm", ["pack", "--dry-run", "--json", "--loglevel=error"], { cwd: sdkRoot, encoding: "utf8" }));
const files = new Set(packed[0].files.map((f) => f.path));
const wanted = new Set([manifest.main, manifest.types, ...Object.values(manifest.exports["."])].map((p) => p.replace(/^\.\//, "")));
const missing = [...wanted].filter((p) => !files.has(p));
if (missing.length > 0) {
  console.error(`error: npm pack would leave out ${missing.join(", ")} (package.json's entry points)`);
  process.exit(1);
}
console.log(`npm pack: ${files.size} files, entry points ${[...wanted].join(", ")} included`);

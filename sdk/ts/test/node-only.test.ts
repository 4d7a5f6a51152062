import { test } from "node:test";
import assert from "node:assert/strict";
import { KmsError } from "../src/errors.js";
import { importNodeOnly } from "../src/node-only.js";

test("a module that cannot be loaded is a KmsError naming it, with what to do", async () => {
  const error = await importNodeOnly("undici-not-installed-here").catch((e: unknown) => e);
  assert.ok(error instanceof KmsError, String(error));
  assert.equal(error.code, "ModuleMissing");
  assert.match(error.message, /cannot load undici-not-installed-here: .*reinstall the packages \(npm ci\)/);
  const builtin = await importNodeOnly("node:no-such-builtin").catch((e: unknown) => e);
  assert.ok(builtin instanceof KmsError && /Node\.js 20\.19 or later/.test(builtin.message), String(builtin));
  // What is there loads as before.
  const tls = await importNodeOnly<typeof import("node:tls")>("node:tls");
  assert.equal(typeof tls.connect, "function");
});

import { KmsError } from "./errors.js";

/**
 * Imports a Node.js-only module (`node:fs`, `node:tls`, undici). The name goes through a variable
 * so that bundlers (esbuild, webpack, vite) leave the import alone: a browser bundle must neither
 * pull these in nor fail to build for lack of them. Only the Node.js code paths call it.
 *
 * A module that cannot be loaded is a {@link KmsError} `ModuleMissing`, saying which.
 */
export async function importNodeOnly<T>(name: string): Promise<T> {
  try {
    return (await import(/* @vite-ignore */ /* webpackIgnore: true */ name)) as T;
  } catch (error) {
    throw new KmsError("ModuleMissing", `cannot load ${name}: ${error instanceof Error ? error.message : String(error)}`, {
      hint: name.startsWith("node:")
        ? "this runtime lacks a Node.js built-in the SDK needs here: run it on Node.js 20.19 or later"
        : `${name} is a dependency of @kms/sdk: reinstall the packages (npm ci)`,
      cause: error,
    });
  }
}

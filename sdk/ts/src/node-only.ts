/**
 * Imports a Node.js-only module (`node:fs`, `node:tls`, undici). The name goes through a variable
 * so that bundlers (esbuild, webpack, vite) leave the import alone: a browser bundle must neither
 * pull these in nor fail to build for lack of them. Only the Node.js code paths call it.
 */
export function importNodeOnly<T>(name: string): Promise<T> {
  return import(/* @vite-ignore */ /* webpackIgnore: true */ name) as Promise<T>;
}

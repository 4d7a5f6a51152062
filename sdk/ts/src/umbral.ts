/**
 * umbral-pre's WASM build (`@nucypher/umbral-pre` 0.10, byte-compatible with the Rust crate 0.11
 * the nodes run). Every object it returns owns WASM memory: call `free()` when done, and re-parse
 * from bytes after a failed `verify()`, which consumes the object.
 */
export * as umbral from "@nucypher/umbral-pre";

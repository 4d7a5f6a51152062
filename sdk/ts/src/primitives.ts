/**
 * The two primitives every payload byte goes through, ChaCha20-Poly1305 (RFC 8439) and BLAKE3,
 * each from the fastest library the platform allows. They cost the streaming formats' throughput
 * (docs/client.md: every byte is sealed and hashed once), and the pure-JavaScript ones are far
 * below the Rust client's: measured on the project's 2-core VM, @noble/hashes' BLAKE3 hashes about
 * 13 MiB/s and hash-wasm's WebAssembly one about 380 MiB/s; @noble/ciphers' ChaCha20-Poly1305 seals
 * about 37 MiB/s and Node.js's OpenSSL one over 1 GiB/s. Browsers have no ChaCha20 in WebCrypto,
 * so there it is noble's.
 *
 * Both backends of each primitive compute the same function (test/primitives.test.ts checks them
 * against each other and against RFC 8439's and BLAKE3's test vectors); a page whose CSP forbids
 * WebAssembly gets noble's BLAKE3 instead of failing.
 */
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { blake3 as nobleBlake3 } from "@noble/hashes/blake3.js";
import { createBLAKE3 } from "hash-wasm";

import { importNodeOnly } from "./node-only.js";

/** Which implementation each primitive uses here (for benchmarks and bug reports). */
export interface CryptoBackends {
  blake3: "hash-wasm" | "noble";
  aead: "node:crypto" | "noble";
}

type NodeCrypto = typeof import("node:crypto");

const wasmBlake3 = await createBLAKE3().catch(() => undefined);

// Left out of browser builds (importNodeOnly), and looked for only in Node.js.
const nodeCrypto: NodeCrypto | undefined =
  typeof process !== "undefined" && typeof process.versions?.node === "string"
    ? await importNodeOnly<NodeCrypto>("node:crypto").catch(() => undefined)
    : undefined;

const TAG_LENGTH = 16;

/** The backends in use. */
export function cryptoBackends(): CryptoBackends {
  return { blake3: wasmBlake3 ? "hash-wasm" : "noble", aead: nodeCrypto ? "node:crypto" : "noble" };
}

/** BLAKE3's 32-byte default-mode hash of `data`. */
export function blake3(data: Uint8Array): Uint8Array {
  if (!wasmBlake3) return nobleBlake3(data);
  wasmBlake3.init();
  wasmBlake3.update(data);
  return wasmBlake3.digest("binary");
}

/** ChaCha20-Poly1305 (12-byte nonce): `ciphertext ‖ tag`. */
export function aeadSeal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Uint8Array {
  if (!nodeCrypto) return chacha20poly1305(key, nonce, aad).encrypt(plaintext);
  const cipher = nodeCrypto.createCipheriv("chacha20-poly1305", key, nonce, { authTagLength: TAG_LENGTH });
  cipher.setAAD(aad, { plaintextLength: plaintext.length });
  const head = cipher.update(plaintext);
  const tail = cipher.final();
  const out = new Uint8Array(head.length + tail.length + TAG_LENGTH);
  out.set(head, 0);
  out.set(tail, head.length);
  out.set(cipher.getAuthTag(), head.length + tail.length);
  return out;
}

/** Opens `ciphertext ‖ tag`; `undefined` when the tag does not verify (or `sealed` is too short). */
export function aeadOpen(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, sealed: Uint8Array): Uint8Array | undefined {
  if (sealed.length < TAG_LENGTH) return undefined;
  if (!nodeCrypto) {
    try {
      return chacha20poly1305(key, nonce, aad).decrypt(sealed);
    } catch {
      return undefined;
    }
  }
  const ciphertext = sealed.subarray(0, sealed.length - TAG_LENGTH);
  const decipher = nodeCrypto.createDecipheriv("chacha20-poly1305", key, nonce, { authTagLength: TAG_LENGTH });
  decipher.setAAD(aad, { plaintextLength: ciphertext.length });
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_LENGTH));
  const head = decipher.update(ciphertext);
  try {
    const tail = decipher.final();
    const out = new Uint8Array(head.length + tail.length);
    out.set(head, 0);
    out.set(tail, head.length);
    return out;
  } catch {
    return undefined;
  }
}

/** noble's implementations, whatever the platform: for tests that compare the backends. */
export const portablePrimitives = {
  blake3: (data: Uint8Array): Uint8Array => nobleBlake3(data),
  aeadSeal: (key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Uint8Array =>
    chacha20poly1305(key, nonce, aad).encrypt(plaintext),
};

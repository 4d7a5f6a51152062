/**
 * Who encrypted: Enrico's sender key signs what he encrypts (signed files, message sessions and
 * messages), and Bob accepts data only from the senders he trusts (docs/client.md, "Senders").
 *
 * The signatures are umbral-pre's (`Signer.sign` / `Signature.verify`): ECDSA over secp256k1 of
 * `sha256(message)`, 64 bytes `r ‖ s` big-endian with `s` in the lower half of the group order. A
 * high `s` is refused, so a signature's bytes are unique. They are made and checked here with
 * @noble/curves (RFC 6979 nonces, no WASM memory to free); the tests check that umbral-pre's WASM
 * and the Rust client agree with them both ways.
 */
import { secp256k1 } from "@noble/curves/secp256k1.js";

import { bytesEqual, fromHex, toHex } from "./bytes.js";
import { FormatError } from "./errors.js";
import type { umbral } from "./umbral.js";

/** Bytes of a signature: `r ‖ s`, big-endian. */
export const SIGNATURE_SIZE = 64;
/** Bytes of a sender's public key: compressed SEC1. */
export const SENDER_KEY_SIZE = 33;

/** Enrico's signing key (derived from his master secret with the label `KMS_SENDER_KEY_V1`). */
export class SenderKey {
  readonly #secret: Uint8Array;
  readonly #publicKey: Uint8Array;

  private constructor(secret: Uint8Array) {
    this.#secret = secret;
    this.#publicKey = secp256k1.getPublicKey(secret, true);
  }

  /** The sender key with this umbral secret key (the caller still owns and frees `sk`). */
  static fromSecretKey(sk: umbral.SecretKey): SenderKey {
    return SenderKey.fromBytes(sk.toBEBytes());
  }

  /** The sender key with this 32-byte big-endian secret scalar. */
  static fromBytes(secret: Uint8Array): SenderKey {
    if (secret.length !== 32 || !secp256k1.utils.isValidSecretKey(secret)) {
      throw new FormatError("BadSenderKey", "a sender secret key is a 32-byte scalar, non-zero and below the group order");
    }
    return new SenderKey(Uint8Array.from(secret));
  }

  /** A fresh random sender key (tests, throw-away senders). */
  static random(): SenderKey {
    return new SenderKey(secp256k1.utils.randomSecretKey());
  }

  /** The public key Bob trusts: 33 compressed bytes, as the formats carry it. */
  publicKey(): Uint8Array {
    return Uint8Array.from(this.#publicKey);
  }

  /** Signs `message` (hashed with SHA-256): 64 bytes `r ‖ s`, low `s`. */
  sign(message: Uint8Array): Uint8Array {
    return secp256k1.sign(message, this.#secret, { prehash: true, lowS: true, format: "compact" });
  }

  /** Never shows the secret. */
  toString(): string {
    return `SenderKey(${toHex(this.#publicKey)})`;
  }
}

/**
 * Whether `signature` (64 bytes `r ‖ s`) is `sender`'s (33 compressed bytes) over `message`. A
 * high `s`, a malformed key or signature are all `false`, never an exception.
 */
export function verifySenderSignature(sender: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (sender.length !== SENDER_KEY_SIZE || signature.length !== SIGNATURE_SIZE) return false;
  try {
    return secp256k1.verify(signature, message, sender, { prehash: true, lowS: true, format: "compact" });
  } catch {
    return false;
  }
}

/** Parses a sender public key (33 compressed bytes or their hex); `what` names it in the error. */
export function parseSenderKey(key: Uint8Array | string, what = "sender key"): Uint8Array {
  const bytes = typeof key === "string" ? fromHex(key, what, SENDER_KEY_SIZE) : Uint8Array.from(key);
  if (bytes.length !== SENDER_KEY_SIZE) {
    throw new FormatError("BadSenderKey", `${what}: expected ${SENDER_KEY_SIZE} compressed bytes, got ${bytes.length}`);
  }
  try {
    secp256k1.Point.fromBytes(bytes);
  } catch {
    throw new FormatError("BadSenderKey", `${what}: ${toHex(bytes)} is not a compressed secp256k1 point`);
  }
  return bytes;
}

/** The senders Bob accepts data from: a set of 33-byte keys, in the order they were added. */
export class TrustedSenders {
  readonly #keys = new Map<string, Uint8Array>();

  /** Exactly these senders (bytes or hex; each checked to be a compressed point). */
  constructor(keys: Iterable<Uint8Array | string> = []) {
    for (const key of keys) this.add(key);
  }

  /** Trusts one more sender (once). */
  add(key: Uint8Array | string): void {
    const bytes = parseSenderKey(key);
    const hex = toHex(bytes);
    if (!this.#keys.has(hex)) this.#keys.set(hex, bytes);
  }

  /** Whether data signed by `key` is accepted. */
  has(key: Uint8Array): boolean {
    const found = this.#keys.get(toHex(key));
    return found !== undefined && bytesEqual(found, key);
  }

  /** The trusted keys, in the order they were added. */
  keys(): Uint8Array[] {
    return [...this.#keys.values()].map((key) => Uint8Array.from(key));
  }

  /** How many senders are trusted (none: nothing signed is accepted). */
  get size(): number {
    return this.#keys.size;
  }

  /** The keys as `0x…` hex, comma-separated, or `none` (for error messages). */
  describe(): string {
    return this.#keys.size === 0 ? "none" : [...this.#keys.keys()].join(", ");
  }
}

/**
 * The key files of `kms keys new` (docs/client.md "Key files", `crates/kms-crypto/src/keys.rs`):
 *
 * - `umbral.json`, the Umbral master secret `{"version": 1, "kind": "kms-umbral-master-secret",
 *   "seed": "0x<32 bytes>"}`. Every Umbral key derives from the seed with umbral-pre's
 *   `SecretKeyFactory.fromSecureRandomness(seed).makeKey(label)`, exactly as the Rust client does,
 *   so a file made by `kms keys new` gives the same keys here.
 * - `account.json`, a web3 secret-storage keystore (scrypt or pbkdf2, AES-128-CTR): the Ethereum
 *   account, read with {@link decryptKeystore}.
 */
import { ctr } from "@noble/ciphers/aes.js";
import { keccak_256 } from "@noble/hashes/sha3.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { scryptAsync } from "@noble/hashes/scrypt.js";
import { pbkdf2Async } from "@noble/hashes/pbkdf2.js";
import type { Address, Hex } from "viem";
import { addressOfPublicKey } from "./policy-file.js";
import { umbral } from "./umbral.js";
import { KmsError } from "./errors.js";
import { bytesEqual, concatBytes, fromHex, toHex, utf8 } from "./bytes.js";
import { importNodeOnly } from "./node-only.js";

/** The label a node's Umbral key is derived under. */
export const NODE_KEY_LABEL = "KMS_NODE_KEY_V1";
/** The label Bob's receiving key is derived under. */
export const RECEIVING_KEY_LABEL = "KMS_RECEIVING_KEY_V1";
/** The label the kfrag signer's key is derived under (its address is the policy's `kfragSigner`). */
export const SIGNING_KEY_LABEL = "KMS_KFRAG_SIGNER_V1";
/** The label Enrico's sender key is derived under (it signs what he encrypts). */
export const SENDER_KEY_LABEL = "KMS_SENDER_KEY_V1";
/** The prefix of a policy's delegating-key label; the policy label follows it. */
export const DELEGATING_KEY_PREFIX = "KMS_DELEGATING_KEY_V1:";

const UMBRAL_KIND = "kms-umbral-master-secret";
const SEED_BYTES = 32;

/** A key file that cannot be read: missing, readable by others, malformed, or a wrong password. */
export class KeyFileError extends KmsError {}

/**
 * An Umbral master secret. Each call derives a fresh `umbral.SecretKey`, which the caller owns
 * (`free()` it when done); call {@link MasterSecret.free} to release the factory.
 */
export class MasterSecret {
  private constructor(
    private readonly seed: Uint8Array,
    private readonly factory: umbral.SecretKeyFactory,
  ) {}

  /** The master secret of a 32-byte seed (the file's `seed`). */
  static fromSeed(seed: Uint8Array): MasterSecret {
    if (seed.length !== SEED_BYTES) {
      throw new KeyFileError("BadSeed", `an Umbral master seed is ${SEED_BYTES} bytes, got ${seed.length}`);
    }
    const copy = Uint8Array.from(seed);
    return new MasterSecret(copy, umbral.SecretKeyFactory.fromSecureRandomness(copy));
  }

  /** A fresh master secret from the platform's secure RNG. */
  static random(): MasterSecret {
    return MasterSecret.fromSeed(crypto.getRandomValues(new Uint8Array(SEED_BYTES)));
  }

  /**
   * Parses the text of an `umbral.json`; `source` names it in errors. Unknown fields are
   * refused, as the Rust reader does.
   */
  static parse(text: string, source = "<inline JSON>"): MasterSecret {
    const format = (reason: string) =>
      new KeyFileError("KeyFileFormat", `${source} is not a KMS Umbral key file: ${reason}`);
    let file: unknown;
    try {
      file = JSON.parse(text);
    } catch (cause) {
      throw format(cause instanceof Error ? cause.message : String(cause));
    }
    if (typeof file !== "object" || file === null || Array.isArray(file)) throw format("not a JSON object");
    const record = file as Record<string, unknown>;
    for (const key of Object.keys(record)) {
      if (!["version", "kind", "seed"].includes(key)) throw format(`unknown field \`${key}\``);
    }
    if (record.version !== 1 || record.kind !== UMBRAL_KIND) {
      throw format(
        `kind ${JSON.stringify(record.kind)} version ${String(record.version)}, expected "${UMBRAL_KIND}" version 1`,
      );
    }
    if (typeof record.seed !== "string") throw format("seed: expected a hex string");
    let seed: Uint8Array;
    try {
      seed = fromHex(record.seed, "seed", SEED_BYTES);
    } catch {
      // Not fromHex's message, nor it as the cause: it quotes the text, here the secret seed.
      throw format(`seed: expected 0x and ${2 * SEED_BYTES} hex digits (${SEED_BYTES} bytes)`);
    }
    return MasterSecret.fromSeed(seed);
  }

  /**
   * Reads an `umbral.json` (Node.js only), refusing one that group or others can read, as the
   * CLI does: the file is not encrypted.
   */
  static async load(path: string): Promise<MasterSecret> {
    return MasterSecret.parse(await readSecretFile(path), path);
  }

  /** The file's JSON, as `kms keys new` writes it (write it with mode 0600). */
  toJson(): string {
    return `${JSON.stringify({ version: 1, kind: UMBRAL_KIND, seed: toHex(this.seed) }, null, 2)}\n`;
  }

  /** The key derived under `label` (UTF-8 if a string). */
  key(label: string | Uint8Array): umbral.SecretKey {
    return this.factory.makeKey(typeof label === "string" ? utf8(label) : label);
  }

  /** Bob's receiving key. */
  receivingKey(): umbral.SecretKey {
    return this.key(RECEIVING_KEY_LABEL);
  }

  /** The kfrag signer's key. */
  signingKey(): umbral.SecretKey {
    return this.key(SIGNING_KEY_LABEL);
  }

  /** Enrico's sender key (wrap it with `SenderKey.fromSecretKey` to sign streams and sessions). */
  senderKey(): umbral.SecretKey {
    return this.key(SENDER_KEY_LABEL);
  }

  /** A node's Umbral key. */
  nodeKey(): umbral.SecretKey {
    return this.key(NODE_KEY_LABEL);
  }

  /** Alice's delegating key for the policy label `label`. */
  delegatingKey(label: string): umbral.SecretKey {
    return this.key(DELEGATING_KEY_PREFIX + label);
  }

  /** Releases the factory's WASM memory and zeroes the seed; the object is unusable after. */
  free(): void {
    this.seed.fill(0);
    this.factory.free();
  }
}

/** The 33-byte compressed encoding of a secret key's public key. */
export function publicKeyBytes(secretKey: umbral.SecretKey): Uint8Array {
  const pk = secretKey.publicKey();
  try {
    return pk.toCompressedBytes();
  } finally {
    pk.free();
  }
}

/**
 * The Ethereum address of a secp256k1 public key (an Umbral key, e.g. the kfrag signer's), as
 * `kms_crypto::ethereum_address`: keccak256 of the uncompressed x ‖ y, last 20 bytes.
 */
export function ethereumAddress(publicKey: umbral.PublicKey | Uint8Array): Address {
  const compressed = publicKey instanceof Uint8Array ? publicKey : publicKey.toCompressedBytes();
  try {
    return addressOfPublicKey(compressed);
  } catch (cause) {
    throw new KeyFileError("BadPublicKey", `not a secp256k1 public key: ${toHex(compressed)}`, { cause });
  }
}

/**
 * Decrypts a web3 secret-storage keystore (version 3: scrypt or pbkdf2-hmac-sha256, AES-128-CTR;
 * what `kms keys new`, geth and `cast wallet` write) and returns the account's private key.
 * `source` names the file in errors.
 */
export async function decryptKeystore(text: string, password: string | Uint8Array, source = "keystore"): Promise<Hex> {
  const format = (reason: string) => new KeyFileError("KeystoreFormat", `keystore ${source}: ${reason}`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw format("not JSON");
  }
  const root = json as { version?: unknown; crypto?: unknown; Crypto?: unknown };
  if (typeof json !== "object" || json === null || root.version !== 3) throw format("not a version 3 keystore");
  const cryptoSection = (root.crypto ?? root.Crypto) as Record<string, unknown> | undefined;
  if (typeof cryptoSection !== "object" || cryptoSection === null) throw format("no `crypto` section");
  const { cipher, ciphertext, cipherparams, kdf, kdfparams, mac } = cryptoSection as {
    cipher?: unknown;
    ciphertext?: unknown;
    cipherparams?: { iv?: unknown };
    kdf?: unknown;
    kdfparams?: Record<string, unknown>;
    mac?: unknown;
  };
  if (cipher !== "aes-128-ctr") throw format(`cipher ${JSON.stringify(cipher)} is not supported (aes-128-ctr only)`);
  if (typeof ciphertext !== "string" || typeof mac !== "string" || typeof cipherparams?.iv !== "string") {
    throw format("`ciphertext`, `mac` and `cipherparams.iv` must be hex strings");
  }
  if (typeof kdfparams !== "object" || kdfparams === null || typeof kdfparams.salt !== "string") {
    throw format("`kdfparams.salt` must be a hex string");
  }
  const salt = fromHex(kdfparams.salt, "kdfparams.salt");
  const passwordBytes = typeof password === "string" ? utf8(password) : password;
  // Bounds far above what wallets write (geth: scrypt n = 2^18, r = 8, p = 1; pbkdf2 c = 262,144),
  // so that a crafted keystore cannot make the derivation run for hours or take gigabytes.
  const bounds: Record<string, number> = { n: 1 << 20, r: 16, p: 16, c: 10_000_000, dklen: 64 };
  const num = (name: string): number => {
    const value = kdfparams[name];
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value <= 0) throw format(`kdfparams.${name} must be a positive integer`);
    const bound = bounds[name];
    if (bound !== undefined && value > bound) throw format(`kdfparams.${name} is ${value}, above the ${bound} this SDK accepts`);
    return value;
  };
  let derived: Uint8Array;
  if (kdf === "scrypt") {
    derived = await scryptAsync(passwordBytes, salt, { N: num("n"), r: num("r"), p: num("p"), dkLen: num("dklen") });
  } else if (kdf === "pbkdf2") {
    if (kdfparams.prf !== "hmac-sha256") throw format(`pbkdf2 prf ${JSON.stringify(kdfparams.prf)} is not supported`);
    derived = await pbkdf2Async(sha256, passwordBytes, salt, { c: num("c"), dkLen: num("dklen") });
  } else {
    throw format(`kdf ${JSON.stringify(kdf)} is not supported (scrypt or pbkdf2)`);
  }
  if (derived.length < 32) throw format("kdfparams.dklen must be at least 32");
  const cipherBytes = fromHex(ciphertext, "ciphertext");
  const expectedMac = keccak_256(concatBytes(derived.subarray(16, 32), cipherBytes));
  if (!bytesEqual(expectedMac, fromHex(mac, "mac", 32))) {
    throw new KeyFileError("WrongPassword", `keystore ${source}: wrong password (the MAC does not match)`, {
      hint: "check the password file (its first line is the password)",
    });
  }
  const secret = ctr(derived.subarray(0, 16), fromHex(cipherparams.iv, "cipherparams.iv", 16)).decrypt(cipherBytes);
  if (secret.length !== 32) throw format(`the key is ${secret.length} bytes, expected 32`);
  return toHex(secret);
}

/** Reads a keystore file (Node.js only) and decrypts it; see {@link decryptKeystore}. */
export async function loadKeystore(path: string, password: string | Uint8Array): Promise<Hex> {
  return decryptKeystore(await readSecretFile(path), password, path);
}

/**
 * Reads a password file's first line (Node.js only), refusing a file others can read, as the CLI
 * does.
 */
export async function readPasswordFile(path: string): Promise<string> {
  const text = await readSecretFile(path);
  return text.split(/\r?\n/, 1)[0] ?? "";
}

/** Reads a secret file as UTF-8, refusing one that group or others can read (mode & 0o077). */
async function readSecretFile(path: string): Promise<string> {
  // Imported lazily so that a browser bundle never needs `node:fs`.
  const fs = await importNodeOnly<typeof import("node:fs/promises")>("node:fs/promises");
  let handle: Awaited<ReturnType<typeof fs.open>> | undefined;
  try {
    // One open file for the check and the read: the mode checked is the file's that is read.
    handle = await fs.open(path, "r");
    const stats = await handle.stat();
    if (typeof process !== "undefined" && process.platform !== "win32" && (stats.mode & 0o077) !== 0) {
      const mode = (stats.mode & 0o777).toString(8);
      throw new KeyFileError("KeyFilePermissions", `${path} is readable by group or others (mode ${mode})`, {
        hint: `run \`chmod 600 ${path}\``,
      });
    }
    return await handle.readFile("utf8");
  } catch (cause) {
    if (cause instanceof KeyFileError) throw cause;
    throw new KeyFileError("KeyFileRead", `cannot read ${path}: ${cause instanceof Error ? cause.message : String(cause)}`, {
      cause,
    });
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

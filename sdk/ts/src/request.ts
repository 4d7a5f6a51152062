/**
 * Bob's signed re-encryption request, `POST /v1/policies/{id}/reencrypt` (`docs/node.md`,
 * `crates/kms-crypto/src/wire.rs`): the capsules in base64, a timestamp, a fresh nonce and Bob's
 * umbral signature (with his receiving key) over
 *
 * ```text
 * "KMS_REENCRYPT_V1" ‖ policyId (16) ‖ node staker (20) ‖ u64_be(timestamp) ‖ nonce (16)
 *   ‖ sha256( for each capsule: u32_be(len) ‖ bytes )
 * ```
 *
 * The staker binds the request to one node.
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { concatBytes, fromHex, toBase64, toHex, u32be, u64be, utf8 } from "./bytes.js";
import type { ReencryptRequestBody } from "./http.js";
import { umbral } from "./umbral.js";

/** The domain tag that starts the message Bob signs. */
export const REENCRYPT_TAG = utf8("KMS_REENCRYPT_V1");

/** `sha256` over the capsules, each as its u32 big-endian length then its bytes. */
export function capsulesDigest(capsules: readonly Uint8Array[]): Uint8Array {
  const hash = sha256.create();
  for (const capsule of capsules) {
    hash.update(u32be(capsule.length));
    hash.update(capsule);
  }
  return hash.digest();
}

/**
 * The message Bob signs for a request to the node of `staker` (20 bytes or `0x` hex): the
 * capsules as their default serialization (the bytes base64-encoded in the request).
 */
export function reencryptMessage(
  policyId: string | Uint8Array,
  staker: string | Uint8Array,
  timestamp: number,
  nonce: Uint8Array,
  capsules: readonly Uint8Array[],
): Uint8Array {
  const id = typeof policyId === "string" ? fromHex(policyId, "policyId", 16) : policyId;
  const node = typeof staker === "string" ? fromHex(staker, "staker", 20) : staker;
  if (id.length !== 16 || node.length !== 20 || nonce.length !== 16) {
    throw new RangeError("reencryptMessage: policy id 16 bytes, staker 20, nonce 16");
  }
  return concatBytes(REENCRYPT_TAG, id, node, u64be(timestamp), nonce, capsulesDigest(capsules));
}

/** What a request is signed for. */
export interface ReencryptRequestParams {
  /** Bob's receiving secret key (the policy's `receivingKey` is its public key). */
  receivingSecretKey: umbral.SecretKey;
  /** The policy id, `0x` + 32 hex digits. */
  policyId: string;
  /** The node's staker (from the policy file, or `GET /v1/node`). */
  staker: string;
  /** Unix seconds. */
  timestamp: number;
  /** Each capsule's default serialization (`Capsule.toBytes()`). */
  capsules: readonly Uint8Array[];
  /** 16 bytes; fresh random bytes when absent (tests pass one). */
  nonce?: Uint8Array;
}

/** Builds and signs a request body (Bob's side), with a fresh random nonce unless one is given. */
export function signReencryptRequest(params: ReencryptRequestParams): ReencryptRequestBody {
  const nonce = params.nonce ?? crypto.getRandomValues(new Uint8Array(16));
  const message = reencryptMessage(params.policyId, params.staker, params.timestamp, nonce, params.capsules);
  const signer = new umbral.Signer(params.receivingSecretKey);
  const signature = signer.sign(message);
  const bytes = signature.toBEBytes();
  signature.free();
  signer.free();
  return {
    capsules: params.capsules.map(toBase64),
    timestamp: params.timestamp,
    nonce: toHex(nonce),
    signature: toHex(bytes),
  };
}

/**
 * Timestamps for requests, strictly increasing per (policy, node, capsules): each attempt of a
 * request is signed with a timestamp later than the last one used for the same triple (the nodes
 * refuse a replayed message), and never earlier than the clock. Keep one per client.
 */
export class RequestClock {
  readonly #last = new Map<string, number>();
  readonly #now: () => number;

  /** `now` gives Unix seconds (the system clock by default). */
  constructor(now: () => number = () => Math.floor(Date.now() / 1000)) {
    this.#now = now;
  }

  /** The next timestamp for `policyId`, `staker` and the capsules' digest. */
  next(policyId: string, staker: string, capsules: readonly Uint8Array[]): number {
    const key = `${policyId.toLowerCase()}|${staker.toLowerCase()}|${toHex(capsulesDigest(capsules))}`;
    const last = this.#last.get(key);
    const timestamp = last === undefined ? this.#now() : Math.max(this.#now(), last + 1);
    this.#last.set(key, timestamp);
    return timestamp;
  }
}

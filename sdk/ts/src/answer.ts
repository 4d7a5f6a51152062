/**
 * The node's signed answer (`docs/adjudicator.md` "The node's signed answer",
 * `crates/kms-crypto/src/answer.rs`): for every cfrag, the node's worker signs with EIP-191
 *
 * ```text
 * keccak256("KMS_CFRAG_ANSWER_V2" ‖ uint256 chainId ‖ adjudicator ‖ staker ‖ uint256 period
 *           ‖ policyId (16) ‖ capsule.toBytesSimple() (98) ‖ cfrag.toBytesSimple() (359))
 * ```
 *
 * as 65 bytes `r ‖ s ‖ v`, `v` 27 or 28 and a low `s`: what the Adjudicator recovers.
 */
import { secp256k1 } from "@noble/curves/secp256k1.js";
import { keccak_256 } from "@noble/hashes/sha3.js";
import { getAddress, type Address } from "viem";
import { concatBytes, fromHex, toHex, u64be, utf8 } from "./bytes.js";
import { KmsError } from "./errors.js";

/** The domain tag that starts the packed answer (19 ASCII bytes). */
export const ANSWER_TAG = utf8("KMS_CFRAG_ANSWER_V2");
/** `Capsule.toBytesSimple()` length. */
export const CAPSULE_SIMPLE_LEN = 98;
/** `CapsuleFrag.toBytesSimple()` length. */
export const CFRAG_SIMPLE_LEN = 359;
/** A worker signature's length, `r (32) ‖ s (32) ‖ v (1)`. */
export const WORKER_SIGNATURE_LEN = 65;
/** The secp256k1 group order. */
export const CURVE_ORDER = secp256k1.Point.CURVE().n;
const HALF_N = CURVE_ORDER >> 1n;

/** Who answers, where, when and for which policy: everything of the digest but the bytes. */
export interface AnswerContext {
  chainId: number | bigint;
  /** The Adjudicator that judges the answer (the deployment's). */
  adjudicator: string;
  /** The node's staker. */
  staker: string;
  /** The period the answer names. */
  period: number | bigint;
  /** 16 bytes, or `0x` + 32 hex digits. */
  policyId: string | Uint8Array;
}

/** A worker signature that recovers nothing the Adjudicator would accept (code `WorkerSignature`), or bytes of the wrong length (`AnswerBytes`). */
export class AnswerError extends KmsError {}

function uint256(value: number | bigint): Uint8Array {
  return concatBytes(new Uint8Array(24), u64be(value));
}

function checkLengths(capsuleSimple: Uint8Array, cfragSimple: Uint8Array): void {
  if (capsuleSimple.length !== CAPSULE_SIMPLE_LEN) {
    throw new AnswerError("AnswerBytes", `capsule: expected ${CAPSULE_SIMPLE_LEN} bytes, got ${capsuleSimple.length}`);
  }
  if (cfragSimple.length !== CFRAG_SIMPLE_LEN) {
    throw new AnswerError("AnswerBytes", `cfrag: expected ${CFRAG_SIMPLE_LEN} bytes, got ${cfragSimple.length}`);
  }
}

/** The 32-byte answer digest (lengths not checked: see {@link recoverAnswerSigner}). */
export function answerDigest(context: AnswerContext, capsuleSimple: Uint8Array, cfragSimple: Uint8Array): Uint8Array {
  const policyId = typeof context.policyId === "string" ? fromHex(context.policyId, "policyId", 16) : context.policyId;
  return keccak_256(
    concatBytes(
      ANSWER_TAG,
      uint256(context.chainId),
      fromHex(context.adjudicator, "adjudicator", 20),
      fromHex(context.staker, "staker", 20),
      uint256(context.period),
      policyId,
      capsuleSimple,
      cfragSimple,
    ),
  );
}

/** `keccak256("\x19Ethereum Signed Message:\n32" ‖ digest)`: what the worker's key signs. */
export function eip191Hash(digest: Uint8Array): Uint8Array {
  return keccak_256(concatBytes(utf8("\x19Ethereum Signed Message:\n32"), digest));
}

/**
 * Recovers the address that signed the answer, as the Adjudicator does with OpenZeppelin's
 * `ECDSA.tryRecover`: 65 bytes, a low `s`, `v` 27 or 28, an `ecrecover` that succeeds. Throws
 * {@link AnswerError} otherwise.
 */
export function recoverAnswerSigner(
  context: AnswerContext,
  capsuleSimple: Uint8Array,
  cfragSimple: Uint8Array,
  signature: Uint8Array,
): Address {
  checkLengths(capsuleSimple, cfragSimple);
  return recoverEip191Signer(answerDigest(context, capsuleSimple, cfragSimple), signature, "worker signature");
}

/** The signer of an EIP-191 signature of the 32-byte `digest`, with OpenZeppelin's rules. */
export function recoverEip191Signer(digest: Uint8Array, signature: Uint8Array, what: string): Address {
  if (signature.length !== WORKER_SIGNATURE_LEN) {
    throw new AnswerError("WorkerSignature", `${what}: expected ${WORKER_SIGNATURE_LEN} bytes, got ${signature.length}`);
  }
  const s = BigInt(toHex(signature.subarray(32, 64)));
  if (s > HALF_N) throw new AnswerError("WorkerSignature", `${what}: s is above n / 2 (not a low-s signature)`);
  const v = signature[64]!;
  if (v !== 27 && v !== 28) throw new AnswerError("WorkerSignature", `${what}: v must be 27 or 28, got ${v}`);
  try {
    const point = secp256k1.Signature.fromBytes(signature.subarray(0, 64), "compact")
      .addRecoveryBit(v - 27)
      .recoverPublicKey(eip191Hash(digest));
    return addressOfPoint(point.toBytes(false));
  } catch (error) {
    throw new AnswerError("WorkerSignature", `${what}: nothing to recover (${(error as Error).message})`);
  }
}

/** The Ethereum address of an uncompressed (65-byte) public key. */
export function addressOfPoint(uncompressed: Uint8Array): Address {
  return getAddress(toHex(keccak_256(uncompressed.subarray(1)).subarray(12)));
}

/**
 * The policy id (docs/client.md "Policy id", `kms_client::grant::policy_salt`):
 *
 * ```text
 * policySalt = keccak256("KMS_POLICY_ID_V1" ‖ u32_be(len(label)) ‖ label ‖ receivingKey (33) ‖ delegatingKey (33) ‖ salt (32))[0..16]
 * policyId   = keccak256(creator (20) ‖ policySalt (16))[0..16]          (PolicyManager.policyIdOf)
 * ```
 *
 * `createPolicy` takes the salt and derives the id from its sender, so a copied pending
 * transaction makes the copier's own policy, never Alice's.
 */
import { keccak_256 } from "@noble/hashes/sha3.js";
import type { Address, Hex } from "viem";
import { concatBytes, fromHex, toHex, u32be, utf8 } from "./bytes.js";
import { FormatError } from "./errors.js";
import { umbral } from "./umbral.js";

/** The domain tag of the policy salt's hash. */
export const POLICY_ID_TAG = "KMS_POLICY_ID_V1";

/** A public key as bytes (33 compressed), `0x` hex, or an umbral `PublicKey`. */
export type PublicKeyInput = Uint8Array | Hex | umbral.PublicKey;

function keyBytes(key: PublicKeyInput, what: string): Uint8Array {
  const bytes = typeof key === "string" ? fromHex(key, what, 33) : key instanceof Uint8Array ? key : key.toCompressedBytes();
  if (bytes.length !== 33) throw new FormatError("BadLength", `${what}: expected a 33-byte compressed key, got ${bytes.length} bytes`);
  return bytes;
}

/** The 16-byte salt `createPolicy` takes, `0x` + 32 hex digits. `salt` is 32 random bytes. */
export function policySalt(label: string, receivingKey: PublicKeyInput, delegatingKey: PublicKeyInput, salt: Uint8Array): Hex {
  if (salt.length !== 32) throw new FormatError("BadLength", `salt: expected 32 bytes, got ${salt.length}`);
  const labelBytes = utf8(label);
  const preimage = concatBytes(
    utf8(POLICY_ID_TAG),
    u32be(labelBytes.length),
    labelBytes,
    keyBytes(receivingKey, "receivingKey"),
    keyBytes(delegatingKey, "delegatingKey"),
    salt,
  );
  return toHex(keccak_256(preimage).subarray(0, 16));
}

/** `PolicyManager.policyIdOf(creator, policySalt)`: the id of the policy `creator` creates with that salt. */
export function policyIdOf(creator: Address, salt16: Hex): Hex {
  const preimage = concatBytes(fromHex(creator, "creator", 20), fromHex(salt16, "policySalt", 16));
  return toHex(keccak_256(preimage).subarray(0, 16));
}

/** The policy id a grant by `creator` makes: `policyIdOf(creator, policySalt(...))`. */
export function policyId(
  creator: Address,
  label: string,
  receivingKey: PublicKeyInput,
  delegatingKey: PublicKeyInput,
  salt: Uint8Array,
): Hex {
  return policyIdOf(creator, policySalt(label, receivingKey, delegatingKey, salt));
}

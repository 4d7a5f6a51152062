import { test } from "node:test";
import assert from "node:assert/strict";
import { keccak_256 } from "@noble/hashes/sha3.js";
import { policyId, policyIdOf, policySalt } from "../src/policy-id.js";
import { concatBytes, fromHex, toHex, utf8 } from "../src/bytes.js";

const RK = "0x029eec794c8da2b4bc91af53ea99ee73bb7e2dc372b8528a488e88656663e6b7a5";
const DK = "0x0293f2a26347fe681042b19ae9a1311d91aa80b982cdcc3980f940d249007f4492";
const SALT = new Uint8Array(32).fill(7);
const CREATOR = "0x976EA74026E726554dB657fA54763abd0C3a0aa9";

// Read from `kms devnet` (PolicyManager 0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0, chain 31337):
// `PolicyManager.policyIdOf(CREATOR, POLICY_SALT)` through viem's readContract.
const POLICY_SALT = "0xdf059a208aa6b5fed7bd60b92dc56ee7";
const ON_CHAIN_ID = "0x6faf37954fde0daa71b3dcbc31087093";

test("policySalt is the documented hash, byte by byte", () => {
  const preimage = concatBytes(utf8("KMS_POLICY_ID_V1"), new Uint8Array([0, 0, 0, 5]), utf8("label"), fromHex(RK, "rk"), fromHex(DK, "dk"), SALT);
  assert.equal(policySalt("label", RK, DK, SALT), toHex(keccak_256(preimage).subarray(0, 16)));
  // Multi-byte labels count bytes, not characters.
  const label = "é/ü";
  const pre2 = concatBytes(utf8("KMS_POLICY_ID_V1"), new Uint8Array([0, 0, 0, 5]), utf8(label), fromHex(RK, "rk"), fromHex(DK, "dk"), SALT);
  assert.equal(policySalt(label, fromHex(RK, "rk"), DK, SALT), toHex(keccak_256(pre2).subarray(0, 16)));
});

test("policyIdOf matches PolicyManager.policyIdOf (values read from a devnet)", () => {
  const salt16 = policySalt("photos", RK, DK, SALT);
  assert.equal(salt16, POLICY_SALT);
  assert.equal(policyIdOf(CREATOR, salt16), ON_CHAIN_ID);
  assert.equal(policyId(CREATOR, "photos", RK, DK, SALT), ON_CHAIN_ID);
  assert.throws(() => policySalt("x", RK, DK, new Uint8Array(31)), /32 bytes/);
  assert.throws(() => policySalt("x", "0x02", DK, SALT), /33 bytes/);
});

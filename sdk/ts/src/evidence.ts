/**
 * A provable fault and its file (JSON, version 2; `docs/client.md` "Fault file",
 * `crates/kms-crypto/src/fault.rs`): a node's signed answer whose cfrag fails Umbral's
 * verification, with everything `kms report FILE` needs to submit it to the Adjudicator.
 *
 * The expected verdict comes from a port of the part of the Rust model of the Adjudicator
 * (`Evidence::outcome`, `crates/kms-crypto/src/evidence.rs`) that can differ for evidence built
 * from a node's real answer (lengths right, products and y coordinates computed from the bytes,
 * the worker's signature already recovered to the node's bonded worker, the period current):
 * the kfrag signature's recovery to the policy's kfrag signer (else `KfragSignature`), then the
 * contract's `_verify`: `z` zero or not below `n` → `InvalidZ`; `E1.x` or `V1.x` not below `n` →
 * `UncheckablePoint`; a capsule point or `U1` with `x >= n` → `Malformed("product")` (the
 * `ecrecover` product check cannot take it); then `z*E == h*E1 + E2` (`WrongE`),
 * `z*V == h*V1 + V2` (`WrongV`), `z*U == h*U1 + U2` (`WrongU`), else `Correct`. Ported with
 * @noble/curves; the checks the answer's checks already settle (period window, worker bond,
 * worker signature, point encodings) are not repeated.
 */
import { secp256k1 } from "@noble/curves/secp256k1.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { keccak_256 } from "@noble/hashes/sha3.js";
import { getAddress, type Address, type Hex } from "viem";
import { addressOfPoint, CAPSULE_SIMPLE_LEN, CFRAG_SIMPLE_LEN, CURVE_ORDER } from "./answer.js";
import { concatBytes, fromHex, toHex, u32be, utf8 } from "./bytes.js";
import { FormatError } from "./errors.js";

/** The fault file format this SDK writes and reads. */
export const FAULT_FILE_VERSION = 2;

/** A node's wrong, signed re-encryption: the fault file's fields, in its order. */
export interface Fault {
  version: 2;
  chainId: number;
  /** `0x` + 16 bytes. */
  policyId: Hex;
  adjudicator: Address;
  period: number;
  /** The node's staker (who gets slashed). */
  staker: Address;
  /** The worker that signed the answer. */
  worker: Address;
  /** Where the node was asked. */
  url: string;
  /** `Capsule.toBytesSimple()`, 98 bytes. */
  capsule: Hex;
  /** The node's `CapsuleFrag.toBytesSimple()`, 359 bytes. */
  cfrag: Hex;
  /** 33 bytes. */
  delegatingKey: Hex;
  /** 33 bytes. */
  receivingKey: Hex;
  /** The policy's kfrag signer. */
  kfragSigner: Address;
  /** The worker's 65-byte signature `r ‖ s ‖ v`. */
  workerSignature: Hex;
  /** The model's verdict, e.g. `WrongE`. */
  expectedVerdict: string;
  /** umbral's verification error. */
  reason: string;
}

const FAULT_FIELDS = [
  "version",
  "chainId",
  "policyId",
  "adjudicator",
  "period",
  "staker",
  "worker",
  "url",
  "capsule",
  "cfrag",
  "delegatingKey",
  "receivingKey",
  "kfragSigner",
  "workerSignature",
  "expectedVerdict",
  "reason",
] as const;

/** The fault file's JSON text, as the Rust client writes it (pretty, final newline): `kms report FILE` reads it. */
export function faultToJson(fault: Fault): string {
  const ordered: Record<string, unknown> = {};
  for (const field of FAULT_FIELDS) ordered[field] = fault[field];
  return `${JSON.stringify(ordered, null, 2)}\n`;
}

/** Parses a fault file (version 2), refusing unknown fields. Throws {@link FormatError} (code `FaultFile`). */
export function parseFaultFile(text: string, source = "<inline JSON>"): Fault {
  const err = (reason: string) => new FormatError("FaultFile", `fault file ${source}: ${reason}`);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw err(`not JSON: ${(error as Error).message}`);
  }
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) throw err("expected a JSON object");
  const record = raw as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (!(FAULT_FIELDS as readonly string[]).includes(key)) throw err(`unknown field \`${key}\``);
  }
  for (const key of FAULT_FIELDS) if (!(key in record)) throw err(`missing field \`${key}\``);
  if (record.version !== FAULT_FILE_VERSION) throw err(`version ${String(record.version)} is not supported (this SDK reads version 2)`);
  const str = (key: string) => {
    if (typeof record[key] !== "string") throw err(`field \`${key}\` must be a string`);
    return record[key] as string;
  };
  const int = (key: string) => {
    const value = record[key];
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) throw err(`field \`${key}\` must be an integer`);
    return value;
  };
  const hex = (key: string, length: number) => {
    try {
      return toHex(fromHex(str(key), key, length));
    } catch (error) {
      throw err((error as Error).message);
    }
  };
  const address = (key: string) => getAddress(hex(key, 20));
  return {
    version: FAULT_FILE_VERSION,
    chainId: int("chainId"),
    policyId: hex("policyId", 16),
    adjudicator: address("adjudicator"),
    period: int("period"),
    staker: address("staker"),
    worker: address("worker"),
    url: str("url"),
    capsule: hex("capsule", CAPSULE_SIMPLE_LEN),
    cfrag: hex("cfrag", CFRAG_SIMPLE_LEN),
    delegatingKey: hex("delegatingKey", 33),
    receivingKey: hex("receivingKey", 33),
    kfragSigner: address("kfragSigner"),
    workerSignature: hex("workerSignature", 65),
    expectedVerdict: str("expectedVerdict"),
    reason: str("reason"),
  };
}

/** `keccak256(capsule ‖ cfrag)`: the Adjudicator's key for this evidence, and a node's evidence id. */
export function evidenceHash(fault: Pick<Fault, "capsule" | "cfrag">): Hex {
  return toHex(keccak_256(concatBytes(fromHex(fault.capsule, "capsule"), fromHex(fault.cfrag, "cfrag"))));
}

// ---- The ported part of the Adjudicator model ----

/** The contract's `Verdict`, in its order. */
export const VERDICTS = ["Correct", "WrongE", "WrongV", "WrongU", "InvalidZ", "UncheckablePoint"] as const;
export type Verdict = (typeof VERDICTS)[number];

/**
 * What the ported model predicts: a recorded verdict (`Correct` or a slash), or why the contract
 * would revert (`KfragSignature`, `Malformed(point)`, `Malformed(product)`).
 */
export type Outcome = { verdict: Verdict } | { refusal: "KfragSignature" | "Malformed(point)" | "Malformed(product)" };

/** umbral's `Parameters::u`, compressed. */
const U_COMPRESSED = fromHex("03079390d0fbe220fc34aab8ecbf49098098036820fadb98c03143e55db8ec73cd", "U", 33);
const Point = secp256k1.Point;
type CurvePoint = InstanceType<typeof Point>;

const range = (bytes: Uint8Array, start: number, end: number) => bytes.subarray(start, end);
const CF = { E1: [0, 33], V1: [33, 66], KFRAG_ID: [66, 98], PRECURSOR: [98, 131], E2: [131, 164], V2: [164, 197], U1: [197, 230], U2: [230, 263], Z: [263, 295], R: [295, 327], S: [327, 359] } as const;
const field = (cfrag: Uint8Array, name: keyof typeof CF) => range(cfrag, CF[name][0], CF[name][1]);
const bigintOf = (bytes: Uint8Array) => BigInt(toHex(bytes));
const xOf = (compressed: Uint8Array) => bigintOf(compressed.subarray(1, 33));

/** umbral's challenge `h`: sha256(u32(18) ‖ "CFRAG_VERIFICATION" ‖ E ‖ E1 ‖ E2 ‖ V ‖ V1 ‖ V2 ‖ U ‖ U1 ‖ U2) mod (n − 1) + 1. */
export function cfragChallenge(capsule: Uint8Array, cfrag: Uint8Array): bigint {
  const dst = utf8("CFRAG_VERIFICATION");
  const digest = sha256(
    concatBytes(
      u32be(dst.length),
      dst,
      range(capsule, 0, 33),
      field(cfrag, "E1"),
      field(cfrag, "E2"),
      range(capsule, 33, 66),
      field(cfrag, "V1"),
      field(cfrag, "V2"),
      U_COMPRESSED,
      field(cfrag, "U1"),
      field(cfrag, "U2"),
    ),
  );
  return (bigintOf(digest) % (CURVE_ORDER - 1n)) + 1n;
}

/** The address `ecrecover(sha256(kfrag message), 27 + v, r, s)` gives, or `undefined`. */
function recoverKfragSigner(cfrag: Uint8Array, delegatingKey: Uint8Array, receivingKey: Uint8Array, yOdd: boolean): Address | undefined {
  const message = concatBytes(field(cfrag, "KFRAG_ID"), field(cfrag, "U1"), field(cfrag, "PRECURSOR"), new Uint8Array([1]), delegatingKey, new Uint8Array([1]), receivingKey);
  try {
    const point = secp256k1.Signature.fromBytes(range(cfrag, CF.R[0], CF.S[1]), "compact")
      .addRecoveryBit(yOdd ? 1 : 0)
      .recoverPublicKey(sha256(message));
    return addressOfPoint(point.toBytes(false));
  } catch {
    return undefined;
  }
}

/**
 * The verdict the Adjudicator would give the evidence of this answer (see the module's comment
 * for what is ported and what is assumed already checked).
 */
export function predictOutcome(parts: {
  capsuleSimple: Uint8Array;
  cfragSimple: Uint8Array;
  delegatingKey: Uint8Array;
  receivingKey: Uint8Array;
  kfragSigner: string;
  /**
   * The evidence's recovery bit of the kfrag signature, as the contract takes it; absent: the
   * bit that recovers `kfragSigner`, as `Evidence::from_parts` finds it.
   */
  kfragSignatureV?: boolean;
}): Outcome {
  const { capsuleSimple: capsule, cfragSimple: cfrag } = parts;
  if (capsule.length !== CAPSULE_SIMPLE_LEN || cfrag.length !== CFRAG_SIMPLE_LEN) return { refusal: "Malformed(point)" };
  const signer = getAddress(parts.kfragSigner);
  const bits = parts.kfragSignatureV === undefined ? [false, true] : [parts.kfragSignatureV];
  const recovers = bits.some((yOdd) => recoverKfragSigner(cfrag, parts.delegatingKey, parts.receivingKey, yOdd) === signer);
  if (!recovers) return { refusal: "KfragSignature" };

  const points: Record<string, CurvePoint> = {};
  const named: [string, Uint8Array][] = [
    ["E", range(capsule, 0, 33)],
    ["V", range(capsule, 33, 66)],
    ["E1", field(cfrag, "E1")],
    ["V1", field(cfrag, "V1")],
    ["E2", field(cfrag, "E2")],
    ["V2", field(cfrag, "V2")],
    ["U1", field(cfrag, "U1")],
    ["U2", field(cfrag, "U2")],
  ];
  for (const [name, bytes] of named) {
    try {
      points[name] = Point.fromBytes(bytes);
    } catch {
      return { refusal: "Malformed(point)" };
    }
  }
  const z = bigintOf(field(cfrag, "Z"));
  if (z === 0n || z >= CURVE_ORDER) return { verdict: "InvalidZ" };
  if (xOf(field(cfrag, "E1")) >= CURVE_ORDER || xOf(field(cfrag, "V1")) >= CURVE_ORDER) return { verdict: "UncheckablePoint" };
  // The contract's products go through ecrecover, which takes an x below n only.
  for (const name of ["E", "V", "U1"]) {
    if (points[name]!.x >= CURVE_ORDER) return { refusal: "Malformed(product)" };
  }
  const h = cfragChallenge(capsule, cfrag);
  const U = Point.fromBytes(U_COMPRESSED);
  const p = (name: string) => points[name]!;
  if (!p("E").multiply(z).equals(p("E1").multiply(h).add(p("E2")))) return { verdict: "WrongE" };
  if (!p("V").multiply(z).equals(p("V1").multiply(h).add(p("V2")))) return { verdict: "WrongV" };
  if (!U.multiply(z).equals(p("U1").multiply(h).add(p("U2")))) return { verdict: "WrongU" };
  return { verdict: "Correct" };
}

/**
 * The policy file (JSON, version 1): what Alice's grant writes and Bob needs to retrieve
 * (`docs/client.md`, "Policy file"), read and written exactly as the Rust client does
 * (`crates/kms-client/src/policy.rs`), so a file from `kms policy grant` parses here and a file
 * written here is read by `kms retrieve --policy`.
 *
 * Representation chosen for TypeScript:
 * - addresses are EIP-55 checksummed `0x` strings (what Rust writes);
 * - the policy id and public keys are lowercase `0x` hex strings (16 and 33 bytes), keys checked
 *   to be points of secp256k1 when parsed;
 * - `feeRate` is a `bigint` (it can exceed 2^53); `chainId`, `threshold`, `shares` and
 *   `endTimestamp` are numbers (safe integers, checked).
 *
 * Also here: a node URL taken apart into where to connect and its TLS certificate pin
 * (`https://host:port#tls-sha256=<64 hex>`, `docs/node.md` "TLS", `crates/kms-crypto/src/tls.rs`).
 */
import { secp256k1 } from "@noble/curves/secp256k1.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { keccak_256 } from "@noble/hashes/sha3.js";
import { getAddress, type Address, type Hex } from "viem";
import { fromHex, toHex } from "./bytes.js";
import { FormatError, KmsError } from "./errors.js";

/** The policy file format this SDK reads and writes. */
export const POLICY_FILE_VERSION = 1;
/** The most nodes one policy may name (the contract's `MAX_NODES`). */
export const MAX_NODES = 32;

/** One node of a policy: its on-chain node record at grant time. */
export interface PolicyNode {
  /** The staker: the address the policy names. */
  staker: Address;
  /** The worker bonded to the staker at grant time: it signs every cfrag. */
  worker: Address;
  /** The node's URL, possibly with its certificate pin (`#tls-sha256=<hex>`). */
  url: string;
  /** The node's Umbral public key, `0x` + 33 bytes compressed. */
  umbralPublicKey: Hex;
}

/** A policy, as Alice's grant records it (field meanings: `docs/client.md`). */
export interface PolicyFile {
  chainId: number;
  policyManager: Address;
  /** `0x` + 32 hex digits. */
  policyId: Hex;
  label: string;
  owner: Address;
  /** The policy's public key (Enrico encrypts to it), `0x` + 33 bytes. */
  delegatingKey: Hex;
  /** The kfrag signer's public key; its Ethereum address is the policy's `kfragSigner`. */
  verifyingKey: Hex;
  /** Bob's public key. */
  receivingKey: Hex;
  /** Sender keys the owner authorizes (empty when the file has none). */
  senders: Hex[];
  threshold: number;
  shares: number;
  /** Unix seconds, at grant time. */
  endTimestamp: number;
  /** Wei per node per period. */
  feeRate: bigint;
  /** Strictly ascending by staker; node `i` holds kfrag `i`. */
  nodes: PolicyNode[];
}

/**
 * A policy file that cannot be used. `field` names the JSON field (e.g.
 * `nodes[1].umbralPublicKey`) when one is at fault; the message reads like the Rust client's:
 * ``policy file p.json: field `nodes[1].umbralPublicKey` expected a 33-byte compressed key, got 1 bytes``.
 */
export class PolicyFileError extends KmsError {
  readonly field: string | undefined;
  readonly source: string;
  constructor(source: string, field: string | undefined, reason: string) {
    super(
      "PolicyFile",
      field === undefined ? `policy file ${source}: ${reason}` : `policy file ${source}: field \`${field}\` ${reason}`,
    );
    this.source = source;
    this.field = field;
  }
}

/** The name used in errors for JSON that did not come from a file (as Rust's). */
const INLINE_SOURCE = "<inline JSON>";

const TOP_FIELDS = [
  "version",
  "chainId",
  "policyManager",
  "policyId",
  "label",
  "owner",
  "delegatingKey",
  "verifyingKey",
  "receivingKey",
  "senders",
  "threshold",
  "shares",
  "endTimestamp",
  "feeRate",
  "nodes",
] as const;
const NODE_FIELDS = ["staker", "worker", "url", "umbralPublicKey"] as const;
const OPTIONAL_TOP: ReadonlySet<string> = new Set(["senders"]);

type Json = unknown;

function typeName(value: Json): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "sequence";
  if (typeof value === "object") return "map";
  if (typeof value === "string") return `string ${JSON.stringify(value)}`;
  if (typeof value === "number") return Number.isInteger(value) ? `integer \`${value}\`` : `floating point \`${value}\``;
  return `${typeof value} \`${String(value)}\``;
}

/** Checks that `object` is a JSON object with exactly the allowed fields (serde's deny_unknown_fields). */
function checkShape(
  source: string,
  where: string,
  value: Json,
  fields: readonly string[],
  optional: ReadonlySet<string>,
): Record<string, Json> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new PolicyFileError(source, where || undefined, `invalid type: ${typeName(value)}, expected a JSON object`);
  }
  const record = value as Record<string, Json>;
  for (const key of Object.keys(record)) {
    if (!fields.includes(key)) {
      const prefix = where ? `${where}: ` : "";
      throw new PolicyFileError(
        source,
        undefined,
        `${prefix}unknown field \`${key}\`, expected one of ${fields.map((f) => `\`${f}\``).join(", ")}`,
      );
    }
  }
  for (const field of fields) {
    if (!(field in record) && !optional.has(field)) {
      const prefix = where ? `${where}: ` : "";
      throw new PolicyFileError(source, undefined, `${prefix}missing field \`${field}\``);
    }
  }
  return record;
}

class Checker {
  constructor(readonly source: string) {}

  err(field: string, reason: string): PolicyFileError {
    return new PolicyFileError(this.source, field, reason);
  }

  string(field: string, value: Json): string {
    if (typeof value !== "string") throw this.err(field, `invalid type: ${typeName(value)}, expected a string`);
    return value;
  }

  integer(field: string, value: Json): number {
    if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
      throw this.err(field, `invalid type: ${typeName(value)}, expected u64`);
    }
    if (!Number.isSafeInteger(value)) throw this.err(field, `is ${value}, above 2^53: this SDK cannot represent it exactly`);
    return value;
  }

  address(field: string, value: Json): Address {
    const text = this.string(field, value);
    const digits = text.startsWith("0x") || text.startsWith("0X") ? text.slice(2) : text;
    if (!/^[0-9a-fA-F]{40}$/.test(digits)) throw this.err(field, `is not an address: ${JSON.stringify(text)}`);
    return getAddress(`0x${digits.toLowerCase()}`);
  }

  key(field: string, value: Json): Hex {
    const text = this.string(field, value);
    let bytes: Uint8Array;
    try {
      bytes = fromHex(text, field);
    } catch {
      throw this.err(field, `invalid hex: ${JSON.stringify(text.slice(0, 80))}`);
    }
    if (bytes.length !== 33) throw this.err(field, `expected a 33-byte compressed key, got ${bytes.length} bytes`);
    if (!isCompressedPoint(bytes)) throw this.err(field, "not a secp256k1 point");
    return toHex(bytes);
  }
}

/** Whether `bytes` is a compressed SEC1 point of secp256k1 (`0x02`/`0x03` ‖ x on the curve). */
export function isCompressedPoint(bytes: Uint8Array): boolean {
  if (bytes.length !== 33 || (bytes[0] !== 2 && bytes[0] !== 3)) return false;
  try {
    secp256k1.Point.fromBytes(bytes);
    return true;
  } catch {
    return false;
  }
}

/**
 * Parses and checks a policy file's text. `source` (a path, or what the text came from) names it
 * in errors; `<inline JSON>` by default. Unknown fields are refused, and every error names the
 * field, as the Rust client does. Throws {@link PolicyFileError}.
 */
export function parsePolicyFile(text: string, source: string = INLINE_SOURCE): PolicyFile {
  let json: Json;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new PolicyFileError(source, undefined, `not JSON: ${(error as Error).message}`);
  }
  const raw = checkShape(source, "", json, TOP_FIELDS, OPTIONAL_TOP);
  const c = new Checker(source);
  const version = c.integer("version", raw.version);
  if (version !== POLICY_FILE_VERSION) {
    throw c.err("version", `is ${version}, this SDK reads version ${POLICY_FILE_VERSION}: use a matching SDK`);
  }
  const chainId = c.integer("chainId", raw.chainId);
  const policyIdText = c.string("policyId", raw.policyId);
  let policyIdBytes: Uint8Array;
  try {
    policyIdBytes = fromHex(policyIdText, "policyId");
  } catch {
    throw c.err("policyId", `is not hex: ${JSON.stringify(policyIdText.slice(0, 80))}`);
  }
  if (policyIdBytes.length !== 16) throw c.err("policyId", `has ${policyIdBytes.length} bytes, expected 16`);
  const label = c.string("label", raw.label);
  const feeRateText = c.string("feeRate", raw.feeRate);
  if (!/^[0-9]+$/.test(feeRateText) || BigInt(feeRateText) >= 1n << 256n) {
    throw c.err("feeRate", `must be a decimal number of wei, found ${JSON.stringify(feeRateText)}`);
  }
  if (!Array.isArray(raw.nodes)) throw c.err("nodes", `invalid type: ${typeName(raw.nodes)}, expected a sequence`);
  const nodes: PolicyNode[] = raw.nodes.map((value, i) => {
    const node = checkShape(source, `nodes[${i}]`, value, NODE_FIELDS, new Set());
    const field = (name: string) => `nodes[${i}].${name}`;
    const staker = c.address(field("staker"), node.staker);
    const worker = c.address(field("worker"), node.worker);
    const url = checkUrl(c.string(field("url"), node.url));
    if (typeof url !== "string") throw c.err(field("url"), url.reason);
    return { staker, worker, url, umbralPublicKey: c.key(field("umbralPublicKey"), node.umbralPublicKey) };
  });
  const sendersRaw = raw.senders ?? [];
  if (!Array.isArray(sendersRaw)) throw c.err("senders", `invalid type: ${typeName(sendersRaw)}, expected a sequence`);
  const senders = sendersRaw.map((key, i) => c.key(`senders[${i}]`, key));
  const policy: PolicyFile = {
    chainId,
    policyManager: c.address("policyManager", raw.policyManager),
    policyId: toHex(policyIdBytes),
    label,
    owner: c.address("owner", raw.owner),
    delegatingKey: c.key("delegatingKey", raw.delegatingKey),
    verifyingKey: c.key("verifyingKey", raw.verifyingKey),
    receivingKey: c.key("receivingKey", raw.receivingKey),
    senders,
    threshold: c.integer("threshold", raw.threshold),
    shares: c.integer("shares", raw.shares),
    endTimestamp: c.integer("endTimestamp", raw.endTimestamp),
    feeRate: BigInt(feeRateText),
    nodes,
  };
  const problem = consistencyProblem(policy);
  if (problem) throw c.err(problem[0], problem[1]);
  return policy;
}

/**
 * The consistency rules: `1 <= threshold <= shares == nodes <= 32`, nodes strictly ascending by
 * staker. Returns the offending field and why, or `undefined`.
 */
function consistencyProblem(policy: PolicyFile): [string, string] | undefined {
  if (policy.shares === 0 || policy.shares > MAX_NODES) return ["shares", `is ${policy.shares}, must be 1 to ${MAX_NODES}`];
  if (policy.threshold === 0 || policy.threshold > policy.shares) {
    return ["threshold", `is ${policy.threshold}, must be 1 to shares (${policy.shares})`];
  }
  if (policy.nodes.length !== policy.shares) return ["nodes", `lists ${policy.nodes.length} nodes, shares is ${policy.shares}`];
  for (let i = 1; i < policy.nodes.length; i++) {
    if (BigInt(policy.nodes[i - 1]!.staker) >= BigInt(policy.nodes[i]!.staker)) {
      return ["nodes", `are not strictly ascending by staker at index ${i} (the contract's order)`];
    }
  }
  return undefined;
}

/**
 * The policy file's JSON text, as the Rust client writes it: the same field order, pretty-printed
 * with two spaces and a final newline, addresses checksummed, keys and the id in lowercase hex,
 * `feeRate` a decimal string. `kms retrieve --policy` reads it. Throws {@link PolicyFileError} if
 * the policy breaks the file's rules.
 */
export function policyFileToJson(policy: PolicyFile): string {
  const problem = consistencyProblem(policy);
  if (problem) throw new PolicyFileError("<to write>", problem[0], problem[1]);
  const lower = (hex: string) => hex.toLowerCase() as Hex;
  const raw = {
    version: POLICY_FILE_VERSION,
    chainId: policy.chainId,
    policyManager: getAddress(policy.policyManager),
    policyId: lower(policy.policyId),
    label: policy.label,
    owner: getAddress(policy.owner),
    delegatingKey: lower(policy.delegatingKey),
    verifyingKey: lower(policy.verifyingKey),
    receivingKey: lower(policy.receivingKey),
    senders: policy.senders.map(lower),
    threshold: policy.threshold,
    shares: policy.shares,
    endTimestamp: policy.endTimestamp,
    feeRate: policy.feeRate.toString(),
    nodes: policy.nodes.map((node) => ({
      staker: getAddress(node.staker),
      worker: getAddress(node.worker),
      url: node.url,
      umbralPublicKey: lower(node.umbralPublicKey),
    })),
  };
  return `${JSON.stringify(raw, null, 2)}\n`;
}

/** The Ethereum address of a policy's `verifyingKey`: the policy's `kfragSigner` on chain. */
export function kfragSignerOf(policy: Pick<PolicyFile, "verifyingKey">): Address {
  return addressOfPublicKey(fromHex(policy.verifyingKey, "verifyingKey", 33));
}

/** The Ethereum address of a compressed secp256k1 public key (`keccak256(x ‖ y)[12..]`). */
export function addressOfPublicKey(compressed: Uint8Array): Address {
  const uncompressed = secp256k1.Point.fromBytes(compressed).toBytes(false);
  return getAddress(toHex(keccak_256(uncompressed.subarray(1)).subarray(12)));
}

// ---- Node URLs and their TLS pins ----

/** The URL fragment's key of a certificate pin. */
export const PIN_KEY = "tls-sha256";

/** A node URL taken apart: where requests go, and the certificate's pin if it has one. */
export interface NodeUrl {
  /** The URL without its fragment. */
  base: string;
  /** The SHA-256 of the node's certificate (DER), 32 bytes, when the URL pins one. */
  pin: Uint8Array | undefined;
  /** Whether requests go over plain `http://`. */
  plainHttp: boolean;
}

/** A node URL that cannot be used (code `BadUrl`). */
export class NodeUrlError extends FormatError {}

/**
 * Takes a node URL apart. A fragment other than `tls-sha256=<64 hex digits>` is refused (a typo
 * must not silently turn pinning off), and so is a pin on a URL that is not `https://`: as
 * `kms_crypto::tls::parse_node_url`.
 */
export function parseNodeUrl(url: string): NodeUrl {
  const err = (reason: string) => new NodeUrlError("BadUrl", `url ${JSON.stringify(url)}: ${reason}`);
  const hash = url.indexOf("#");
  const base = hash < 0 ? url : url.slice(0, hash);
  // Plain HTTP is what fetch would speak, not just the prefix: the URL parser also reads
  // " http://h" and "http:/h" as http://h (a chain record can hold either).
  let scheme: string | undefined;
  try {
    scheme = new URL(base).protocol;
  } catch {
    scheme = undefined;
  }
  const plainHttp = url.slice(0, 7).toLowerCase() === "http://" || scheme === "http:";
  if (hash < 0) return { base: url, pin: undefined, plainHttp };
  const fragment = url.slice(hash + 1);
  if (!fragment.startsWith(`${PIN_KEY}=`)) {
    throw err(`the fragment must be \`${PIN_KEY}=<64 hex digits>\` (the node's certificate pin)`);
  }
  const hex = fragment.slice(PIN_KEY.length + 1);
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw err(`${PIN_KEY} must be 64 hex digits (a SHA-256)`);
  if (base.slice(0, 8).toLowerCase() !== "https://") throw err("a certificate pin needs an https:// URL");
  return { base, pin: fromHex(hex, PIN_KEY, 32), plainHttp: false };
}

/** `url` (any fragment dropped) pinned to `pin` (32 bytes). */
export function withPin(url: string, pin: Uint8Array): string {
  const hash = url.indexOf("#");
  const base = hash < 0 ? url : url.slice(0, hash);
  return `${base}#${PIN_KEY}=${toHex(pin).slice(2)}`;
}

/** The pin of a certificate: the SHA-256 of its DER encoding. */
export function certificateFingerprint(der: Uint8Array): Uint8Array {
  return sha256(der);
}

/**
 * A node URL must be absolute `http` or `https` with a host (it comes from the chain: anyone can
 * publish one). Returns the URL, or why not (the Rust `check_url`'s reasons).
 */
export function checkUrl(url: string): string | { reason: string } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (error) {
    return { reason: `is not a URL (${JSON.stringify(url)}): ${(error as Error).message}` };
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") return { reason: `must be http or https, found ${JSON.stringify(url)}` };
  if (!parsed.hostname) return { reason: `has no host: ${JSON.stringify(url)}` };
  return url;
}

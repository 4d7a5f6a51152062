/**
 * The deployments file that `script/Deploy.s.sol` writes (e.g. `deployments/31337.json`): where
 * the contracts live on one chain and the parameters they were deployed with. The same rules as
 * the Rust reader (`crates/kms-contracts/src/deployment.rs`): numbers as JSON numbers or strings
 * (decimal or `0x` hex), never rounded; addresses checked against their EIP-55 checksum when
 * mixed-case; unknown fields ignored (newer deployments add contracts).
 */
import { getAddress, type Address } from "viem";
import { KmsError } from "./errors.js";
import { importNodeOnly } from "./node-only.js";

/** Addresses and parameters of one deployment of the KMS contracts. */
export interface Deployment {
  /** The chain the contracts were deployed on: a client on another chain refuses the file. */
  chainId: bigint;
  /** The block the deployment started at: event scans need not look earlier. */
  startBlock: bigint;
  /** The account that broadcast the deployment. */
  deployer: Address;
  /** The `KMSToken` contract. */
  token: Address;
  /** The `StakingEscrow` contract. */
  stakingEscrow: Address;
  /** The `PolicyManager` contract. */
  policyManager: Address;
  /** The `Adjudicator`; the zero address until one is linked. */
  adjudicator: Address;
  /** Length of a period, in seconds. */
  secondsPerPeriod: bigint;
  /** Smallest sub-stake, in token units. */
  minStake: bigint;
  /** Largest locked total per staker, in token units. */
  maxStake: bigint;
  /** Shortest lock of a sub-stake, in periods. */
  minLockPeriods: bigint;
  /** Longest lock of a sub-stake, in periods. */
  maxLockPeriods: bigint;
  /** Periods a worker must stay bonded before it can be changed. */
  minWorkerPeriods: bigint;
  /** Share of the unallocated reserve issued per period, as a WAD (1e18 = 100%). */
  issuanceRate: bigint;
  /** The Adjudicator's evidence window in periods, when the file has it (newer deployments). */
  evidenceWindow?: bigint | undefined;
}

/** Why a deployments file could not be read or parsed; the message names the file and field. */
export class DeploymentError extends KmsError {}

const INLINE_SOURCE = "<inline JSON>";
/** Marks a number token quoted by {@link quoteNumbers}; cannot occur in a JSON string we did not write. */
const NUMBER_MARK = "\u0000number:";
const U64_MAX = (1n << 64n) - 1n;
const U256_MAX = (1n << 256n) - 1n;

/**
 * Parses the text of a deployments file; `source` names it in errors (a path or URL).
 * @throws {DeploymentError} code `DeploymentJson`, `DeploymentMissingField` or `DeploymentInvalidField`.
 */
export function parseDeployment(text: string, source: string = INLINE_SOURCE): Deployment {
  let fields: unknown;
  try {
    // JSON.parse would round integers above 2^53 (forge writes some amounts as numbers): every
    // number token is turned into a marked string first and parsed exactly below.
    fields = JSON.parse(quoteNumbers(text));
  } catch (cause) {
    throw new DeploymentError("DeploymentJson", `deployments file ${source} is not a JSON object: ${String(cause)}`, {
      cause,
    });
  }
  if (typeof fields !== "object" || fields === null || Array.isArray(fields)) {
    throw new DeploymentError("DeploymentJson", `deployments file ${source} is not a JSON object`);
  }
  const reader = new FieldReader(fields as Record<string, unknown>, source);
  const deployment: Deployment = {
    chainId: reader.u64("chainId"),
    startBlock: reader.u64("startBlock"),
    deployer: reader.address("deployer"),
    token: reader.address("token"),
    stakingEscrow: reader.address("stakingEscrow"),
    policyManager: reader.address("policyManager"),
    adjudicator: reader.address("adjudicator"),
    secondsPerPeriod: reader.u64("secondsPerPeriod"),
    minStake: reader.u256("minStake"),
    maxStake: reader.u256("maxStake"),
    minLockPeriods: reader.u64("minLockPeriods"),
    maxLockPeriods: reader.u64("maxLockPeriods"),
    minWorkerPeriods: reader.u64("minWorkerPeriods"),
    issuanceRate: reader.u256("issuanceRate"),
  };
  if ("evidenceWindow" in fields) deployment.evidenceWindow = reader.u64("evidenceWindow");
  if (deployment.secondsPerPeriod === 0n) {
    throw reader.invalid("secondsPerPeriod", "must not be zero");
  }
  return deployment;
}

/**
 * Reads a deployments file from a path (Node.js, through `node:fs`) or an `http(s)://` / `file:`
 * URL (fetch; the only form in browsers).
 * @throws {DeploymentError} code `DeploymentRead` when it cannot be read, or a parse error.
 */
export async function loadDeployment(pathOrUrl: string | URL): Promise<Deployment> {
  const source = pathOrUrl.toString();
  let text: string;
  const isWebUrl = pathOrUrl instanceof URL ? pathOrUrl.protocol !== "file:" : /^https?:\/\//i.test(source);
  try {
    if (isWebUrl) {
      const response = await fetch(source);
      if (!response.ok) throw new Error(`HTTP ${response.status} ${response.statusText}`);
      text = await response.text();
    } else {
      // Imported lazily so that a browser bundle never needs `node:fs`.
      const fs = await importNodeOnly<typeof import("node:fs/promises")>("node:fs/promises");
      text = await fs.readFile(pathOrUrl instanceof URL ? pathOrUrl : source.startsWith("file:") ? new URL(source) : source, "utf8");
    }
  } catch (cause) {
    throw new DeploymentError("DeploymentRead", `cannot read deployments file ${source}: ${errorText(cause)}`, {
      hint: "pass the file `script/Deploy.s.sol` or `kms devnet` wrote (deployments/<chainId>.json)",
      cause,
    });
  }
  return parseDeployment(text, source);
}

/** The deployments file's JSON, as the Rust `Deployment::to_json` writes it (amounts as strings). */
export function deploymentToJson(deployment: Deployment): string {
  const json: Record<string, unknown> = {
    chainId: Number(deployment.chainId),
    startBlock: Number(deployment.startBlock),
    deployer: deployment.deployer,
    token: deployment.token,
    stakingEscrow: deployment.stakingEscrow,
    policyManager: deployment.policyManager,
    adjudicator: deployment.adjudicator,
    secondsPerPeriod: Number(deployment.secondsPerPeriod),
    minStake: deployment.minStake.toString(),
    maxStake: deployment.maxStake.toString(),
    minLockPeriods: Number(deployment.minLockPeriods),
    maxLockPeriods: Number(deployment.maxLockPeriods),
    minWorkerPeriods: Number(deployment.minWorkerPeriods),
    issuanceRate: deployment.issuanceRate.toString(),
  };
  if (deployment.evidenceWindow !== undefined) json.evidenceWindow = Number(deployment.evidenceWindow);
  // Values above 2^53 must not become lossy JSON numbers.
  for (const key of ["chainId", "startBlock", "secondsPerPeriod", "minLockPeriods", "maxLockPeriods", "minWorkerPeriods"] as const) {
    const value = deployment[key];
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) json[key] = value.toString();
  }
  return JSON.stringify(json);
}

function errorText(cause: unknown): string {
  return cause instanceof Error ? cause.message : String(cause);
}

/** Replaces every JSON number token outside strings by a marked string holding its exact text. */
function quoteNumbers(text: string): string {
  let out = "";
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === '"') {
      // Copy the string verbatim, escapes included.
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j + 1;
    } else if (c === "-" || (c >= "0" && c <= "9")) {
      let j = i + 1;
      while (j < text.length && /[0-9eE.+-]/.test(text[j]!)) j++;
      out += JSON.stringify(NUMBER_MARK + text.slice(i, j));
      i = j;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

class FieldReader {
  constructor(
    private readonly fields: Record<string, unknown>,
    private readonly source: string,
  ) {}

  invalid(field: string, reason: string): DeploymentError {
    return new DeploymentError("DeploymentInvalidField", `deployments file ${this.source}: field \`${field}\` ${reason}`);
  }

  private raw(field: string): unknown {
    if (!Object.hasOwn(this.fields, field)) {
      throw new DeploymentError("DeploymentMissingField", `deployments file ${this.source} has no \`${field}\` field`, {
        hint: "the file may be from an older deployment: redeploy or regenerate it",
      });
    }
    return this.fields[field];
  }

  u256(field: string): bigint {
    const raw = this.raw(field);
    if (typeof raw !== "string") {
      throw this.invalid(field, `must be a number or a string, found ${JSON.stringify(raw)}`);
    }
    let text: string;
    let hex = false;
    if (raw.startsWith(NUMBER_MARK)) {
      text = raw.slice(NUMBER_MARK.length);
    } else if (raw.startsWith("0x") || raw.startsWith("0X")) {
      text = raw.slice(2);
      hex = true;
    } else {
      text = raw;
    }
    if (!(hex ? /^[0-9a-fA-F]+$/ : /^[0-9]+$/).test(text)) {
      const what = hex ? "a hexadecimal" : "a non-negative decimal";
      throw this.invalid(field, `must be ${what} integer (no sign, fraction or exponent), found ${JSON.stringify(text)}`);
    }
    const value = BigInt(hex ? `0x${text}` : text);
    if (value > U256_MAX) throw this.invalid(field, "does not fit in 256 bits");
    return value;
  }

  u64(field: string): bigint {
    const value = this.u256(field);
    if (value > U64_MAX) throw this.invalid(field, `${value} does not fit in 64 bits`);
    return value;
  }

  address(field: string): Address {
    const raw = this.raw(field);
    if (typeof raw !== "string" || raw.startsWith(NUMBER_MARK)) {
      throw this.invalid(field, "must be an address string, found a number");
    }
    if (!/^0x[0-9a-fA-F]{40}$/.test(raw)) throw this.invalid(field, `is not an address (${JSON.stringify(raw)})`);
    const checksummed = getAddress(raw);
    const hex = raw.slice(2);
    const mixedCase = /[a-f]/.test(hex) && /[A-F]/.test(hex);
    // Forge writes EIP-55 addresses; a mixed-case one with a wrong checksum is a bad hand edit.
    if (mixedCase && checksummed !== raw) {
      throw this.invalid(field, `has a bad EIP-55 checksum (${JSON.stringify(raw)}, expected ${checksummed})`);
    }
    return checksummed;
  }
}

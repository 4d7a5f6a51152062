/**
 * Choosing a policy's nodes (docs/client.md "Node sampling", `crates/kms-client/src/sampling.rs`):
 * stake-weighted sampling without replacement, reproducible from a u64 seed. The same chain
 * state, seed and node answers give the same nodes as the Rust client, because the draw is
 * exact integer arithmetic driven by a bit-exact port of rand_chacha 0.3's
 * `ChaCha20Rng::seed_from_u64` ({@link ChaCha20Rng}).
 */
import { chacha20orig } from "@noble/ciphers/chacha.js";
import type { Address, PublicClient } from "viem";
import { policyManagerAbi, stakingEscrowAbi } from "./abi.js";
import { fromHex, toHex } from "./bytes.js";
import type { Deployment } from "./deployments.js";
import { KmsError } from "./errors.js";
import { checkUrl, isCompressedPoint, type PolicyNode } from "./policy-file.js";

/** Stakers read per paged call (`getActiveStakers`, `getNodeRecords`), as kms-client. */
export const PAGE = 500n;
const CONCURRENT_PAGES = 8;
const FEE_READS = 16;
/** The most drawn candidates whose fee minimums are read ahead of need at once. */
const DRAW_AHEAD = 256;

const U64_MASK = (1n << 64n) - 1n;
const U256_MAX = (1n << 256n) - 1n;

// ---- The random generator: rand_chacha 0.3 `ChaCha20Rng` ----

/**
 * rand_chacha 0.3's `ChaCha20Rng`, bit for bit: the 32-byte seed is the ChaCha20 key, the
 * stream id (nonce) zero, the 64-bit block counter from zero; the generator buffers four blocks
 * (64 u32 words, rand_core's `BlockRng`) and `nextU64` is two words, the low one first.
 */
export class ChaCha20Rng {
  private readonly key: Uint8Array;
  private readonly results = new Uint32Array(64);
  private index = 64;
  private block = 0;

  private constructor(seed: Uint8Array) {
    this.key = Uint8Array.from(seed);
  }

  /** `ChaCha20Rng::from_seed(seed)`: `seed` is the 32-byte key. */
  static fromSeed(seed: Uint8Array): ChaCha20Rng {
    if (seed.length !== 32) throw new RangeError(`a ChaCha20 seed is 32 bytes, got ${seed.length}`);
    return new ChaCha20Rng(seed);
  }

  /** `SeedableRng::seed_from_u64(seed)` of rand_core 0.6 ({@link seedBytesFromU64}, then `fromSeed`). */
  static seedFromU64(seed: bigint | number): ChaCha20Rng {
    return new ChaCha20Rng(seedBytesFromU64(seed));
  }

  /** Refills the buffer with the next four ChaCha20 blocks. */
  private generate(): void {
    // The original (DJB) ChaCha20: 8-byte nonce (rand_chacha's stream, 0) and a 64-bit block
    // counter; XOR with zeros is the keystream.
    const keystream = chacha20orig(this.key, new Uint8Array(8), new Uint8Array(256), undefined, this.block);
    this.block += 4;
    const view = new DataView(keystream.buffer, keystream.byteOffset, keystream.byteLength);
    for (let i = 0; i < 64; i++) this.results[i] = view.getUint32(4 * i, true);
  }

  /** `RngCore::next_u32`. */
  nextU32(): number {
    if (this.index >= 64) {
      this.generate();
      this.index = 0;
    }
    return this.results[this.index++]!;
  }

  /** `RngCore::next_u64` (rand_core's `BlockRng`: low word first, straddling a refill if needed). */
  nextU64(): bigint {
    if (this.index < 63) {
      const low = this.results[this.index]!;
      const high = this.results[this.index + 1]!;
      this.index += 2;
      return (BigInt(high) << 32n) | BigInt(low);
    }
    if (this.index >= 64) {
      this.generate();
      this.index = 2;
      return (BigInt(this.results[1]!) << 32n) | BigInt(this.results[0]!);
    }
    const low = this.results[63]!;
    this.generate();
    this.index = 1;
    return (BigInt(this.results[0]!) << 32n) | BigInt(low);
  }
}

/**
 * rand_core 0.6's `seed_from_u64` expansion of a u64 into a 32-byte seed: PCG32 (the state
 * advanced first, XSH-RR output), eight little-endian u32 words.
 */
export function seedBytesFromU64(seed: bigint | number): Uint8Array {
  let state = BigInt(seed);
  if (state < 0n || state > U64_MASK) throw new RangeError(`${seed} is not a u64`);
  const MUL = 6364136223846793005n;
  const INC = 11634580027462260723n;
  const bytes = new Uint8Array(32);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < 8; i++) {
    state = (state * MUL + INC) & U64_MASK;
    const xorshifted = Number((((state >> 18n) ^ state) >> 27n) & 0xffffffffn);
    const rot = Number(state >> 59n);
    const x = ((xorshifted >>> rot) | (xorshifted << ((32 - rot) & 31))) >>> 0;
    view.setUint32(4 * i, x, true);
  }
  return bytes;
}

// ---- The draw ----

function bitLength(value: bigint): number {
  return value === 0n ? 0 : value.toString(2).length;
}

/**
 * A uniform integer in `[0, bound)` (`bound > 0`): four `nextU64` as 256-bit limbs, least
 * significant first, masked to the bound's bit length, drawn again while not below it.
 */
export function uniformBelow(rng: ChaCha20Rng, bound: bigint): bigint {
  const bits = bitLength(bound);
  const mask = bits >= 256 ? U256_MAX : (1n << BigInt(bits)) - 1n;
  for (;;) {
    let value = 0n;
    for (let limb = 0; limb < 4; limb++) value |= rng.nextU64() << BigInt(64 * limb);
    value &= mask;
    if (value < bound) return value;
  }
}

/** Draws indices with probability proportional to their weight, without replacement. */
export class WeightedDraw {
  private readonly weights: bigint[];
  private total: bigint;
  private live: number;

  constructor(weights: readonly bigint[]) {
    this.weights = [...weights];
    // Saturating, as the Rust draw, so that a hostile chain cannot make the sum misbehave.
    let total = 0n;
    for (const weight of weights) {
      if (weight < 0n || weight > U256_MAX) throw new RangeError(`weight ${weight} is not a uint256`);
      total = total + weight > U256_MAX ? U256_MAX : total + weight;
    }
    this.total = total;
    this.live = weights.filter((w) => w !== 0n).length;
  }

  /** How many items can still be drawn. */
  remaining(): number {
    return this.live;
  }

  /** The next index, or `undefined` when every item of positive weight has been drawn. */
  draw(rng: ChaCha20Rng): number | undefined {
    if (this.total === 0n) return undefined;
    let target = uniformBelow(rng, this.total);
    let chosen: number | undefined;
    for (let i = 0; i < this.weights.length; i++) {
      const weight = this.weights[i]!;
      if (target < weight) {
        chosen = i;
        break;
      }
      target -= weight;
    }
    if (chosen === undefined) {
      // With a saturated total the target may pass every weight: the last live one.
      for (let i = this.weights.length - 1; i >= 0; i--) {
        if (this.weights[i] !== 0n) {
          chosen = i;
          break;
        }
      }
      if (chosen === undefined) return undefined;
    }
    const weight = this.weights[chosen]!;
    this.total = this.total > weight ? this.total - weight : 0n;
    this.weights[chosen] = 0n;
    this.live -= 1;
    if (this.live === 0) this.total = 0n;
    return chosen;
  }
}

/**
 * `n` distinct indices of `weights` in draw order (`sample_weighted` of kms-client), with
 * `ChaCha20Rng.seedFromU64(seed)`. Throws {@link SamplingError} `NotEnoughNodes` if fewer than
 * `n` weights are positive.
 */
export function sampleWeighted(weights: readonly bigint[], n: number, seed: bigint | number): number[] {
  const draw = new WeightedDraw(weights);
  if (draw.remaining() < n) {
    throw new SamplingError("NotEnoughNodes", `not enough nodes: ${n} wanted, ${draw.remaining()} available`, {
      wanted: n,
      available: draw.remaining(),
      excluded: [],
    });
  }
  const rng = ChaCha20Rng.seedFromU64(seed);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const index = draw.draw(rng);
    if (index !== undefined) out.push(index);
  }
  return out;
}

// ---- Candidates and the sample ----

/** A staker left out of the sample, and why. */
export interface Excluded {
  staker: Address;
  reason: string;
}

/** A node that may take the policy, with its weight (tokens locked in the policy's last period). */
export interface Candidate {
  node: PolicyNode;
  locked: bigint;
}

/** The candidates for a policy, read at one block. */
export interface Candidates {
  /** Active stakers with a usable node record, in the escrow's staker-list order. */
  candidates: Candidate[];
  /** Active stakers without a usable node record, and why. */
  excluded: Excluded[];
  /** The fee rate offered: drawn candidates asking more are left out. */
  feeRate: bigint;
  /** The block read. */
  block: bigint;
  /** That block's timestamp. */
  timestamp: bigint;
  /** The period of that timestamp. */
  currentPeriod: bigint;
}

/** Why nodes could not be sampled: `NotEnoughNodes`, `EndInPast` or `ChainRead`. */
export class SamplingError extends KmsError {
  readonly wanted: number | undefined;
  readonly available: number | undefined;
  readonly excluded: Excluded[];
  constructor(
    code: string,
    message: string,
    details: { wanted?: number; available?: number; excluded?: Excluded[]; hint?: string; cause?: unknown } = {},
  ) {
    super(code, message, { hint: details.hint, cause: details.cause });
    this.wanted = details.wanted;
    this.available = details.available;
    this.excluded = details.excluded ?? [];
  }
}

function chainError(what: string, cause: unknown): SamplingError {
  const detail = cause instanceof Error ? (cause as { shortMessage?: string }).shortMessage ?? cause.message : String(cause);
  return new SamplingError("ChainRead", `${what}: ${detail}`, { hint: "check the RPC URL and that the deployment is on this chain", cause });
}

/** Runs `tasks` with at most `limit` at once, keeping their order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, task: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await task(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/**
 * Reads the candidates for a policy ending at `endTimestamp` (Unix seconds) paying `feeRate` wei
 * per node and period, at the latest block: the active stakers (`getActiveStakers(last -
 * current, offset, PAGE)`) and their node records (`getNodeRecords`), pages read concurrently.
 */
export async function readCandidates(
  publicClient: PublicClient,
  deployment: Deployment,
  endTimestamp: bigint,
  feeRate: bigint,
): Promise<Candidates> {
  const what = "reading the stakers";
  let latest;
  try {
    latest = await publicClient.getBlock({ blockTag: "latest" });
  } catch (cause) {
    throw chainError(what, cause);
  }
  const block = latest.number;
  const timestamp = latest.timestamp;
  if (block === null) throw chainError(what, "the latest block has no number");
  if (endTimestamp <= timestamp) {
    throw new SamplingError("EndInPast", `the policy must end after the chain's current time ${timestamp}, not at ${endTimestamp}`);
  }
  const spp = deployment.secondsPerPeriod > 0n ? deployment.secondsPerPeriod : 1n;
  const currentPeriod = timestamp / spp;
  const lastPeriod = (endTimestamp - 1n) / spp;
  const periodsAhead = lastPeriod - currentPeriod;
  const escrow = { address: deployment.stakingEscrow, abi: stakingEscrowAbi } as const;

  let count: bigint;
  try {
    count = await publicClient.readContract({ ...escrow, functionName: "stakersCount", blockNumber: block });
  } catch (cause) {
    throw chainError(what, cause);
  }
  const offsets: bigint[] = [];
  for (let offset = 0n; offset < count; offset += PAGE) offsets.push(offset);
  const pages = await mapLimit(offsets, CONCURRENT_PAGES, async (offset) => {
    const active = publicClient
      .readContract({ ...escrow, functionName: "getActiveStakers", args: [periodsAhead, offset, PAGE], blockNumber: block })
      .catch((cause: unknown) => {
        throw chainError(what, cause);
      });
    const records = publicClient
      .readContract({ ...escrow, functionName: "getNodeRecords", args: [offset, PAGE], blockNumber: block })
      .catch((cause: unknown) => {
        throw chainError("reading the node records", cause);
      });
    return Promise.all([active, records]);
  });

  const candidates: Candidate[] = [];
  const excluded: Excluded[] = [];
  for (const [[stakers, locked], records] of pages) {
    // A page's records are a subset of the page, in list order: look each staker up.
    const byStaker = new Map(records.map((record) => [record.staker.toLowerCase(), record]));
    stakers.forEach((staker, i) => {
      const record = byStaker.get(staker.toLowerCase());
      if (!record) {
        excluded.push({ staker, reason: "no node record published" });
        return;
      }
      const url = checkUrl(record.url);
      if (typeof url !== "string") {
        excluded.push({ staker, reason: `node record URL ${url.reason}` });
        return;
      }
      const key = hexToBytes(record.umbralPublicKey);
      if (key.length !== 33 || !isCompressedPoint(key)) {
        excluded.push({ staker, reason: "node record Umbral key is not a point" });
        return;
      }
      candidates.push({
        node: { staker, worker: record.worker, url, umbralPublicKey: toHex(key) },
        locked: locked[i] ?? 0n,
      });
    });
  }
  return { candidates, excluded, feeRate, block, timestamp, currentPeriod };
}

/** The bytes of a hex string from the chain, or empty when it is not hex (then refused as a key). */
function hexToBytes(hex: string): Uint8Array {
  try {
    return fromHex(hex, "umbralPublicKey");
  } catch {
    return new Uint8Array();
  }
}

/** What the draw asks about the candidates it draws. */
export interface NodeChecks {
  /** `PolicyManager.effectiveMinFeeRate` of each staker at `block`, in order. */
  minFeeRates(stakers: readonly Address[], block: bigint): Promise<bigint[]>;
  /** `null` if the node answers `GET /v1/node` as its record says, else why not. */
  probe(node: PolicyNode): Promise<string | null>;
}

/** The fee minimums of `stakers` at `block` from the chain, 16 at a time, in order. */
export async function readMinFeeRates(
  publicClient: PublicClient,
  deployment: Deployment,
  stakers: readonly Address[],
  block: bigint,
): Promise<bigint[]> {
  return mapLimit(stakers, FEE_READS, async (staker) => {
    try {
      return await publicClient.readContract({
        address: deployment.policyManager,
        abi: policyManagerAbi,
        functionName: "effectiveMinFeeRate",
        args: [staker],
        blockNumber: block,
      });
    } catch (cause) {
      throw chainError("reading the nodes' minimum fee rates", cause);
    }
  });
}

/**
 * Draws `wanted` nodes from `found` by stake, leaving out `exclude`, and returns them ordered by
 * staker with the stakers left out and why: the first `wanted` in the draw order that ask no
 * more than `found.feeRate` and answer their probe. Each round draws what is missing (and, once
 * one asked too much, as many ahead as drawn so far, up to 256), reads those fee minimums, then
 * probes the qualifying ones at once; exactly the Rust `sample_nodes`.
 * @throws {SamplingError} `NotEnoughNodes` listing every staker left out.
 */
export async function sampleNodes(
  checks: NodeChecks,
  found: Candidates,
  wanted: number,
  seed: bigint | number,
  exclude: readonly Address[] = [],
): Promise<{ nodes: PolicyNode[]; excluded: Excluded[] }> {
  const excluded = [...found.excluded];
  const excludeSet = new Set(exclude.map((a) => a.toLowerCase()));
  const draw = new WeightedDraw(found.candidates.map((c) => (excludeSet.has(c.node.staker.toLowerCase()) ? 0n : c.locked)));
  const rng = ChaCha20Rng.seedFromU64(seed);
  // Drawn and fee-checked, not yet considered, in draw order: an index, or why it is left out.
  const checked: Array<number | Excluded> = [];
  let drawn = 0;
  let tooDear = 0;
  const chosen: PolicyNode[] = [];
  while (chosen.length < wanted) {
    const missing = wanted - chosen.length;
    const batch: PolicyNode[] = [];
    while (batch.length < missing) {
      const next = checked.shift();
      if (next !== undefined) {
        if (typeof next === "number") batch.push(found.candidates[next]!.node);
        else excluded.push(next);
        continue;
      }
      const needed = missing - batch.length;
      const ahead = tooDear === 0 ? 0 : Math.min(drawn, DRAW_AHEAD);
      const indices: number[] = [];
      while (indices.length < Math.max(needed, ahead)) {
        const i = draw.draw(rng);
        if (i === undefined) break;
        indices.push(i);
      }
      if (indices.length === 0) break;
      drawn += indices.length;
      const stakers = indices.map((i) => found.candidates[i]!.node.staker);
      const minimums = await checks.minFeeRates(stakers, found.block);
      if (minimums.length !== indices.length) {
        throw chainError("reading the nodes' minimum fee rates", `${minimums.length} answers for ${indices.length} nodes`);
      }
      indices.forEach((i, k) => {
        const minimum = minimums[k]!;
        if (minimum > found.feeRate) {
          tooDear += 1;
          checked.push({
            staker: found.candidates[i]!.node.staker,
            reason: `asks at least ${minimum} wei per period, ${found.feeRate} offered`,
          });
        } else {
          checked.push(i);
        }
      });
    }
    if (batch.length === 0) {
      const list = excluded.map((e) => `${e.staker}: ${e.reason}`).join("; ");
      throw new SamplingError(
        "NotEnoughNodes",
        `not enough nodes: ${wanted} wanted, ${chosen.length} available${list ? ` (left out: ${list})` : ""}`,
        {
          wanted,
          available: chosen.length,
          excluded,
          hint: "lower the number of shares, raise the fee rate, end the policy sooner (stakes must stay locked until its end), or wait for more nodes to join",
        },
      );
    }
    const probes = await Promise.all(batch.map((node) => checks.probe(node).catch((e: unknown) => (e instanceof Error ? e.message : String(e)))));
    batch.forEach((node, k) => {
      const reason = probes[k];
      if (reason === null || reason === undefined) chosen.push(node);
      else excluded.push({ staker: node.staker, reason });
    });
  }
  chosen.sort((a, b) => compareAddresses(a.staker, b.staker));
  return { nodes: chosen, excluded };
}

/** Orders addresses numerically (the contract's order), whatever their case. */
export function compareAddresses(a: string, b: string): number {
  const x = BigInt(a);
  const y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

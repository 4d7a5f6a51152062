import { test } from "node:test";
import assert from "node:assert/strict";
import type { Address } from "viem";
import { ChaCha20Rng, seedBytesFromU64, sampleWeighted, sampleNodes, WeightedDraw, SamplingError, type Candidates, type NodeChecks } from "../src/sampling.js";
import type { PolicyNode } from "../src/policy-file.js";

test("seed_from_u64 expands as rand_core 0.6 (its value-breakage vector)", () => {
  // rand_core 0.6.4 `test_seed_from_u64`: the first 8 seed bytes of seed 0, little-endian.
  const seed = seedBytesFromU64(0n);
  assert.equal(new DataView(seed.buffer).getBigUint64(0, true), 5029875928683246316n);
});

test("ChaCha20Rng reproduces rand_chacha 0.3's true values", () => {
  // rand_chacha 0.3.1 `test_chacha_true_values_a` (zero key): two blocks of next_u32.
  const rng = ChaCha20Rng.fromSeed(new Uint8Array(32));
  const words = Array.from({ length: 32 }, () => rng.nextU32());
  assert.deepEqual(words.slice(0, 16), [
    0xade0b876, 0x903df1a0, 0xe56a5d40, 0x28bd8653, 0xb819d2bd, 0x1aed8da0, 0xccef36a8, 0xc70d778b, 0x7c5941da, 0x8d485751,
    0x3fe02477, 0x374ad8b8, 0xf4b8436a, 0x1ca11815, 0x69b687c3, 0x8665eeb2,
  ]);
  assert.deepEqual(words.slice(16), [
    0xbee7079f, 0x7a385155, 0x7c97ba98, 0x0d082d73, 0xa0290fcb, 0x6965e348, 0x3e53c612, 0xed7aee32, 0x7621b729, 0x434ee69c,
    0xb03371d5, 0xd539d874, 0x281fed31, 0x45fb0a51, 0x1f0ae1ac, 0x6f4d794b,
  ]);
  // `test_chacha_construction`.
  const seed = new Uint8Array(32);
  seed[8] = 1;
  seed[16] = 2;
  seed[24] = 3;
  assert.equal(ChaCha20Rng.fromSeed(seed).nextU32(), 137206642);
});

test("nextU64 is two words, low first, across buffer refills and an odd position", () => {
  const words = ChaCha20Rng.fromSeed(new Uint8Array(32));
  const all = Array.from({ length: 200 }, () => BigInt(words.nextU32()));
  const rng = ChaCha20Rng.fromSeed(new Uint8Array(32));
  for (let i = 0; i < 64; i++) assert.equal(rng.nextU64(), (all[2 * i + 1]! << 32n) | all[2 * i]!);
  // Straddling: one word used, then 64-bit reads cross the 64-word buffer boundary.
  const odd = ChaCha20Rng.fromSeed(new Uint8Array(32));
  odd.nextU32();
  for (let i = 0; i < 40; i++) assert.equal(odd.nextU64(), (all[2 * i + 2]! << 32n) | all[2 * i + 1]!);
});

test("the weighted draw is deterministic, distinct and follows the weights", () => {
  const w = [5n, 1n, 7n, 3n, 3n, 9n, 2n, 8n];
  const a = sampleWeighted(w, 5, 42n);
  assert.deepEqual(a, sampleWeighted(w, 5, 42n));
  assert.equal(new Set(a).size, 5);
  assert.ok(Array.from({ length: 20 }, (_, s) => sampleWeighted(w, 5, s)).some((b) => JSON.stringify(b) !== JSON.stringify(a)));
  for (let seed = 0; seed < 200; seed++) {
    for (const i of sampleWeighted([0n, 10n, 0n, 1n, 0n], 2, seed)) assert.ok(i === 1 || i === 3);
  }
  assert.throws(() => sampleWeighted([0n, 10n, 0n, 1n, 0n], 3, 0), (e: unknown) => e instanceof SamplingError && e.code === "NotEnoughNodes");
  const counts = [0, 0, 0];
  const runs = 4000;
  for (let seed = 0; seed < runs; seed++) counts[sampleWeighted([1n, 3n, 6n], 1, seed)[0]!]! += 1;
  [0.1, 0.3, 0.6].forEach((share, i) => assert.ok(Math.abs(counts[i]! / runs - share) < 0.03, String(counts)));
  const big = 10n ** 27n;
  assert.deepEqual(sampleWeighted([big, 0n, 3n * big], 2, 7).sort(), [0, 2]);
  const draw = new WeightedDraw([1n, 1n, 1n]);
  const rng = ChaCha20Rng.seedFromU64(3);
  for (let i = 0; i < 3; i++) assert.notEqual(draw.draw(rng), undefined);
  assert.equal(draw.draw(rng), undefined);
});

const FEE = 1000n;
const staker = (i: number): Address => `0x${(0x1000 + i).toString(16).padStart(40, "0")}` as Address;
const KEY = `0x02${"11".repeat(32)}` as const;

function found(stakes: number[]): Candidates {
  return {
    candidates: stakes.map((s, i) => ({ node: { staker: staker(i), worker: staker(i), url: `http://127.0.0.1:1/${i}`, umbralPublicKey: KEY }, locked: BigInt(s) })),
    excluded: [{ staker: `0x${"ee".repeat(20)}` as Address, reason: "no node record published" }],
    feeRate: FEE,
    block: 7n,
    timestamp: 0n,
    currentPeriod: 0n,
  };
}

function fake(minimums: Map<Address, bigint>, dead: Set<Address>): NodeChecks & { reads: Address[] } {
  const reads: Address[] = [];
  return {
    reads,
    async minFeeRates(stakers) {
      reads.push(...stakers);
      return stakers.map((s) => minimums.get(s) ?? FEE);
    },
    async probe(node: PolicyNode) {
      return dead.has(node.staker) ? "GET /v1/node: unreachable" : null;
    },
  };
}

const indexOf = (node: PolicyNode) => Number(BigInt(node.staker) - 0x1000n);

/** The documented rule: the first `wanted` in the draw order over all candidates that qualify, by staker. */
function reference(stakes: number[], qualifies: (i: number) => boolean, wanted: number, seed: number): number[] {
  const order = sampleWeighted(stakes.map(BigInt), stakes.filter((s) => s > 0).length, seed);
  return order.filter(qualifies).slice(0, wanted).sort((a, b) => a - b);
}

test("sampleNodes takes the first qualifying in draw order and reads only the drawn", async () => {
  const stakes = Array.from({ length: 1000 }, (_, i) => 1 + (i % 7));
  const checks = fake(new Map(), new Set());
  const a = await sampleNodes(checks, found(stakes), 5, 42n);
  assert.equal(checks.reads.length, 5);
  assert.deepEqual(a.nodes.map(indexOf), reference(stakes, () => true, 5, 42));
});

test("drawn nodes asking too much or dead are replaced, as filtering first would", async () => {
  const stakes = Array.from({ length: 200 }, (_, i) => 1 + (i % 5));
  const dear = new Map<Address, bigint>();
  for (let i = 1; i < 200; i += 2) dear.set(staker(i), FEE + 1n);
  const dead = new Set([0, 2, 4, 6, 8].map(staker));
  const qualifies = (i: number) => i % 2 === 0 && i >= 10;
  for (let seed = 0; seed < 30; seed++) {
    const checks = fake(dear, dead);
    const { nodes, excluded } = await sampleNodes(checks, found(stakes), 7, seed);
    assert.deepEqual(nodes.map(indexOf), reference(stakes, qualifies, 7, seed), `seed ${seed}`);
    for (const left of excluded.slice(1)) {
      const i = Number(BigInt(left.staker) - 0x1000n);
      if (i % 2 === 1) assert.equal(left.reason, `asks at least ${FEE + 1n} wei per period, ${FEE} offered`);
      else assert.match(left.reason, /unreachable/);
    }
    assert.ok(checks.reads.length < 200);
  }
});

test("not enough nodes lists every candidate left out", async () => {
  const checks = fake(new Map([[staker(1), FEE * 10n], [staker(3), FEE * 10n]]), new Set([staker(2)]));
  await assert.rejects(sampleNodes(checks, found([5, 5, 5, 5, 5]), 3, 9n, [staker(4)]), (e: unknown) => {
    assert.ok(e instanceof SamplingError && e.code === "NotEnoughNodes");
    assert.equal(e.available, 1);
    assert.deepEqual(e.excluded.map((x) => x.staker).sort(), [staker(1), staker(2), staker(3), `0x${"ee".repeat(20)}`].sort());
    return true;
  });
  assert.deepEqual([...checks.reads].sort(), [0, 1, 2, 3].map(staker));
});

test("the same draws as the Rust client (`kms policy grant --seed`) on a 5-node devnet", () => {
  // `kms devnet --nodes 5`: stakers in list order with 15,000 … 75,000 KMS. The Rust CLI's plan
  // (`kms policy grant --shares 2 --seed S`) chose these staker indices.
  const w = [15_000n, 30_000n, 45_000n, 60_000n, 75_000n].map((x) => x * 10n ** 18n);
  const rust: Array<[bigint, number[]]> = [
    [1n, [3, 4]],
    [2n, [1, 2]],
    [3n, [2, 3]],
    [42n, [1, 4]],
    [7777n, [3, 4]],
  ];
  for (const [seed, chosen] of rust) assert.deepEqual(sampleWeighted(w, 2, seed).sort(), chosen, `seed ${seed}`);
  // --shares 4 with seeds 5 and 2^64-1: all but staker 0.
  assert.deepEqual(sampleWeighted(w, 4, 5n).sort(), [1, 2, 3, 4]);
  assert.deepEqual(sampleWeighted(w, 4, (1n << 64n) - 1n).sort(), [1, 2, 3, 4]);
});

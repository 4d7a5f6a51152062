/**
 * Bob's retrieval (`docs/client.md` "Retrieval", `crates/kms-client/src/retrieve.rs`): ask every
 * node of the policy at once for cfrags of the capsules, count each only if it is provably the
 * node's (signed by its bonded worker, for the current or previous period, for this deployment's
 * Adjudicator) and verifies, keep the provable faults, and stop as soon as every capsule has
 * `threshold` verified cfrags.
 */
import type { Address, PublicClient } from "viem";
import { getAddress } from "viem";
import { stakingEscrowAbi } from "./abi.js";
import { CAPSULE_SIMPLE_LEN, recoverAnswerSigner, type AnswerContext } from "./answer.js";
import { bytesEqual, fromBase64, fromHex, toHex } from "./bytes.js";
import { KmsError } from "./errors.js";
import { FAULT_FILE_VERSION, predictOutcome, type Fault } from "./evidence.js";
import { DEFAULT_MAX_CAPSULES_PER_REQUEST, NodeError, type NodeClient, type SignedCFragBody } from "./http.js";
import { checkUrl, isCompressedPoint, kfragSignerOf, type PolicyFile, type PolicyNode } from "./policy-file.js";
import { signReencryptRequest, type RequestClock } from "./request.js";
import { umbral } from "./umbral.js";

/** The contract's `OPEN_BOND`: a worker bond still in force has this `lastPeriod`. */
const OPEN_BOND = 0xffffffffn;

/** What a retrieval needs of the deployment (H3's `Deployment` has these fields). */
export interface RetrievalDeployment {
  chainId?: number | bigint;
  policyManager?: string;
  stakingEscrow: string;
  adjudicator: string;
  secondsPerPeriod: number | bigint;
}

/** What to retrieve, from where. */
export interface RetrieveParams {
  /** A viem client of the policy's chain. */
  publicClient: Pick<PublicClient, "readContract" | "getBlock">;
  deployment: RetrievalDeployment;
  nodeClient: NodeClient;
  policy: PolicyFile;
  /** Bob's receiving secret key (its public key must be the policy's `receivingKey`). */
  receivingSecretKey: umbral.SecretKey;
  /** The capsules, as umbral objects or their default serialization (`toBytes()`). */
  capsules: readonly (umbral.Capsule | Uint8Array)[];
  /** Hear every node to the end instead of stopping at `threshold` cfrags per capsule. */
  auditAll?: boolean;
  /** Aborts the retrieval. */
  signal?: AbortSignal;
  /** Request timestamps; the node client's by default (increasing across its retrievals). */
  clock?: RequestClock;
}

/** What happened with one node. */
export type NodeOutcome =
  | { kind: "Answered"; valid: number; wrong: number }
  | { kind: "Failed"; reason: string }
  | { kind: "NotNeeded" };

/** One node's part in a retrieval. */
export interface NodeReport {
  staker: Address;
  url: string;
  outcome: NodeOutcome;
}

/** A node that did not contribute, and why. */
export interface NodeFailure {
  staker: Address;
  url: string;
  reason: string;
}

/** A successful retrieval. */
export interface Retrieval {
  /** For each capsule, in the given order, at least `threshold` verified cfrags (more with `auditAll`). Free them when done. */
  cfrags: umbral.VerifiedCapsuleFrag[][];
  /** Provable faults: write them with `faultToJson` and report them (`kms report FILE`). */
  faults: Fault[];
  /** Each node's part, in the policy's node order. */
  nodes: NodeReport[];
  /** Every node's failures (empty for nodes that gave only valid cfrags). */
  failures: NodeFailure[];
}

/**
 * Why a retrieval failed. Codes: `NoCapsules`, `WrongReceivingKey`, `Capsule`, `WrongChain`,
 * `Chain` (a read failed), `Aborted` (the caller's signal), `NotEnoughCFrags` (with `got`,
 * `needed`, `failures`, `faults`).
 */
export class RetrieveError extends KmsError {
  readonly got: number;
  readonly needed: number;
  readonly failures: NodeFailure[];
  readonly faults: Fault[];
  constructor(
    code: string,
    message: string,
    extra: { got?: number; needed?: number; failures?: NodeFailure[]; faults?: Fault[]; hint?: string; cause?: unknown } = {},
  ) {
    super(code, message, { hint: extra.hint, cause: extra.cause });
    this.got = extra.got ?? 0;
    this.needed = extra.needed ?? 0;
    this.failures = extra.failures ?? [];
    this.faults = extra.faults ?? [];
  }
}

/** What every answer must meet (see `AnswerTerms` in the Rust client). */
export interface AnswerTerms {
  adjudicator: Address;
  currentPeriod: number;
  /** Worker (checksummed) → the staker it is bonded to and the period its bond started; bonds in force only. */
  bonds: Map<Address, { staker: Address; firstPeriod: number }>;
}

/** Why an answer of `worker` for `staker` naming `period` would not be held against the stake, if so. */
export function answerRefusal(terms: AnswerTerms, worker: Address, staker: Address, period: number): string | undefined {
  const current = terms.currentPeriod;
  if (period > current || period + 1 < current) {
    return `the answer names period ${period}, the chain is in period ${current}: only the current or the previous period can be held against the node`;
  }
  const bond = terms.bonds.get(worker);
  if (bond && bond.staker === staker && bond.firstPeriod <= period) return undefined;
  if (bond && bond.staker === staker) {
    return `the answer names period ${period}, before its worker ${worker} was bonded (period ${bond.firstPeriod}): the Adjudicator would not hold it against the stake`;
  }
  return `the worker ${worker} is not bonded to the node's staker ${staker} on chain`;
}

function chainError(what: string, error: unknown): RetrieveError {
  return new RetrieveError("Chain", `${what}: ${(error as Error)?.message ?? String(error)}`, {
    hint: "check the RPC URL and that the chain is up",
    cause: error,
  });
}

/**
 * The policy's nodes with their worker, URL and Umbral key as the chain has them now
 * (`StakingEscrow.nodeRecordOf`); the policy file's values stand in for what the chain lacks.
 */
export async function refreshNodes(
  publicClient: Pick<PublicClient, "readContract">,
  deployment: RetrievalDeployment,
  policy: PolicyFile,
): Promise<PolicyNode[]> {
  const records = await Promise.all(
    policy.nodes.map((node) =>
      publicClient
        .readContract({
          address: deployment.stakingEscrow as Address,
          abi: stakingEscrowAbi,
          functionName: "nodeRecordOf",
          args: [node.staker],
        })
        .catch((error: unknown) => {
          throw chainError("reading the nodes' records", error);
        }),
    ),
  );
  return policy.nodes.map((node, i) => {
    const record = records[i]!;
    const zero = /^0x0{40}$/i.test(record.worker);
    let key = node.umbralPublicKey;
    try {
      const bytes = fromHex(record.umbralPublicKey, "umbralPublicKey", 33);
      if (isCompressedPoint(bytes)) key = toHex(bytes);
    } catch {
      // Keep the file's key: the record has none usable.
    }
    return {
      staker: getAddress(node.staker),
      worker: getAddress(zero ? node.worker : record.worker),
      url: typeof checkUrl(record.url) === "string" ? record.url : node.url,
      umbralPublicKey: key,
    };
  });
}

/** The terms now: the Adjudicator, the latest block's period, and the bonds in force of `workers`, at that block. */
export async function readAnswerTerms(
  publicClient: Pick<PublicClient, "readContract" | "getBlock">,
  deployment: RetrievalDeployment,
  workers: readonly Address[],
): Promise<AnswerTerms> {
  let block: { number: bigint | null; timestamp: bigint };
  try {
    block = await publicClient.getBlock({ blockTag: "latest" });
  } catch (error) {
    throw chainError("reading the latest block", error);
  }
  const blockNumber = block.number ?? undefined;
  const bonds = new Map<Address, { staker: Address; firstPeriod: number }>();
  const unique = [...new Set(workers.map((w) => getAddress(w)))];
  const read = await Promise.all(
    unique.map((worker) =>
      publicClient
        .readContract({
          address: deployment.stakingEscrow as Address,
          abi: stakingEscrowAbi,
          functionName: "workerBond",
          args: [worker],
          blockNumber,
        })
        .catch((error: unknown) => {
          throw chainError("reading a worker's bond", error);
        }),
    ),
  );
  unique.forEach((worker, i) => {
    const [staker, firstPeriod, lastPeriod] = read[i]!;
    // A closed bond cannot answer for anything new: leave the worker out.
    if (lastPeriod === OPEN_BOND && !/^0x0{40}$/i.test(staker)) {
      bonds.set(worker, { staker: getAddress(staker), firstPeriod: Number(firstPeriod) });
    }
  });
  return {
    adjudicator: getAddress(deployment.adjudicator),
    currentPeriod: Number(block.timestamp / (BigInt(deployment.secondsPerPeriod) || 1n)),
    bonds,
  };
}

/** One cfrag of a node's answer, checked. */
type Checked = { valid: umbral.VerifiedCapsuleFrag } | { reason: string; fault?: Fault };

/** The policy's facts every check needs, parsed once. */
interface Context {
  policy: PolicyFile;
  kfragSigner: Address;
  terms: AnswerTerms;
  verifyingKey: umbral.PublicKey;
  delegatingKey: umbral.PublicKey;
  receivingKey: umbral.PublicKey;
}

/** Checks one signed cfrag of `node` for capsule `index` (docs/client.md "Retrieval", checks 1–4). */
function checkAnswer(ctx: Context, node: PolicyNode, capsule: umbral.Capsule, capsuleSimple: Uint8Array, answer: SignedCFragBody): Checked {
  let cfrag: umbral.CapsuleFrag;
  try {
    cfrag = umbral.CapsuleFrag.fromBytes(fromBase64(answer.cfrag, "cfrag"));
  } catch (error) {
    return { reason: `the cfrag does not decode: ${errorText(error)}` };
  }
  let signature: Uint8Array;
  try {
    signature = fromHex(answer.signature, "signature", 65);
  } catch (error) {
    cfrag.free();
    return { reason: `the signature does not decode: ${errorText(error)}` };
  }
  const refusal = answerRefusal(ctx.terms, node.worker, node.staker, answer.period);
  if (refusal) {
    cfrag.free();
    return { reason: refusal };
  }
  const context: AnswerContext = {
    chainId: ctx.policy.chainId,
    adjudicator: ctx.terms.adjudicator,
    staker: node.staker,
    period: answer.period,
    policyId: ctx.policy.policyId,
  };
  const cfragSimple = cfrag.toBytesSimple();
  let signer: Address;
  try {
    signer = recoverAnswerSigner(context, capsuleSimple, cfragSimple, signature);
  } catch (error) {
    cfrag.free();
    return { reason: errorText(error) };
  }
  if (signer !== node.worker) {
    cfrag.free();
    return { reason: `the answer is signed by ${signer}, not by the node's worker ${node.worker}` };
  }
  let verifyError: string;
  try {
    // `verify` consumes the cfrag, whatever its outcome.
    return { valid: cfrag.verify(capsule, ctx.verifyingKey, ctx.delegatingKey, ctx.receivingKey) };
  } catch (error) {
    verifyError = errorText(error);
  }
  // Signed by the worker and wrong: provable if the Adjudicator would slash for it.
  const outcome = predictOutcome({
    capsuleSimple,
    cfragSimple,
    delegatingKey: fromHex(ctx.policy.delegatingKey, "delegatingKey", 33),
    receivingKey: fromHex(ctx.policy.receivingKey, "receivingKey", 33),
    kfragSigner: ctx.kfragSigner,
  });
  if ("verdict" in outcome && outcome.verdict !== "Correct") {
    return {
      reason: `the cfrag fails verification (${verifyError}): provable, verdict ${outcome.verdict}`,
      fault: {
        version: FAULT_FILE_VERSION,
        chainId: ctx.policy.chainId,
        policyId: ctx.policy.policyId,
        adjudicator: ctx.terms.adjudicator,
        period: answer.period,
        staker: node.staker,
        worker: node.worker,
        url: node.url,
        capsule: toHex(capsuleSimple),
        cfrag: toHex(cfragSimple),
        delegatingKey: ctx.policy.delegatingKey,
        receivingKey: ctx.policy.receivingKey,
        kfragSigner: ctx.kfragSigner,
        workerSignature: toHex(signature),
        expectedVerdict: outcome.verdict,
        reason: verifyError,
      },
    };
  }
  const why = "verdict" in outcome ? "Correct" : outcome.refusal;
  return { reason: `the cfrag fails verification (${verifyError}) but the Adjudicator would not slash for it (${why})` };
}

/** Frees the verified cfrags of an answer nobody will read. */
function freeChecked(result: Checked[] | Error): void {
  if (result instanceof Error) return;
  for (const check of result) if ("valid" in check) check.valid.free();
}

/** Frees every capsule's verified cfrags gathered so far (a retrieval that fails returns none). */
function freeAll(cfrags: umbral.VerifiedCapsuleFrag[][]): void {
  for (const list of cfrags) for (const cfrag of list) cfrag.free();
}

function abortedError(signal: AbortSignal): RetrieveError {
  return new RetrieveError("Aborted", "the retrieval was aborted", { cause: signal.reason });
}

/** `work`, or `Aborted` as soon as `signal` aborts. */
async function untilAborted<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work;
  if (signal.aborted) throw abortedError(signal);
  let onAbort = () => {};
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(abortedError(signal));
    signal.addEventListener("abort", onAbort, { once: true });
  });
  try {
    return await Promise.race([work, aborted]);
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

function errorText(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}

/**
 * Asks one node for every capsule, in batches it accepts, and checks each answer. A retrieval
 * of at most 64 capsules is sent at once; a node with a lower limit answers 413, after which its
 * limit is asked and the rest sent in batches of it.
 */
async function askNode(
  params: RetrieveParams,
  ctx: Context,
  node: PolicyNode,
  capsules: umbral.Capsule[],
  capsuleBytes: Uint8Array[],
  capsuleSimple: Uint8Array[],
  clock: RequestClock,
  signal: AbortSignal,
): Promise<Checked[]> {
  const client = params.nodeClient;
  let limit =
    client.knownCapsuleLimit(node.url) ??
    (capsules.length <= DEFAULT_MAX_CAPSULES_PER_REQUEST ? DEFAULT_MAX_CAPSULES_PER_REQUEST : await client.capsuleLimit(node.url, { signal }));
  let askedAfterRefusal = false;
  const checked: Checked[] = [];
  try {
    let start = 0;
    while (start < capsules.length) {
      const end = Math.min(capsules.length, start + limit);
      const batch = capsuleBytes.slice(start, end);
      let answers: SignedCFragBody[];
      try {
        answers = await client.reencrypt(
          node.url,
          ctx.policy.policyId,
          () =>
            signReencryptRequest({
              receivingSecretKey: params.receivingSecretKey,
              policyId: ctx.policy.policyId,
              staker: node.staker,
              timestamp: clock.next(ctx.policy.policyId, node.staker, batch),
              capsules: batch,
            }),
          { signal },
        );
      } catch (error) {
        if (error instanceof NodeError && error.code === "Refused" && error.status === 413 && !askedAfterRefusal) {
          askedAfterRefusal = true;
          const advertised = await client.refreshCapsuleLimit(node.url, { signal });
          if (advertised !== undefined && advertised < batch.length) {
            limit = advertised;
            continue;
          }
        }
        throw error;
      }
      // The retrieval ended while this node was answering: its capsules are freed, nothing to check.
      signal.throwIfAborted();
      if (answers.length !== batch.length) {
        throw new NodeError("InvalidAnswer", node.url, `answered ${answers.length} cfrags for ${batch.length} capsules`);
      }
      answers.forEach((answer, i) => checked.push(checkAnswer(ctx, node, capsules[start + i]!, capsuleSimple[start + i]!, answer)));
      start = end;
    }
  } catch (error) {
    // A later batch failed (or the retrieval ended): the earlier batches' cfrags go unread.
    freeChecked(checked);
    throw error;
  }
  return checked;
}

/**
 * Retrieves verified cfrags of `capsules` for Bob: refreshes the nodes' records from the chain,
 * reads the answer terms at the latest block, asks every node concurrently (in batches of its
 * capsule limit), checks every cfrag, and stops as soon as every capsule has `threshold`
 * (the other requests are aborted) unless `auditAll`. Throws {@link RetrieveError}
 * `NotEnoughCFrags` when fewer, listing per node why (faults included, to report all the same).
 */
export async function retrieve(params: RetrieveParams): Promise<Retrieval> {
  const { policy, deployment } = params;
  if (params.capsules.length === 0) throw new RetrieveError("NoCapsules", "no capsules to retrieve");
  if (params.signal?.aborted) throw abortedError(params.signal);
  if (deployment.chainId !== undefined && BigInt(deployment.chainId) !== BigInt(policy.chainId)) {
    throw new RetrieveError("WrongChain", `the policy is on chain ${policy.chainId}, the deployment on chain ${deployment.chainId}`, {
      hint: "use the deployment of the policy's chain",
    });
  }
  if (deployment.policyManager !== undefined && getAddress(deployment.policyManager) !== policy.policyManager) {
    throw new RetrieveError("WrongChain", `the policy lives on PolicyManager ${policy.policyManager}, the deployment's is ${getAddress(deployment.policyManager)}`, {
      hint: "use the deployment the policy was granted on",
    });
  }
  const ownKey = params.receivingSecretKey.publicKey();
  const ownKeyBytes = ownKey.toCompressedBytes();
  ownKey.free();
  if (!bytesEqual(ownKeyBytes, fromHex(policy.receivingKey, "receivingKey", 33))) {
    throw new RetrieveError("WrongReceivingKey", `this receiving key is not the policy's receiving key ${policy.receivingKey}`, {
      hint: "use the key the policy was granted to",
    });
  }
  // Capsule objects (parsed here from bytes, freed at the end) and their two serializations.
  const owned: umbral.Capsule[] = [];
  const capsules: umbral.Capsule[] = [];
  const capsuleBytes: Uint8Array[] = [];
  const capsuleSimple: Uint8Array[] = [];
  const keys: umbral.PublicKey[] = [];
  try {
    params.capsules.forEach((input, index) => {
      try {
        const capsule = input instanceof Uint8Array ? umbral.Capsule.fromBytes(input) : input;
        if (input instanceof Uint8Array) owned.push(capsule);
        capsules.push(capsule);
        capsuleBytes.push(input instanceof Uint8Array ? input : capsule.toBytes());
        const simple = capsule.toBytesSimple();
        if (simple.length !== CAPSULE_SIMPLE_LEN) throw new Error(`simple form of ${simple.length} bytes`);
        capsuleSimple.push(simple);
      } catch (error) {
        throw new RetrieveError("Capsule", `capsule ${index} cannot be used: ${errorText(error)}`, { cause: error });
      }
    });
    // viem's reads take no signal: the caller's abort ends the wait (the read itself runs out).
    const nodes = await untilAborted(refreshNodes(params.publicClient, deployment, policy), params.signal);
    const terms = await untilAborted(
      readAnswerTerms(params.publicClient, deployment, nodes.map((n) => n.worker)),
      params.signal,
    );
    const key = (hex: string) => {
      const k = umbral.PublicKey.fromCompressedBytes(fromHex(hex, "key", 33));
      keys.push(k);
      return k;
    };
    const ctx: Context = {
      policy,
      kfragSigner: kfragSignerOf(policy),
      terms,
      verifyingKey: key(policy.verifyingKey),
      delegatingKey: key(policy.delegatingKey),
      receivingKey: key(policy.receivingKey),
    };
    return await askAll(params, ctx, nodes, capsules, capsuleBytes, capsuleSimple);
  } finally {
    for (const capsule of owned) capsule.free();
    for (const k of keys) k.free();
  }
}

async function askAll(
  params: RetrieveParams,
  ctx: Context,
  nodes: PolicyNode[],
  capsules: umbral.Capsule[],
  capsuleBytes: Uint8Array[],
  capsuleSimple: Uint8Array[],
): Promise<Retrieval> {
  const threshold = params.policy.threshold;
  const clock = params.clock ?? params.nodeClient.clock;
  const controller = new AbortController();
  const signal = params.signal ? AbortSignal.any([params.signal, controller.signal]) : controller.signal;
  const cfrags: umbral.VerifiedCapsuleFrag[][] = capsules.map(() => []);
  const faults: Fault[] = [];
  const outcomes: NodeOutcome[] = nodes.map(() => ({ kind: "NotNeeded" }));
  const reasons: string[][] = nodes.map(() => []);
  const enough = () => cfrags.every((c) => c.length >= threshold);

  const pending = new Map<number, Promise<{ i: number; result: Checked[] | Error }>>();
  nodes.forEach((node, i) => {
    pending.set(
      i,
      askNode(params, ctx, node, capsules, capsuleBytes, capsuleSimple, clock, signal).then(
        (result) => ({ i, result }),
        (error: unknown) => ({ i, result: error instanceof Error ? error : new Error(String(error)) }),
      ),
    );
  });
  try {
    while (pending.size > 0) {
      const { i, result } = await Promise.race(pending.values());
      pending.delete(i);
      if (result instanceof Error) {
        // The retrieval ends here, not with "not enough cfrags": the SDK cannot talk to any node
        // (undici missing), or the caller aborted.
        const fatal =
          result instanceof KmsError && result.code === "ModuleMissing"
            ? result
            : params.signal?.aborted
              ? abortedError(params.signal)
              : undefined;
        if (fatal) {
          freeAll(cfrags);
          throw fatal;
        }
        const reason = result instanceof NodeError ? result.message : errorText(result);
        reasons[i]!.push(reason);
        outcomes[i] = { kind: "Failed", reason };
      } else {
        let valid = 0;
        let wrong = 0;
        result.forEach((check, index) => {
          if ("valid" in check) {
            valid++;
            cfrags[index]!.push(check.valid);
          } else {
            wrong++;
            reasons[i]!.push(`capsule ${index}: ${check.reason}`);
            if (check.fault) faults.push(check.fault);
          }
        });
        outcomes[i] = { kind: "Answered", valid, wrong };
      }
      if (!params.auditAll && enough()) break;
    }
  } finally {
    // Enough (or failed): the other requests are not needed. One may have been answered and
    // checked already, its verified cfrags in WASM memory that only free() returns.
    controller.abort(new Error("enough cfrags"));
    for (const late of pending.values()) void late.then(({ result }) => freeChecked(result));
  }
  const failures: NodeFailure[] = nodes
    .map((node, i) => ({ staker: node.staker, url: node.url, reason: reasons[i]!.join(", ") }))
    .filter((failure) => failure.reason !== "");
  if (!enough()) {
    const got = Math.min(...cfrags.map((c) => c.length));
    freeAll(cfrags);
    const listed = failures.map((f) => `${f.staker} (${f.url}): ${f.reason}`).join("; ");
    const provable = faults.length ? ` ${faults.length} provable fault(s) can be reported.` : "";
    throw new RetrieveError(
      "NotEnoughCFrags",
      `got ${got} verified cfrags of the ${threshold} needed (for the worst capsule). Nodes: ${listed}.${provable}`,
      {
        hint: "the policy may be revoked or expired, or nodes offline: try again later or ask the policy's owner",
        got,
        needed: threshold,
        failures,
        faults,
      },
    );
  }
  return {
    cfrags,
    faults,
    nodes: nodes.map((node, i) => ({ staker: node.staker, url: node.url, outcome: outcomes[i]! })),
    failures,
  };
}

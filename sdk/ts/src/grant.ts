/**
 * Alice's grant in two steps, as the Rust client (docs/client.md "Grant",
 * `crates/kms-client/src/grant.rs`): {@link planGrant} samples and probes the nodes and computes
 * the fee, sending nothing; {@link executeGrant} makes the kfrags, seals each for its node (before
 * anything is paid), creates the policy on chain (simulated, then sent with the fee), checks the
 * `PolicyCreated` event, and uploads the kfrags concurrently. The policy file it returns is what
 * `kms retrieve --policy` reads ({@link policyFileToJson}).
 */
import { sha256 } from "@noble/hashes/sha2.js";
import {
  BaseError,
  ContractFunctionRevertedError,
  parseEventLogs,
  type Abi,
  type Account,
  type Address,
  type Chain,
  type Hash,
  type Hex,
  type PublicClient,
  type Transport,
  type WalletClient,
} from "viem";
import { policyManagerAbi } from "./abi.js";
import { bytesEqual, concatBytes, fromHex, toBase64, toHex, utf8 } from "./bytes.js";
import type { Deployment } from "./deployments.js";
import { KmsError } from "./errors.js";
import type { NodeClient, NodeError } from "./http.js";
import { ethereumAddress, publicKeyBytes } from "./keys.js";
import { MAX_NODES, type PolicyFile, type PolicyNode } from "./policy-file.js";
import { policyIdOf, policySalt, type PublicKeyInput } from "./policy-id.js";
import { compareAddresses, readCandidates, readMinFeeRates, sampleNodes, type Excluded, type NodeChecks } from "./sampling.js";
import { umbral } from "./umbral.js";

/** The domain tag of the kfrag upload signature (docs/node.md, Alice's upload). */

/** How long a transaction may take to be mined before the call fails saying so (2 minutes). */
export const RECEIPT_TIMEOUT_MS = 120_000;
export const KFRAG_UPLOAD_TAG = "KMS_KFRAG_UPLOAD_V1";

/** A grant request that cannot be carried out as asked (`InvalidGrant`, `KeyMismatch`, `Kfrag`). */
export class GrantError extends KmsError {}

/**
 * A transaction or read the chain refused or could not serve. A contract revert carries the
 * custom error's name and arguments (e.g. `PolicyManager_InvalidPayment`, `[value, nodes, periods]`).
 */
export class ChainError extends KmsError {
  /** The contract's custom error, when it reverted with one. */
  readonly errorName: string | undefined;
  /** Its arguments, decoded. */
  readonly errorArgs: readonly unknown[] | undefined;
  constructor(code: string, message: string, extra: { errorName?: string; errorArgs?: readonly unknown[]; hint?: string; cause?: unknown } = {}) {
    super(code, message, { hint: extra.hint, cause: extra.cause });
    this.errorName = extra.errorName;
    this.errorArgs = extra.errorArgs;
  }
}

/** Turns a viem error of `what` into a {@link ChainError}, the contract's custom error decoded. */
export function chainErrorOf(what: string, error: unknown): ChainError {
  if (error instanceof ChainError) return error;
  if (error instanceof BaseError) {
    const reverted = error.walk((e) => e instanceof ContractFunctionRevertedError);
    if (reverted instanceof ContractFunctionRevertedError) {
      const name = reverted.data?.errorName ?? reverted.reason ?? "unknown revert";
      const args = reverted.data?.args ?? [];
      const shown = args.map((a) => (typeof a === "bigint" ? a.toString() : String(a))).join(", ");
      return new ChainError("Reverted", `${what}: the contract refused it: ${name}(${shown})`, {
        errorName: reverted.data?.errorName ?? reverted.reason,
        errorArgs: args,
        cause: error,
      });
    }
    return new ChainError("ChainRpc", `${what}: ${error.shortMessage}`, { cause: error });
  }
  return new ChainError("ChainRpc", `${what}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
}

/** A wallet client with an account (the sender of Alice's transactions). */
export type AccountWalletClient = WalletClient<Transport, Chain | undefined, Account>;

/**
 * Simulates `functionName` on the PolicyManager from the wallet's account (so a revert comes back
 * decoded, with nothing sent), sends it, and waits for the receipt, which must succeed. Returns
 * the receipt and its logs decoded with the PolicyManager's ABI.
 */
export async function sendPolicyManagerTx(
  what: string,
  publicClient: PublicClient,
  walletClient: AccountWalletClient,
  deployment: Deployment,
  call: { functionName: string; args: readonly unknown[]; value?: bigint },
) {
  let request;
  try {
    const simulated = await publicClient.simulateContract({
      account: walletClient.account,
      address: deployment.policyManager,
      abi: policyManagerAbi as Abi,
      functionName: call.functionName,
      args: call.args,
      ...(call.value !== undefined ? { value: call.value } : {}),
    } as never);
    request = (simulated as { request: unknown }).request;
  } catch (error) {
    throw chainErrorOf(what, error);
  }
  let hash: Hash;
  try {
    hash = await walletClient.writeContract(request as never);
  } catch (error) {
    throw chainErrorOf(what, error);
  }
  let receipt;
  try {
    // Bounded, as the Rust client's receipt timeout: a transaction priced out of the pool would
    // otherwise hold the caller forever.
    receipt = await publicClient.waitForTransactionReceipt({ hash, timeout: RECEIPT_TIMEOUT_MS });
  } catch (error) {
    throw chainErrorOf(`${what} (waiting for transaction ${hash})`, error);
  }
  if (receipt.status !== "success") {
    throw new ChainError("Reverted", `${what}: transaction ${hash} reverted`);
  }
  const events = parseEventLogs({ abi: policyManagerAbi, logs: receipt.logs }).filter(
    (log) => log.address.toLowerCase() === deployment.policyManager.toLowerCase(),
  );
  return { receipt, events };
}

/** Refuses a policy file of another chain or PolicyManager than `deployment`'s. */
export function checkPolicyHome(policy: Pick<PolicyFile, "chainId" | "policyManager">, deployment: Deployment): void {
  if (BigInt(policy.chainId) !== deployment.chainId || policy.policyManager.toLowerCase() !== deployment.policyManager.toLowerCase()) {
    throw new GrantError(
      "WrongChain",
      `the policy lives on chain ${policy.chainId} at PolicyManager ${policy.policyManager}, this client is on chain ${deployment.chainId} at ${deployment.policyManager}`,
      { hint: "use the RPC and deployments file of the policy's chain" },
    );
  }
}

// ---- The plan ----

/** What Alice asks for. Keys may be bytes, hex or umbral `PublicKey`s. */
export interface GrantRequest {
  publicClient: PublicClient;
  deployment: Deployment;
  /** Probes the nodes (`GET /v1/node`) and receives the uploads. */
  nodeClient: NodeClient;
  /** The label the delegating key was derived for. */
  label: string;
  /** Alice's delegating public key for the label (the policy's key). */
  delegatingKey: PublicKeyInput;
  /** The kfrag signer's public key (its address becomes the policy's `kfragSigner`). */
  verifyingKey: PublicKeyInput;
  /** Bob's receiving key. */
  receivingKey: PublicKeyInput;
  /** Sender keys authorized to encrypt to the policy (recorded in the policy file only). */
  senders: PublicKeyInput[];
  threshold: number;
  shares: number;
  /** Unix seconds. */
  endTimestamp: bigint | number;
  /** Wei per node and period. */
  feeRate: bigint;
  /** Seed of the node sampling (same seed and chain state, same nodes as the Rust client); random if absent. */
  seed?: bigint;
  /** Salt of the policy id (32 bytes); random if absent. */
  salt?: Uint8Array;
  /** Receives refunds and may revoke. */
  owner: Address;
  /** The account that will send `createPolicy` (the policy id derives from it). */
  creator: Address;
}

/** What a grant will do, for Alice to confirm before anything is sent. */
export interface GrantPlan {
  /** The policy file the grant will produce (nodes sampled and probed). */
  policy: PolicyFile;
  /** The 32-byte salt of the policy id. */
  salt: Uint8Array;
  /** The 16-byte salt `createPolicy` takes. */
  policySalt: Hex;
  /** The seed the sampling used. */
  seed: bigint;
  currentPeriod: bigint;
  lastPeriod: bigint;
  /** `lastPeriod - currentPeriod + 1`. */
  periods: bigint;
  /** `feeRate × shares × periods` wei. */
  totalFee: bigint;
  /** Stakers left out, and why (no usable record, drawn and asking too much or not answering). */
  excluded: Excluded[];
  /** Where the plan executes. */
  publicClient: PublicClient;
  deployment: Deployment;
  nodeClient: NodeClient;
}

function keyHex(key: PublicKeyInput, what: string): Hex {
  const bytes = typeof key === "string" ? fromHex(key, what, 33) : key instanceof Uint8Array ? key : key.toCompressedBytes();
  if (bytes.length !== 33) throw new GrantError("InvalidGrant", `invalid grant: ${what} must be a 33-byte compressed key`);
  return toHex(bytes);
}

function validate(request: GrantRequest): void {
  const invalid = (message: string) => new GrantError("InvalidGrant", `invalid grant: ${message}`);
  const { shares, threshold, feeRate } = request;
  if (!Number.isInteger(shares) || shares < 1 || shares > MAX_NODES) throw invalid(`shares is ${shares}, must be 1 to ${MAX_NODES}`);
  if (!Number.isInteger(threshold) || threshold < 1 || threshold > shares) throw invalid(`threshold is ${threshold}, must be 1 to shares (${shares})`);
  if (feeRate <= 0n) throw invalid("the fee rate must be above zero");
  if (feeRate >= 1n << 80n) throw invalid(`the fee rate ${feeRate} wei does not fit in the contract's 80 bits`);
  const end = BigInt(request.endTimestamp);
  if (end > 0xffffffffn || end <= 0n) throw invalid(`the end time ${end} is past the contract's limit (year 2106) or not positive`);
  if (BigInt(request.creator) === 0n) throw invalid("the creator (the paying account) must not be the zero address");
  if (BigInt(request.owner) === 0n) throw invalid("the owner must not be the zero address");
  if (utf8(request.label).length > 4096) throw invalid("the label is longer than 4096 bytes");
  if (request.salt !== undefined && request.salt.length !== 32) throw invalid("the salt must be 32 bytes");
  if (request.seed !== undefined && (request.seed < 0n || request.seed >= 1n << 64n)) throw invalid("the seed must be a u64");
}

/** Why a node's `GET /v1/node` answer does not match its record; `null` if it does. */
export async function probeIdentity(nodeClient: NodeClient, node: PolicyNode, chainId: bigint): Promise<string | null> {
  let info;
  try {
    info = await nodeClient.node(node.url);
  } catch (error) {
    return `GET /v1/node: ${error instanceof Error ? error.message : String(error)}`;
  }
  const at = `the node at ${node.url}`;
  if (info.staker.toLowerCase() !== node.staker.toLowerCase()) return `${at} serves staker ${info.staker}, not ${node.staker} as its record says`;
  if (info.worker.toLowerCase() !== node.worker.toLowerCase()) return `${at} signs with worker ${info.worker}, the chain has ${node.worker} bonded`;
  if (BigInt(info.chainId) !== chainId) return `${at} serves chain ${info.chainId}, not ${chainId}`;
  if (info.umbralPublicKey.toLowerCase() !== node.umbralPublicKey.toLowerCase()) {
    return `${at} announces Umbral key ${info.umbralPublicKey}, its on-chain record has ${node.umbralPublicKey}`;
  }
  return null;
}

/** The periods and fee of a policy ending at `end` created at `now`, as `createPolicy` counts them. */
export function policyPeriods(now: bigint, end: bigint, secondsPerPeriod: bigint): { currentPeriod: bigint; lastPeriod: bigint; periods: bigint } | undefined {
  if (end <= now || secondsPerPeriod <= 0n) return undefined;
  const currentPeriod = now / secondsPerPeriod;
  const lastPeriod = (end - 1n) / secondsPerPeriod;
  return { currentPeriod, lastPeriod, periods: lastPeriod - currentPeriod + 1n };
}

function randomU64(): bigint {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return new DataView(bytes.buffer).getBigUint64(0);
}

/**
 * Step one: checks the request, samples the nodes (probing each drawn one), computes the fee.
 * Sends nothing.
 * @throws {GrantError} `InvalidGrant`; {@link SamplingError} `NotEnoughNodes`, `EndInPast`, `ChainRead`.
 */
export async function planGrant(request: GrantRequest): Promise<GrantPlan> {
  validate(request);
  const { publicClient, deployment, nodeClient } = request;
  const end = BigInt(request.endTimestamp);
  const delegatingKey = keyHex(request.delegatingKey, "delegatingKey");
  const verifyingKey = keyHex(request.verifyingKey, "verifyingKey");
  const receivingKey = keyHex(request.receivingKey, "receivingKey");
  const senders = request.senders.map((key, i) => keyHex(key, `senders[${i}]`));
  const found = await readCandidates(publicClient, deployment, end, request.feeRate);
  const checks: NodeChecks = {
    minFeeRates: (stakers, block) => readMinFeeRates(publicClient, deployment, stakers, block),
    probe: (node) => probeIdentity(nodeClient, node, deployment.chainId),
  };
  const seed = request.seed ?? randomU64();
  const { nodes, excluded } = await sampleNodes(checks, found, request.shares, seed);
  const periods = policyPeriods(found.timestamp, end, deployment.secondsPerPeriod);
  if (!periods) throw new GrantError("InvalidGrant", "invalid grant: the policy would end before it starts");
  const salt = request.salt ? Uint8Array.from(request.salt) : crypto.getRandomValues(new Uint8Array(32));
  const salt16 = policySalt(request.label, receivingKey, delegatingKey, salt);
  const policy: PolicyFile = {
    chainId: Number(deployment.chainId),
    policyManager: deployment.policyManager,
    policyId: policyIdOf(request.creator, salt16),
    label: request.label,
    owner: request.owner,
    delegatingKey,
    verifyingKey,
    receivingKey,
    senders,
    threshold: request.threshold,
    shares: request.shares,
    endTimestamp: Number(end),
    feeRate: request.feeRate,
    nodes,
  };
  return {
    policy,
    salt,
    policySalt: salt16,
    seed,
    ...periods,
    totalFee: request.feeRate * BigInt(request.shares) * periods.periods,
    excluded,
    publicClient,
    deployment,
    nodeClient,
  };
}

// ---- Sealing and uploading kfrags ----

/** The JSON body of `POST /v1/policies/{id}/kfrag` (docs/node.md, Alice's upload). */
export interface KfragUploadBody {
  capsule: string;
  ciphertext: string;
  delegatingKey: Hex;
  receivingKey: Hex;
  verifyingKey: Hex;
  signature: Hex;
}

/**
 * The upload signature's message: `"KMS_KFRAG_UPLOAD_V1" ‖ policyId (16) ‖ staker (20) ‖
 * delegatingKey (33) ‖ receivingKey (33) ‖ sha256(capsule) ‖ sha256(ciphertext)`.
 */
export function kfragUploadMessage(policyId: Hex, staker: Address, delegatingKey: Hex, receivingKey: Hex, capsule: Uint8Array, ciphertext: Uint8Array): Uint8Array {
  return concatBytes(
    utf8(KFRAG_UPLOAD_TAG),
    fromHex(policyId, "policyId", 16),
    fromHex(staker, "staker", 20),
    fromHex(delegatingKey, "delegatingKey", 33),
    fromHex(receivingKey, "receivingKey", 33),
    sha256(capsule),
    sha256(ciphertext),
  );
}

/**
 * Seals a kfrag for one node (`kms_crypto::wire::KfragUpload::seal`): the kfrag's bytes encrypted
 * to the node's Umbral key, and the signer's signature binding the upload to the policy and node.
 */
export function sealKfrag(
  kfrag: umbral.VerifiedKeyFrag,
  node: Pick<PolicyNode, "staker" | "umbralPublicKey">,
  policy: Pick<PolicyFile, "policyId" | "delegatingKey" | "receivingKey">,
  signer: umbral.Signer,
): KfragUploadBody {
  const nodeKey = umbral.PublicKey.fromCompressedBytes(fromHex(node.umbralPublicKey, "umbralPublicKey", 33));
  try {
    const [capsule, ciphertext] = umbral.encrypt(nodeKey, kfrag.toBytes());
    const capsuleBytes = capsule.toBytes();
    capsule.free();
    const message = kfragUploadMessage(policy.policyId, node.staker, policy.delegatingKey, policy.receivingKey, capsuleBytes, ciphertext);
    const signature = signer.sign(message);
    const verifying = signer.verifyingKey();
    const body: KfragUploadBody = {
      capsule: toBase64(capsuleBytes),
      ciphertext: toBase64(ciphertext),
      delegatingKey: policy.delegatingKey.toLowerCase() as Hex,
      receivingKey: policy.receivingKey.toLowerCase() as Hex,
      verifyingKey: toHex(verifying.toCompressedBytes()),
      signature: toHex(signature.toBEBytes()),
    };
    signature.free();
    verifying.free();
    return body;
  } finally {
    nodeKey.free();
  }
}

/** One node's upload: `created` (stored now), `held` (it had this kfrag already) or `failed`. */
export interface UploadReport {
  node: PolicyNode;
  outcome: { ok: true; created: boolean } | { ok: false; reason: string; error?: unknown };
  /** The sealed upload (only that node can read it), kept to retry with {@link uploadKfrag}. */
  upload: KfragUploadBody;
}

/**
 * Hands `node` its sealed kfrag, after checking with `GET /v1/node` that the URL still serves that
 * node; retried by the node client (a 404 too: a node on a lagging RPC may not see the policy yet).
 * Returns whether the node stored it now (`false`: it held it already).
 * @throws {GrantError} `NodeMismatch`, or the {@link NodeError} of the upload.
 */
export async function uploadKfrag(nodeClient: NodeClient, chainId: bigint, policyId: Hex, node: PolicyNode, upload: KfragUploadBody): Promise<boolean> {
  const mismatch = await probeIdentity(nodeClient, node, chainId);
  if (mismatch !== null) throw new GrantError("NodeMismatch", mismatch);
  const path = `/v1/policies/${policyId.toLowerCase()}/kfrag`;
  const answer = await nodeClient.postJson<{ created?: unknown }>(node.url, path, upload, {
    retryAlso: (e: NodeError) => e.code === "Refused" && e.status === 404,
  });
  return answer.status === 201 || answer.body?.created === true;
}

/** What a grant did. */
export interface GrantOutcome {
  /** The policy file to hand to Bob (write it with `policyFileToJson`). */
  policy: PolicyFile;
  /** The `createPolicy` transaction. */
  txHash: Hash;
  /** Wei paid. */
  paid: bigint;
  /** Each node's upload, in the policy's node order. */
  uploads: UploadReport[];
  /** How many nodes hold their kfrag. */
  uploaded: number;
  /** Whether at least `threshold` nodes hold theirs, so Bob can decrypt. */
  usable: boolean;
}

/**
 * Step two: checks the secret keys against the plan, recomputes the fee at the latest block, makes
 * the kfrags (`generateKFrags(delegating, receiving, signer, m, n, true, true)`) and seals each for
 * its node before paying, creates the policy (simulated, then sent from `walletClient`'s account,
 * which must be the plan's `creator`), checks `PolicyCreated`, and uploads concurrently. A failed
 * upload does not fail the grant (the policy is paid): see {@link GrantOutcome.uploads}.
 * @throws {GrantError} `KeyMismatch`, `CreatorMismatch` (the wallet is not the plan's creator), `InvalidGrant`, `Kfrag`; {@link ChainError} with the contract's error.
 */
export async function executeGrant(
  plan: GrantPlan,
  delegatingSk: umbral.SecretKey,
  signerSk: umbral.SecretKey,
  walletClient: AccountWalletClient,
): Promise<GrantOutcome> {
  const { policy, publicClient, deployment, nodeClient } = plan;
  if (!bytesEqual(publicKeyBytes(delegatingSk), fromHex(policy.delegatingKey, "delegatingKey", 33))) {
    throw new GrantError("KeyMismatch", "the delegating secret key is not the one the plan was made with: plan again with its public key");
  }
  if (!bytesEqual(publicKeyBytes(signerSk), fromHex(policy.verifyingKey, "verifyingKey", 33))) {
    throw new GrantError("KeyMismatch", "the kfrag signer secret key is not the one the plan was made with: plan again with its public key");
  }
  checkPolicyHome(policy, deployment);
  // The policy id derives from the account that sends `createPolicy`: from any other account
  // the fee would pay for a policy under another id, which the sealed uploads do not name.
  const sender = walletClient.account.address;
  if (policyIdOf(sender, plan.policySalt).toLowerCase() !== policy.policyId.toLowerCase()) {
    throw new GrantError(
      "CreatorMismatch",
      `the wallet's account ${sender} is not the plan's creator (policy ${policy.policyId} derives from another account): nothing was sent`,
      { hint: "plan again with creator set to the wallet's account, or send from the creator's account" },
    );
  }
  const what = "creating the policy";
  let latest;
  try {
    latest = await publicClient.getBlock({ blockTag: "latest" });
  } catch (error) {
    throw chainErrorOf(what, error);
  }
  const periods = policyPeriods(latest.timestamp, BigInt(policy.endTimestamp), deployment.secondsPerPeriod);
  if (!periods) throw new GrantError("InvalidGrant", "invalid grant: the policy's end time has passed");
  const value = policy.feeRate * BigInt(policy.shares) * periods.periods;

  // The kfrags are made and sealed before anything is paid: a failure here costs nothing.
  const uploads: KfragUploadBody[] = [];
  const receiving = umbral.PublicKey.fromCompressedBytes(fromHex(policy.receivingKey, "receivingKey", 33));
  const signer = new umbral.Signer(signerSk);
  try {
    const kfrags = umbral.generateKFrags(delegatingSk, receiving, signer, policy.threshold, policy.shares, true, true);
    if (kfrags.length !== policy.nodes.length) {
      throw new GrantError("Kfrag", `umbral made ${kfrags.length} kfrags for ${policy.nodes.length} nodes`);
    }
    policy.nodes.forEach((node, i) => {
      try {
        uploads.push(sealKfrag(kfrags[i]!, node, policy, signer));
      } catch (cause) {
        throw new GrantError("Kfrag", `could not prepare the kfrag for node ${node.staker}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
      }
    });
    for (const kfrag of kfrags) kfrag.free();
  } finally {
    receiving.free();
    signer.free();
  }

  const kfragSigner = ethereumAddress(fromHex(policy.verifyingKey, "verifyingKey", 33));
  const { receipt, events } = await sendPolicyManagerTx(what, publicClient, walletClient, deployment, {
    functionName: "createPolicy",
    args: [plan.policySalt, policy.owner, kfragSigner, BigInt(policy.endTimestamp), policy.nodes.map((n) => n.staker)],
    value,
  });
  const created = events.find((e) => e.eventName === "PolicyCreated");
  if (!created || created.eventName !== "PolicyCreated") {
    throw new ChainError("MissingEvent", `${what}: transaction ${receipt.transactionHash} has no PolicyCreated event`);
  }
  if (created.args.policyId.toLowerCase() !== policy.policyId.toLowerCase()) {
    throw new ChainError(
      "PolicyIdMismatch",
      `the chain created policy ${created.args.policyId} but the plan expected ${policy.policyId}: the grant's creator must be the account that sends the transaction`,
    );
  }

  const reports = await Promise.all(
    policy.nodes.map(async (node, i): Promise<UploadReport> => {
      const upload = uploads[i]!;
      try {
        const createdNow = await uploadKfrag(nodeClient, deployment.chainId, policy.policyId, node, upload);
        return { node, outcome: { ok: true, created: createdNow }, upload };
      } catch (error) {
        return { node, outcome: { ok: false, reason: error instanceof Error ? error.message : String(error), error }, upload };
      }
    }),
  );
  const uploaded = reports.filter((r) => r.outcome.ok).length;
  return { policy, txHash: receipt.transactionHash, paid: value, uploads: reports, uploaded, usable: uploaded >= policy.threshold };
}

/** The stakers of a policy as the contract takes them (ascending). */
export function policyStakers(policy: Pick<PolicyFile, "nodes">): Address[] {
  return [...policy.nodes].sort((a, b) => compareAddresses(a.staker, b.staker)).map((n) => n.staker);
}

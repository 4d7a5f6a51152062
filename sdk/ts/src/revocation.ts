/**
 * Revoking a policy and collecting refunds (`crates/kms-client/src/grant.rs`, `revocation.rs`):
 * the owner's own transactions ({@link revoke}, {@link revokeNode}, {@link refund}), and signed
 * revocation orders (docs/client.md "Signed revocations"): {@link signOrder} signs EIP-712 typed
 * data with the owner's key, {@link sendOrder} hands it to the nodes, which refuse the policy from
 * their answer on with no block mined, {@link fetchOrders} collects the orders the nodes hand out,
 * and {@link settleOrder} carries one out on chain (`revokeBySignature`) from any account,
 * refunding the owner. Every refund is read from the event of the transaction.
 */
import {
  hashTypedData,
  isAddressEqual,
  recoverTypedDataAddress,
  zeroAddress,
  type Address,
  type Hash,
  type Hex,
  type LocalAccount,
  type PublicClient,
} from "viem";
import { fromHex, toHex } from "./bytes.js";
import type { Deployment } from "./deployments.js";
import { KmsError } from "./errors.js";
import { checkPolicyHome, sendPolicyManagerTx, ChainError, type AccountWalletClient } from "./grant.js";
import type { NodeClient, NodeError } from "./http.js";
import type { PolicyFile } from "./policy-file.js";

/** The EIP-712 domain's `name` (the contract's `eip712Domain()`). */
export const DOMAIN_NAME = "KMS PolicyManager";
/** The EIP-712 domain's `version`. */
export const DOMAIN_VERSION = "1";
/** The signed struct, as the contract's `REVOCATION_TYPEHASH`. */
export const REVOCATION_TYPES = {
  Revocation: [
    { name: "policyId", type: "bytes16" },
    { name: "node", type: "address" },
    { name: "deadline", type: "uint64" },
  ],
} as const;

const HALF_N = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0n;

/** An order that cannot be made, or one that does not hold (code `NotOwner`, `NotInPolicy`, `BadOrder`). */
export class RevocationError extends KmsError {}

/** Where the owner's transactions go: the chain, her wallet, the deployment. */
export interface OwnerChain {
  publicClient: PublicClient;
  /** Sends the transactions (its account pays the gas). */
  walletClient: AccountWalletClient;
  deployment: Deployment;
}

/** What a revocation or refund paid back to the owner. */
export interface Refunded {
  txHash: Hash;
  block: bigint;
  /** Wei sent to the policy's owner (read from the event). */
  amount: bigint;
}

/** A revocation order, as the owner signed it (the nodes' JSON body, a `--save-order` file). */
export interface RevocationOrder {
  /** `0x` + 16 bytes. */
  policyId: Hex;
  /** The staker whose arrangement is revoked, or the zero address for the whole policy. */
  node: Address;
  /** Unix seconds: it may be carried out while the block's timestamp is `<=` this. */
  deadline: bigint;
  /** `0x` + 65 bytes `r ‖ s ‖ v`, `v` 27 or 28, low `s`. */
  signature: Hex;
}

/** The EIP-712 domain of the PolicyManager of `policy` (its chain and contract). */
export function orderDomain(policy: Pick<PolicyFile, "chainId" | "policyManager">) {
  return { name: DOMAIN_NAME, version: DOMAIN_VERSION, chainId: BigInt(policy.chainId), verifyingContract: policy.policyManager } as const;
}

function typedData(domain: ReturnType<typeof orderDomain>, policyId: Hex, node: Address, deadline: bigint) {
  return {
    domain,
    types: REVOCATION_TYPES,
    primaryType: "Revocation" as const,
    message: { policyId: policyId.toLowerCase() as Hex, node, deadline },
  };
}

/** The digest the owner signs (`PolicyManager.revocationTypedDataHash(policyId, node, deadline)`). */
export function orderDigest(policy: Pick<PolicyFile, "chainId" | "policyManager">, policyId: Hex, node: Address, deadline: bigint): Hash {
  return hashTypedData(typedData(orderDomain(policy), policyId, node, deadline));
}

/** The signer of a wallet client: its account's address, and `eth_signTypedData_v4` through it. */
type OrderSigner = LocalAccount | AccountWalletClient;

function isLocalAccount(owner: OrderSigner): owner is LocalAccount {
  return owner.type === "local";
}

/**
 * Signs an order revoking the whole policy (`node` absent or zero) or one node's arrangement,
 * with the owner's key: a viem `LocalAccount` (e.g. `privateKeyToAccount`) or a wallet client
 * (`eth_signTypedData_v4`, so a wallet shows what it signs). No chain, no node.
 * @throws {RevocationError} `NotOwner` (the key is not the policy's owner), `NotInPolicy`, `BadOrder`.
 */
export async function signOrder(policy: PolicyFile, owner: OrderSigner, node: Address | undefined, deadline: bigint | number): Promise<RevocationOrder> {
  const signerAddress = isLocalAccount(owner) ? owner.address : owner.account.address;
  if (!isAddressEqual(signerAddress, policy.owner)) {
    throw new RevocationError("NotOwner", `the key signs as ${signerAddress}, but the policy's owner is ${policy.owner}: sign with the owner's key`);
  }
  const target = node ?? zeroAddress;
  if (!isAddressEqual(target, zeroAddress) && !policy.nodes.some((n) => isAddressEqual(n.staker, target))) {
    throw new RevocationError("NotInPolicy", `${target} is not one of the policy's nodes (${policy.nodes.map((n) => n.staker).join(", ")})`);
  }
  const due = BigInt(deadline);
  if (due < 0n || due >= 1n << 64n) throw new RevocationError("BadOrder", `the deadline ${due} is not a u64`);
  const data = typedData(orderDomain(policy), policy.policyId, target, due);
  const signature = isLocalAccount(owner)
    ? await owner.signTypedData(data)
    : await owner.signTypedData({ ...data, account: owner.account });
  const order: RevocationOrder = { policyId: policy.policyId.toLowerCase() as Hex, node: target, deadline: due, signature };
  checkSignatureForm(order.signature);
  return order;
}

/** The contract's rules for a signature: 65 bytes, `s <= n/2`, `v` 27 or 28. */
function checkSignatureForm(signature: Hex): Uint8Array {
  const bytes = fromHex(signature, "signature");
  if (bytes.length !== 65) throw new RevocationError("BadOrder", `signature: expected 65 bytes (r | s | v), got ${bytes.length}`);
  const s = BigInt(toHex(bytes.subarray(32, 64)));
  if (s > HALF_N) throw new RevocationError("BadOrder", "signature: s is above n/2 (a malleable signature the contract refuses)");
  const v = bytes[64]!;
  if (v !== 27 && v !== 28) throw new RevocationError("BadOrder", `signature: v must be 27 or 28, got ${v}`);
  return bytes;
}

/** Whether `order` is about the whole policy. */
export function isWholePolicy(order: Pick<RevocationOrder, "node">): boolean {
  return isAddressEqual(order.node, zeroAddress);
}

/** The address that signed `order` in `policy`'s domain. @throws {RevocationError} `BadOrder`. */
export async function orderSigner(policy: Pick<PolicyFile, "chainId" | "policyManager">, order: RevocationOrder): Promise<Address> {
  checkSignatureForm(order.signature);
  try {
    return await recoverTypedDataAddress({ ...typedData(orderDomain(policy), order.policyId, order.node, order.deadline), signature: order.signature });
  } catch (cause) {
    throw new RevocationError("BadOrder", `signature: no signer recovers from it`, { cause });
  }
}

/** The order's JSON (`{"policyId","node","deadline","signature"}`), the nodes' body and the CLI's `--save-order` file. */
export function orderToJson(order: RevocationOrder): string {
  return JSON.stringify(orderBody(order));
}

function orderBody(order: RevocationOrder) {
  if (order.deadline > BigInt(Number.MAX_SAFE_INTEGER)) throw new RevocationError("BadOrder", `the deadline ${order.deadline} does not fit a JSON number`);
  return { policyId: order.policyId.toLowerCase(), node: order.node, deadline: Number(order.deadline), signature: order.signature.toLowerCase() };
}

/** Parses an order's JSON (a node's answer, a `--save-order` file); `source` names it in errors. */
export function parseOrder(json: unknown, source = "order"): RevocationOrder {
  const bad = (field: string) => new RevocationError("BadOrder", `${source}: field \`${field}\` is missing or malformed`);
  const record = (typeof json === "string" ? safeParse(json) : json) as Record<string, unknown> | null;
  if (typeof record !== "object" || record === null) throw new RevocationError("BadOrder", `${source}: not a JSON object`);
  const hex = (field: string, bytes: number) => {
    const value = record[field];
    if (typeof value !== "string" || !new RegExp(`^0x[0-9a-fA-F]{${2 * bytes}}$`).test(value)) throw bad(field);
    return value as Hex;
  };
  const deadline = record.deadline;
  if (typeof deadline !== "number" || !Number.isSafeInteger(deadline) || deadline < 0) throw bad("deadline");
  return { policyId: hex("policyId", 16).toLowerCase() as Hex, node: hex("node", 20) as Address, deadline: BigInt(deadline), signature: hex("signature", 65) };
}

function safeParse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** What one node answered to an order. */
export interface OrderDelivery {
  staker: Address;
  url: string;
  /** `ok`: the node refuses the policy from now on (`created` false: it had this order already). */
  outcome: { ok: true; created: boolean } | { ok: false; reason: string; error: unknown };
}

/**
 * `POST /v1/policies/{id}/revocation` to each node the order concerns (all for a whole-policy
 * order, that node for an arrangement), at once. A node that answered refuses the policy from
 * then on.
 */
export async function sendOrder(nodeClient: NodeClient, policy: PolicyFile, order: RevocationOrder): Promise<OrderDelivery[]> {
  const body = orderBody(order);
  const path = `/v1/policies/${order.policyId.toLowerCase()}/revocation`;
  const nodes = policy.nodes.filter((n) => isWholePolicy(order) || isAddressEqual(n.staker, order.node));
  return Promise.all(
    nodes.map(async (node): Promise<OrderDelivery> => {
      try {
        const answer = await nodeClient.postJson<{ created?: unknown }>(node.url, path, body);
        return { staker: node.staker, url: node.url, outcome: { ok: true, created: answer.status === 201 || answer.body?.created === true } };
      } catch (error) {
        return { staker: node.staker, url: node.url, outcome: { ok: false, reason: error instanceof Error ? error.message : String(error), error } };
      }
    }),
  );
}

/**
 * The orders the policy's nodes hand out (`GET /v1/policies/{id}/revocation`), each checked to be
 * the owner's in the policy's domain, without repeats, whole-policy first, latest deadline first.
 * Nodes that do not answer, or keep none, are skipped.
 */
export async function fetchOrders(nodeClient: NodeClient, policy: PolicyFile): Promise<RevocationOrder[]> {
  const path = `/v1/policies/${policy.policyId.toLowerCase()}/revocation`;
  const answers = await Promise.all(
    policy.nodes.map((node) =>
      nodeClient.getJson<{ orders?: unknown }>(node.url, path).catch((error: NodeError | unknown) => {
        void error;
        return undefined;
      }),
    ),
  );
  const orders: RevocationOrder[] = [];
  for (const answer of answers) {
    if (!answer || !Array.isArray(answer.orders)) continue;
    for (const raw of answer.orders) {
      let order: RevocationOrder;
      try {
        order = parseOrder(raw);
        if (order.policyId !== policy.policyId.toLowerCase()) continue;
        if (!isAddressEqual(await orderSigner(policy, order), policy.owner)) continue;
      } catch {
        continue;
      }
      const duplicate = orders.some(
        (o) => isAddressEqual(o.node, order.node) && o.deadline === order.deadline && o.signature.toLowerCase() === order.signature.toLowerCase(),
      );
      if (!duplicate) orders.push(order);
    }
  }
  orders.sort((a, b) => Number(isWholePolicy(b)) - Number(isWholePolicy(a)) || (a.deadline > b.deadline ? -1 : a.deadline < b.deadline ? 1 : 0));
  return orders;
}

function refunded(receipt: { transactionHash: Hash; blockNumber: bigint }, amount: bigint): Refunded {
  return { txHash: receipt.transactionHash, block: receipt.blockNumber, amount };
}

function stakers(policy: PolicyFile): Address[] {
  return policy.nodes.map((n) => n.staker);
}

/**
 * `revokeBySignature` from the wallet's account, whoever it is: carries the order out on chain,
 * refunding the owner (read from the `PolicyRevoked` or `ArrangementRevoked` event).
 * @throws {ChainError} with the contract's error, e.g. `PolicyManager_AlreadyRevoked`.
 */
export async function settleOrder(chain: OwnerChain, policy: PolicyFile, order: RevocationOrder): Promise<Refunded> {
  checkPolicyHome(policy, chain.deployment);
  const what = "settling the revocation order";
  const { receipt, events } = await sendPolicyManagerTx(what, chain.publicClient, chain.walletClient, chain.deployment, {
    functionName: "revokeBySignature",
    args: [order.policyId, order.node, order.deadline, stakers(policy), order.signature],
  });
  for (const event of events) {
    if (event.eventName === "PolicyRevoked" && isWholePolicy(order)) return refunded(receipt, event.args.refund);
    if (event.eventName === "ArrangementRevoked" && !isWholePolicy(order)) return refunded(receipt, event.args.refund);
  }
  throw new ChainError("MissingEvent", `${what}: transaction ${receipt.transactionHash} has no revocation event`);
}

/**
 * Revokes the whole policy (`revokePolicy`; the wallet's account must be the owner) and returns
 * the refund of what the nodes have not earned. Each node refuses the policy from its first read
 * of the revocation's block.
 */
export async function revoke(chain: OwnerChain, policy: PolicyFile): Promise<Refunded> {
  checkPolicyHome(policy, chain.deployment);
  const what = "revoking the policy";
  const { receipt, events } = await sendPolicyManagerTx(what, chain.publicClient, chain.walletClient, chain.deployment, {
    functionName: "revokePolicy",
    args: [policy.policyId, stakers(policy)],
  });
  const event = events.find((e) => e.eventName === "PolicyRevoked");
  if (!event || event.eventName !== "PolicyRevoked") throw new ChainError("MissingEvent", `${what}: transaction ${receipt.transactionHash} has no PolicyRevoked event`);
  return refunded(receipt, event.args.refund);
}

/**
 * Revokes one node's arrangement (`revokeArrangement`; the owner's account) and returns the refund
 * of what that node has not earned. A node not in the policy is refused before anything is sent.
 */
export async function revokeNode(chain: OwnerChain, policy: PolicyFile, node: Address): Promise<Refunded> {
  checkPolicyHome(policy, chain.deployment);
  const what = "revoking the node's arrangement";
  if (!policy.nodes.some((n) => isAddressEqual(n.staker, node))) {
    throw new ChainError("Reverted", `${what}: ${node} is not one of the policy's nodes (${stakers(policy).join(", ")})`, {
      errorName: "PolicyManager_NodeNotInPolicy",
      errorArgs: [policy.policyId, node],
    });
  }
  const { receipt, events } = await sendPolicyManagerTx(what, chain.publicClient, chain.walletClient, chain.deployment, {
    functionName: "revokeArrangement",
    args: [policy.policyId, node, stakers(policy)],
  });
  const event = events.find((e) => e.eventName === "ArrangementRevoked");
  if (!event || event.eventName !== "ArrangementRevoked") throw new ChainError("MissingEvent", `${what}: transaction ${receipt.transactionHash} has no ArrangementRevoked event`);
  return refunded(receipt, event.args.refund);
}

/** Collects the refund of a policy's revoked or unearned periods (`refund`), read from `RefundPaid`. */
export async function refund(chain: OwnerChain, policy: PolicyFile): Promise<Refunded> {
  checkPolicyHome(policy, chain.deployment);
  const what = "refunding the policy";
  const { receipt, events } = await sendPolicyManagerTx(what, chain.publicClient, chain.walletClient, chain.deployment, {
    functionName: "refund",
    args: [policy.policyId, stakers(policy)],
  });
  const event = events.find((e) => e.eventName === "RefundPaid");
  if (!event || event.eventName !== "RefundPaid") throw new ChainError("MissingEvent", `${what}: transaction ${receipt.transactionHash} has no RefundPaid event`);
  return refunded(receipt, event.args.amount);
}

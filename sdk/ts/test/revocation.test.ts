import { test } from "node:test";
import assert from "node:assert/strict";
import { hashDomain, hashStruct, zeroAddress, type Address, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { orderDigest, orderDomain, orderSigner, orderToJson, parseOrder, signOrder, RevocationError, REVOCATION_TYPES } from "../src/revocation.js";
import type { PolicyFile } from "../src/policy-file.js";

// docs/client.md "Signed revocations", test vector.
const OWNER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const POLICY: PolicyFile = {
  chainId: 31337,
  policyManager: "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0",
  policyId: "0x5f0c8a4d0e2b1c3d4e5f60718293a4b5",
  label: "media/holiday.mp4",
  owner: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
  delegatingKey: `0x02${"11".repeat(32)}`,
  verifyingKey: `0x02${"11".repeat(32)}`,
  receivingKey: `0x02${"11".repeat(32)}`,
  senders: [],
  threshold: 1,
  shares: 1,
  endTimestamp: 1767225600,
  feeRate: 1n,
  nodes: [{ staker: "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC", worker: "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC", url: "https://127.0.0.1:1", umbralPublicKey: `0x02${"11".repeat(32)}` }],
};
const DEADLINE = 1767225600n;
const VECTORS: Array<{ node: Address; structHash: Hex; digest: Hex; r: string; s: string; v: string }> = [
  {
    node: zeroAddress,
    structHash: "0x72a4bc2dea2716851c2f86dd7216c8495b08f2a799ddfef9abe5e82e3e8ad797",
    digest: "0x821fd2681af625fdee4c3d17a1ff9f84fe0f296816a4001e1dcc2aa26e44f0bd",
    r: "6ed62ced21e2e8022d50f694ceb3994d38170a60fefd12e1ba7c21016d0e732d",
    s: "5f1149bc564729de6d79cf72ca2bee86fcdc689d93899c8bd05549e930df78e3",
    v: "1b",
  },
  {
    node: "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
    structHash: "0x7d6bb4b4a534b4178637da6baf128bd3478cb0f8e9d9ff20a7a5d16af4bdaaa6",
    digest: "0x02915539f4ded432235e96f313112b08c9b4ac87969a77db2345b1154e36b7fc",
    r: "2a7a698aae4acd0d7b0119b6a255bbc7162697ff046fe176bd51085bf9f74f0c",
    s: "47b069e542f399b9b8579f84c11fafa46c0e0a2c9887a9e5c3f3761e97b3b4cc",
    v: "1c",
  },
];

test("the documented domain separator, struct hashes, digests and signatures", async () => {
  const domain = orderDomain(POLICY);
  assert.equal(
    hashDomain({ domain, types: { EIP712Domain: [{ name: "name", type: "string" }, { name: "version", type: "string" }, { name: "chainId", type: "uint256" }, { name: "verifyingContract", type: "address" }] } }),
    "0xa1592a8291241e9f3d03298162735693256ab362cd6c44e192fed5f57140511f",
  );
  const owner = privateKeyToAccount(OWNER_KEY);
  for (const vector of VECTORS) {
    assert.equal(hashStruct({ data: { policyId: POLICY.policyId, node: vector.node, deadline: DEADLINE }, primaryType: "Revocation", types: REVOCATION_TYPES }), vector.structHash);
    assert.equal(orderDigest(POLICY, POLICY.policyId, vector.node, DEADLINE), vector.digest);
    const order = await signOrder(POLICY, owner, vector.node === zeroAddress ? undefined : vector.node, DEADLINE);
    assert.equal(order.signature, `0x${vector.r}${vector.s}${vector.v}`);
    assert.equal(await orderSigner(POLICY, order), POLICY.owner);
    assert.deepEqual(parseOrder(orderToJson(order)), { ...order, node: vector.node });
  }
});

test("only the owner signs, only for the policy's nodes; malformed signatures are refused", async () => {
  const stranger = privateKeyToAccount("0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a");
  await assert.rejects(signOrder(POLICY, stranger, undefined, DEADLINE), (e: unknown) => e instanceof RevocationError && e.code === "NotOwner");
  const owner = privateKeyToAccount(OWNER_KEY);
  await assert.rejects(signOrder(POLICY, owner, "0x90F79bf6EB2c4f870365E785982E1f101E93b906", DEADLINE), (e: unknown) => e instanceof RevocationError && e.code === "NotInPolicy");
  const order = await signOrder(POLICY, owner, undefined, DEADLINE);
  // The other chain's domain recovers someone else; a high s and a bad v are refused.
  assert.notEqual(await orderSigner({ ...POLICY, chainId: 1 }, order), POLICY.owner);
  const n = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
  const s = BigInt(`0x${order.signature.slice(66, 130)}`);
  const highS = `${order.signature.slice(0, 66)}${(n - s).toString(16).padStart(64, "0")}1c` as Hex;
  await assert.rejects(orderSigner(POLICY, { ...order, signature: highS }), (e: unknown) => e instanceof RevocationError && /above n\/2/.test(e.message));
  await assert.rejects(orderSigner(POLICY, { ...order, signature: `${order.signature.slice(0, 130)}01` as Hex }), /v must be 27 or 28/);
  assert.throws(() => parseOrder('{"policyId":"0x00"}'), RevocationError);
});

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  certificateFingerprint,
  kfragSignerOf,
  parseNodeUrl,
  parsePolicyFile,
  PolicyFileError,
  policyFileToJson,
  withPin,
} from "../src/policy-file.js";
import { toHex } from "../src/bytes.js";

// Written by the Rust CLI on a devnet: `kms policy grant … --threshold 2 --shares 3 --out p.json`.
const RUST_POLICY = `{
  "version": 1,
  "chainId": 31337,
  "policyManager": "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0",
  "policyId": "0x9e5dbed22d2bf2edc10f3c5aa4323ea7",
  "label": "photos",
  "owner": "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65",
  "delegatingKey": "0x03c3a0b0d9fb00378d0d07fd8c0e2451cb4115ada6845bc2ba89f76f0042c1b6d5",
  "verifyingKey": "0x02589cde6966d7eabff38185ba2bb2445ff49dbe061935eb65b092c361e818eb2c",
  "receivingKey": "0x0353486b76ace7ff3db247b1ddfe48d1e92ab8f208679189dbebf420f8581ac582",
  "senders": [
    "0x02d54a1e73f59afedfd418476e445b5d5081d38904ed8e1538a35d61c3d5b29902"
  ],
  "threshold": 2,
  "shares": 3,
  "endTimestamp": 1796331600,
  "feeRate": "1000000000",
  "nodes": [
    {
      "staker": "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
      "worker": "0x9aFcF74270A1E9EfD9385ba18a11D8B001a9a9D6",
      "url": "https://127.0.0.1:9302#tls-sha256=3cfc1f4dc058049e8afe373973aa67f6bf44b55bc6b21966a032c91bf3c7aaae",
      "umbralPublicKey": "0x0276a2122e0cd2f586bde1f54d1213575bc6925dc854fd235d96f711615cd5e72d"
    },
    {
      "staker": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
      "worker": "0x235b8B154c0512d6CC20612Bf474d3092796Fa15",
      "url": "https://127.0.0.1:9301#tls-sha256=353ed2a77a650aef19fc206213cecea456df433256638e63c3c97b7c23d42221",
      "umbralPublicKey": "0x03ab2e0c60d32169aca7a5537daf6176a927213ac287042ead2809a2a62ad023d6"
    },
    {
      "staker": "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
      "worker": "0x796e0c5d69fb69e967Fa3C71beaf14E54c865d62",
      "url": "https://127.0.0.1:9303#tls-sha256=2510ca5312710c870dbe066d52f6f0bc9408c3c4559a2feedd22c14eced8a62a",
      "umbralPublicKey": "0x032ff34801b42840e3574903a79bcc91c315053e6640bd08e86a79fce3a2010d10"
    }
  ]
}
`;
// Its kfrag signer, as `kms keys show --umbral alice/umbral.json --json` printed it.
const RUST_KFRAG_SIGNER = "0xcd79c07420f0bcaaf1fa57129cb085cdf0e62fab";

function edited(edit: (v: Record<string, any>) => void): string {
  const value = JSON.parse(RUST_POLICY) as Record<string, any>;
  edit(value);
  return JSON.stringify(value);
}

function fieldOf(text: string): string | undefined {
  try {
    parsePolicyFile(text, "p.json");
  } catch (error) {
    assert.ok(error instanceof PolicyFileError, String(error));
    assert.equal(error.code, "PolicyFile");
    assert.match(error.message, /^policy file p\.json: /);
    return error.field;
  }
  assert.fail("expected a refusal");
}

test("a Rust-written policy file parses, and is written back byte for byte", () => {
  const policy = parsePolicyFile(RUST_POLICY, "p.json");
  assert.equal(policy.chainId, 31337);
  assert.equal(policy.threshold, 2);
  assert.equal(policy.shares, 3);
  assert.equal(policy.feeRate, 1_000_000_000n);
  assert.equal(policy.nodes.length, 3);
  assert.equal(policy.senders.length, 1);
  assert.equal(kfragSignerOf(policy).toLowerCase(), RUST_KFRAG_SIGNER);
  assert.equal(policyFileToJson(policy), RUST_POLICY);
});

test("feeRate above 2^53 and a file without senders are read as Rust reads them", () => {
  const big = parsePolicyFile(edited((v) => (v.feeRate = "1000000000000000000000000000000")));
  assert.equal(big.feeRate, 10n ** 30n);
  assert.match(policyFileToJson(big), /"feeRate": "1000000000000000000000000000000"/);
  const old = parsePolicyFile(edited((v) => delete v.senders));
  assert.deepEqual(old.senders, []);
  assert.match(policyFileToJson(old), /"senders": \[\],/);
  // Lowercase addresses are read and written checksummed.
  const lower = parsePolicyFile(edited((v) => (v.owner = v.owner.toLowerCase())));
  assert.equal(lower.owner, parsePolicyFile(RUST_POLICY).owner);
});

test("errors name the field, as the Rust client's do", () => {
  assert.equal(fieldOf(edited((v) => (v.version = 2))), "version");
  assert.equal(fieldOf(edited((v) => (v.policyId = "0x1234"))), "policyId");
  assert.equal(fieldOf(edited((v) => (v.feeRate = "1e9"))), "feeRate");
  assert.equal(fieldOf(edited((v) => (v.feeRate = 1000))), "feeRate");
  assert.equal(fieldOf(edited((v) => (v.nodes[1].umbralPublicKey = "0x02"))), "nodes[1].umbralPublicKey");
  assert.equal(fieldOf(edited((v) => (v.nodes[2].url = "ftp://x"))), "nodes[2].url");
  assert.equal(fieldOf(edited((v) => (v.owner = "0xnope"))), "owner");
  assert.equal(fieldOf(edited((v) => (v.threshold = 4))), "threshold");
  assert.equal(fieldOf(edited((v) => (v.senders[0] = "0x04" + "00".repeat(32)))), "senders[0]");
  assert.equal(fieldOf(edited((v) => ([v.nodes[0], v.nodes[1]] = [v.nodes[1], v.nodes[0]]))), "nodes");
  assert.throws(
    () => parsePolicyFile(edited((v) => (v.nodes[1].umbralPublicKey = "0x02")), "p.json"),
    { message: "policy file p.json: field `nodes[1].umbralPublicKey` expected a 33-byte compressed key, got 1 bytes" },
  );
});

test("an unknown field is refused and named; a missing one too", () => {
  assert.throws(() => parsePolicyFile(edited((v) => (v.treshold = 2)), "p.json"), /policy file p\.json: unknown field `treshold`/);
  assert.throws(() => parsePolicyFile(edited((v) => (v.nodes[0].port = 1)), "p.json"), /nodes\[0\]: unknown field `port`/);
  assert.throws(() => parsePolicyFile(edited((v) => delete v.receivingKey)), /missing field `receivingKey`/);
  assert.throws(() => parsePolicyFile("not json", "p.json"), PolicyFileError);
});

test("node URLs: the pin is split off, checked, and put back", () => {
  const pin = certificateFingerprint(new TextEncoder().encode("a certificate"));
  const url = withPin("https://node.example:9151", pin);
  assert.equal(url, `https://node.example:9151#tls-sha256=${toHex(pin).slice(2)}`);
  const parsed = parseNodeUrl(url);
  assert.equal(parsed.base, "https://node.example:9151");
  assert.deepEqual(parsed.pin, pin);
  assert.equal(parsed.plainHttp, false);
  assert.equal(withPin(url, pin), url);
  const plain = parseNodeUrl("http://127.0.0.1:9151");
  assert.ok(plain.plainHttp && plain.pin === undefined);
  // What fetch would send as plain HTTP is plain HTTP, whatever the spelling.
  for (const sloppy of [" http://127.0.0.1:9151", "http:/127.0.0.1:9151", "\thttp://h:1", "HTTP:h:1"]) {
    assert.ok(parseNodeUrl(sloppy).plainHttp, sloppy);
  }
  assert.equal(parseNodeUrl("https:/h:1").plainHttp, false);
  assert.throws(() => parseNodeUrl("https://h:1#tls-sha1=00"), /the fragment must be `tls-sha256=<64 hex digits>`/);
  assert.throws(() => parseNodeUrl("https://h:1#tls-sha256=abcd"), /must be 64 hex digits/);
  assert.throws(() => parseNodeUrl(`http://h:1#tls-sha256=${"00".repeat(32)}`), /needs an https:\/\/ URL/);
});

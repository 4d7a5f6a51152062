import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, writeFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseDeployment, loadDeployment, deploymentToJson, DeploymentError } from "../src/deployments.js";

/** A file as `script/Deploy.s.sol` writes it (the Rust reader's test sample, plus evidenceWindow). */
const SAMPLE = `{
  "adjudicator": "0x0000000000000000000000000000000000000000",
  "chainId": 31337,
  "startBlock": 0,
  "deployer": "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
  "evidenceWindow": 14,
  "issuanceRate": 474323552147416,
  "maxLockPeriods": 1825,
  "maxStake": "4000000000000000000000000",
  "minLockPeriods": 30,
  "minStake": "15000000000000000000000",
  "minWorkerPeriods": 2,
  "policyManager": "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0",
  "secondsPerPeriod": 60,
  "stakingEscrow": "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
  "token": "0x5FbDB2315678afecb367f032d93F642f64180aa3"
}`;

function withField(field: string, valueJson: string): string {
  const re = new RegExp(`"${field}": [^,\\n]*`);
  return re.test(SAMPLE) ? SAMPLE.replace(re, `"${field}": ${valueJson}`) : SAMPLE.replace("{", `{"${field}": ${valueJson},`);
}

function invalidField(text: string): DeploymentError {
  try {
    parseDeployment(text);
  } catch (error) {
    assert.ok(error instanceof DeploymentError, String(error));
    return error;
  }
  assert.fail("expected a DeploymentError");
}

test("parses forge output exactly", () => {
  const d = parseDeployment(SAMPLE);
  assert.equal(d.chainId, 31337n);
  assert.equal(d.startBlock, 0n);
  assert.equal(d.secondsPerPeriod, 60n);
  assert.equal(d.minStake, 15_000n * 10n ** 18n);
  assert.equal(d.maxStake, 4_000_000n * 10n ** 18n);
  assert.equal(d.issuanceRate, 474_323_552_147_416n);
  assert.deepEqual([d.minLockPeriods, d.maxLockPeriods, d.minWorkerPeriods], [30n, 1825n, 2n]);
  assert.equal(d.token, "0x5FbDB2315678afecb367f032d93F642f64180aa3");
  assert.equal(d.evidenceWindow, 14n);
});

test("large JSON numbers keep full precision", () => {
  const d = parseDeployment(SAMPLE.replace(`"maxStake": "4000000000000000000000000"`, `"maxStake": 4000000000000000000000001`));
  assert.equal(d.maxStake, 4_000_000_000_000_000_000_000_001n);
});

test("small numbers as decimal and hex strings", () => {
  assert.equal(parseDeployment(withField("chainId", `"0x7a69"`)).chainId, 31337n);
  assert.equal(parseDeployment(withField("startBlock", `"12"`)).startBlock, 12n);
});

test("unknown fields are ignored and the round trip is exact", () => {
  const d = parseDeployment(withField("futureContract", `"0x01"`));
  assert.deepEqual(parseDeployment(deploymentToJson(d)), d);
});

test("bad numbers are refused naming the field", () => {
  for (const bad of [`""`, "-1", "1.5", "1e24", `"12abc"`, "true", "null", "[1]"]) {
    const error = invalidField(withField("minStake", bad));
    assert.equal(error.code, "DeploymentInvalidField", bad);
    assert.match(error.message, /`minStake`/, bad);
  }
  assert.match(invalidField(withField("chainId", `"18446744073709551616"`)).message, /64 bits/);
  assert.match(invalidField(withField("maxStake", `"0x1${"0".repeat(64)}"`)).message, /256 bits/);
});

test("bad addresses are refused naming the field; unchecksummed ones accepted", () => {
  assert.match(invalidField(withField("token", `"0x1234"`)).message, /`token`/);
  assert.match(invalidField(withField("token", "1234")).message, /`token`/);
  const flipped = invalidField(withField("stakingEscrow", `"0xE7f1725E7734CE288F8367e1Bb143E90bb3F0512"`));
  assert.match(flipped.message, /`stakingEscrow`.*checksum/);
  const d = parseDeployment(withField("stakingEscrow", `"0xe7f1725e7734ce288f8367e1bb143e90bb3f0512"`));
  assert.equal(d.stakingEscrow, "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512");
});

test("a missing field and a non-object are named", () => {
  const error = invalidField(SAMPLE.replace(/"policyManager": [^\n]*\n/, ""));
  assert.equal(error.code, "DeploymentMissingField");
  assert.match(error.message, /deployments file <inline JSON> has no `policyManager` field/);
  assert.equal(invalidField("[1, 2]").code, "DeploymentJson");
  assert.equal(invalidField("{").code, "DeploymentJson");
});

test("loadDeployment reads a path and names it in errors", async () => {
  const dir = await mkdtemp(join(tmpdir(), "kms-sdk-deployments-"));
  try {
    const path = join(dir, "31337.json");
    await writeFile(path, SAMPLE);
    assert.equal((await loadDeployment(path)).policyManager, "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0");
    assert.equal((await loadDeployment(new URL(`file://${path}`))).chainId, 31337n);
    await writeFile(path, "[1]");
    await assert.rejects(loadDeployment(path), (e: unknown) => e instanceof DeploymentError && e.message.includes(path));
    await assert.rejects(loadDeployment(join(dir, "gone.json")), (e: unknown) => e instanceof DeploymentError && e.code === "DeploymentRead");
  } finally {
    await rm(dir, { recursive: true });
  }
});

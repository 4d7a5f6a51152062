import { test } from "node:test";
import assert from "node:assert/strict";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { privateKeyToAddress } from "viem/accounts";
import { MasterSecret, KeyFileError, decryptKeystore, ethereumAddress, loadKeystore, publicKeyBytes } from "../src/keys.js";
import { toHex } from "../src/bytes.js";

// Made by the Rust CLI: `kms keys new --dir k --password-file pw` (password "correct horse"), then
// `kms keys show --umbral k/umbral.json --label 'photos/é' --json`.
const UMBRAL_JSON = `{
  "version": 1,
  "kind": "kms-umbral-master-secret",
  "seed": "0x416236ad7059908ccbef7d551a07b9f6c5a7153737068f3836f05713dca6a120"
}
`;
const SHOWN = {
  kfragSigner: "0xa606713b9fbf4c564dfb941683ba6ecd1a164c4a",
  label: "photos/é",
  policyKey: "0x02fa48d342c5be7d3044aed29973858e66c3df5ec4d936444d2dbff777089faed0",
  receivingKey: "0x02be250cb9b5b2ed7d801b10abaf75854105f6d8b1105528c5f9e0192542ed45e9",
  senderKey: "0x0398d0aa52496fb5b0557104f8a71cc48c148331086fd95f76b467672952918a5d",
};
const KEYSTORE = `{"crypto":{"cipher":"aes-128-ctr","cipherparams":{"iv":"bab09db0c69f5cc155cc9f2c86fe8343"},"ciphertext":"cfe3cb7cad71fe4dfedafc5aa946113decd3ee3e15faecc8b6a1f1b16c32f6dd","kdf":"scrypt","kdfparams":{"dklen":32,"n":8192,"p":1,"r":8,"salt":"e2e6fbbb9d3fc11e9a75d89ab333df01b2a83c38adf938a0faddc3e03635aed2"},"mac":"6ae78e3437cfa4b23b5ec668b09aaef9f590e26bde7ea6f383e9e72d7680c52f"},"id":"9efeece8-e1f6-4bfd-8cae-9283ff3cbddf","version":3}`;
const KEYSTORE_ADDRESS = "0xceda68755a545500a47e0880fa1a4a96b96edf07";

test("keys derived from a Rust-made master secret equal `kms keys show`", () => {
  const master = MasterSecret.parse(UMBRAL_JSON);
  assert.equal(toHex(publicKeyBytes(master.receivingKey())), SHOWN.receivingKey);
  assert.equal(toHex(publicKeyBytes(master.senderKey())), SHOWN.senderKey);
  assert.equal(toHex(publicKeyBytes(master.delegatingKey(SHOWN.label))), SHOWN.policyKey);
  const signer = master.signingKey().publicKey();
  assert.equal(ethereumAddress(signer).toLowerCase(), SHOWN.kfragSigner);
  // Another label, another key.
  assert.notEqual(toHex(publicKeyBytes(master.delegatingKey("photos/e"))), SHOWN.policyKey);
  master.free();
});

test("a second Rust-made file, label media/holiday.mp4", () => {
  const master = MasterSecret.parse(
    `{"version":1,"kind":"kms-umbral-master-secret","seed":"0x5087b98fd85de1b07ab33f06d6fbea8f54f8870453acfc0b2f5e663c3e991c20"}`,
  );
  assert.equal(toHex(publicKeyBytes(master.delegatingKey("media/holiday.mp4"))), "0x0293f2a26347fe681042b19ae9a1311d91aa80b982cdcc3980f940d249007f4492");
  assert.equal(ethereumAddress(master.signingKey().publicKey()).toLowerCase(), "0x3909a19a2b75b2c66a5496f1c6ad4f8b8b9d92c8");
});

test("the file round-trips and malformed files are refused", () => {
  const master = MasterSecret.parse(UMBRAL_JSON);
  assert.equal(master.toJson(), UMBRAL_JSON);
  const bad = [
    "[]",
    `{"version":2,"kind":"kms-umbral-master-secret","seed":"0x00"}`,
    `{"version":1,"kind":"other","seed":"0x00"}`,
    `{"version":1,"kind":"kms-umbral-master-secret","seed":"0x0011"}`,
    `{"version":1,"kind":"kms-umbral-master-secret","seed":"0x416236ad7059908ccbef7d551a07b9f6c5a7153737068f3836f05713dca6a120","extra":1}`,
  ];
  for (const text of bad) {
    assert.throws(() => MasterSecret.parse(text, "u.json"), (e: unknown) => e instanceof KeyFileError && e.message.startsWith("u.json is not"), text);
  }
});

test("load refuses a group-readable file, reads a 0600 one", async () => {
  const dir = await mkdtemp(join(tmpdir(), "kms-sdk-keys-"));
  try {
    const path = join(dir, "umbral.json");
    await writeFile(path, UMBRAL_JSON, { mode: 0o644 });
    await chmod(path, 0o644);
    await assert.rejects(MasterSecret.load(path), (e: unknown) => e instanceof KeyFileError && e.code === "KeyFilePermissions" && /chmod 600/.test(e.message));
    await chmod(path, 0o600);
    const master = await MasterSecret.load(path);
    assert.equal(toHex(publicKeyBytes(master.receivingKey())), SHOWN.receivingKey);
    const keystore = join(dir, "account.json");
    await writeFile(keystore, KEYSTORE, { mode: 0o600 });
    const sk = await loadKeystore(keystore, "correct horse");
    assert.equal(privateKeyToAddress(sk).toLowerCase(), KEYSTORE_ADDRESS);
  } finally {
    await rm(dir, { recursive: true });
  }
});

test("a Rust-made keystore decrypts; a wrong password is refused", async () => {
  const sk = await decryptKeystore(KEYSTORE, "correct horse");
  assert.equal(privateKeyToAddress(sk).toLowerCase(), KEYSTORE_ADDRESS);
  await assert.rejects(decryptKeystore(KEYSTORE, "wrong"), (e: unknown) => e instanceof KeyFileError && e.code === "WrongPassword");
  await assert.rejects(decryptKeystore("{}", "x"), (e: unknown) => e instanceof KeyFileError && e.code === "KeystoreFormat");
  // A crafted keystore asking for a derivation of hours (scrypt n = 2^30) is refused at once.
  const costly = KEYSTORE.replace(/"n"\s*:\s*\d+/, '"n": 1073741824');
  assert.notEqual(costly, KEYSTORE);
  await assert.rejects(decryptKeystore(costly, "correct horse"), (e: unknown) =>
    e instanceof KeyFileError && e.code === "KeystoreFormat" && /kdfparams\.n is 1073741824/.test(e.message));
});

test("a malformed seed is refused without quoting it", () => {
  // One digit short of a seed, or one letter wrong: the error must not carry the secret.
  const secret = "416236ad7059908ccbef7d551a07b9f6c5a7153737068f3836f05713dca6a12";
  for (const seed of [`0x${secret}`, `0x${secret}z`]) {
    const text = `{"version":1,"kind":"kms-umbral-master-secret","seed":"${seed}"}`;
    assert.throws(
      () => MasterSecret.parse(text, "u.json"),
      (e: unknown) => {
        const shown = `${String(e)} ${String((e as Error).cause)}`;
        return e instanceof KeyFileError && /seed: expected 0x and 64 hex digits/.test(e.message) && !shown.includes(secret.slice(0, 16));
      },
      seed,
    );
  }
});

import assert from "node:assert/strict";
import { test } from "node:test";

import { fromHex, toHex, utf8 } from "../src/bytes.js";
import { aeadOpen, aeadSeal, blake3, cryptoBackends, portablePrimitives } from "../src/primitives.js";

test("Node.js gets the fast backends", () => {
  assert.deepEqual(cryptoBackends(), { blake3: "hash-wasm", aead: "node:crypto" });
});

test("BLAKE3 reproduces the reference test values", () => {
  assert.equal(toHex(blake3(new Uint8Array(0))), "0xaf1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262");
  assert.equal(toHex(blake3(utf8("abc"))), "0x6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85");
});

test("ChaCha20-Poly1305 reproduces RFC 8439's AEAD example (section 2.8.2)", () => {
  const key = Uint8Array.from({ length: 32 }, (_, i) => 0x80 + i);
  const nonce = fromHex("070000004041424344454647", "nonce");
  const aad = fromHex("50515253c0c1c2c3c4c5c6c7", "aad");
  const plaintext = utf8(
    "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.",
  );
  const sealed = aeadSeal(key, nonce, aad, plaintext);
  assert.equal(toHex(sealed.subarray(0, 16)), "0xd31a8d34648e60db7b86afbc53ef7ec2");
  assert.equal(toHex(sealed.subarray(sealed.length - 16)), "0x1ae10b594f09e26a7e902ecbd0600691");
  assert.deepEqual(aeadOpen(key, nonce, aad, sealed), plaintext);
});

test("the fast backends compute what noble's do, and a changed byte does not open", () => {
  const key = crypto.getRandomValues(new Uint8Array(32));
  const nonce = crypto.getRandomValues(new Uint8Array(12));
  const aad = crypto.getRandomValues(new Uint8Array(154));
  for (const size of [0, 1, 63, 64, 1023, 1024, 1025, 65535, 65536]) {
    const data = crypto.getRandomValues(new Uint8Array(size));
    assert.deepEqual(blake3(data), portablePrimitives.blake3(data), `blake3 of ${size} bytes`);
    const sealed = aeadSeal(key, nonce, aad, data);
    assert.deepEqual(sealed, portablePrimitives.aeadSeal(key, nonce, aad, data), `sealing ${size} bytes`);
    assert.deepEqual(aeadOpen(key, nonce, aad, sealed), data);
    const altered = sealed.slice();
    altered[Math.floor(altered.length / 2)]! ^= 1;
    assert.equal(aeadOpen(key, nonce, aad, altered), undefined, `altered ${size} bytes`);
    const otherAad = aad.slice();
    otherAad[0]! ^= 1;
    assert.equal(aeadOpen(key, nonce, otherAad, sealed), undefined);
  }
  assert.equal(aeadOpen(key, nonce, aad, new Uint8Array(15)), undefined);
});

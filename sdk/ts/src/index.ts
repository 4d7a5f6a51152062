/**
 * KMS TypeScript SDK: Alice (grant, revoke), Enrico (signed files, streams and messages) and Bob
 * (retrieve, verify, decrypt, report) of the KMS network, in Node.js and browsers, byte for byte
 * compatible with the Rust client and the `kms` CLI. The formats are in the repository's
 * docs/client.md and docs/node.md; this package's README gives the API by actor.
 */
export * from "./errors.js";
export * from "./bytes.js";
export * from "./abi.js";
export { umbral } from "./umbral.js";
export { cryptoBackends, type CryptoBackends } from "./primitives.js";

// Where the contracts live, the key files, and the policy file Alice hands Bob.
export * from "./deployments.js";
export * from "./keys.js";
export * from "./policy-file.js";
export * from "./policy-id.js";

// Talking to the nodes.
export * from "./http.js";
export * from "./request.js";
export * from "./answer.js";

// Enrico: senders, files and streams (KMSENC02), messages (KMSSES01).
export * from "./sender.js";
export * from "./stream.js";
export * from "./message.js";

// Alice: sampling, grant, revocation.
export * from "./sampling.js";
export * from "./grant.js";
export * from "./revocation.js";

// Bob: retrieval and evidence.
export * from "./retrieve.js";
export * from "./evidence.js";

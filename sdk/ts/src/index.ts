/** KMS TypeScript SDK. */
export * from "./errors.js";
export * from "./bytes.js";
export * from "./abi.js";
export { umbral } from "./umbral.js";

/**
 * Encrypted files (`KMSENC02`, signed; `KMSENC01`, unsigned, read only), byte-compatible with the
 * Rust client's `stream` module. The layout is docs/client.md, "Encrypted file format".
 *
 * Enrico: {@link encryptStream} is a `TransformStream` from plaintext to the whole encrypted file,
 * header first. Bob or Alice: {@link readHeader} (or {@link readHeaderFromStream} for a `fetch`
 * body), then the data key ({@link openDataKeyOriginal}, {@link openDataKeyReencrypted}), then
 * {@link decryptStream}, a `TransformStream` from the payload after the header to the plaintext.
 *
 * Memory is constant whatever the file's size: each side holds one segment (at most 32 chunks of
 * 64 KiB) and the input chunk being copied in. A reader releases a segment's plaintext only once
 * its signature and every tag verified; on a refusal the stream errors with a {@link StreamError}
 * and what was released before is authentic but incomplete: discard it all the same.
 */
import { sha256 } from "@noble/hashes/sha2.js";

import { bytesEqual, concatBytes, readU16, readU32, toHex, u16be, u32be, utf8 } from "./bytes.js";
import { KmsError } from "./errors.js";
import { aeadOpen, aeadSeal, blake3 } from "./primitives.js";
import {
  SENDER_KEY_SIZE,
  SIGNATURE_SIZE,
  type SenderKey,
  type TrustedSenders,
  verifySenderSignature,
} from "./sender.js";
import { umbral } from "./umbral.js";

/** The first 8 bytes of every file this version writes. */
export const MAGIC = "KMSENC02";
/** The magic of the first, unsigned format, read only with `allowUnsigned`. */
export const MAGIC_V1 = "KMSENC01";
/** Plaintext bytes per chunk (the final chunk may be shorter, or empty for an empty payload). */
export const CHUNK_SIZE = 64 * 1024;
/** The Poly1305 tag after each chunk's ciphertext. */
export const TAG_SIZE = 16;
/** A full sealed chunk. */
export const SEALED_CHUNK = CHUNK_SIZE + TAG_SIZE;
/** Bytes of the random nonce prefix in the header. */
export const NONCE_PREFIX_SIZE = 7;
/** Bytes of a data key. */
export const DATA_KEY_SIZE = 32;
/** Bytes of the header's key commitment. */
export const KEY_COMMITMENT_SIZE = 32;
/** The largest capsule or encrypted key a header may declare. */
export const MAX_HEADER_FIELD = 1024;
/** The most chunks per signed segment. */
export const MAX_SEGMENT_CHUNKS = 32;
/** Chunks per segment unless chosen otherwise (1 MiB released at a time). */
export const DEFAULT_SEGMENT_CHUNKS = 16;
/** The record after each segment: `u32` index and the sender's signature. */
export const RECORD_SIZE = 4 + SIGNATURE_SIZE;

const HEADER_SIGNATURE_TAG = utf8("KMSENC02 header");
const SEGMENT_SIGNATURE_TAG = utf8("KMSENC02 segment");
/** Places inside a failing segment tried as the end of a shorter final one (bounds the work). */
const MAX_RECORD_CANDIDATES = 16;

/** The conditions a {@link StreamError} names, as the Rust `StreamError` variants. */
export type StreamErrorCode =
  | "BadMagic"
  | "UnsupportedVersion"
  | "TruncatedHeader"
  | "HeaderField"
  | "BadHeaderSignature"
  | "UntrustedSender"
  | "Unsigned"
  | "Truncated"
  | "Tampered"
  | "Forged"
  | "Reordered"
  | "TrailingData"
  | "WrongKey"
  | "Reencryption"
  | "Umbral"
  | "TooLarge"
  | "BadOption";

/** Where a refusal happened, when it is about a place in the file. */
export interface StreamErrorDetails {
  chunk?: number;
  chunks?: number;
  segment?: number;
  offset?: number;
  unit?: "segment" | "chunk";
  expected?: number;
  found?: number;
  field?: string;
  sender?: string;
  trusted?: string;
}

/** Why a file could not be encrypted or decrypted; `code` matches the Rust client's variant. */
export class StreamError extends KmsError {
  declare readonly code: StreamErrorCode;
  /** The variant's fields (chunk, segment, offset, …). */
  readonly details: StreamErrorDetails;

  constructor(code: StreamErrorCode, message: string, details: StreamErrorDetails = {}, options: { hint?: string; cause?: unknown } = {}) {
    super(code, message, options);
    this.details = details;
  }
}

const errors = {
  truncated: (chunks: number) =>
    new StreamError("Truncated", `the file is truncated: it ends after chunk ${chunks} without its final chunk`, { chunks }, { hint: "get a complete copy" }),
  tampered: (chunk: number, offset: number) =>
    new StreamError("Tampered", `chunk ${chunk} (at byte ${offset} of the file) fails authentication: the file was modified or corrupted inside that chunk`, { chunk, offset }, { hint: "get an intact copy" }),
  forged: (segment: number, offset: number) =>
    new StreamError(
      "Forged",
      `segment ${segment} (at byte ${offset} of the file) is not what the sender signed: its chunks decrypt with the data key, but the sender's signature does not cover them, so someone else who holds the data key (another recipient of the policy) made or changed them, or the segment's signature record was damaged`,
      { segment, offset },
      { hint: "do not trust this file; get it from its sender again" },
    ),
  reordered: (unit: "segment" | "chunk", expected: number, found: number, offset: number) =>
    new StreamError("Reordered", `${unit} ${found} is where ${unit} ${expected} belongs (at byte ${offset} of the file): the file's parts were reordered`, { unit, expected, found, offset }, { hint: "get an intact copy" }),
  trailing: (chunk: number) =>
    new StreamError("TrailingData", `data follows the final chunk ${chunk}: the file was extended after encryption`, { chunk }),
  headerField: (field: string, reason: string) =>
    new StreamError("HeaderField", `the header's ${field} is invalid: ${reason}; the file is corrupted or was not made by kms`, { field }),
};

/** The format version: 1 (`KMSENC01`, unsigned) or 2 (`KMSENC02`, signed). */
export type Version = 1 | 2;

function magicOf(version: Version): string {
  return version === 2 ? MAGIC : MAGIC_V1;
}

/** `sha256("KMSENC0x key commitment" ‖ key)`: tells a wrong key from damage, binds the file to one key. */
export function dataKeyCommitment(version: Version, dataKey: Uint8Array): Uint8Array {
  return sha256(concatBytes(utf8(`${magicOf(version)} key commitment`), dataKey));
}

/** The parsed header of an encrypted file; a signed header's signature was verified on parsing. */
export class Header {
  private constructor(
    /** The format version. */
    readonly version: Version,
    /** The Umbral capsule of the data key, umbral-pre's default serialization. */
    readonly capsuleBytes: Uint8Array,
    /** The data key encrypted under the capsule. */
    readonly encryptedKey: Uint8Array,
    /** The random prefix of every chunk nonce. */
    readonly noncePrefix: Uint8Array,
    /** `sha256("KMSENC0x key commitment" ‖ data key)`. */
    readonly keyCommitment: Uint8Array,
    /** Chunks per signed segment (`undefined` for `KMSENC01`). */
    readonly segmentChunks: number | undefined,
    /** The sender's public key, 33 bytes (`undefined` for `KMSENC01`): trust it only through {@link Header.checkSender}. */
    readonly sender: Uint8Array | undefined,
    /** The header's bytes as written: the associated data of every chunk. */
    readonly headerBytes: Uint8Array,
  ) {}

  /** The header's length: where the payload starts. */
  get length(): number {
    return this.headerBytes.length;
  }

  /** A fresh umbral `Capsule` of the data key (the caller frees it): what Bob sends the nodes. */
  capsule(): umbral.Capsule {
    return umbral.Capsule.fromBytes(this.capsuleBytes);
  }

  /**
   * Whether a reader accepts this file: signed by one of `trusted`, or unsigned and
   * `allowUnsigned`. Returns the sender (or `undefined` for an allowed unsigned file); throws
   * `UntrustedSender` or `Unsigned`. Call it before asking any node for anything.
   */
  checkSender(trusted: TrustedSenders, allowUnsigned = false): Uint8Array | undefined {
    if (this.sender !== undefined) {
      if (trusted.has(this.sender)) return this.sender;
      const sender = toHex(this.sender);
      throw new StreamError(
        "UntrustedSender",
        `the file was encrypted by sender ${sender}, who is not among the trusted senders (${trusted.describe()})`,
        { sender, trusted: trusted.describe() },
        { hint: "if you know this sender, trust its key (or ask the policy's owner to add it to the policy file's senders)" },
      );
    }
    if (allowUnsigned) return undefined;
    throw new StreamError(
      "Unsigned",
      "the file is KMSENC01, an unsigned format: anyone who knows the policy's public key could have made it",
      {},
      { hint: "if you trust its origin, decrypt it with allowUnsigned; to convert it, have its sender encrypt the plaintext again, which signs" },
    );
  }

  /** @internal Builds a header from its parts (parsing and encryption only). */
  static create(fields: {
    version: Version;
    capsuleBytes: Uint8Array;
    encryptedKey: Uint8Array;
    noncePrefix: Uint8Array;
    keyCommitment: Uint8Array;
    segmentChunks: number | undefined;
    sender: Uint8Array | undefined;
    headerBytes: Uint8Array;
  }): Header {
    return new Header(
      fields.version,
      fields.capsuleBytes,
      fields.encryptedKey,
      fields.noncePrefix,
      fields.keyCommitment,
      fields.segmentChunks,
      fields.sender,
      fields.headerBytes,
    );
  }
}

/** A cursor over the bytes of a header being parsed. */
class HeaderCursor {
  at = 0;
  constructor(readonly bytes: Uint8Array) {}

  take(length: number, field: string): Uint8Array {
    if (this.at + length > this.bytes.length) {
      throw new StreamError("TruncatedHeader", `the file ends inside its header (while reading the ${field}): it is truncated`, { field });
    }
    const out = this.bytes.subarray(this.at, this.at + length);
    this.at += length;
    return out;
  }

  lengthPrefixed(field: string): Uint8Array {
    const length = readU32(this.take(4, field), 0);
    if (length < 1 || length > MAX_HEADER_FIELD) {
      throw errors.headerField(field, `declared length ${length}, must be 1 to ${MAX_HEADER_FIELD}`);
    }
    return this.take(length, field);
  }
}

/** Whether `bytes` are a serialized umbral capsule. */
function isCapsule(bytes: Uint8Array): boolean {
  try {
    umbral.Capsule.fromBytes(bytes).free();
    return true;
  } catch {
    return false;
  }
}

/**
 * Parses the header at the front of `bytes` (which may hold more: the payload starts at
 * `header.length`) and verifies a signed header's signature (`BadHeaderSignature`). Throws
 * `TruncatedHeader` when `bytes` end inside the header. Whether its sender is trusted is
 * {@link Header.checkSender}'s question.
 */
export function readHeader(bytes: Uint8Array): Header {
  const cursor = new HeaderCursor(bytes);
  const magicBytes = cursor.take(8, "magic");
  const magic = String.fromCharCode(...magicBytes);
  let version: Version;
  if (magic === MAGIC) version = 2;
  else if (magic === MAGIC_V1) version = 1;
  else if (magic.startsWith("KMSENC")) {
    throw new StreamError("UnsupportedVersion", `encrypted file format ${JSON.stringify(magic)} is not supported by this version (it reads "KMSENC02" and "KMSENC01")`, {}, { hint: "upgrade the SDK" });
  } else {
    throw new StreamError("BadMagic", `not a KMS encrypted file (it starts with ${toHex(magicBytes)}, not "KMSENC02")`, {}, { hint: "encrypt it first" });
  }
  const capsuleBytes = cursor.lengthPrefixed("capsule");
  if (!isCapsule(capsuleBytes)) throw errors.headerField("capsule", "not an Umbral capsule");
  const encryptedKey = cursor.lengthPrefixed("encrypted key");
  const noncePrefix = cursor.take(NONCE_PREFIX_SIZE, "nonce prefix");
  const keyCommitment = cursor.take(KEY_COMMITMENT_SIZE, "key commitment");
  let segmentChunks: number | undefined;
  let sender: Uint8Array | undefined;
  if (version === 2) {
    segmentChunks = readU16(cursor.take(2, "segment size"), 0);
    if (segmentChunks < 1 || segmentChunks > MAX_SEGMENT_CHUNKS) {
      throw errors.headerField("segment size", `${segmentChunks} chunks, must be 1 to ${MAX_SEGMENT_CHUNKS}`);
    }
    sender = cursor.take(SENDER_KEY_SIZE, "sender key");
    if (!isPoint(sender)) throw errors.headerField("sender key", "not a compressed secp256k1 point");
    const signedLength = cursor.at;
    const signature = cursor.take(SIGNATURE_SIZE, "header signature");
    if (!verifySenderSignature(sender, concatBytes(HEADER_SIGNATURE_TAG, bytes.subarray(0, signedLength)), signature)) {
      const hex = toHex(sender);
      throw new StreamError(
        "BadHeaderSignature",
        `the header's signature does not verify under the sender key it names (${hex}): the header was altered, or re-signed by another key`,
        { sender: hex },
        { hint: "do not trust this file; get it from its sender again" },
      );
    }
  }
  // Copies: the header must not change with the caller's buffer, and its bytes are the chunks' AAD.
  return Header.create({
    version,
    capsuleBytes: capsuleBytes.slice(),
    encryptedKey: encryptedKey.slice(),
    noncePrefix: noncePrefix.slice(),
    keyCommitment: keyCommitment.slice(),
    segmentChunks,
    sender: sender?.slice(),
    headerBytes: bytes.slice(0, cursor.at),
  });
}

function isPoint(key: Uint8Array): boolean {
  try {
    umbral.PublicKey.fromCompressedBytes(key).free();
    return true;
  } catch {
    return false;
  }
}

/**
 * Reads the header off the front of `stream` (a `fetch` body, a file stream) and hands back the
 * rest, the payload, for {@link decryptStream}. Reads only as much as the header needs (a few
 * hundred bytes); the bytes of the last read past it are put back at the payload's front.
 */
export async function readHeaderFromStream(stream: ReadableStream<Uint8Array>): Promise<{ header: Header; payload: ReadableStream<Uint8Array> }> {
  const reader = stream.getReader();
  let buffered: Uint8Array = new Uint8Array(0);
  let header: Header | undefined;
  for (;;) {
    try {
      header = readHeader(buffered);
      break;
    } catch (error) {
      if (!(error instanceof StreamError && error.code === "TruncatedHeader")) {
        reader.releaseLock();
        throw error;
      }
      // A declared field length bounds what a header can need: anything longer failed above.
    }
    const { done, value } = await reader.read();
    if (done) {
      reader.releaseLock();
      throw readHeaderError(buffered);
    }
    buffered = concatBytes(buffered, value);
  }
  let rest: Uint8Array | undefined = buffered.subarray(header.length);
  const payload = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        if (rest !== undefined) {
          const first = rest;
          rest = undefined;
          if (first.length > 0) {
            controller.enqueue(first);
            return;
          }
        }
        const { done, value } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
  return { header, payload };
}

/**
 * Browser playback in one call: reads the header off `stream` (e.g. `(await fetch(url)).body`),
 * checks its sender against `trusted` *before* asking `openDataKey` for the key (so no node is
 * asked anything for an untrusted file), then returns the plaintext stream, released segment by
 * segment as each verifies.
 *
 * @example
 * const { plaintext } = await openEncryptedStream(response.body!, trusted, (header) => retrieveKey(header));
 */
export async function openEncryptedStream(
  stream: ReadableStream<Uint8Array>,
  trusted: TrustedSenders,
  openDataKey: (header: Header) => Uint8Array | Promise<Uint8Array>,
  options: { allowUnsigned?: boolean } = {},
): Promise<{ header: Header; plaintext: ReadableStream<Uint8Array> }> {
  const { header, payload } = await readHeaderFromStream(stream);
  try {
    header.checkSender(trusted, options.allowUnsigned ?? false);
    const dataKey = await openDataKey(header);
    return { header, plaintext: payload.pipeThrough(decryptStream(dataKey, header, trusted, options)) };
  } catch (error) {
    await payload.cancel(error).catch(() => undefined);
    throw error;
  }
}

/** The error of a header that ends with its stream. */
function readHeaderError(bytes: Uint8Array): StreamError {
  try {
    readHeader(bytes);
  } catch (error) {
    if (error instanceof StreamError) return error;
  }
  return new StreamError("TruncatedHeader", "the file ends inside its header: it is truncated", { field: "header" });
}

/** The nonce of chunk `counter`: `prefix (7) ‖ u32(counter) ‖ last`. */
function chunkNonce(prefix: Uint8Array, counter: number, last: boolean): Uint8Array {
  const nonce = new Uint8Array(12);
  nonce.set(prefix, 0);
  nonce.set(u32be(counter), NONCE_PREFIX_SIZE);
  nonce[11] = last ? 1 : 0;
  return nonce;
}

/** The data key's cipher, bound to one file's header. */
class ChunkCipher {
  constructor(
    private readonly key: Uint8Array,
    private readonly header: Header,
  ) {}

  seal(chunk: number, last: boolean, plaintext: Uint8Array): Uint8Array {
    if (chunk > 0xffffffff) throw new StreamError("TooLarge", "the payload exceeds the format's limit of 2^32 chunks of 64 KiB", {}, { hint: "split it" });
    return aeadSeal(this.key, chunkNonce(this.header.noncePrefix, chunk, last), this.header.headerBytes, plaintext);
  }

  /** The plaintext if `sealed` is chunk `chunk` with this `last` flag, else `undefined`. */
  open(chunk: number, last: boolean, sealed: Uint8Array): Uint8Array | undefined {
    if (chunk > 0xffffffff || sealed.length < TAG_SIZE) return undefined;
    return aeadOpen(this.key, chunkNonce(this.header.noncePrefix, chunk, last), this.header.headerBytes, sealed);
  }
}

/** What the sender signs for a segment. */
function segmentMessage(headerDigest: Uint8Array, segment: number, last: boolean, digests: Uint8Array[]): Uint8Array {
  return concatBytes(SEGMENT_SIGNATURE_TAG, headerDigest, u32be(segment), new Uint8Array([last ? 1 : 0]), ...digests);
}

/** Where each sealed chunk lies in `payload` bytes of a segment's chunks: all full but the last. */
function chunkRanges(payload: number): Array<[number, number]> {
  const ranges: Array<[number, number]> = [];
  for (let start = 0; start < payload; start += SEALED_CHUNK) ranges.push([start, Math.min(start + SEALED_CHUNK, payload)]);
  return ranges;
}

function digestsOf(sealed: Uint8Array): Uint8Array[] {
  return chunkRanges(sealed.length).map(([start, end]) => blake3(sealed.subarray(start, end)));
}

/** A stored segment of `length` bytes, if it can be one: its chunks' bytes and how many chunks. */
function shape(length: number): { payload: number; chunks: number } | undefined {
  const payload = length - RECORD_SIZE;
  if (payload < 0) return undefined;
  const chunks = Math.ceil(payload / SEALED_CHUNK);
  if (chunks < 1) return undefined;
  const lastChunk = payload - (chunks - 1) * SEALED_CHUNK;
  return lastChunk >= TAG_SIZE ? { payload, chunks } : undefined;
}

/**
 * Collects a byte stream into units of `unitSize` bytes and calls `process(unit, last)` on each:
 * a full unit is processed once a byte past it arrives (or as the last one at the end), so the
 * final unit is always known as such. Holds one unit, whatever the stream's size.
 */
function unitTransform(
  unitSize: number,
  process: (unit: Uint8Array, last: boolean, emit: (bytes: Uint8Array) => void) => void,
  prefix?: Uint8Array,
): TransformStream<Uint8Array, Uint8Array> {
  const buffer = new Uint8Array(unitSize);
  let filled = 0;
  return new TransformStream<Uint8Array, Uint8Array>(
    {
      start(controller) {
        if (prefix !== undefined) controller.enqueue(prefix);
      },
      transform(input, controller) {
        const emit = (bytes: Uint8Array) => controller.enqueue(bytes);
        let offset = 0;
        while (offset < input.length) {
          if (filled === unitSize) {
            process(buffer, false, emit);
            filled = 0;
          }
          const take = Math.min(unitSize - filled, input.length - offset);
          buffer.set(input.subarray(offset, offset + take), filled);
          filled += take;
          offset += take;
        }
      },
      flush(controller) {
        process(buffer.subarray(0, filled), true, (bytes) => controller.enqueue(bytes));
      },
    },
    { highWaterMark: 1 },
    { highWaterMark: 1 },
  );
}

/** What {@link encryptStream} returns: the transform, and the header it writes first. */
export type EncryptStream = TransformStream<Uint8Array, Uint8Array> & { readonly header: Header };

/**
 * Enrico: a `TransformStream` from plaintext to the whole `KMSENC02` file (header first), for a
 * fresh random data key encrypted to `policyPublicKey` (the policy's delegating key) and signed
 * by `sender`. `segmentChunks` (1 to 32, default 16) is what a reader releases at a time, in
 * chunks of 64 KiB. Memory: one segment.
 *
 * @example
 * await file.stream().pipeThrough(encryptStream(policyPk, sender)).pipeTo(destination);
 */
export function encryptStream(policyPublicKey: umbral.PublicKey, sender: SenderKey, options: { segmentChunks?: number } = {}): EncryptStream {
  const segmentChunks = options.segmentChunks ?? DEFAULT_SEGMENT_CHUNKS;
  if (!Number.isInteger(segmentChunks) || segmentChunks < 1 || segmentChunks > MAX_SEGMENT_CHUNKS) {
    throw new StreamError("BadOption", `invalid option: ${segmentChunks} chunks per segment: must be 1 to ${MAX_SEGMENT_CHUNKS}`);
  }
  const dataKey = crypto.getRandomValues(new Uint8Array(DATA_KEY_SIZE));
  const header = signedHeader(policyPublicKey, dataKey, segmentChunks, sender);
  const cipher = new ChunkCipher(dataKey, header);
  const headerDigest = sha256(header.headerBytes);
  let segment = 0;
  const sealSegment = (plaintext: Uint8Array, last: boolean, emit: (bytes: Uint8Array) => void) => {
    if (segment > 0xffffffff) throw new StreamError("TooLarge", "the payload exceeds the format's limit of 2^32 chunks of 64 KiB", {}, { hint: "split it" });
    const firstChunk = segment * segmentChunks;
    const chunks = Math.max(1, Math.ceil(plaintext.length / CHUNK_SIZE));
    const digests: Uint8Array[] = [];
    for (let i = 0; i < chunks; i++) {
      const sealed = cipher.seal(firstChunk + i, last && i + 1 === chunks, plaintext.subarray(i * CHUNK_SIZE, Math.min((i + 1) * CHUNK_SIZE, plaintext.length)));
      digests.push(blake3(sealed));
      emit(sealed);
    }
    emit(concatBytes(u32be(segment), sender.sign(segmentMessage(headerDigest, segment, last, digests))));
    segment += 1;
  };
  // The header goes first, before any plaintext arrives.
  const transform = unitTransform(segmentChunks * CHUNK_SIZE, sealSegment, header.headerBytes.slice());
  return Object.assign(transform, { header });
}

/** The signed header of a new file. */
function signedHeader(policyPublicKey: umbral.PublicKey, dataKey: Uint8Array, segmentChunks: number, sender: SenderKey): Header {
  let capsule: umbral.Capsule;
  let encryptedKey: Uint8Array;
  try {
    [capsule, encryptedKey] = umbral.encrypt(policyPublicKey, dataKey);
  } catch (cause) {
    throw new StreamError("Umbral", `could not encrypt the data key with Umbral: ${String(cause)}`, {}, { cause });
  }
  const capsuleBytes = capsule.toBytes();
  capsule.free();
  const noncePrefix = crypto.getRandomValues(new Uint8Array(NONCE_PREFIX_SIZE));
  const keyCommitment = dataKeyCommitment(2, dataKey);
  const unsigned = concatBytes(
    utf8(MAGIC),
    u32be(capsuleBytes.length),
    capsuleBytes,
    u32be(encryptedKey.length),
    encryptedKey,
    noncePrefix,
    keyCommitment,
    u16be(segmentChunks),
    sender.publicKey(),
  );
  const headerBytes = concatBytes(unsigned, sender.sign(concatBytes(HEADER_SIGNATURE_TAG, unsigned)));
  return Header.create({ version: 2, capsuleBytes, encryptedKey, noncePrefix, keyCommitment, segmentChunks, sender: sender.publicKey(), headerBytes });
}

/** Checks that an opened data key is the header's. */
function committedKey(plaintext: Uint8Array, header: Header): Uint8Array {
  if (plaintext.length !== DATA_KEY_SIZE) throw errors.headerField("encrypted key", `decrypts to ${plaintext.length} bytes, not a ${DATA_KEY_SIZE}-byte key`);
  if (!bytesEqual(dataKeyCommitment(header.version, plaintext), header.keyCommitment)) {
    throw errors.headerField("key commitment", "does not match the encrypted data key");
  }
  return plaintext;
}

/**
 * Alice opens the data key of a file encrypted to her own policy key, with the delegating secret
 * key of the policy's label (no node involved). `WrongKey` if that key does not open it.
 */
export function openDataKeyOriginal(delegatingSk: umbral.SecretKey, header: Header): Uint8Array {
  const capsule = header.capsule();
  let plaintext: Uint8Array;
  try {
    plaintext = umbral.decryptOriginal(delegatingSk, capsule, header.encryptedKey);
  } catch (cause) {
    throw new StreamError("WrongKey", `wrong key: this delegating key does not open the file's data key (${String(cause)})`, {}, { hint: "use the key of the label the file was encrypted to", cause });
  } finally {
    capsule.free();
  }
  return committedKey(plaintext, header);
}

/**
 * Bob opens the data key with his receiving secret key, the policy's delegating public key and at
 * least `threshold` verified cfrags of the header's capsule (the caller keeps owning them).
 */
export function openDataKeyReencrypted(
  receivingSk: umbral.SecretKey,
  delegatingPk: umbral.PublicKey,
  header: Header,
  verifiedCfrags: umbral.VerifiedCapsuleFrag[],
): Uint8Array {
  const capsule = header.capsule();
  let plaintext: Uint8Array;
  try {
    plaintext = umbral.decryptReencrypted(receivingSk, delegatingPk, capsule, verifiedCfrags, header.encryptedKey);
  } catch (cause) {
    const reason = String(cause);
    // umbral-pre's ReencryptionError: OnOpen (the cfrags do not open the capsule) or
    // OnDecryption (they do, but the key is another: wrong receiving or delegating key).
    if (!/on open/i.test(reason)) {
      throw new StreamError("WrongKey", `wrong key: the re-encrypted data key does not decrypt (${reason})`, {}, { hint: "the receiving key or the policy's delegating key is not the one the policy was made with", cause });
    }
    throw new StreamError(
      "Reencryption",
      `the capsule fragments do not open this file's capsule: ${reason}`,
      {},
      { hint: "they must be verified cfrags of this very capsule, at least the policy's threshold of them", cause },
    );
  } finally {
    capsule.free();
  }
  return committedKey(plaintext, header);
}

/**
 * Bob or Alice: a `TransformStream` from the payload that follows `header` (everything after
 * `header.length` bytes) to the plaintext. The sender is checked against `trusted` and the data
 * key against the header's commitment before anything is read (thrown at once); then each
 * segment's plaintext is released only once its signature and tags verified. A refusal errors
 * the stream with a {@link StreamError} (`Tampered`, `Forged`, `Reordered`, `Truncated`,
 * `TrailingData`). `allowUnsigned` also accepts `KMSENC01` files. Memory: one segment.
 */
export function decryptStream(dataKey: Uint8Array, header: Header, trusted: TrustedSenders, options: { allowUnsigned?: boolean } = {}): TransformStream<Uint8Array, Uint8Array> {
  header.checkSender(trusted, options.allowUnsigned ?? false);
  if (dataKey.length !== DATA_KEY_SIZE || !bytesEqual(dataKeyCommitment(header.version, dataKey), header.keyCommitment)) {
    throw new StreamError("WrongKey", "wrong key: this data key is not the one the file was encrypted with");
  }
  const cipher = new ChunkCipher(dataKey, header);
  if (header.segmentChunks === undefined || header.sender === undefined) return v1Transform(cipher, header.length);
  const reader = new SegmentReader(cipher, sha256(header.headerBytes), header.sender, header.segmentChunks, header.length);
  let segment = 0;
  return unitTransform(header.segmentChunks * SEALED_CHUNK + RECORD_SIZE, (unit, last, emit) => {
    // Opened into fresh buffers: the unit buffer is reused for the next segment.
    for (const plaintext of reader.open(unit, segment, last)) emit(plaintext);
    segment += 1;
  });
}

/** Checks and opens the segments of a signed payload. */
class SegmentReader {
  constructor(
    private readonly cipher: ChunkCipher,
    private readonly headerDigest: Uint8Array,
    private readonly sender: Uint8Array,
    private readonly segmentChunks: number,
    private readonly headerLength: number,
  ) {}

  /** The plaintexts of segment `segment`'s chunks, or the refusal: nothing opened unless signed. */
  open(unit: Uint8Array, segment: number, last: boolean): Uint8Array[] {
    const firstChunk = segment * this.segmentChunks;
    const found = shape(unit.length);
    if (found !== undefined) {
      const digests = digestsOf(unit.subarray(0, found.payload));
      if (recordIndex(unit, found.payload) === segment && this.signed(unit, found.payload, digests, segment, last)) {
        const ranges = chunkRanges(found.payload);
        return ranges.map(([start, end], i) => {
          const plaintext = this.cipher.open(firstChunk + i, last && i + 1 === ranges.length, unit.subarray(start, end));
          // Signed, yet not sealed as its place says: the sender's own doing.
          if (plaintext === undefined) throw errors.tampered(firstChunk + i, this.offset(segment, start));
          return plaintext;
        });
      }
    }
    throw this.diagnose(unit, segment, last);
  }

  private signed(unit: Uint8Array, payload: number, digests: Uint8Array[], segment: number, last: boolean): boolean {
    if (segment > 0xffffffff) return false;
    const signature = unit.subarray(payload + 4, payload + RECORD_SIZE);
    return verifySenderSignature(this.sender, segmentMessage(this.headerDigest, segment, last, digests), signature);
  }

  private offset(segment: number, at: number): number {
    return this.headerLength + segment * (this.segmentChunks * SEALED_CHUNK + RECORD_SIZE) + at;
  }

  /** Why a segment failed (the error path only: it tries the other explanations in turn). */
  private diagnose(unit: Uint8Array, segment: number, atEnd: boolean): StreamError {
    const firstChunk = segment * this.segmentChunks;
    const found = shape(unit.length);
    let recordHere = false;
    if (found !== undefined) {
      // The record where the structure puts it, signed for another place.
      const digests = digestsOf(unit.subarray(0, found.payload));
      const index = recordIndex(unit, found.payload);
      recordHere = index === segment;
      const candidates: Array<[number, boolean]> = [
        [segment, !atEnd],
        [index, atEnd],
        [index, !atEnd],
      ];
      for (const [candidate, last] of candidates) {
        if ((candidate === segment && last === atEnd) || !this.signed(unit, found.payload, digests, candidate, last)) continue;
        if (candidate !== segment) return errors.reordered("segment", segment, candidate, this.offset(segment, 0));
        // Signed as a middle segment, and nothing follows it; or signed final, and more follows.
        return atEnd ? errors.truncated(firstChunk + found.chunks) : errors.trailing(firstChunk + found.chunks - 1);
      }
    }
    const within = this.finalSegmentWithin(unit, segment);
    if (within !== undefined) return errors.trailing(firstChunk + within - 1);
    // Chunk by chunk: where the structure puts them, or as many full chunks as there are.
    const ranges = chunkRanges(found !== undefined ? found.payload : unit.length);
    for (const [i, [start, end]] of ranges.entries()) {
      const chunk = firstChunk + i;
      const last = atEnd && found !== undefined && i + 1 === ranges.length;
      const sealed = unit.subarray(start, end);
      if (this.cipher.open(chunk, last, sealed) !== undefined) continue;
      const misplaced = this.misplaced(sealed, chunk, segment, last, start);
      if (misplaced !== undefined) return misplaced;
      if (atEnd && !recordHere) {
        // The file ends inside this segment, before its record: cut off. A full chunk whose end
        // was taken for a record is complete.
        const rest = unit.subarray(start);
        const whole = rest.length === SEALED_CHUNK && this.cipher.open(chunk, false, rest) !== undefined;
        return errors.truncated(chunk + (whole ? 1 : 0));
      }
      return errors.tampered(chunk, this.offset(segment, start));
    }
    if (found === undefined) return errors.truncated(firstChunk + ranges.length);
    // Every chunk opens with the data key, yet the sender did not sign them.
    return errors.forged(segment, this.offset(segment, 0));
  }

  /** Whether a chunk that does not open at its place is another chunk of its segment, or itself with the other final flag. */
  private misplaced(sealed: Uint8Array, chunk: number, segment: number, last: boolean, at: number): StreamError | undefined {
    const first = segment * this.segmentChunks;
    for (let other = first; other < first + this.segmentChunks; other++) {
      for (const flag of [false, true]) {
        if ((other === chunk && flag === last) || this.cipher.open(other, flag, sealed) === undefined) continue;
        if (other !== chunk) return errors.reordered("chunk", chunk, other, this.offset(segment, at));
        return flag ? errors.trailing(chunk) : errors.truncated(chunk + 1);
      }
    }
    return undefined;
  }

  /** If `unit` starts with a complete final segment shorter than itself (data appended), how many chunks it has. */
  private finalSegmentWithin(unit: Uint8Array, segment: number): number | undefined {
    if (segment > 0xffffffff) return undefined;
    const index = u32be(segment);
    const end = unit.length - RECORD_SIZE;
    let tried = 0;
    for (let payload = TAG_SIZE; payload < end && tried < MAX_RECORD_CANDIDATES; payload++) {
      if (!bytesEqual(unit.subarray(payload, payload + 4), index)) continue;
      const candidate = shape(payload + RECORD_SIZE);
      if (candidate === undefined) continue;
      tried += 1;
      if (this.signed(unit, candidate.payload, digestsOf(unit.subarray(0, candidate.payload)), segment, true)) return candidate.chunks;
    }
    return undefined;
  }
}

function recordIndex(unit: Uint8Array, payload: number): number {
  return readU32(unit, payload);
}

/** `KMSENC01`: chunks only, each released once its tag verified. */
function v1Transform(cipher: ChunkCipher, headerLength: number): TransformStream<Uint8Array, Uint8Array> {
  let chunk = 0;
  return unitTransform(SEALED_CHUNK, (sealed, last, emit) => {
    const offset = headerLength + chunk * SEALED_CHUNK;
    if (sealed.length < TAG_SIZE) {
      // Not even a tag: the stream was cut at (or just after) a chunk boundary.
      throw sealed.length === 0 ? errors.truncated(chunk) : errors.tampered(chunk, offset);
    }
    const opened = cipher.open(chunk, last, sealed);
    if (opened === undefined) {
      if (last) {
        // A full chunk sealed as a middle one: what followed it was cut off.
        if (sealed.length === SEALED_CHUNK && cipher.open(chunk, false, sealed) !== undefined) throw errors.truncated(chunk + 1);
      } else if (cipher.open(chunk, true, sealed) !== undefined) {
        throw errors.trailing(chunk);
      }
      throw errors.tampered(chunk, offset);
    }
    emit(opened);
    chunk += 1;
  });
}

/** Everything a stream yields, concatenated (small payloads and tests). */
export async function collectStream(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return concatBytes(...parts);
    parts.push(value);
  }
}

/** A stream of `bytes` in pieces of `pieceSize` (default: all at once). */
export function streamOfBytes(bytes: Uint8Array, pieceSize = bytes.length || 1): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (offset >= bytes.length) {
        controller.close();
        return;
      }
      controller.enqueue(bytes.slice(offset, offset + pieceSize));
      offset += pieceSize;
    },
  });
}

/** Encrypts a whole byte array in memory ({@link encryptStream} for anything large). */
export async function encryptBytes(policyPublicKey: umbral.PublicKey, sender: SenderKey, plaintext: Uint8Array, options: { segmentChunks?: number } = {}): Promise<Uint8Array> {
  return collectStream(streamOfBytes(plaintext).pipeThrough(encryptStream(policyPublicKey, sender, options)));
}

/** Decrypts a whole encrypted file in memory, header included ({@link decryptStream} for anything large). */
export async function decryptBytes(dataKey: Uint8Array, file: Uint8Array, trusted: TrustedSenders, options: { allowUnsigned?: boolean } = {}): Promise<Uint8Array> {
  const header = readHeader(file);
  return collectStream(streamOfBytes(file.subarray(header.length)).pipeThrough(decryptStream(dataKey, header, trusted, options)));
}

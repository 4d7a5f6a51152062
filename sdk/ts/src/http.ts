/**
 * The client of the nodes' HTTP API (`docs/node.md`), with the Rust client's timeouts and retries
 * (`docs/client.md` "HTTP", `crates/kms-client/src/http.rs`).
 *
 * TLS: a node URL pinned to its certificate (`https://…#tls-sha256=…`) is reached, in Node.js,
 * over TLS accepting exactly the certificate whose SHA-256 (of the DER leaf) is the pin: undici's
 * `Agent` with a `connect` that opens the socket with `node:tls` (`rejectUnauthorized: false`,
 * the pin replaces the certificate authorities; the handshake's signatures are still checked
 * against the presented key by TLS itself) and compares the fingerprint before handing the socket
 * to undici. Other `https://` URLs are verified against the web PKI. Browsers cannot pin: there a
 * pinned URL is refused (the node needs a CA-issued certificate, or plain HTTP on a devnet).
 * Plain `http://` is refused unless {@link NodeClientOptions.allowPlainHttp}. Node-only modules
 * are imported dynamically, so a browser bundle does not pull them in.
 */
import { bytesEqual, concatBytes, toHex } from "./bytes.js";
import { KmsError } from "./errors.js";
import { certificateFingerprint, parseNodeUrl, type NodeUrl } from "./policy-file.js";
import { RequestClock } from "./request.js";
import { importNodeOnly } from "./node-only.js";

/** Timeouts and retries of node requests (defaults: the Rust `HttpConfig`'s). */
export interface NodeClientOptions {
  /** Longest wait for a TCP (and TLS) connection, ms (Node.js only). Default 5000. */
  connectTimeoutMs?: number;
  /** Longest wait for a whole request, answer included, ms. Default 30000. */
  requestTimeoutMs?: number;
  /** Attempts per request, the first included (at least 1). Default 3. */
  attempts?: number;
  /** Wait before the first retry, ms; doubled before each further one. Default 250. */
  backoffMs?: number;
  /** Whether plain `http://` node URLs may be used (a devnet's). Default false. */
  allowPlainHttp?: boolean;
}

/** What {@link NodeError} says happened. */
export type NodeErrorCode =
  /** Could not be reached, or did not answer in time. */
  | "Unreachable"
  /** Answered with an error status (`status`, and the node's `{"error": reason}`). */
  | "Refused"
  /** The answer is not what the API specifies. */
  | "InvalidAnswer"
  /** The node presented another certificate than its URL pins (not retried). */
  | "Certificate"
  /** The URL is not usable (bad fragment, plain HTTP not allowed, a pin in a browser). */
  | "BadUrl"
  /** The caller aborted the request. */
  | "Aborted";

/** Why a node request failed (after the retries). */
export class NodeError extends KmsError {
  declare readonly code: NodeErrorCode;
  /** The node's URL as given. */
  readonly url: string;
  /** The HTTP status of a `Refused`. */
  readonly status: number | undefined;
  /** The node's reason (`{"error": …}`) of a `Refused`, or what went wrong otherwise. */
  readonly reason: string;
  /** The node's `Retry-After`, in seconds, if it sent one. */
  readonly retryAfterSecs: number | undefined;

  constructor(
    code: NodeErrorCode,
    url: string,
    reason: string,
    extra: { status?: number; retryAfterSecs?: number; cause?: unknown } = {},
  ) {
    const what =
      code === "Refused"
        ? `refused with HTTP ${extra.status}: ${reason}`
        : code === "Unreachable"
          ? `unreachable: ${reason}`
          : code === "InvalidAnswer"
            ? `invalid answer: ${reason}`
            : code === "Certificate"
              ? `TLS: ${reason}`
              : code === "BadUrl"
                ? `bad node URL ${JSON.stringify(url)}: ${reason}`
                : `aborted: ${reason}`;
    super(code, what, { cause: extra.cause });
    this.url = url;
    this.reason = reason;
    this.status = extra.status;
    this.retryAfterSecs = extra.retryAfterSecs;
  }

  /** Whether another attempt may succeed: unreachable, a 5xx, or a 429 (a quota that refills). */
  get transient(): boolean {
    if (this.code === "Unreachable") return true;
    if (this.code === "Refused") return this.status! >= 500 || this.status === 429;
    return false;
  }
}

/**
 * The largest answer read from a node, in bytes: far above any the API gives (64 cfrags with
 * their signatures are about 60 KB), so that a hostile node cannot fill Bob's memory by streaming
 * an endless body.
 */
export const MAX_ANSWER_BYTES = 16 * 1024 * 1024;

/** The body as text, refusing one longer than `limit` bytes as soon as it passes it. */
async function readBounded(response: Response, limit: number, url: string): Promise<string> {
  if (!response.body) return "";
  const reader = response.body.getReader();
  const parts: Uint8Array[] = [];
  let length = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    length += value.length;
    if (length > limit) {
      await reader.cancel().catch(() => undefined);
      throw new NodeError("InvalidAnswer", url, `the answer exceeds ${limit} bytes`);
    }
    parts.push(value);
  }
  return new TextDecoder().decode(concatBytes(...parts));
}

/** The longest `Retry-After` a retry waits for, ms: a node that asks for more is reported instead. */
export const MAX_RETRY_AFTER_MS = 10_000;
/** What a node that does not advertise `maxCapsulesPerRequest` takes (the nodes' default). */
export const DEFAULT_MAX_CAPSULES_PER_REQUEST = 64;
/** What a pin mismatch says (the Rust client's words). */
const PIN_MISMATCH = "the node's certificate is not the one its URL pins";

/** `GET /v1/node`: who the node says it is. */
export interface NodeInfo {
  staker: `0x${string}`;
  worker: `0x${string}`;
  umbralPublicKey: `0x${string}`;
  chainId: number;
  version: string;
  /** The most capsules one re-encryption request may carry (64 for nodes older than the field). */
  maxCapsulesPerRequest: number;
}

/** One signed cfrag of a re-encryption answer, as the node sends it. */
export interface SignedCFragBody {
  /** Base64 of the `VerifiedCapsuleFrag`'s default serialization. */
  cfrag: string;
  /** `0x` + the worker's 65-byte signature `r ‖ s ‖ v`. */
  signature: string;
  /** The period the node answered in. */
  period: number;
}

/** The body Bob posts to `/v1/policies/{id}/reencrypt` (see `request.ts`). */
export interface ReencryptRequestBody {
  capsules: string[];
  timestamp: number;
  nonce: string;
  signature: string;
}

/** Per-request options. */
export interface RequestOptions {
  /** Aborts the request (and its retries). */
  signal?: AbortSignal;
  /** Makes further refusals worth a retry (e.g. uploads retry a 404). */
  retryAlso?: (error: NodeError) => boolean;
}

/** How one attempt goes out: a fetch function and the URL. */
type Fetcher = (target: string, init: RequestInit) => Promise<Response>;

const isNode = typeof process !== "undefined" && typeof process.versions?.node === "string";

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** The message with its chain of causes (fetch's own stops at "fetch failed"). */
function withCauses(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current !== undefined && current !== null && depth < 6; depth++) {
    const message = current instanceof Error ? current.message : String(current);
    if (message && !parts.includes(message)) parts.push(message);
    current = current instanceof Error ? current.cause : undefined;
  }
  return parts.join(": ");
}


/** The pin mismatch error raised inside `connect`, found again in fetch's causes. */
class PinMismatch extends Error {}

function findPinMismatch(error: unknown): PinMismatch | undefined {
  let current: unknown = error;
  for (let depth = 0; current instanceof Error && depth < 6; depth++) {
    if (current instanceof PinMismatch) return current;
    current = current.cause;
  }
  return undefined;
}

/**
 * A client of the nodes' HTTP API. One per application: it keeps a connection pool per pin and
 * what each node advertised (its capsule limit).
 */
export class NodeClient {
  readonly connectTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly attempts: number;
  readonly backoffMs: number;
  readonly allowPlainHttp: boolean;
  /** The timestamps of this client's re-encryption requests (strictly increasing per policy, node and capsules). */
  readonly clock = new RequestClock();
  /** Fetchers of pinned URLs, by pin (hex); and the unpinned one (key ""). */
  readonly #fetchers = new Map<string, Promise<Fetcher>>();
  readonly #capsuleLimits = new Map<string, number>();

  constructor(options: NodeClientOptions = {}) {
    this.connectTimeoutMs = options.connectTimeoutMs ?? 5_000;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
    this.attempts = Math.max(1, options.attempts ?? 3);
    this.backoffMs = options.backoffMs ?? 250;
    this.allowPlainHttp = options.allowPlainHttp ?? false;
  }

  /** The fetch function and full URL of `path` at the node at `url`. */
  async #route(url: string, path: string): Promise<[Fetcher, string]> {
    let parsed: NodeUrl;
    try {
      parsed = parseNodeUrl(url);
    } catch (error) {
      throw new NodeError("BadUrl", url, (error as Error).message);
    }
    if (parsed.plainHttp && !this.allowPlainHttp) {
      throw new NodeError(
        "BadUrl",
        url,
        "plain http:// is refused: a node serves https:// (on a devnet's plain-HTTP nodes, pass allowPlainHttp: true to NodeClient)",
      );
    }
    const target = `${parsed.base.replace(/\/+$/, "")}${path}`;
    if (parsed.pin && !isNode) {
      throw new NodeError(
        "BadUrl",
        url,
        "the node's URL pins a self-signed certificate, which a browser cannot check: the node needs a " +
          "certificate issued by a certificate authority for its host name (`kms node init --tls ca`), " +
          "or plain HTTP on a devnet (`kms devnet --plain-http`, and allowPlainHttp: true)",
      );
    }
    const key = parsed.pin ? toHex(parsed.pin) : "";
    let fetcher = this.#fetchers.get(key);
    if (!fetcher) {
      fetcher = isNode ? this.#nodeFetcher(parsed.pin) : Promise.resolve((t: string, init: RequestInit) => fetch(t, init));
      this.#fetchers.set(key, fetcher);
      fetcher.catch(() => this.#fetchers.delete(key));
    }
    return [await fetcher, target];
  }

  /** In Node.js: undici's fetch through an Agent, pinned to `pin` when given. */
  async #nodeFetcher(pin: Uint8Array | undefined): Promise<Fetcher> {
    const undici = await importNodeOnly<typeof import("undici")>("undici");
    const connectTimeout = this.connectTimeoutMs;
    let agent: InstanceType<typeof undici.Agent>;
    if (!pin) {
      agent = new undici.Agent({ connect: { timeout: connectTimeout } });
    } else {
      const tls = await importNodeOnly<typeof import("node:tls")>("node:tls");
      const net = await importNodeOnly<typeof import("node:net")>("node:net");
      agent = new undici.Agent({
        connect: (options, callback) => {
          const host = options.hostname;
          const socket = tls.connect({
            host,
            port: Number(options.port) || 443,
            // SNI is for host names only (an IP address there is refused by some servers).
            servername: net.isIP(host) ? undefined : (options.servername ?? host),
            rejectUnauthorized: false,
            ALPNProtocols: ["http/1.1"],
          });
          let done = false;
          const finish = (error: Error | null) => {
            if (done) return;
            done = true;
            clearTimeout(timer);
            if (error) {
              socket.destroy();
              callback(error, null);
            } else {
              callback(null, socket);
            }
          };
          const timer = setTimeout(
            () => finish(new Error(`connect timeout after ${connectTimeout} ms`)),
            connectTimeout,
          );
          socket.once("secureConnect", () => {
            const der = socket.getPeerCertificate(false)?.raw;
            const presented = der ? certificateFingerprint(new Uint8Array(der)) : new Uint8Array();
            if (!bytesEqual(presented, pin)) {
              finish(
                new PinMismatch(
                  `${PIN_MISMATCH} (pinned sha256 ${toHex(pin).slice(2)}, presented ${
                    der ? toHex(presented).slice(2) : "no certificate"
                  }): a man in the middle, or a node that changed its certificate; check the node ` +
                    "record (`kms network status`) and ask the policy's owner for a fresh policy file",
                ),
              );
              return;
            }
            finish(null);
          });
          socket.once("error", (error) => finish(error));
        },
      });
    }
    return (target, init) =>
      undici.fetch(target, { ...(init as object), dispatcher: agent } as Parameters<typeof undici.fetch>[1]) as unknown as Promise<Response>;
  }

  /** One attempt: sends, and decodes a 2xx answer as JSON, anything else as the node's `{"error"}`. */
  async #once<T>(url: string, method: string, path: string, body: unknown, signal: AbortSignal | undefined): Promise<[number, T]> {
    const [fetcher, target] = await this.#route(url, path);
    const timeout = AbortSignal.timeout(this.requestTimeoutMs);
    const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
    let response: Response;
    let text: string;
    try {
      response = await fetcher(target, {
        method,
        headers: body === undefined ? { accept: "application/json" } : { "content-type": "application/json", accept: "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
        // Never followed: a redirect would leave the pinned or https URL for one the caller did
        // not choose (plain http:// included), and the API has none.
        redirect: "manual",
        signal: combined,
      });
      text = await readBounded(response, MAX_ANSWER_BYTES, url);
    } catch (error) {
      if (error instanceof NodeError) throw error;
      if (signal?.aborted) throw new NodeError("Aborted", url, withCauses(signal.reason), { cause: error });
      const mismatch = findPinMismatch(error);
      if (mismatch) throw new NodeError("Certificate", url, mismatch.message, { cause: error });
      if (timeout.aborted) throw new NodeError("Unreachable", url, `no answer within ${this.requestTimeoutMs} ms`, { cause: error });
      throw new NodeError("Unreachable", url, withCauses(error), { cause: error });
    }
    const status = response.status;
    if (response.type === "opaqueredirect" || (status >= 300 && status < 400)) {
      const location = response.headers.get("location");
      throw new NodeError("InvalidAnswer", url, `HTTP ${status}: the node redirects${location ? ` to ${location.slice(0, 200)}` : ""}, which is not followed`);
    }
    if (status >= 200 && status < 300) {
      try {
        return [status, JSON.parse(text) as T];
      } catch (error) {
        throw new NodeError("InvalidAnswer", url, `HTTP ${status}: ${(error as Error).message}`);
      }
    }
    let reason = text.slice(0, 200);
    try {
      const parsed = JSON.parse(text) as unknown;
      if (parsed && typeof parsed === "object" && typeof (parsed as { error?: unknown }).error === "string") {
        reason = (parsed as { error: string }).error;
      }
    } catch {
      // Not the API's error body: keep the start of the text.
    }
    const retryAfter = response.headers.get("retry-after");
    const retryAfterSecs = retryAfter && /^\s*\d+\s*$/.test(retryAfter) ? Number(retryAfter.trim()) : undefined;
    throw new NodeError("Refused", url, reason, { status, retryAfterSecs });
  }

  /**
   * Runs `attempt` until it succeeds, fails for good, or the attempts are spent; waits the
   * backoff, doubling, between attempts, or the node's `Retry-After` when longer (at most 10 s).
   */
  async #retrying<T>(options: RequestOptions, attempt: () => Promise<T>): Promise<T> {
    let backoff = this.backoffMs;
    for (let tried = 1; ; tried++) {
      try {
        return await attempt();
      } catch (error) {
        if (!(error instanceof NodeError)) throw error;
        const again = error.transient || (options.retryAlso?.(error) ?? false);
        if (tried >= this.attempts || !again) throw error;
        const after = error.retryAfterSecs === undefined ? 0 : Math.min(error.retryAfterSecs * 1000, MAX_RETRY_AFTER_MS);
        try {
          await sleep(Math.max(backoff, after), options.signal);
        } catch (reason) {
          throw new NodeError("Aborted", error.url, withCauses(reason), { cause: error });
        }
        backoff *= 2;
      }
    }
  }

  /** `GET {url}{path}`, its JSON answer; retried on connection errors, timeouts, 429 and 5xx. */
  async getJson<T>(url: string, path: string, options: RequestOptions = {}): Promise<T> {
    return this.#retrying(options, async () => (await this.#once<T>(url, "GET", path, undefined, options.signal))[1]);
  }

  /**
   * `POST {url}{path}` with the JSON `body`; returns the status and the JSON answer. Retried as
   * {@link getJson} (and on what `options.retryAlso` accepts, e.g. an upload's 404).
   */
  async postJson<T>(url: string, path: string, body: unknown, options: RequestOptions = {}): Promise<{ status: number; body: T }> {
    return this.#retrying(options, async () => {
      const [status, answer] = await this.#once<T>(url, "POST", path, body, options.signal);
      return { status, body: answer };
    });
  }

  /** `GET {url}/v1/node`: who the node says it is, checked. */
  async node(url: string, options: RequestOptions = {}): Promise<NodeInfo> {
    const raw = await this.getJson<Record<string, unknown>>(url, "/v1/node", options);
    const bad = (field: string) => new NodeError("InvalidAnswer", url, `GET /v1/node: field \`${field}\` is missing or malformed`);
    const hexField = (field: string, bytes: number) => {
      const value = raw[field];
      if (typeof value !== "string" || !new RegExp(`^0x[0-9a-fA-F]{${2 * bytes}}$`).test(value)) throw bad(field);
      return value as `0x${string}`;
    };
    const limit = raw.maxCapsulesPerRequest ?? DEFAULT_MAX_CAPSULES_PER_REQUEST;
    if (typeof limit !== "number" || !Number.isSafeInteger(limit) || limit < 0) throw bad("maxCapsulesPerRequest");
    if (typeof raw.chainId !== "number" || !Number.isSafeInteger(raw.chainId)) throw bad("chainId");
    return {
      staker: hexField("staker", 20),
      worker: hexField("worker", 20),
      umbralPublicKey: hexField("umbralPublicKey", 33),
      chainId: raw.chainId,
      version: typeof raw.version === "string" ? raw.version : "",
      maxCapsulesPerRequest: limit,
    };
  }

  /** The limit the node at `url` advertised, if this client asked it already. */
  knownCapsuleLimit(url: string): number | undefined {
    return this.#capsuleLimits.get(url);
  }

  /** Asks the node at `url` its capsule limit again and remembers it (`undefined` if it does not answer). */
  async refreshCapsuleLimit(url: string, options: RequestOptions = {}): Promise<number | undefined> {
    try {
      const info = await this.node(url, options);
      // At least one: a node advertising 0 would make no progress possible anyway.
      const limit = Math.max(1, info.maxCapsulesPerRequest);
      this.#capsuleLimits.set(url, limit);
      return limit;
    } catch {
      return undefined;
    }
  }

  /**
   * The most capsules the node at `url` takes in one re-encryption request (asked once per
   * client and URL); the nodes' default, not remembered, when it cannot be asked.
   */
  async capsuleLimit(url: string, options: RequestOptions = {}): Promise<number> {
    return this.knownCapsuleLimit(url) ?? (await this.refreshCapsuleLimit(url, options)) ?? DEFAULT_MAX_CAPSULES_PER_REQUEST;
  }

  /**
   * `POST {url}/v1/policies/{policyId}/reencrypt` with the body `sign()` builds: each attempt is
   * signed anew (a later timestamp, a fresh nonce); a 409 (replay) is retried too. Returns the
   * node's cfrags, one per capsule asked (the count is the caller's to check).
   */
  async reencrypt(
    url: string,
    policyId: string,
    sign: () => ReencryptRequestBody,
    options: RequestOptions = {},
  ): Promise<SignedCFragBody[]> {
    const path = `/v1/policies/${policyId.toLowerCase()}/reencrypt`;
    const retryAlso = (e: NodeError) => (e.code === "Refused" && e.status === 409) || (options.retryAlso?.(e) ?? false);
    return this.#retrying({ ...options, retryAlso }, async () => {
      const [, answer] = await this.#once<{ cfrags?: unknown }>(url, "POST", path, sign(), options.signal);
      if (!answer || !Array.isArray(answer.cfrags)) throw new NodeError("InvalidAnswer", url, "the answer has no `cfrags` list");
      return answer.cfrags.map((entry, i) => {
        const e = entry as Partial<SignedCFragBody> | null;
        if (!e || typeof e.cfrag !== "string" || typeof e.signature !== "string" || typeof e.period !== "number" || !Number.isSafeInteger(e.period) || e.period < 0) {
          throw new NodeError("InvalidAnswer", url, `cfrags[${i}] is not {cfrag, signature, period}`);
        }
        return { cfrag: e.cfrag, signature: e.signature, period: e.period };
      });
    });
  }
}

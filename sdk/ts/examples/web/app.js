// SPDX-License-Identifier: GPL-3.0-or-later
// The demo page (index.html): Bob retrieves and decrypts a file as it streams, Alice grants a
// policy. Bundled with the SDK's sources by scripts/bundle.mjs (`bundleDemo`) into dist/app.js.
//
// URL parameters (all optional; the test drives the page with them):
//   policy=URL  key=URL  file=URL   Bob's policy file, his umbral.json, the encrypted file
//                                   (policy and key: this page's origin only, see textOf)
//   mime=TYPE                       play the decrypted stream through MediaSource as TYPE
//   auto=1                          start retrieving at load
// `window.kmsDemo` holds the state for scripts: { state, result, error }.
import { createPublicClient, createWalletClient, http } from "viem";
import { sha256 } from "@noble/hashes/sha2.js";
import { privateKeyToAccount } from "viem/accounts";
// The package's public API (src/index.ts), as an application imports "@kms/sdk".
import {
  umbral, loadDeployment, parsePolicyFile, policyFileToJson, MasterSecret, publicKeyBytes,
  readHeaderFromStream, openDataKeyReencrypted, decryptStream, TrustedSenders, toHex, fromHex,
  retrieve, NodeClient, planGrant, executeGrant,
} from "../../src/index.js";

const $ = (id) => document.getElementById(id);
const field = (name, text) => {
  for (const e of document.querySelectorAll(`[data-field="${name}"]`)) e.textContent = text;
};
const params = new URLSearchParams(location.search);
const demo = { state: "idle", result: undefined, error: undefined };
window.kmsDemo = demo;

function log(text, isError = false) {
  const item = document.createElement("li");
  item.textContent = `${new Date().toISOString().slice(11, 23)} ${text}`;
  if (isError) item.className = "error";
  $("log").append(item);
  item.scrollIntoView({ block: "nearest" });
  (isError ? console.error : console.log)(text);
}

/** A KmsError's code and message, or any error's message. */
function describe(error) {
  return error?.code ? `${error.code}: ${error.message}` : String(error?.message ?? error);
}

const mib = (bytes) => `${(bytes / 1048576).toFixed(2)} MiB`;

// The chain: /config.json (written by scripts/serve.mjs) names the RPC and the deployments file.
const chainReady = (async () => {
  const config = await (await fetch("/config.json")).json();
  if (!config.rpc || !config.deployments) throw new Error("the server was started without --rpc and --deployments");
  const deployment = await loadDeployment(new URL(config.deployments, location.href));
  const chain = {
    id: Number(deployment.chainId),
    name: `KMS chain ${deployment.chainId}`,
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [config.rpc] } },
  };
  const publicClient = createPublicClient({ chain, transport: http(config.rpc) });
  field("chain", `${config.rpc}, chain id ${deployment.chainId}, policy manager ${deployment.policyManager}`);
  // Plain http:// nodes are the devnet's (--plain-http): a browser cannot check a pinned
  // self-signed certificate, and a real network's nodes have CA-issued ones.
  const nodeClient = new NodeClient({ allowPlainHttp: true });
  return { config, deployment, chain, publicClient, nodeClient };
})();
chainReady.catch((e) => {
  field("chain", `unavailable: ${describe(e)}`);
  log(`chain: ${describe(e)}`, true);
});

/**
 * The text of a chosen file, else of the URL parameter `param`, else undefined. The parameter
 * must name a file of this page's origin: the policy file is Bob's trust root (its nodes, its
 * senders, Alice's verifying key), and a link to this page must not be able to substitute a
 * stranger's (with auto=1, before Bob has chosen anything).
 */
async function textOf(input, param) {
  const file = $(input).files?.[0];
  if (file) return { text: await file.text(), source: file.name };
  const url = params.get(param);
  if (!url) return undefined;
  if (new URL(url, location.href).origin !== location.origin) {
    throw new Error(`the ${param} parameter must be a URL of this page's origin (${location.origin}), not ${url}: choose the file instead`);
  }
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url}: HTTP ${response.status}`);
  return { text: await response.text(), source: url };
}

/** The encrypted file as a stream and its size (for the progress bar), from the file input or a URL. */
async function encryptedStream() {
  const file = $("enc-file").files?.[0];
  if (file) return { stream: file.stream(), size: file.size, name: file.name };
  const url = $("enc-url").value.trim() || params.get("file");
  if (!url) throw new Error("choose the encrypted file, or give its URL");
  const response = await fetch(url);
  if (!response.ok || !response.body) throw new Error(`GET ${url}: HTTP ${response.status}`);
  // A compressed response's content-length counts the compressed bytes, not the body's.
  const size = response.headers.has("content-encoding") ? 0 : Number(response.headers.get("content-length")) || 0;
  return { stream: response.body, size, name: url };
}

/**
 * Where decrypted chunks go as they arrive: a MediaSource SourceBuffer when the type is playable
 * that way, and always a Blob (download, or playback from the Blob when MediaSource cannot take
 * the stream). The Blob is offered by design, so the whole plaintext is kept, but not in the JS
 * heap: every 8 MiB the pieces become a Blob of their own, which the browser's blob storage holds
 * (and pages to disk when large); the final Blob is made of those without a copy.
 */
function makeSink(mime) {
  const blobs = [];
  let pending = [];
  let pendingBytes = 0;
  const flushPending = () => {
    if (pending.length > 0) blobs.push(new Blob(pending));
    pending = [];
    pendingBytes = 0;
  };
  const output = $("output");
  output.replaceChildren();
  let sourceBuffer;
  let mediaSource;
  let mediaFailed = false;
  let aborted = false;
  let video;
  let waitingLogged = false;
  const mediaReady = (async () => {
    if (!mime || !mime.startsWith("video/") && !mime.startsWith("audio/")) return;
    if (!("MediaSource" in window) || !MediaSource.isTypeSupported(mime)) {
      log(`MediaSource cannot play ${mime} in this browser: the file is offered as a Blob at the end`);
      mediaFailed = true;
      return;
    }
    try {
      mediaSource = new MediaSource();
      video = document.createElement(mime.startsWith("audio/") ? "audio" : "video");
      video.controls = true;
      video.muted = true;
      video.src = URL.createObjectURL(mediaSource);
      output.append(video);
      await new Promise((resolve) => mediaSource.addEventListener("sourceopen", resolve, { once: true }));
      URL.revokeObjectURL(video.src);
      sourceBuffer = mediaSource.addSourceBuffer(mime);
    } catch (error) {
      // isTypeSupported said yes and addSourceBuffer no: the Blob still comes at the end.
      mediaFailed = true;
      log(`MediaSource refused ${mime} (${describe(error)}): the file is offered as a Blob at the end`);
    }
  })();
  const appendOnce = (bytes) => new Promise((resolve, reject) => {
    // appendBuffer throws QuotaExceededError synchronously: listeners only once it took the data.
    sourceBuffer.appendBuffer(bytes);
    const done = () => {
      sourceBuffer.removeEventListener("error", failed);
      resolve();
    };
    const failed = () => {
      sourceBuffer.removeEventListener("updateend", done);
      reject(new Error("the SourceBuffer refused the data (not a stream of this type)"));
    };
    sourceBuffer.addEventListener("updateend", done, { once: true });
    sourceBuffer.addEventListener("error", failed, { once: true });
  });
  const removeRange = (end) => new Promise((resolve) => {
    sourceBuffer.addEventListener("updateend", resolve, { once: true });
    sourceBuffer.remove(0, end);
  });
  // The browser buffers a bounded amount of media: when full, let playback catch up (this also
  // slows the download and the decryption down to the playback's pace: the stream's backpressure)
  // and drop what was played. A paused video holds the download until it plays on.
  const append = async (bytes) => {
    for (;;) {
      if (aborted) return;
      try {
        return await appendOnce(bytes);
      } catch (error) {
        if (error?.name !== "QuotaExceededError") throw error;
        if (!waitingLogged) {
          waitingLogged = true;
          log("the media buffer is full: the download waits for playback (press play if paused)");
        }
        if (video.currentTime > 10) await removeRange(video.currentTime - 10);
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }
  };
  return {
    /** How the media went: through MediaSource, or as a Blob at the end (or not media). */
    media() {
      if (!video) return { mode: mediaFailed ? "blob" : "none" };
      return {
        mode: mediaFailed ? "blob" : "mediasource",
        readyState: video.readyState,
        bufferedSeconds: video.buffered.length > 0 ? video.buffered.end(video.buffered.length - 1) : 0,
        currentTime: video.currentTime,
        error: video.error ? `${video.error.code} ${video.error.message}` : null,
      };
    },
    async write(chunk) {
      pending.push(chunk);
      pendingBytes += chunk.length;
      if (pendingBytes >= 8 << 20) flushPending();
      await mediaReady;
      if (!sourceBuffer || mediaFailed || aborted) return;
      try {
        await append(chunk);
        if (video.paused && video.buffered.length > 0) video.play().catch(() => {});
      } catch (error) {
        mediaFailed = true;
        log(`playback while streaming stopped (${describe(error)}): the file is offered as a Blob at the end`);
        if (mediaSource?.readyState === "open" && !sourceBuffer.updating) mediaSource.endOfStream("decode");
      }
    },
    /**
     * The stream failed (a refused segment, a network error): what played was verified, but the
     * file is not whole, so playback is ended with an error and no Blob is offered.
     */
    abort() {
      aborted = true;
      blobs.length = 0;
      pending = [];
      if (mediaSource?.readyState === "open" && !sourceBuffer?.updating) mediaSource.endOfStream("decode");
      video?.pause();
    },
    async close(name) {
      await mediaReady;
      if (mediaSource?.readyState === "open" && !mediaFailed) mediaSource.endOfStream();
      flushPending();
      const blob = new Blob(blobs, { type: mime || "application/octet-stream" });
      blobs.length = 0;
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = name.replace(/^.*\//, "").replace(/\.kms$/, "") || "decrypted";
      link.textContent = `download the decrypted file (${mib(blob.size)})`;
      output.append(document.createElement("br"), link);
      if (mediaFailed && (mime?.startsWith("video/") || mime?.startsWith("audio/"))) {
        const fallback = document.createElement(mime.startsWith("audio/") ? "audio" : "video");
        fallback.controls = true;
        fallback.src = link.href;
        output.append(fallback);
      } else if (mime?.startsWith("text/")) {
        const pre = document.createElement("pre");
        pre.textContent = (await blob.slice(0, 4096).text()) + (blob.size > 4096 ? "\n…" : "");
        output.append(pre);
      }
      return blob;
    },
  };
}

/** SHA-256 of a Blob, read piece by piece (a multi-GiB Blob does not fit one ArrayBuffer). */
async function sha256OfBlob(blob) {
  const hash = sha256.create();
  const reader = blob.stream().getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return toHex(hash.digest()).replace(/^0x/, "");
    hash.update(value);
  }
}

/** Counts the bytes that pass, for the progress bar. */
function counter(onBytes) {
  let total = 0;
  return new TransformStream({
    transform(chunk, controller) {
      total += chunk.length;
      onBytes(total);
      controller.enqueue(chunk);
    },
  });
}

/**
 * Bob's whole path: the header off the front of the stream, the capsule's cfrags from the
 * policy's nodes (verified), the data key, then the payload decrypted segment by segment as it
 * downloads.
 */
async function bobRetrieves() {
  demo.state = "running";
  demo.error = undefined;
  demo.result = undefined;
  field("state", "running");
  for (const name of ["nodes", "bytes", "rate", "sha256"]) field(name, "—");
  const started = performance.now();
  const { publicClient, deployment, nodeClient } = await chainReady;
  const policyText = await textOf("policy-file", "policy");
  if (!policyText) throw new Error("choose the policy file Alice sent");
  const policy = parsePolicyFile(policyText.text, policyText.source);
  const keyText = await textOf("key-file", "key");
  if (!keyText) throw new Error("choose Bob's key file (umbral.json)");
  const secret = MasterSecret.parse(keyText.text, keyText.source);
  const receivingSk = secret.receivingKey();
  log(`policy ${policy.policyId} "${policy.label}": ${policy.threshold} of ${policy.shares} nodes`);

  const { stream, size, name } = await encryptedStream();
  const progress = $("progress");
  // Without a size (no content-length) the bar is indeterminate rather than full at once.
  if (size > 0) {
    progress.max = size;
    progress.value = 0;
  } else {
    progress.removeAttribute("value");
  }
  // What to stop when anything below fails: the download (else it stays open, half read), the
  // playback of a file that turned out not whole.
  const source = stream.pipeThrough(counter((n) => { if (size > 0) progress.value = n; }));
  let payload;
  let reader;
  let sink;
  try {
    const read = await readHeaderFromStream(source);
    payload = read.payload;
    const header = read.header;
    log(`header: ${header.length} bytes, ${header.segmentChunks ?? "-"} chunks per segment, sender ${header.sender ? toHex(header.sender) : "none (KMSENC01)"}`);

    // Refuse a file from a sender the policy does not authorize before asking any node.
    const trusted = new TrustedSenders(policy.senders);
    header.checkSender(trusted);
    const capsule = header.capsule();
    const retrieval = await retrieve({
      publicClient,
      deployment,
      nodeClient,
      policy,
      receivingSecretKey: receivingSk,
      capsules: [capsule],
    });
    const cfrags = retrieval.cfrags[0];
    field("nodes", `${cfrags.length} verified cfrags of ${policy.threshold} needed; faults: ${retrieval.faults.length}`);
    for (const fault of retrieval.faults) log(`fault: node ${fault.staker} (${fault.url}) answered a wrong cfrag: ${fault.reason}`, true);
    log(`retrieved ${cfrags.length} cfrags in ${Math.round(performance.now() - started)} ms`);

    const delegatingPk = umbral.PublicKey.fromCompressedBytes(fromHex(policy.delegatingKey, "delegating key", 33));
    const dataKey = openDataKeyReencrypted(receivingSk, delegatingPk, header, cfrags);
    capsule.free();

    // decryptStream releases a segment's plaintext only once its signature and tags verified.
    const decrypting = decryptStream(dataKey, header, trusted);
    sink = makeSink($("mime").value.trim() || params.get("mime") || "");
    reader = payload.pipeThrough(decrypting).getReader();
    const decryptStart = performance.now();
    let bytes = 0;
    let chunks = 0;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      bytes += value.length;
      chunks += 1;
      field("bytes", `${mib(bytes)} in ${chunks} pieces`);
      await sink.write(value);
    }
    reader = undefined;
    const seconds = (performance.now() - decryptStart) / 1000;
    if (size > 0) progress.value = progress.max;
    else progress.value = progress.max = 1;
    const blob = await sink.close(name);
    const digest = await sha256OfBlob(blob);
    field("sha256", digest);
    field("rate", `${(bytes / 1048576 / seconds).toFixed(1)} MiB/s (download and decryption, ${seconds.toFixed(2)} s)`);
    log(`decrypted ${bytes} bytes in ${chunks} pieces; SHA-256 ${digest}`);
    demo.result = { bytes, chunks, sha256: digest, cfrags: cfrags.length, faults: retrieval.faults.length, seconds, media: sink.media() };
    demo.state = "done";
    field("state", "done");
  } catch (error) {
    sink?.abort();
    // Whichever end of the pipe is still ours: cancelling it cancels the download.
    const cancel = reader ?? (payload?.locked ? undefined : payload) ?? (source.locked ? undefined : source);
    cancel?.cancel(error).catch(() => {});
    throw error;
  }
}

/** The whole number in input `id` (BigInt of "" is 0 and of "1.5" a bare SyntaxError). */
function wholeNumber(id, what) {
  const text = $(id).value.trim();
  if (!/^[0-9]+$/.test(text)) throw new Error(`${what}: a whole number, not "${text}"`);
  return BigInt(text);
}

/**
 * Alice's grant from the page: a fresh Umbral master secret (offered for download), the nodes
 * sampled and probed (planGrant), then the kfrags made, `createPolicy` paid from the dev account
 * and the kfrags uploaded (executeGrant). The policy file is offered for download, for Bob.
 */
async function aliceGrants() {
  field("grant", "running");
  const { publicClient, deployment, chain, config, nodeClient } = await chainReady;
  const key = $("alice-key").value.trim();
  if (!/^0x[0-9a-fA-F]{64}$/.test(key)) throw new Error("Alice's private key: 0x and 64 hex digits (a dev key printed by kms devnet)");
  const account = privateKeyToAccount(key);
  const walletClient = createWalletClient({ account, chain, transport: http(config.rpc) });
  const master = MasterSecret.random();
  const label = $("label").value.trim();
  const periods = wholeNumber("periods", "periods");
  const latest = await publicClient.getBlock({ blockTag: "latest" });
  const plan = await planGrant({
    publicClient,
    deployment,
    nodeClient,
    label,
    delegatingKey: publicKeyBytes(master.delegatingKey(label)),
    verifyingKey: publicKeyBytes(master.signingKey()),
    receivingKey: $("bob-key").value.trim(),
    // Alice's own sender key, as `kms policy grant` records by default.
    senders: [publicKeyBytes(master.senderKey())],
    threshold: Number($("threshold").value),
    shares: Number($("shares").value),
    endTimestamp: latest.timestamp + periods * deployment.secondsPerPeriod,
    feeRate: wholeNumber("fee-rate", "the fee rate (wei)"),
    owner: account.address,
    creator: account.address,
  });
  log(`grant: ${plan.policy.shares} nodes sampled for ${plan.periods} periods; paying ${plan.totalFee} wei`);
  const outcome = await executeGrant(plan, master.delegatingKey(label), master.signingKey(), walletClient);
  const json = policyFileToJson(outcome.policy);
  $("policy-out").textContent = json;
  for (const [fileName, text] of [["policy.json", json], ["alice-umbral.json", master.toJson()]]) {
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([text], { type: "application/json" }));
    link.download = fileName;
    link.textContent = ` ${fileName}`;
    $("policy-out").before(link);
  }
  field("grant", `policy ${outcome.policy.policyId}: ${outcome.uploaded} of ${outcome.policy.shares} nodes hold their kfrag (tx ${outcome.txHash})`);
  demo.grant = { policyId: outcome.policy.policyId, uploaded: outcome.uploaded, usable: outcome.usable };
}

// One run at a time per button: a second click would interleave two retrievals on one output,
// or pay for a second policy.
$("retrieve").addEventListener("click", () => {
  $("retrieve").disabled = true;
  bobRetrieves().catch((error) => {
    demo.state = "error";
    demo.error = describe(error);
    field("state", `error: ${describe(error)}`);
    log(describe(error), true);
  }).finally(() => ($("retrieve").disabled = false));
});
$("grant").addEventListener("click", () => {
  $("grant").disabled = true;
  aliceGrants().catch((error) => {
    field("grant", `error: ${describe(error)}`);
    log(`grant: ${describe(error)}`, true);
  }).finally(() => ($("grant").disabled = false));
});
if (params.get("file")) $("enc-url").value = params.get("file");
if (params.get("mime")) $("mime").value = params.get("mime");
if (params.get("auto") === "1") $("retrieve").click();

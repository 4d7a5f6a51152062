// Turns the JSON files script/bench wrote into a markdown summary (printed to stdout).
const fs = require("fs");
const path = require("path");
const dir = process.argv[2];
const read = (name) => {
  try { return JSON.parse(fs.readFileSync(path.join(dir, name), "utf8")); } catch { return null; }
};
const fmt = (x, digits = 1) => (typeof x === "number" ? x.toFixed(digits) : "n/a");
const lines = [];
lines.push(`# Benchmarks (${new Date().toISOString().slice(0, 10)})`, "");

const node = read("node-throughput.json");
if (node) {
  lines.push("## Node re-encryption throughput (HTTP on localhost vs raw reencrypt + signing)", "");
  lines.push("| batch | clients | cfrags/s | raw cfrags/s | ratio | ceiling | p50 ms | p99 ms |");
  lines.push("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const l of node.levels || []) {
    lines.push(`| ${l.batch} | ${l.clients} | ${fmt(l.cfrags_per_sec, 0)} | ${fmt(l.raw_cfrags_per_sec, 0)} | ${fmt(l.ratio_to_raw * 100, 1)}% | ${fmt(l.ceiling_ratio * 100, 1)}% | ${fmt(l.p50_ms, 2)} | ${fmt(l.p99_ms, 2)} |`);
  }
  lines.push("", "ceiling: the best ratio the node's own extra crypto (capsule checks, Bob's signature) allows if HTTP cost nothing.", "");
}
const pinned = read("node-pinned.json");
if (pinned) {
  lines.push(`## Node on one core (taskset -c ${pinned.node_core}, ${pinned.node_workers} worker) vs its one-core ceiling, clients on core ${pinned.load_generator_core}`, "");
  lines.push("| batch | clients | cfrags/s | ceiling cfrags/s | ratio | CPU ratio | node core busy | p50 ms | p99 ms |");
  lines.push("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const l of pinned.levels || []) {
    const busy = l.node.node_process ? l.node.node_process.cores : null;
    lines.push(`| ${l.batch} | ${l.clients} | ${fmt(l.node.cfrags_per_sec, 0)} | ${fmt(l.ceiling_cfrags_per_sec, 0)} | ${fmt(l.ratio_to_ceiling * 100, 1)}% | ${fmt(l.cpu_ratio * 100, 1)}% | ${fmt(busy, 2)} | ${fmt(l.node.p50_ms, 2)} | ${fmt(l.node.p99_ms, 2)} |`);
  }
  lines.push("", `ceiling: ${pinned.ceiling}. Goal: ratio >= ${fmt(pinned.goal_ratio * 100, 0)}%. CPU ratio: the ceiling's CPU time per cfrag over the node's.`, "");
}
const scale = read("node-scale.json");
if (scale) {
  const sizes = (scale.nodes || []).map((n) => Number(n.policies).toLocaleString("en"));
  lines.push(`## Node holding ${sizes[1] || "?"} policies vs ${sizes[0] || "?"} (one client, one capsule per request)`, "");
  lines.push("| node policies | store file MiB | fill s | RSS start MiB | pruning read s | RSS after it MiB | RSS end MiB | peak RSS MiB |", "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  const mib = (m, key) => (m && typeof m[key] === "number" ? m[key] / 1024 : null);
  for (const n of scale.nodes || []) {
    lines.push(`| ${n.policies} | ${fmt(n.store.file_bytes / 1048576, 1)} | ${fmt(n.store.seconds, 1)} | ${fmt(mib(n.memory_at_start, "rss_kib"))} | ${fmt(n.pruning_read && n.pruning_read.seconds, 3)} | ${fmt(mib(n.memory_after_pruning_read, "rss_kib"))} | ${fmt(mib(n.memory_at_end, "rss_kib"))} | ${fmt(mib(n.memory_at_end, "peak_rss_kib"))} |`);
  }
  lines.push("", "pruning read: the daemon's pruning duty reads every kfrag record each duty tick (Store::kfrag_policies), timed in the node process; the bench node runs no duties.");
  lines.push("", "| series | node policies | policies asked | requests | p50 ms | p99 ms | mean ms |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const x of scale.series || []) {
    lines.push(`| ${x.name} | ${x.node_policies} | ${x.requested_policies} | ${x.requests} | ${fmt(x.p50_ms, 2)} | ${fmt(x.p99_ms, 2)} | ${fmt(x.mean_ms, 2)} |`);
  }
  lines.push("", `large / small: p50 x${fmt(scale.p50_ratio, 3)}, p99 x${fmt(scale.p99_ratio, 3)} (goal <= x${fmt(scale.goal_ratio, 2)}).`, "");
}
const retrieve = read("retrieve.json");
if (retrieve) {
  lines.push("## Bob's retrieve, 3-of-5 on localhost", "");
  const delayed = retrieve.withRpcDelay;
  const delay = retrieve.rpcDelayMs;
  lines.push(`| measure | p50 ms | p99 ms |${delayed ? ` p50 ms, nodes' RPC +${delay} ms | p99 ms, +${delay} ms | p50 difference ms |` : ""}`);
  lines.push(`| --- | ---: | ---: |${delayed ? " ---: | ---: | ---: |" : ""}`);
  const row = (label, key) => {
    const base = `| ${label} | ${fmt(retrieve[key].p50Ms, 2)} | ${fmt(retrieve[key].p99Ms, 2)} |`;
    if (!delayed) return base;
    return `${base} ${fmt(delayed[key].p50Ms, 2)} | ${fmt(delayed[key].p99Ms, 2)} | ${fmt(retrieve.p50DifferenceMs[key], 2)} |`;
  };
  lines.push(row("retrieve (node records from chain + 5 nodes, stop at 3)", "retrieve"));
  lines.push(row("nodes only", "retrieveFromNodesOnly"), "");
  const calls = retrieve.nodeRpcCalls;
  if (calls) {
    const methods = (c) => Object.entries(c.byMethod).map(([m, n]) => `${m} ${n}`).join(", ") || "none";
    lines.push("The nodes' RPC calls (all five proxies):", "");
    lines.push(`- during the ${calls.duringRetrievesWithDelay.retrievals} delayed retrievals (${fmt(calls.duringRetrievesWithDelay.seconds, 1)} s): ${fmt(calls.duringRetrievesWithDelay.callsPerSecond, 1)} calls/s (${methods(calls.duringRetrievesWithDelay)})`);
    lines.push(`- during the ${calls.duringRetrievesNoDelay.retrievals} retrievals without delay (${fmt(calls.duringRetrievesNoDelay.seconds, 1)} s): ${fmt(calls.duringRetrievesNoDelay.callsPerSecond, 1)} calls/s (${methods(calls.duringRetrievesNoDelay)})`);
    lines.push(`- idle, as long, with the delay: ${fmt(calls.idleWithDelay.callsPerSecond, 1)} calls/s (${methods(calls.idleWithDelay)})`, "");
  }
}
const stream = read("stream.json");
if (stream) {
  lines.push(`## Signed streaming encryption (KMSENC02, ${stream.segmentChunks ?? "?"} chunks per segment), ${stream.mib} MiB`, "");
  lines.push("| | MB/s | vs openssl |", "| --- | ---: | ---: |");
  lines.push(`| openssl speed chacha20-poly1305 (16 KiB blocks, 1 thread) | ${fmt(stream.opensslMBps, 0)} | |`);
  if (stream.memory) {
    lines.push(`| encrypt in memory (goal >= 50%) | ${fmt(stream.memory.encryptMBps, 0)} | ${fmt(stream.memory.encryptRatio * 100, 0)}% |`);
    lines.push(`| decrypt in memory (goal >= 50%) | ${fmt(stream.memory.decryptMBps, 0)} | ${fmt(stream.memory.decryptRatio * 100, 0)}% |`);
  }
  lines.push(`| kms encrypt, file to file | ${fmt(stream.encryptMBps, 0)} | ${fmt(stream.encryptRatio * 100, 0)}% |`);
  lines.push(`| kms decrypt, file to file | ${fmt(stream.decryptMBps, 0)} | ${fmt(stream.decryptRatio * 100, 0)}% |`);
  lines.push("", `Peak RSS: ${fmt(stream.peakRssMiB)} MiB. One segment signature: sign ${fmt(stream.signMicros, 0)} µs, verify ${fmt(stream.verifyMicros, 0)} µs.`, "");
}
const messages = read("messages.json");
if (messages) {
  lines.push(`## Messages a Bob reads, 3-of-5 policy, 5 local nodes (${messages.messages} messages, a session every ${messages.sessionLimits.maxMessages})`, "");
  lines.push(`| payload | live msg/s (goal >= ${fmt(messages.goalMessagesPerSecond, 0)}) | session open p50 ms | backlog msg/s | sealing msg/s | overhead bytes/msg (with records) |`, "| ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const r of messages.results) {
    lines.push(`| ${r.payloadBytes} B | ${fmt(r.live.messagesPerSecond, 0)} | ${fmt(r.live.retrievalP50Ms, 1)} | ${fmt(r.backlog.messagesPerSecond, 0)} | ${fmt(r.sealingMessagesPerSecond, 0)} | ${r.overheadBytesPerMessage} (${fmt(r.overheadBytesPerMessageWithRecords, 2)}) |`);
  }
  lines.push("");
}
const catchup = read("catchup.json");
if (catchup) {
  lines.push("## Catch-up", "");
  lines.push(`${catchup.blocks} blocks, ${catchup.policies} policies: ${fmt(catchup.seconds, 2)} s, peak RSS ${fmt(catchup.peakRssMiB)} MiB.`, "");
}
const sampling = read("sampling.json");
if (sampling) {
  lines.push(`## Sampling: kms policy grant's plan, 5 nodes among ${sampling.stakers} stakers`, "");
  lines.push("| measure | p50 ms | max ms |", "| --- | ---: | ---: |");
  lines.push(`| Client::plan_grant (candidates, draw with fee checks, probes) | ${fmt(sampling.planGrant.p50Ms, 0)} | ${fmt(sampling.planGrant.maxMs, 0)} |`);
  lines.push(`| candidates only (paged reads at one block) | ${fmt(sampling.candidatesOnly.p50Ms, 0)} | ${fmt(sampling.candidatesOnly.maxMs, 0)} |`);
  lines.push(`| network::read_stakers (kms network status's chain reads) | ${fmt(sampling.networkReadStakers.p50Ms, 0)} | ${fmt(sampling.networkReadStakers.maxMs, 0)} |`);
  lines.push("", `Goal: ${fmt(sampling.goalMs, 0)} ms. Setup of the stakers: ${fmt(sampling.setupSeconds)} s. A page of ${sampling.page.stakers} stakers: getActiveStakers ${Number(sampling.page.getActiveStakersGas).toLocaleString("en")} gas, getNodeRecords ${Number(sampling.page.getNodeRecordsGas).toLocaleString("en")} gas.`, "");
}
const audit = read("audit-cpu.json");
if (audit) {
  lines.push("## Audit duty CPU (shipped defaults, one period)", "");
  lines.push(`${fmt(audit.auditCpuSecondsPerPeriod, 2)} CPU-s per ${audit.periodSeconds} s period (${audit.auditAnswers} audit answers): ${fmt(audit.cpuFraction * 100, 5)}% of one core, ${fmt(audit.ratioToGoal * 100, 3)}% of the 1% limit (${fmt(audit.cpuFractionIfPeriodWereOneHour * 100, 4)}% if periods were an hour).`, "");
}
const gas = read("GasTest.json");
if (gas) {
  lines.push("## Gas (transaction gas, from snapshots/GasTest.json)", "");
  lines.push("| operation | gas |", "| --- | ---: |");
  for (const [k, v] of Object.entries(gas)) lines.push(`| ${k} | ${Number(v).toLocaleString("en")} |`);
  lines.push("", "Every function: gas-report.txt.", "");
}
console.log(lines.join("\n"));

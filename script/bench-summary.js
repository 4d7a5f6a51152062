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
const retrieve = read("retrieve.json");
if (retrieve) {
  lines.push("## Bob's retrieve, 3-of-5 on localhost", "");
  lines.push("| measure | p50 ms | p99 ms |", "| --- | ---: | ---: |");
  lines.push(`| retrieve (node records from chain + 5 nodes, stop at 3) | ${fmt(retrieve.retrieve.p50Ms, 2)} | ${fmt(retrieve.retrieve.p99Ms, 2)} |`);
  lines.push(`| nodes only | ${fmt(retrieve.retrieveFromNodesOnly.p50Ms, 2)} | ${fmt(retrieve.retrieveFromNodesOnly.p99Ms, 2)} |`, "");
}
const stream = read("stream.json");
if (stream) {
  lines.push(`## Streaming encryption, ${stream.mib} MiB file to file`, "");
  lines.push("| | MB/s | vs openssl |", "| --- | ---: | ---: |");
  lines.push(`| openssl speed chacha20-poly1305 (16 KiB blocks, 1 thread) | ${fmt(stream.opensslMBps, 0)} | |`);
  lines.push(`| kms encrypt | ${fmt(stream.encryptMBps, 0)} | ${fmt(stream.encryptRatio * 100, 0)}% |`);
  lines.push(`| kms decrypt | ${fmt(stream.decryptMBps, 0)} | ${fmt(stream.decryptRatio * 100, 0)}% |`);
  lines.push("", `Peak RSS: ${fmt(stream.peakRssMiB)} MiB.`, "");
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

// The one table the run ends with (Markdown, so it pastes into the README as it is), the receiver's
// ratios to each peer, the extra figures, and PASS/FAIL against the targets of issues 3 and 17.
import { TARGETS, type Settings } from "./config.ts";
import type { FixedRateForwarding, IngestForwarding, OutageResult, SustainedForwarding } from "./forward.ts";
import type { FixedRateResult, IngestResult, SustainedResult } from "./ingest.ts";
import type { Machine, Noise } from "./machine.ts";
import { OLD_RELEASE, type MigrationResult } from "./migration.ts";
import type { QueryResult } from "./query.ts";
import type { FixedRateStreams, SustainedStreams } from "./streams.ts";
import type { CpuSplit } from "./threads.ts";
import { SERVER_KINDS, type ServerKind } from "./servers.ts";
import { socketErrorCount } from "./wrk.ts";

export interface RunReport {
  settings: Settings;
  command: string;
  startedAt: Date;
  elapsedSeconds: number;
  revision: string;
  machine: Machine;
  noiseBefore: Noise;
  noiseAfter: Noise;
  meanBodyBytes: number;
  ingest: IngestResult[];
  fixedRate: FixedRateResult;
  sustained: SustainedResult;
  sustainedStreams: SustainedStreams;
  sustainedForwarding: SustainedForwarding;
  forwarding: { fixedRate: FixedRateForwarding; ingest: IngestForwarding; outage: OutageResult };
  streams: FixedRateStreams;
  query: QueryResult;
  migration: MigrationResult;
  problems: string[];
}

const SHORT: Record<ServerKind, string> = {
  ceiling: "HTTP ceiling",
  floor: "durable floor",
  express: "Express peer",
  receiver: "**icr-receiver**",
};

const int = (n: number) => Math.round(n).toLocaleString("en-US");
const ms = (n: number) => (Number.isFinite(n) ? n.toFixed(n < 10 ? 2 : 1) : "n/a");
const mb = (bytes: number) => (bytes / 1e6).toFixed(1);
const pct = (share: number) => `${Math.round(share * 100)}%`;
const verdict = (pass: boolean) => (pass ? "PASS" : "**FAIL**");

function table(header: string[], rows: string[][]): string {
  return [`| ${header.join(" | ")} |`, `| ${header.map(() => "---").join(" | ")} |`, ...rows.map((r) => `| ${r.join(" | ")} |`)].join("\n");
}

interface Verdicts {
  lines: string[][];
  failures: number;
}

function find(results: IngestResult[], kind: ServerKind, connections: number): IngestResult | undefined {
  return results.find((r) => r.kind === kind && r.connections === connections);
}

function ingestRow(label: string, r: IngestResult): string[] {
  return [
    label,
    String(r.connections),
    int(r.wrk.reqPerSec),
    ms(r.wrk.latencyMs.p50),
    ms(r.wrk.latencyMs.p99),
    mb(r.peakRssBytes),
    int(r.wrk.non2xx),
    int(socketErrorCount(r.wrk)),
    pct(r.wrk.noise.other),
  ];
}

function ingestTable(report: RunReport): string {
  const rows: string[][] = [];
  for (const connections of report.settings.connections) {
    for (const kind of SERVER_KINDS) {
      const r = find(report.ingest, kind, connections);
      if (r === undefined) continue;
      rows.push(ingestRow(SHORT[kind], r));
      const forwarding = report.forwarding.ingest.result;
      if (kind === "receiver" && forwarding.connections === connections) rows.push(ingestRow(`${SHORT.receiver} + forwarding`, forwarding));
    }
  }
  return table(["server", "conns", "req/s", "p50 ms", "p99 ms", "peak RSS MB", "non-2xx", "socket errors", "other CPU"], rows);
}

function ratioTable(report: RunReport, verdicts: Verdicts): string {
  const rows: string[][] = [];
  for (const [index, connections] of report.settings.connections.entries()) {
    const rate = (kind: ServerKind) => find(report.ingest, kind, connections)?.wrk.reqPerSec ?? NaN;
    const receiver = rate("receiver");
    const floor = receiver / rate("floor");
    const express = receiver / rate("express");
    const ceiling = receiver / rate("ceiling");
    const targeted = index === 0; // the targets are stated for the first connection count (32)
    const floorPass = floor >= TARGETS.floorRatio;
    const expressPass = express >= TARGETS.expressRatio;
    if (targeted) {
      verdicts.lines.push([`receiver / durable floor, ${connections} connections`, `${floor.toFixed(2)}x`, `>= ${TARGETS.floorRatio}x`, verdict(floorPass)]);
      verdicts.lines.push([`receiver / Express peer, ${connections} connections`, `${express.toFixed(1)}x`, `>= ${TARGETS.expressRatio}x`, verdict(expressPass)]);
      verdicts.failures += Number(!floorPass) + Number(!expressPass);
    }
    rows.push([String(connections), `${floor.toFixed(2)}x`, `${express.toFixed(1)}x`, `${ceiling.toFixed(2)}x`]);
  }
  return table(["conns", "receiver / floor", "receiver / Express", "receiver / ceiling"], rows);
}

/** µs of CPU per delivery by thread, largest first: "main 39.5, writer 29.5, …; total 83.5". */
export function formatCpuSplit(split: CpuSplit): string {
  const MINOR = 1; // µs a delivery: threads below it are summed as "others"
  const major = split.roles.filter((r) => r.cpuUsPerDelivery >= MINOR);
  const minor = split.roles.filter((r) => r.cpuUsPerDelivery < MINOR);
  const name = (r: CpuSplit["roles"][number]) => (r.threads > 1 ? `${r.role} (${r.threads} threads)` : r.role);
  const parts = major.map((r) => `${name(r)} ${r.cpuUsPerDelivery.toFixed(1)}`);
  if (minor.length > 0) parts.push(`others ${minor.reduce((sum, r) => sum + r.cpuUsPerDelivery, 0).toFixed(1)}`);
  return `${parts.join(", ")}; total ${split.totalUsPerDelivery.toFixed(1)} µs`;
}

function cpuFigures(report: RunReport, add: Add): void {
  const rows: [string, IngestResult | undefined][] = [
    ["", find(report.ingest, "receiver", report.settings.connections[0]!)],
    [" with forwarding on", report.forwarding.ingest.result],
  ];
  for (const [variant, r] of rows) {
    if (r?.cpu == null) continue;
    const writer = r.cpu.roles.find((t) => t.role === "writer");
    const checkpointer = r.cpu.roles.find((t) => t.role === "checkpointer");
    const io = `writer wrote ${int(writer?.writtenBytesPerDelivery ?? NaN)} B a delivery, checkpointer read ${int(checkpointer?.readBytesPerDelivery ?? NaN)}`;
    add(
      `CPU per stored delivery by thread, µs (utime+stime from /proc/<pid>/task/*/stat over the measured ${r.connections}-connection run${variant}, ` +
        `${int(r.cpu.deliveries)} deliveries; workers named by creation order, ${r.cpu.rolesConfirmed ? "confirmed" : "**not confirmed**"} by their I/O: ${io})`,
      formatCpuSplit(r.cpu),
      "reported",
      null,
    );
  }
}

function sustainedFigures(add: Add, runs: [string, SustainedResult][]): void {
  for (const [label, sustained] of runs) {
    const growth = sustained.rssEnd.bytes - sustained.rssEarly.bytes;
    add(
      `RSS during a ${sustained.seconds}-s sustained run${label} (${int(sustained.wrk.reqPerSec)} req/s): at ${sustained.rssEarly.at} s / at ${sustained.rssEnd.at} s`,
      `${mb(sustained.rssEarly.bytes)} / ${mb(sustained.rssEnd.bytes)} MB (${growth >= 0 ? "+" : ""}${mb(growth)} MB)`,
      `growth <= ${mb(TARGETS.rssGrowthBytes)} MB`,
      growth <= TARGETS.rssGrowthBytes,
    );
  }
  for (const [label, sustained] of runs.slice(1)) {
    add(`receiver peak RSS in the sustained run${label}`, `${mb(sustained.peakRssBytes)} MB`, `<= ${mb(TARGETS.peakRssBytes)} MB`, sustained.peakRssBytes <= TARGETS.peakRssBytes);
  }
}

function longLogFigures(report: RunReport, add: Add): void {
  const { query } = report;
  const built = query.log;
  const n = int(built.events);
  add(
    `the long-lived app's log: ${n} events by \`icr-receiver import -\` of generated signed deliveries (payloads about 250 B), ` +
      (built.cached ? `from the cache (built ${built.builtAt.slice(0, 16).replace("T", " ")} UTC)` : "built in this run") +
      `; disk before the build: ${built.diskBefore}`,
    `built in ${int(built.buildSeconds)} s (import ${int(built.importSeconds)} s, check ${int(built.checkSeconds)} s)`,
    "minutes",
    null,
  );
  add(
    `\`icr-receiver check\` on that log at the end of this run; the database's bytes per event (${(query.bytesPerEvent * built.events / 2 ** 30).toFixed(2)} GiB)`,
    `${Number.isFinite(query.checkSeconds) ? `${query.checkSeconds.toFixed(1)} s` : "failed"}; ${int(query.bytesPerEvent)} B/event`,
    "passes; reported",
    Number.isFinite(query.checkSeconds),
  );
  const { empty, large } = query;
  const each = (starts: { firstAcceptMs: number }[]) => starts.map((s) => int(s.firstAcceptMs)).join(", ");
  const acceptPass = large.firstAcceptMs <= TARGETS.firstAcceptMs && large.firstAcceptMs <= TARGETS.firstAcceptOverEmpty * empty.firstAcceptMs;
  add(
    `spawn to the first 202 (a new delivery posted at /healthz 200), median of ${large.starts.length} starts on each log: ${n} events (${each(large.starts)} ms) / empty log (${each(empty.starts)} ms); ` +
      `to /healthz 200: ${int(large.readyMs)} / ${int(empty.readyMs)} ms`,
    `${int(large.firstAcceptMs)} / ${int(empty.firstAcceptMs)} ms (${(large.firstAcceptMs / empty.firstAcceptMs).toFixed(1)}x)`,
    `<= ${TARGETS.firstAcceptMs} ms and <= ${TARGETS.firstAcceptOverEmpty}x the empty log's`,
    acceptPass,
  );
  const over = large.idleRssBytes - empty.idleRssBytes;
  add(
    `idle RSS 1 s after that 202 (and a duplicate of a loaded delivery), median: ${n} events / empty log`,
    `${mb(large.idleRssBytes)} / ${mb(empty.idleRssBytes)} MB (${over >= 0 ? "+" : ""}${mb(over)} MB)`,
    `<= ${mb(TARGETS.idleRssOverEmptyBytes)} MB above the empty log's`,
    over <= TARGETS.idleRssOverEmptyBytes,
  );
  const scale = `${n} events, ${int(built.matching)} matching`;
  add(`GET /events?event=${"warehouseTransaction"}&organization=org-1&limit=100, first page p50 / p95 (${scale}; ${query.firstPage.count} times)`, `${ms(query.firstPage.p50)} / ${ms(query.firstPage.p95)} ms`, `p95 <= ${TARGETS.queryP95Ms} ms`, query.firstPage.p95 <= TARGETS.queryP95Ms);
  add(
    `GET /events walking pages 1-${query.walk.pages} by cursor, p50 / p95 (max)`,
    `${ms(query.walk.p50)} / ${ms(query.walk.p95)} ms (${ms(query.walk.max)})`,
    `p95 <= ${TARGETS.queryP95Ms} ms`,
    query.walk.p95 <= TARGETS.queryP95Ms && query.walk.pages === query.lastPage.page,
  );
  add(
    `GET /events page ${query.lastPage.page} p50 / p95 (${query.lastPage.count} times)`,
    `${ms(query.lastPage.p50)} / ${ms(query.lastPage.p95)} ms`,
    `p95 <= ${TARGETS.queryP95Ms} ms, p50 <= ${TARGETS.lastPageSlowdown}x page 1's`,
    query.lastPage.p95 <= TARGETS.queryP95Ms && query.lastPage.p50 <= TARGETS.lastPageSlowdown * query.firstPage.p50,
  );
  add("peak RSS of the receiver that served the queries (VmHWM: its start-up on the log included)", `${mb(query.peakRssBytes)} MB`, "reported", null);
}

function extraFigures(report: RunReport, verdicts: Verdicts): void {
  const { fixedRate, sustained, sustainedStreams, sustainedForwarding } = report;
  const add = (figure: string, value: string, target: string, pass: boolean | null) => {
    verdicts.lines.push([figure, value, target, pass === null ? "" : verdict(pass)]);
    if (pass === false) verdicts.failures++;
  };
  add(
    `p99 at a fixed ${int(fixedRate.rate)} req/s (achieved ${int(fixedRate.wrk.reqPerSec)} req/s, ${fixedRate.connections} conns; p50 ${ms(fixedRate.wrk.latencyMs.p50)} ms)`,
    `${ms(fixedRate.wrk.latencyMs.p99)} ms`,
    `<= ${TARGETS.fixedRateP99Ms} ms`,
    fixedRate.wrk.latencyMs.p99 <= TARGETS.fixedRateP99Ms && fixedRate.wrk.reqPerSec >= fixedRate.rate * 0.95,
  );
  const { streams } = report;
  const withStreams = streams.result;
  add(
    `p99 at a fixed ${int(withStreams.rate)} req/s with ${streams.streams} open event streams (achieved ${int(withStreams.wrk.reqPerSec)} req/s; p50 ${ms(withStreams.wrk.latencyMs.p50)} ms; ` +
      `each stream received ${streams.fewest === streams.most ? int(streams.fewest) : `${int(streams.fewest)}-${int(streams.most)}`} of the ${int(streams.stored)} events stored)`,
    `${ms(withStreams.wrk.latencyMs.p99)} ms`,
    `<= ${TARGETS.fixedRateP99Ms} ms`,
    withStreams.wrk.latencyMs.p99 <= TARGETS.fixedRateP99Ms && withStreams.wrk.reqPerSec >= withStreams.rate * 0.95 && streams.fewest === streams.stored,
  );
  forwardingFigures(report, add);
  cpuFigures(report, add);
  const receiverRuns = [...report.ingest.filter((r) => r.kind === "receiver"), sustained];
  const peak = Math.max(...receiverRuns.map((r) => r.peakRssBytes));
  add("receiver peak RSS over all ingest runs (forwarding off)", `${mb(peak)} MB`, `<= ${mb(TARGETS.peakRssBytes)} MB`, peak <= TARGETS.peakRssBytes);
  sustainedFigures(add, [
    ["", sustained],
    [` with ${sustainedStreams.streams} open event streams (each received ${sustainedStreams.fewest === sustainedStreams.most ? int(sustainedStreams.fewest) : `${int(sustainedStreams.fewest)}-${int(sustainedStreams.most)}`} of the ${int(sustainedStreams.stored)} events stored)`, sustainedStreams.result],
    [
      ` with forwarding on (lag ${int(sustainedForwarding.forwarding.atLoadEnd.pending)} at its end, pending 0 ${seconds(sustainedForwarding.forwarding.catchUpSeconds)} later; peak includes the catch-up)`,
      sustainedForwarding.result,
    ],
  ]);
  const { forwarding } = report;
  const checks = [...receiverRuns, sustainedStreams.result, sustainedForwarding.result, fixedRate, streams.result, forwarding.fixedRate.result, forwarding.ingest.result, forwarding.outage]
    .map((r) => r.logCheck)
    .filter((c) => c !== null);
  const acknowledged = checks.reduce((s, c) => s + c.acknowledged, 0);
  const stored = checks.reduce((s, c) => s + c.deliveries, 0);
  const missing = checks.reduce((s, c) => s + c.missing, 0);
  add(
    `2xx deliveries in the log (${checks.length} receiver runs)`,
    `${int(acknowledged)} acknowledged, ${int(stored)} stored, ${int(missing)} missing`,
    "none missing",
    missing === 0 && checks.every((c) => c.problems.length === 0),
  );
  longLogFigures(report, add);
  migrationFigures(report, add);
}

/** The upgrade from the last release: its migration's time, and the current `check` after it. */
function migrationFigures(report: RunReport, add: Add): void {
  const { log, before, after, applied, migrateSeconds, checkSeconds, failure } = report.migration;
  const n = int(log.events);
  const passed = failure === null;
  const keys = after ?? before;
  add(
    `migration ${OLD_RELEASE.version} → current on ${n} events (\`icr-receiver migrate\` on a copy of a log written by the ${OLD_RELEASE.version} receiver built from ${OLD_RELEASE.commit.slice(0, 7)}, ` +
      `${log.cached ? `from the cache (built ${log.builtAt.slice(0, 16).replace("T", " ")} UTC ` : "built in this run ("}in ${int(log.buildSeconds)} s, its own check ${int(log.checkSeconds)} s); ` +
      `applied ${applied.join(", ") || "nothing"}; ${int(keys.keyRows)} event_keys rows, ${after === null ? "digests not verified" : `${int(after.missingDigests)} without a digest, ${int(after.digestRows)} in event_digests`})` +
      (passed ? "" : `: ${failure}`),
    Number.isFinite(migrateSeconds) ? `${migrateSeconds.toFixed(2)} s` : "failed",
    "reported; check passes after it",
    passed,
  );
  add(
    `\`icr-receiver check\` (current) on the migrated ${n}-event log`,
    Number.isFinite(checkSeconds) ? `${checkSeconds.toFixed(1)} s, passes` : after === null ? "not run" : "fails",
    "passes; reported",
    passed,
  );
}

type Add = (figure: string, value: string, target: string, pass: boolean | null) => void;

const seconds = (s: number | null) => (s === null ? "not within the timeout" : `${s.toFixed(1)} s`);

/** The forwarding rows (forward.ts), after the fixed-rate row they compare with. */
function forwardingFigures(report: RunReport, add: Add): void {
  const { fixedRate, ingest, outage } = report.forwarding;
  const fixed = fixedRate.result;
  const f = fixedRate.forwarding;
  add(
    `p99 at a fixed ${int(fixed.rate)} req/s with forwarding on (achieved ${int(fixed.wrk.reqPerSec)} req/s; p50 ${ms(fixed.wrk.latencyMs.p50)} ms; ` +
      `${int(f.final.delivered)} of ${int(f.stored)} events forwarded, lag at the end of the load ${int(f.atLoadEnd.pending)})`,
    `${ms(fixed.wrk.latencyMs.p99)} ms`,
    `<= ${TARGETS.fixedRateP99Ms} ms`,
    fixed.wrk.latencyMs.p99 <= TARGETS.fixedRateP99Ms && fixed.wrk.reqPerSec >= fixed.rate * 0.95,
  );
  const on = ingest.result;
  const off = find(report.ingest, "receiver", on.connections);
  const g = ingest.forwarding;
  const forwardedDuringLoad = g.atLoadEnd.delivered;
  add(
    `ingest with forwarding on / off, ${on.connections} conns (${int(on.wrk.reqPerSec)} / ${int(off?.wrk.reqPerSec ?? NaN)} req/s); ` +
      `forwarded during the ${g.loadSeconds}-s load ${int(forwardedDuringLoad)} of ${int(g.stored)} (${int(forwardedDuringLoad / g.loadSeconds)}/s), ` +
      `lag at its end ${int(g.atLoadEnd.pending)} events, pending 0 ${seconds(g.catchUpSeconds)} later` +
      (g.catchUpSeconds === null ? ` (still ${int(g.final.pending)} pending)` : ""),
    `${(on.wrk.reqPerSec / (off?.wrk.reqPerSec ?? NaN)).toFixed(2)}x`,
    "reported",
    null,
  );
  const r = outage.rss;
  const growth = Math.max(r.buildUpPeak, r.drainPeak) - r.warmUpPeak;
  add(
    `sink down (503): RSS while ${int(outage.backlog)} events pile up (${int(outage.buildUpRate)} req/s, ${outage.buildUpSeconds.toFixed(0)} s) and drain: ` +
      "warm-up peak / build-up peak / drain peak / at pending 0",
    `${mb(r.warmUpPeak)} / ${mb(r.buildUpPeak)} / ${mb(r.drainPeak)} / ${mb(r.after)} MB (${growth >= 0 ? "+" : ""}${mb(growth)} MB)`,
    `growth <= ${mb(TARGETS.outageRssGrowthBytes)} MB`,
    growth <= TARGETS.outageRssGrowthBytes,
  );
  add(
    `drain after the outage: ${int(outage.backlog)} pending from sink-up to pending 0 (first request at the sink after ${seconds(outage.firstDeliverySeconds)}; ${int(outage.refused)} retries refused during the outage)`,
    outage.drainSeconds === null ? "not drained" : `${int(outage.drainRate)} events/s (${outage.drainSeconds.toFixed(1)} s)`,
    "reported",
    null,
  );
}

export function renderReport(report: RunReport): { text: string; failures: number } {
  const { machine, settings } = report;
  const verdicts: Verdicts = { lines: [], failures: 0 };
  const ingest = ingestTable(report);
  const ratios = ratioTable(report, verdicts);
  extraFigures(report, verdicts);
  const noise = (n: Noise) => `other CPU ${pct(n.other)}, steal ${pct(n.steal)}, load average ${n.loadavg1m.toFixed(2)}`;
  const lines = [
    `## icr-receiver benchmark (${settings.mode} mode), ${report.startedAt.toISOString().slice(0, 16).replace("T", " ")} UTC`,
    "",
    `- Command: \`${report.command}\`; source ${report.revision}; took ${int(report.elapsedSeconds)} s.`,
    `- Machine: ${machine.cpus} x ${machine.cpuModel}, ${machine.memoryGiB} GiB, ${machine.os}, Linux ${machine.kernel}; bun ${machine.bun}, node ${machine.node}, ${machine.wrk}.`,
    `- Load: \`wrk -t${settings.threads} -c<conns>\` keep-alive on 127.0.0.1, ${settings.warmupSeconds} s warm-up then ${settings.seconds} s measured, a fresh server and database per row; ` +
      `every request a distinct validly signed delivery (mean body ${int(report.meanBodyBytes)} B), each wrk thread with its own share; ` +
      "latency percentiles as wrk reports them (with its coordinated-omission correction); MB = 10^6 bytes.",
    `- Forwarding rows: the receiver forwards to bench/sink.ts (its own Bun process on 127.0.0.1: reads each body, answers 204, checks no signature), ` +
      "`ICR_RECEIVER_FORWARD_BACKOFF=1s`, default concurrency; its deliveries have 4 installations, so 4 lanes; the + forwarding row's peak RSS includes the catch-up after the load. The outage: the sink answers 503 with Retry-After: 1 " +
      `while ${int(settings.forward.outageEvents)}+ deliveries are ingested, after a ${settings.forward.warmupSeconds}-s warm-up with the sink up; RSS = VmRSS every 100 ms.`,
    `- Other people's load: before ${noise(report.noiseBefore)}; after ${noise(report.noiseAfter)}; "other CPU" in the table is the share of the machine used by processes other than the server, wrk and the benchmark during that row.`,
    "",
    ingest,
    "",
    ratios,
    "",
    table(["figure", "value", "target", "result"], verdicts.lines),
    "",
  ];
  if (report.problems.length > 0) {
    lines.push("**The run is invalid:**", ...report.problems.map((p) => `- ${p}`), "");
  } else {
    lines.push(verdicts.failures === 0 ? "All targets met." : `${verdicts.failures} target(s) missed.`, "");
  }
  return { text: lines.join("\n"), failures: verdicts.failures };
}

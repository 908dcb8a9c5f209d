// The one table the run ends with (Markdown, so it pastes into the README as it is), the receiver's
// ratios to each peer, the extra figures, and PASS/FAIL against issue 3's targets.
import { TARGETS, type Settings } from "./config.ts";
import type { FixedRateForwarding, IngestForwarding, OutageResult } from "./forward.ts";
import type { FixedRateResult, IngestResult, SustainedResult } from "./ingest.ts";
import type { Machine, Noise } from "./machine.ts";
import type { QueryResult } from "./query.ts";
import type { FixedRateStreams } from "./streams.ts";
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
  forwarding: { fixedRate: FixedRateForwarding; ingest: IngestForwarding; outage: OutageResult };
  streams: FixedRateStreams;
  query: QueryResult;
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

function extraFigures(report: RunReport, verdicts: Verdicts): void {
  const { fixedRate, sustained, query } = report;
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
  const receiverRuns = [...report.ingest.filter((r) => r.kind === "receiver"), sustained];
  const peak = Math.max(...receiverRuns.map((r) => r.peakRssBytes));
  add("receiver peak RSS over all ingest runs", `${mb(peak)} MB`, `<= ${mb(TARGETS.peakRssBytes)} MB`, peak <= TARGETS.peakRssBytes);
  const growth = sustained.rssEnd.bytes - sustained.rssEarly.bytes;
  add(
    `RSS during a ${sustained.seconds}-s sustained run (${int(sustained.wrk.reqPerSec)} req/s): at ${sustained.rssEarly.at} s / at ${sustained.rssEnd.at} s`,
    `${mb(sustained.rssEarly.bytes)} / ${mb(sustained.rssEnd.bytes)} MB (${growth >= 0 ? "+" : ""}${mb(growth)} MB)`,
    `growth <= ${mb(TARGETS.rssGrowthBytes)} MB`,
    growth <= TARGETS.rssGrowthBytes,
  );
  const { forwarding } = report;
  const checks = [...receiverRuns, fixedRate, streams.result, forwarding.fixedRate.result, forwarding.ingest.result, forwarding.outage]
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
  const scale = `${int(query.events)} events, ${int(query.matching)} matching`;
  add(`GET /events first page p50 / p95 (${scale}; ${query.firstPage.count} times)`, `${ms(query.firstPage.p50)} / ${ms(query.firstPage.p95)} ms`, `p95 <= ${TARGETS.queryP95Ms} ms`, query.firstPage.p95 <= TARGETS.queryP95Ms);
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
  add(`start-up to ready on the ${int(query.events)}-event log (${(query.databaseBytes / 2 ** 30).toFixed(2)} GiB), spawn to /healthz 200`, `${int(query.startupMs)} ms`, "reported", null);
  add("start-up to the first 202 on that log (a new delivery posted at /healthz 200; it waits for the writer's digest index)", `${int(query.firstAcceptMs)} ms`, "reported", null);
  add(`idle RSS on that log (1 s after ready)`, `${mb(query.idleRssBytes)} MB`, "reported", null);
  add(`peak RSS while serving the queries`, `${mb(query.peakRssBytes)} MB`, "reported", null);
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

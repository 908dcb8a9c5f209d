// `bun run bench [--quick] [--no-peer-cache] [--rebuild-log]`: the benchmark of issues 3 and 17.
// Installs wrk if needed, builds the receiver, installs the Express peer, builds (or finds in its
// cache) the long-lived app's log of 10,000,000 events, then measures, in one run and under the same
// load, the HTTP ceiling, the durable floor, the Express peer and the compiled receiver (with its CPU
// by thread); then the receiver alone at a fixed rate and for a sustained minute, each also with 50
// open event streams and with forwarding on (forward.ts: also at full speed, and through an outage
// of its destination), and on the long-lived app's log; last, the upgrade of a 0.4.0 log of
// 1,000,000 events (migration.ts, the log cached too). Prints one Markdown report with PASS/FAIL
// against the targets.
//
// Exit status: 0 every target met; 2 the run is valid but a target was missed; 1 the run is invalid
// (an error, a receiver failure, a 2xx delivery missing from the log, a pool that ran dry).
//
// Loopback only; every process it starts is stopped and every file it writes is removed at the end,
// on error and on Ctrl-C too (except the caches of the Express peer's install, see setup.ts, and of
// the long-lived app's log and the 0.4.0 log, see big-log.ts and migration.ts).
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { bigLog } from "./big-log.ts";
import { FULL, QUICK, type Settings } from "./config.ts";
import { DeliveryPool } from "./deliveries.ts";
import { measureFixedRateForwarding, measureIngestForwarding, measureOutage, measureSustainedForwarding } from "./forward.ts";
import { measureFixedRate, measureIngest, measureSustained, type IngestContext, type IngestResult } from "./ingest.ts";
import { describeMachine, sampleNoise } from "./machine.ts";
import { measureMigration, MIGRATION_LOG, OLD_RELEASE, oldReleaseLog } from "./migration.ts";
import { stopAll } from "./processes.ts";
import { measureQueries } from "./query.ts";
import { formatCpuSplit, renderReport } from "./report.ts";
import { SERVER_KINDS, SERVER_LABELS } from "./servers.ts";
import { measureFixedRateStreams, measureSustainedStreams } from "./streams.ts";
import { buildReceiver, ensureWrk, expressPeer, sourceRevision } from "./setup.ts";
import { socketErrorCount } from "./wrk.ts";

/** Open event streams during the fixed-rate and sustained rows that measure what they cost ingest (issues 13, 17). */
const STREAMS = 50;

const USAGE = `usage: bun run bench [--quick] [--no-peer-cache] [--rebuild-log] [--log-only]
  --quick          a short smoke run (about 3 minutes): shorter runs, 200,000-event logs
  --no-peer-cache  install the Express peer into the run's temporary directory instead of reusing
                   the copy cached under ~/.cache/icr-receiver-bench (its native build takes ~1.5 min)
  --rebuild-log    build the logs again although ~/.cache/icr-receiver-bench holds them: the
                   long-lived app's (for this events count, generator and drizzle/ migrations;
                   10,000,000 events: minutes, about 10 GB) and the 0.4.0 log the upgrade migrates
                   (1,000,000 events, built by the 0.4.0 receiver compiled from git)
  --log-only       build (or find in the cache) both logs, print where, and stop`;

const REPO_DIR = resolve(import.meta.dir, "..");
const PEERS_DIR = resolve(REPO_DIR, "..", "shared", "peers");

const log = (line: string) => console.log(line);

function parseArgs(argv: string[]): { settings: Settings; peerCache: boolean; rebuildLog: boolean; logOnly: boolean } {
  const known = new Set(["--quick", "--no-peer-cache", "--rebuild-log", "--log-only", "--help", "-h"]);
  const unknown = argv.filter((a) => !known.has(a));
  if (argv.includes("--help") || argv.includes("-h") || unknown.length > 0) {
    if (unknown.length > 0) console.error(`unknown argument(s): ${unknown.join(" ")}`);
    console.error(USAGE);
    process.exit(unknown.length > 0 ? 64 : 0);
  }
  return { settings: argv.includes("--quick") ? QUICK : FULL, peerCache: !argv.includes("--no-peer-cache"), rebuildLog: argv.includes("--rebuild-log"), logOnly: argv.includes("--log-only") };
}

/** Stops every child and removes the run's directory; safe to call more than once. */
function makeCleanup(root: string): () => Promise<void> {
  let done: Promise<void> | null = null;
  return () =>
    (done ??= (async () => {
      await stopAll();
      rmSync(root, { recursive: true, force: true });
    })());
}

function describe(r: IngestResult): string {
  const w = r.wrk;
  return (
    `  ${SERVER_LABELS[r.kind]}, ${r.connections} conns: ${Math.round(w.reqPerSec).toLocaleString("en-US")} req/s, ` +
    `p50 ${w.latencyMs.p50.toFixed(2)} ms, p99 ${w.latencyMs.p99.toFixed(2)} ms, peak RSS ${(r.peakRssBytes / 1e6).toFixed(1)} MB, ` +
    `non-2xx ${w.non2xx}, socket errors ${socketErrorCount(w)}, other CPU ${Math.round(w.noise.other * 100)}%` +
    (r.cpu === null ? "" : `\n  CPU per delivery by thread (µs): ${formatCpuSplit(r.cpu)}${r.cpu.rolesConfirmed ? "" : " (worker roles NOT confirmed by their I/O)"}`)
  );
}

async function main(): Promise<number> {
  const { settings, peerCache, rebuildLog, logOnly } = parseArgs(Bun.argv.slice(2));
  const startedAt = new Date();
  const started = performance.now();
  const root = mkdtempSync(join(tmpdir(), "icr-receiver-bench-"));
  const cleanup = makeCleanup(root);
  let interrupted = false;
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      // Ctrl-C reaches us twice (from the terminal and forwarded by `bun run`): act once.
      if (interrupted) return;
      interrupted = true;
      console.error(`\n${signal}: stopping every process the benchmark started and removing ${root}`);
      void cleanup().finally(() => process.exit(signal === "SIGINT" ? 130 : 143));
    });
  }
  let watchdog: Timer | undefined;
  const startWatchdog = () => {
    watchdog = setTimeout(() => {
      console.error(`the benchmark exceeded ${settings.watchdogSeconds} s after its setup: aborting`);
      void cleanup().finally(() => process.exit(1));
    }, settings.watchdogSeconds * 1000);
  };

  try {
    log(`icr-receiver benchmark, ${settings.mode} mode; working directory ${root}`);
    log("setup: wrk, receiver build, Express peer");
    await ensureWrk(log);
    const binDir = join(root, "bin");
    mkdirSync(binDir);
    const receiverBinary = await buildReceiver(REPO_DIR, binDir);
    const expressDir = await expressPeer(join(PEERS_DIR, "express-peer"), root, { cache: peerCache, log });
    const [machine, revision] = await Promise.all([describeMachine(), sourceRevision(REPO_DIR)]);
    // Before any measurement: building it keeps both cores busy for minutes.
    log(`the long-lived app's log: ${settings.query.events.toLocaleString("en-US")} events`);
    const longLog = await bigLog(receiverBinary, { events: settings.query.events, matchingPerTen: settings.query.matchingPerTen }, { rebuild: rebuildLog, log });
    const migrationSpec = MIGRATION_LOG[settings.mode];
    log(`the ${OLD_RELEASE.version} log the upgrade migrates: ${migrationSpec.events.toLocaleString("en-US")} events`);
    const oldLog = await oldReleaseLog(migrationSpec, root, { rebuild: rebuildLog, log });
    if (logOnly) return 0;
    startWatchdog();

    const secrets = { webhookSecret: randomBytes(24).toString("hex"), queryToken: randomBytes(24).toString("hex") };
    const poolDir = join(root, "pool");
    mkdirSync(poolDir);
    const pool = new DeliveryPool(poolDir, settings.threads, secrets.webhookSecret);
    // Enough for the first warm-up even at 150,000 req/s; each measured run then tops it up from
    // the rate its own warm-up showed.
    pool.ensure(Math.ceil((150_000 * settings.warmupSeconds) / settings.threads));

    log("measuring other people's load on the machine (2 s idle)");
    const noiseBefore = await sampleNoise();
    const ctx: IngestContext = {
      paths: { peersDir: PEERS_DIR, expressDir, receiverBinary },
      secrets,
      pool,
      threads: settings.threads,
      runsDir: join(root, "runs"),
      log,
      problems: [],
    };

    const ingest: IngestResult[] = [];
    for (const connections of settings.connections) {
      log(`ingest, ${connections} connections`);
      for (const kind of SERVER_KINDS) {
        const result = await measureIngest(ctx, kind, connections, settings.warmupSeconds, settings.seconds);
        ingest.push(result);
        log(describe(result));
      }
    }

    log(`receiver at a fixed ${settings.fixedRate.rate} req/s`);
    const fixedRate = await measureFixedRate(ctx, settings.fixedRate);
    log(`  p50 ${fixedRate.wrk.latencyMs.p50.toFixed(2)} ms, p99 ${fixedRate.wrk.latencyMs.p99.toFixed(2)} ms at ${Math.round(fixedRate.wrk.reqPerSec)} req/s`);

    const targetConnections = settings.connections[0]!;
    log(`receiver sustained for ${settings.sustained.seconds} s at ${targetConnections} connections`);
    const receiverRate = ingest.find((r) => r.kind === "receiver" && r.connections === targetConnections)!.wrk.reqPerSec;
    const sustained = await measureSustained(ctx, {
      seconds: settings.sustained.seconds,
      connections: targetConnections,
      rssEarlyAt: settings.sustained.rssEarlyAt,
      expectedRate: receiverRate,
    });
    log(`  RSS by second (MB): ${sustained.rssBySecond.map(([, b]) => (b / 1e6).toFixed(0)).join(" ")}`);
    const sustainedRun = { connections: targetConnections, expectedRate: receiverRate };
    log(`receiver sustained for ${settings.sustained.seconds} s with ${STREAMS} open event streams`);
    const sustainedStreams = await measureSustainedStreams(ctx, settings, STREAMS, sustainedRun);
    log(
      `  ${Math.round(sustainedStreams.result.wrk.reqPerSec)} req/s; each stream received ${sustainedStreams.fewest}-${sustainedStreams.most} of ${sustainedStreams.stored}; ` +
        `RSS by second (MB): ${sustainedStreams.result.rssBySecond.map(([, b]) => (b / 1e6).toFixed(0)).join(" ")}`,
    );
    log(`receiver sustained for ${settings.sustained.seconds} s with forwarding on`);
    const sustainedForwarding = await measureSustainedForwarding(ctx, settings, sustainedRun);
    log(
      `  ${Math.round(sustainedForwarding.result.wrk.reqPerSec)} req/s; lag ${sustainedForwarding.forwarding.atLoadEnd.pending} at the end, pending 0 after ` +
        `${sustainedForwarding.forwarding.catchUpSeconds === null ? "(timed out)" : `${sustainedForwarding.forwarding.catchUpSeconds.toFixed(1)} s`}; ` +
        `RSS by second (MB): ${sustainedForwarding.result.rssBySecond.map(([, b]) => (b / 1e6).toFixed(0)).join(" ")}`,
    );

    log(`receiver at a fixed ${settings.fixedRate.rate} req/s with ${STREAMS} open event streams`);
    const streams = await measureFixedRateStreams(ctx, settings, STREAMS);
    log(`  p50 ${streams.result.wrk.latencyMs.p50.toFixed(2)} ms, p99 ${streams.result.wrk.latencyMs.p99.toFixed(2)} ms; each stream received ${streams.fewest}-${streams.most} of ${streams.stored}`);

    // Forwarding: before the query benchmark, which frees the delivery pools these rows still need.
    log(`receiver at a fixed ${settings.fixedRate.rate} req/s with forwarding on`);
    const fixedForwarding = await measureFixedRateForwarding(ctx, settings);
    log(
      `  p50 ${fixedForwarding.result.wrk.latencyMs.p50.toFixed(2)} ms, p99 ${fixedForwarding.result.wrk.latencyMs.p99.toFixed(2)} ms; ` +
        `lag at the end ${fixedForwarding.forwarding.atLoadEnd.pending}, forwarded ${fixedForwarding.forwarding.final.delivered}`,
    );
    log(`receiver with forwarding on, ${targetConnections} connections`);
    const ingestForwarding = await measureIngestForwarding(ctx, settings, targetConnections);
    const g = ingestForwarding.forwarding;
    log(
      `${describe(ingestForwarding.result)}\n  forwarding: ${g.atLoadEnd.delivered} forwarded during the load, lag ${g.atLoadEnd.pending} at its end, ` +
        `pending 0 after ${g.catchUpSeconds === null ? "(timed out)" : `${g.catchUpSeconds.toFixed(1)} s`}; sink received ${g.sinkCount}`,
    );
    log(`sink outage: ${settings.forward.outageEvents.toLocaleString("en-US")} events with the sink down, then the drain`);
    const outage = await measureOutage(ctx, settings);
    log(
      `  backlog ${outage.backlog} at ${Math.round(outage.buildUpRate)} req/s; drain ${outage.drainSeconds?.toFixed(1) ?? "timed out"} s ` +
        `(${Math.round(outage.drainRate)} events/s, first request after ${outage.firstDeliverySeconds?.toFixed(2) ?? "-"} s)`,
    );
    log(
      `  RSS by second (MB; outage at ${outage.outageAtSecond} s, sink up at ${outage.upAtSecond} s): ` +
        outage.rssBySecond.map(([, b]) => (b / 1e6).toFixed(0)).join(" "),
    );

    log(`the long-lived app: ${settings.query.events.toLocaleString("en-US")} events against an empty log; queries; check`);
    rmSync(poolDir, { recursive: true, force: true }); // the pools are not needed any more: free the disk
    const query = await measureQueries(ctx.paths, secrets, root, longLog, settings.query, log);
    ctx.problems.push(...query.problems);

    log(`the upgrade: a copy of the ${OLD_RELEASE.version} log migrated by this receiver, then checked`);
    const migration = await measureMigration(receiverBinary, oldLog, join(root, "migration"), log);
    if (migration.failure !== null) log(`  ${migration.failure}`);

    const noiseAfter = await sampleNoise();
    const { text, failures } = renderReport({
      settings,
      command: `bun run bench${settings.mode === "quick" ? " --quick" : ""}${rebuildLog ? " --rebuild-log" : ""}`,
      startedAt,
      elapsedSeconds: (performance.now() - started) / 1000,
      revision,
      machine,
      noiseBefore,
      noiseAfter,
      meanBodyBytes: pool.meanBodyBytes,
      ingest,
      fixedRate,
      sustained,
      sustainedStreams,
      sustainedForwarding,
      forwarding: { fixedRate: fixedForwarding, ingest: ingestForwarding, outage },
      streams,
      query,
      migration,
      problems: ctx.problems,
    });
    console.log(`\n${text}`);
    if (ctx.problems.length > 0) return 1;
    return failures > 0 ? 2 : 0;
  } catch (error) {
    if (interrupted) return 130; // the children it lost were stopped on purpose
    console.error(`\nbenchmark failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    return 1;
  } finally {
    if (watchdog !== undefined) clearTimeout(watchdog);
    await cleanup();
  }
}

process.exit(await main());

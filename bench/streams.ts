// The receiver with open event streams (bench/stream-readers.ts, a process of its own): what many
// live readers cost the ingest path (at the fixed rate, and for the sustained minute), and proof
// that each one got every event.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Settings } from "./config.ts";
import { measureFixedRate, measureSustained, type FixedRateResult, type IngestContext, type RunOptions, type SustainedResult } from "./ingest.ts";
import { spawnTracked, stop } from "./processes.ts";
import type { RunningServer } from "./servers.ts";

const READERS = join(import.meta.dir, "stream-readers.ts");

/** After the load, the longest wait for the streams to have read every stored event. */
const CATCH_UP_MS = 60_000;

export interface StreamCounts {
  streams: number;
  /** Events each stream received, fewest and most, and the events the log stored. */
  fewest: number;
  most: number;
  stored: number;
}

export interface FixedRateStreams extends StreamCounts {
  result: FixedRateResult;
}

export interface SustainedStreams extends StreamCounts {
  result: SustainedResult;
}

/** Newest event id in the log, through GET /events (ids are dense from 1: the number of events). */
async function newestEventId(server: RunningServer, token: string): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${server.port}/events?limit=1`, { headers: { authorization: `Bearer ${token}` } });
  if (response.status !== 200) throw new Error(`GET /events answered ${response.status}`);
  const { events } = (await response.json()) as { events: { id: number }[] };
  return events[0]?.id ?? 0;
}

/**
 * Runs `measure` with `streams` readers open from before the load; after it, waits until every
 * stream has read the newest event (at most CATCH_UP_MS), then stops the readers and compares their
 * counts with the events the log stored.
 */
async function withStreams<T extends { logCheck: { events: number } | null }>(
  ctx: IngestContext,
  slug: string,
  streams: number,
  measure: (options: RunOptions) => Promise<T>,
): Promise<StreamCounts & { result: T }> {
  let counts: number[] = [];
  let readers: ReturnType<typeof spawnTracked> | undefined;
  const logFile = join(ctx.runsDir, `stream-readers-${slug}.log`);
  const output = () => (existsSync(logFile) ? readFileSync(logFile, "utf8") : "");
  const lastCounts = () => {
    const line = output().split("\n").findLast((l) => l.startsWith("{"));
    return line === undefined ? [] : (JSON.parse(line) as { counts: number[] }).counts;
  };
  const result = await measure({
    variant: `${streams} streams`,
    beforeLoad: async (server) => {
      readers = spawnTracked([process.execPath, READERS], {
        env: { ...process.env, STREAM_URL: `http://127.0.0.1:${server.port}/events/stream?after=0`, QUERY_TOKEN: ctx.secrets.queryToken, STREAMS: String(streams) },
        cwd: ctx.runsDir,
        logFile,
      });
      const deadline = Date.now() + 15_000;
      while (!output().includes("ready")) {
        if (Date.now() > deadline || readers.exitCode !== null) throw new Error(`the stream readers did not open their streams: ${output().slice(-500)}`);
        await Bun.sleep(20);
      }
    },
    afterLoad: async (server) => {
      if (readers === undefined) return;
      const newest = await newestEventId(server, ctx.secrets.queryToken);
      const deadline = Date.now() + CATCH_UP_MS;
      // The readers print their counts every second; the last commits reach them within a moment.
      do await Bun.sleep(500);
      while (Date.now() < deadline && !(lastCounts().length === streams && Math.min(...lastCounts()) >= newest));
      await stop(readers);
      counts = lastCounts();
    },
  });
  const stored = result.logCheck?.events ?? 0;
  if (counts.length !== streams) ctx.problems.push(`${streams} streams (${slug}): the readers reported ${counts.length} streams`);
  const fewest = Math.min(...counts);
  const most = Math.max(...counts);
  if (counts.length === streams && (fewest !== stored || most !== stored)) {
    ctx.problems.push(`${streams} streams (${slug}): each should have received the ${stored} events stored; they received ${fewest} to ${most}`);
  }
  return { result, streams, fewest, most, stored };
}

export function measureFixedRateStreams(ctx: IngestContext, settings: Settings, streams: number): Promise<FixedRateStreams> {
  return withStreams(ctx, "fixed-rate", streams, (options) => measureFixedRate(ctx, settings.fixedRate, options));
}

/** The sustained run with the streams open: RSS growth and peak RSS while they follow the load. */
export function measureSustainedStreams(
  ctx: IngestContext,
  settings: Settings,
  streams: number,
  run: { connections: number; expectedRate: number },
): Promise<SustainedStreams> {
  const { seconds, rssEarlyAt } = settings.sustained;
  return withStreams(ctx, "sustained", streams, (options) => measureSustained(ctx, { seconds, rssEarlyAt, ...run }, options));
}

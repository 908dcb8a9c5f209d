// The receiver at the fixed rate with open event streams (bench/stream-readers.ts, a process of its
// own): what many live readers cost the ingest path, and proof that each one got every event.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Settings } from "./config.ts";
import { measureFixedRate, type FixedRateResult, type IngestContext } from "./ingest.ts";
import { spawnTracked, stop } from "./processes.ts";

const READERS = join(import.meta.dir, "stream-readers.ts");

export interface FixedRateStreams {
  result: FixedRateResult;
  streams: number;
  /** Events each stream received, fewest and most, and the events the log stored. */
  fewest: number;
  most: number;
  stored: number;
}

export async function measureFixedRateStreams(ctx: IngestContext, settings: Settings, streams: number): Promise<FixedRateStreams> {
  let counts: number[] = [];
  let readers: ReturnType<typeof spawnTracked> | undefined;
  const logFile = join(ctx.runsDir, "stream-readers.log");
  const output = () => (existsSync(logFile) ? readFileSync(logFile, "utf8") : "");
  const result = await measureFixedRate(ctx, settings.fixedRate, {
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
    afterLoad: async () => {
      // The last commits reach the streams within a moment; then the counts.
      await Bun.sleep(500);
      if (readers === undefined) return;
      await stop(readers);
      const line = output().split("\n").find((l) => l.startsWith("{"));
      counts = line === undefined ? [] : (JSON.parse(line) as { counts: number[] }).counts;
    },
  });
  const stored = result.logCheck?.events ?? 0;
  if (counts.length !== streams) ctx.problems.push(`${streams} streams: the readers reported ${counts.length} streams`);
  const fewest = Math.min(...counts);
  const most = Math.max(...counts);
  if (counts.length === streams && (fewest !== stored || most !== stored)) {
    ctx.problems.push(`${streams} streams: each should have received the ${stored} events stored; they received ${fewest} to ${most}`);
  }
  return { result, streams, fewest, most, stored };
}

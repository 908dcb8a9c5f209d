// A receiver as a separate process (source or compiled binary), as systemd would run it.
import type { Subprocess } from "bun";
import { createServer } from "node:net";
import { join } from "node:path";

export const REPO = join(import.meta.dir, "..", "..");

/** A port free on loopback now, for a process that must know its port before it starts. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export interface ReceiverProcess {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  port: number;
  url: string;
  /** Every stdout line so far (JSON log lines). */
  lines: string[];
  /** Sends SIGTERM and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number>;
}

/** Starts `command` and resolves once its `listening` log line names the port. */
export async function spawnReceiver(
  command: string[],
  { env = {}, cwd, timeoutMs = 15_000 }: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {},
): Promise<ReceiverProcess> {
  const proc = Bun.spawn(command, {
    cwd,
    env: { PATH: process.env.PATH!, ICR_RECEIVER_HOST: "127.0.0.1", ICR_RECEIVER_PORT: "0", ...env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const lines: string[] = [];
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line within ${timeoutMs} ms: ${lines.join("\n")}`)), timeoutMs);
    (async () => {
      const decoder = new TextDecoder();
      let buffered = "";
      for await (const chunk of proc.stdout) {
        buffered += decoder.decode(chunk, { stream: true });
        let newline: number;
        while ((newline = buffered.indexOf("\n")) >= 0) {
          const line = buffered.slice(0, newline);
          buffered = buffered.slice(newline + 1);
          lines.push(line);
          const entry = JSON.parse(line.replace(/^<\d>/, ""));
          if (entry.msg === "listening") {
            clearTimeout(timer);
            resolve(entry.port);
          }
        }
      }
      clearTimeout(timer);
      reject(new Error(`exited ${await proc.exited} before listening: ${await new Response(proc.stderr).text()}`));
    })().catch(reject);
  });
  return {
    proc,
    port,
    url: `http://127.0.0.1:${port}`,
    lines,
    async stop(signal = "SIGTERM") {
      proc.kill(signal);
      return proc.exited;
    },
  };
}

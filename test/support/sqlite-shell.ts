// Debian's sqlite3 CLI, as an operator runs it: one-shot, or (SqliteShell) an interactive shell kept
// open through a pipe, where statements run one after another in the same process, so a
// transaction it begins stays open between calls.
import type { Subprocess } from "bun";

/** One statement list through Debian's sqlite3 (`flags` such as -readonly); its output, trimmed. */
export function sqlite3(database: string, sql: string, flags: string[] = []): string {
  const result = Bun.spawnSync(["sqlite3", ...flags, database, sql]);
  if (result.exitCode !== 0) throw new Error(`sqlite3 failed: ${result.stderr.toString()}`);
  return result.stdout.toString().trim();
}

export class SqliteShell {
  private output = "";
  private errors = "";
  private marker = 0;
  private readonly proc: Subprocess<"pipe", "pipe", "pipe">;

  constructor(database: string, flags: string[] = []) {
    this.proc = Bun.spawn(["sqlite3", ...flags, database], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    void this.collect(this.proc.stdout, (text) => (this.output += text));
    void this.collect(this.proc.stderr, (text) => (this.errors += text));
  }

  private async collect(stream: ReadableStream<Uint8Array>, append: (text: string) => void) {
    const decoder = new TextDecoder();
    for await (const chunk of stream) append(decoder.decode(chunk, { stream: true }));
  }

  /**
   * Runs `sql` (statements and dot-commands) and resolves with its output once sqlite3 has run it
   * all; rejects if sqlite3 reported an error. sqlite3 flushes its output after each statement.
   */
  async run(sql: string, timeoutMs = 20_000): Promise<string> {
    const marker = `--done-${++this.marker}--`;
    const from = this.output.length;
    const errorsBefore = this.errors.length;
    this.proc.stdin.write(`${sql}\nSELECT '${marker}';\n`);
    await this.proc.stdin.flush();
    const deadline = performance.now() + timeoutMs;
    while (!this.output.includes(marker, from)) {
      if (this.proc.exitCode !== null) throw new Error(`sqlite3 exited ${this.proc.exitCode}: ${this.errors}`);
      if (performance.now() > deadline) throw new Error(`sqlite3 did not finish within ${timeoutMs} ms: ${sql}`);
      await Bun.sleep(10);
    }
    const errors = this.errors.slice(errorsBefore);
    if (errors !== "") throw new Error(`sqlite3: ${errors.trim()}`);
    return this.output.slice(from, this.output.indexOf(marker, from)).trim();
  }

  /** Ends the session (an open transaction is rolled back by sqlite3 on exit); always safe to call. */
  async close(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    try {
      this.proc.stdin.end();
    } catch {
      // already closed
    }
    const exited = await Promise.race([this.proc.exited.then(() => true), Bun.sleep(5_000).then(() => false)]);
    if (!exited) {
      this.proc.kill("SIGKILL");
      await this.proc.exited;
    }
  }
}

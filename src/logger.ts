// One JSON object per line on stdout. Under systemd (JOURNAL_STREAM set) each line starts with
// the syslog priority (<3>, <4>, <6>) so journald files it at the right level. Lines written in
// one turn of the event loop leave in one write: a line per delivery must not cost a syscall each.
export type Level = "error" | "warn" | "info";
const PRIORITY: Record<Level, number> = { error: 3, warn: 4, info: 6 };

export interface Logger {
  (level: Level, msg: string, fields?: Record<string, unknown>): void;
  /** Writes out what is buffered, now (before the process exits). */
  flush(): void;
}

export function jsonLogger(
  write: (text: string) => void = (text) => process.stdout.write(text),
  journald = process.env.JOURNAL_STREAM !== undefined,
): Logger {
  let buffered: string[] = [];
  const flush = () => {
    if (buffered.length === 0) return;
    const text = buffered.join("");
    buffered = [];
    write(text);
  };
  const log = (level: Level, msg: string, fields: Record<string, unknown> = {}) => {
    const line = JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields });
    if (buffered.push(journald ? `<${PRIORITY[level]}>${line}\n` : `${line}\n`) === 1) setImmediate(flush);
  };
  return Object.assign(log, { flush });
}

export const silentLogger: Logger = Object.assign(() => {}, { flush: () => {} });

// One JSON object per line on stdout. Under systemd (JOURNAL_STREAM set) each line starts with
// the syslog priority (<3>, <4>, <6>) so journald files it at the right level.
export type Level = "error" | "warn" | "info";
const PRIORITY: Record<Level, number> = { error: 3, warn: 4, info: 6 };

export type Logger = (level: Level, msg: string, fields?: Record<string, unknown>) => void;

export function jsonLogger(
  write: (line: string) => void = (line) => process.stdout.write(line),
  journald = process.env.JOURNAL_STREAM !== undefined,
): Logger {
  return (level, msg, fields = {}) => {
    const line = JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields });
    write(journald ? `<${PRIORITY[level]}>${line}\n` : `${line}\n`);
  };
}

export const silentLogger: Logger = () => {};

// Small tmpfs mounts for fault tests (a full disk, a read-only file system). Mounting needs root
// (CAP_SYS_ADMIN); `canMount` says whether this machine allows it, so tests can say why they skip.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

function run(command: string[]): { ok: boolean; stderr: string } {
  const result = Bun.spawnSync(command, { stdout: "pipe", stderr: "pipe" });
  return { ok: result.exitCode === 0, stderr: result.stderr.toString().trim() };
}

/** Whether a tmpfs can be mounted here (tried once, and unmounted at once). */
export const canMount: boolean = (() => {
  if (process.getuid?.() !== 0) return false;
  const dir = mkdtempSync(join(tmpdir(), "icr-mount-probe-"));
  try {
    if (!run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir]).ok) return false;
    run(["umount", dir]);
    return true;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
})();

export interface Tmpfs {
  dir: string;
  remount(options: string): void;
  /** Unmounts (lazily if busy) and removes the mount point; safe to call twice. */
  cleanup(): void;
}

export function mountTmpfs(size: string, prefix = "icr-tmpfs-"): Tmpfs {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const mounted = run(["mount", "-t", "tmpfs", "-o", `size=${size},mode=0755`, "tmpfs", dir]);
  if (!mounted.ok) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`cannot mount a tmpfs on ${dir}: ${mounted.stderr}`);
  }
  let done = false;
  return {
    dir,
    remount(options) {
      const result = run(["mount", "-o", `remount,${options}`, dir]);
      if (!result.ok) throw new Error(`cannot remount ${dir} ${options}: ${result.stderr}`);
    },
    cleanup() {
      if (done) return;
      done = true;
      if (!run(["umount", dir]).ok) run(["umount", "-l", dir]);
      try {
        rmSync(dir, { recursive: true, force: true });
      } catch {
        // still busy: the lazy unmount finishes when its last user goes
      }
    },
  };
}

// Everything the benchmark needs before it can measure: wrk, the compiled receiver, the Express
// peer with its native better-sqlite3 build.
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { run } from "./processes.ts";

/** Installs wrk from Debian's packages when it is missing. */
export async function ensureWrk(log: (line: string) => void): Promise<string> {
  const found = Bun.which("wrk");
  if (found !== null) return found;
  if (process.getuid?.() !== 0) throw new Error("wrk is missing and this is not root: run `apt-get install -y wrk`");
  log("installing wrk (apt-get update, apt-get install -y wrk)");
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  await run(["apt-get", "update", "-qq"], { env, timeoutMs: 300_000 });
  await run(["apt-get", "install", "-y", "-qq", "wrk"], { env, timeoutMs: 300_000 });
  const installed = Bun.which("wrk");
  if (installed === null) throw new Error("apt-get installed wrk but it is not on PATH");
  return installed;
}

/**
 * `bun run build`, then a private copy of the binary: other engineers rebuild dist/ while the
 * benchmark runs, and a binary replaced under a running benchmark would mix two versions.
 */
export async function buildReceiver(repoDir: string, binDir: string): Promise<string> {
  await run([process.execPath, "run", "build"], { cwd: repoDir, timeoutMs: 300_000 });
  const binary = join(binDir, "icr-receiver");
  copyFileSync(join(repoDir, "dist", "icr-receiver"), binary);
  return binary;
}

/** The commit (and whether src/ differs from it) the benchmarked binary was built from. */
export async function sourceRevision(repoDir: string): Promise<string> {
  try {
    const { stdout: head } = await run(["git", "rev-parse", "--short", "HEAD"], { cwd: repoDir });
    const { stdout: dirty } = await run(["git", "status", "--porcelain", "--", "src", "drizzle", "package.json"], { cwd: repoDir });
    return head.trim() + (dirty.trim() === "" ? "" : " + uncommitted changes");
  } catch {
    return "unknown";
  }
}

async function npmInstall(source: string, target: string): Promise<void> {
  cpSync(source, target, { recursive: true });
  // better-sqlite3 has no reachable prebuilt binary here: it compiles (about 1.5 min on 2 cores).
  await run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], { cwd: target, timeoutMs: 600_000 });
  const addon = join(target, "node_modules", "better-sqlite3", "build", "Release", "better_sqlite3.node");
  if (!existsSync(addon)) throw new Error(`npm install in ${target} did not build better-sqlite3`);
}

/**
 * The Express peer, installed with npm. Its native build takes longer than a quick run, so by
 * default the installed copy is kept in a cache keyed by the peer's files and the Node version
 * (like npm's own cache, it is not a temporary file); `cache: false` installs into `tempDir`.
 */
export async function expressPeer(
  peerSource: string,
  tempDir: string,
  { cache, log }: { cache: boolean; log: (line: string) => void },
): Promise<string> {
  if (!cache) {
    const dir = join(tempDir, "express-peer");
    log("installing the Express peer (npm install, builds better-sqlite3)");
    await npmInstall(peerSource, dir);
    return dir;
  }
  const { stdout: nodeVersion } = await run(["node", "--version"]);
  const key = new Bun.CryptoHasher("sha256")
    .update(await Bun.file(join(peerSource, "package.json")).text())
    .update(await Bun.file(join(peerSource, "server.mjs")).text())
    .update(nodeVersion.trim())
    .digest("hex")
    .slice(0, 16);
  const cacheRoot = join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "icr-receiver-bench");
  const dir = join(cacheRoot, `express-peer-${key}`);
  if (existsSync(join(dir, "server.mjs"))) return dir;
  log(`installing the Express peer into ${dir} (npm install, builds better-sqlite3; once)`);
  mkdirSync(cacheRoot, { recursive: true });
  const staging = mkdtempSync(join(cacheRoot, "staging-"));
  try {
    await npmInstall(peerSource, join(staging, "peer"));
    renameSync(join(staging, "peer"), dir); // only a complete install ever appears under the key
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  return dir;
}

// The shipped artefact: `npm run build` makes one executable that runs alone from an empty directory.
// The test builds its own copy, with the package.json script's flags and a later `--outfile` (bun
// takes the last one) into a new temporary directory: it never writes, nor reads, the repository's
// dist/, which operators and the bench build at the same time.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fixture } from "./support/fixtures.ts";
import { REPO, spawnReceiver } from "./support/process.ts";
import { tempDir } from "./support/server.ts";

let dir: string;
let binary: string;

beforeAll(() => {
  dir = tempDir("icr-binary-");
  binary = join(dir, "icr-receiver");
  const build = Bun.spawnSync([process.execPath, "run", "build", "--outfile", binary], {
    cwd: REPO,
    stdout: "pipe",
    stderr: "pipe",
  });
  if (build.exitCode !== 0) throw new Error(`build failed: ${build.stderr.toString()}`);
  // Had the script's own --outfile won, the binary would be in dist/ and not here.
  if (!existsSync(binary)) throw new Error(`the build did not write ${binary}: ${build.stderr.toString()}`);
}, 120_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("--help and --version", () => {
  const help = Bun.spawnSync([binary, "--help"], { cwd: dir });
  expect(help.exitCode).toBe(0);
  expect(help.stdout.toString()).toContain("Usage: icr-receiver");
  const version = Bun.spawnSync([binary, "--version"], { cwd: dir });
  expect(version.exitCode).toBe(0);
  expect(version.stdout.toString().trim()).toBe((require(join(REPO, "package.json")) as { version: string }).version);
});

test("the lockfile is the one package.json describes: `npm install` in a clone leaves it as committed", () => {
  const manifest = require(join(REPO, "package.json")) as Record<string, unknown>;
  const lock = require(join(REPO, "package-lock.json")) as { version: string; packages: Record<string, Record<string, unknown>> };
  const root = lock.packages[""]!;
  expect([lock.version, root.version]).toEqual([manifest.version, manifest.version]);
  expect(root.dependencies).toEqual(manifest.dependencies);
  expect(root.devDependencies).toEqual(manifest.devDependencies);
});

test(
  "copied alone into an empty directory: first start, a delivery, a query, SIGTERM",
  async () => {
    expect(readdirSync(dir)).toEqual(["icr-receiver"]);
    // Built without .env autoload: a stray .env beside it must not change its port.
    writeFileSync(join(dir, ".env"), "ICR_RECEIVER_PORT=1\n");
    const f = fixture("warehouse-transaction");
    // The first start generates its own secret; then the fixture's secret is given, as an operator would.
    const first = await spawnReceiver([binary], { cwd: dir });
    expect(existsSync(join(dir, "data", "webhook-secret"))).toBe(true);
    expect(await first.stop()).toBe(0);

    const receiver = await spawnReceiver([binary], { cwd: dir, env: { ICR_RECEIVER_SECRET: f.secret } });
    const response = await fetch(`${receiver.url}/webhook`, { method: "POST", headers: f.headers, body: f.body });
    expect(response.status).toBe(202);
    const { id } = await response.json();
    const token = (await Bun.file(join(dir, "data", "query-token")).text()).trim();
    const event = await (await fetch(`${receiver.url}/events/${id}`, { headers: { authorization: `Bearer ${token}` } })).json();
    expect(event.event).toBe("warehouseTransaction");
    expect(event.deliveries[0].rawBody).toBe(f.body);
    expect(await receiver.stop("SIGTERM")).toBe(0);

    const rows = Bun.spawnSync(["sqlite3", "-readonly", join(dir, "data", "icr-receiver.db"), "SELECT id, event FROM events"]);
    expect(rows.stdout.toString().trim()).toBe(`${id}|warehouseTransaction`);
    const lines = receiver.lines.join("\n");
    expect(lines).toContain('"msg":"stopped"');
    expect(lines).not.toContain(f.secret);
    expect(lines).not.toContain(token);
  },
  60_000,
);

test(
  "the console works from the binary: its stylesheet and script are embedded, the login and pages answer; --no-console turns it off",
  async () => {
    const receiver = await spawnReceiver([binary], { cwd: dir });
    try {
      for (const asset of ["console.css", "console.js", "icon.svg"]) {
        const response = await fetch(`${receiver.url}/console/assets/${asset}`);
        expect(response.status).toBe(200);
        expect(await response.text()).toBe(await Bun.file(join(REPO, "src", "console", "assets", asset)).text());
      }
      const token = (await Bun.file(join(dir, "data", "query-token")).text()).trim();
      const login = await fetch(`${receiver.url}/console/login`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ token }).toString(),
        redirect: "manual",
      });
      expect(login.status).toBe(303);
      const cookie = login.headers.get("set-cookie")!.split(";")[0]!;
      for (const path of ["/console/events", "/console/events/1", "/console/refused", "/console/forwarding", "/console/health"]) {
        const page = await fetch(receiver.url + path, { headers: { cookie }, redirect: "manual" });
        expect(`${path} ${page.status}`).toBe(`${path} 200`);
        expect(page.headers.get("content-security-policy")).toStartWith("default-src 'none'");
      }
      expect(receiver.lines.join("\n")).not.toContain(token);
    } finally {
      expect(await receiver.stop("SIGTERM")).toBe(0);
    }
    const off = await spawnReceiver([binary, "--no-console"], { cwd: dir });
    try {
      expect((await fetch(`${off.url}/console/login`)).status).toBe(404);
    } finally {
      await off.stop("SIGTERM");
    }
  },
  60_000,
);

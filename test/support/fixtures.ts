import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** The shared, read-only delivery fixtures (../shared/fixtures beside the repository). */
export const FIXTURES_DIR = join(import.meta.dir, "..", "..", "..", "shared", "fixtures");

export interface Fixture {
  name: string;
  secret: string;
  headers: Record<string, string>;
  body: string;
  expect: { status: number; stored: boolean; event?: string };
}

export function loadFixtures(): Fixture[] {
  return readdirSync(FIXTURES_DIR)
    .filter((file) => file.endsWith(".json"))
    .sort()
    .map((file) => ({ name: file.replace(/\.json$/, ""), ...JSON.parse(readFileSync(join(FIXTURES_DIR, file), "utf8")) }));
}

export function fixture(name: string): Fixture {
  const found = loadFixtures().find((f) => f.name === name);
  if (!found) throw new Error(`no fixture ${name}`);
  return found;
}

export const FIXTURE_SECRET = "It's a Secret to Everybody";

import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** The repository's own delivery fixtures, written by test/fixtures/make-fixtures.ts and committed. */
export const REPO_FIXTURES_DIR = join(import.meta.dir, "..", "fixtures");

/** The shared, read-only delivery fixtures (../shared/fixtures beside the repository), if present. */
export const SHARED_FIXTURES_DIR = join(import.meta.dir, "..", "..", "..", "shared", "fixtures");

/** Whether ../shared/fixtures exists here (as in CI), so loadFixtures() includes its files. */
export const SHARED_FIXTURES_PRESENT = existsSync(SHARED_FIXTURES_DIR);

export interface Fixture {
  /** `repo/<file name>` or `shared/<file name>`, without `.json` (fixture(name) takes the bare name). */
  name: string;
  secret: string;
  headers: Record<string, string>;
  body: string;
  expect: {
    status: number;
    stored: boolean;
    event?: string;
    /** false: authentic but its signed data is not a JSON object with a string `event` (stored unparsed). */
    parsed?: boolean;
    /** Why it is unparsed (`not_base64`, `not_utf8`, `not_json`, `not_an_object`, `no_event`); our own fixtures only. */
    unparsedReason?: string;
    note?: string;
  };
}

function readSet(dir: string, prefix: string): Fixture[] {
  return readdirSync(dir)
    .filter((file) => file.endsWith(".json"))
    .sort()
    .map((file) => ({ ...JSON.parse(readFileSync(join(dir, file), "utf8")), name: `${prefix}/${file.replace(/\.json$/, "")}` }));
}

/** The repository's own fixtures (`repo/…`), then the shared ones (`shared/…`) when ../shared/fixtures exists. */
export function loadFixtures(): Fixture[] {
  const own = readSet(REPO_FIXTURES_DIR, "repo");
  return SHARED_FIXTURES_PRESENT ? [...own, ...readSet(SHARED_FIXTURES_DIR, "shared")] : own;
}

/** The repository's own fixture `name` (bare, e.g. "installed"): never depends on ../shared. */
export function fixture(name: string): Fixture {
  const found = readSet(REPO_FIXTURES_DIR, "repo").find((f) => f.name === `repo/${name}`);
  if (!found) throw new Error(`no fixture ${name} in ${REPO_FIXTURES_DIR}`);
  return found;
}

export const FIXTURE_SECRET = "It's a Secret to Everybody";

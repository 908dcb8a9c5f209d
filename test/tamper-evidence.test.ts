// The hash chain: every row is chained to the one before it; an edit made behind the
// triggers' back is found, and the first row that does not match is named.
import { afterEach, expect, test } from "bun:test";
import { verifyChain } from "../src/log/chain.ts";
import { signedDelivery, startServer, type TestServer } from "./support/server.ts";
import { sqlite3 } from "./support/sqlite-shell.ts";

let server: TestServer;
afterEach(() => server.stop());

async function postSome(n: number, repeatEvery = 0) {
  const sent: ReturnType<typeof signedDelivery>[] = [];
  for (let i = 0; i < n; i++) {
    const d = repeatEvery && i % repeatEvery === 0 && sent.length ? sent[sent.length - 1]! : signedDelivery();
    sent.push(d);
    expect((await server.post(d.body, d.headers)).status).toBe(202);
  }
}

test("an untouched log verifies, through batches, duplicates and restarts of the writer", async () => {
  server = await startServer();
  await postSome(10, 3);
  const concurrent = Array.from({ length: 40 }, () => signedDelivery());
  await Promise.all(concurrent.map((d) => server.post(d.body, d.headers)));
  const { sqlite } = server.database;
  expect(verifyChain(sqlite, "events")).toEqual({ ok: true, table: "events", rows: 47 });
  expect(verifyChain(sqlite, "deliveries")).toEqual({ ok: true, table: "deliveries", rows: 50 });
});

test("an edited event, an edited delivery and a removed row are each found at their row", async () => {
  server = await startServer();
  await postSome(8);
  const path = server.config.databasePath;
  const { sqlite } = server.database;

  sqlite3(path, "DROP TRIGGER events_no_update; UPDATE events SET payload = replace(payload, 'processed', 'failed') WHERE id = 5;");
  expect(verifyChain(sqlite, "events")).toEqual({ ok: false, table: "events", rows: 5, firstBadId: 5 });

  sqlite3(path, "DROP TRIGGER deliveries_no_update; UPDATE deliveries SET remote_address = '10.0.0.1' WHERE id = 7;");
  expect(verifyChain(sqlite, "deliveries")).toEqual({ ok: false, table: "deliveries", rows: 7, firstBadId: 7 });

  sqlite3(path, "UPDATE deliveries SET remote_address = '127.0.0.1' WHERE id = 7; DROP TRIGGER deliveries_no_delete; DELETE FROM deliveries WHERE id = 3;");
  expect(verifyChain(sqlite, "deliveries")).toEqual({ ok: false, table: "deliveries", rows: 3, firstBadId: 4 });
});

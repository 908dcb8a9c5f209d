// A stand-in for src/log/writer-worker.ts that dies (an uncaught error) on the first commit it
// ever sees, as a broken writer thread would, then behaves: for testing GroupCommit's recovery.
// "Ever" is kept in a marker file beside the log path, since every new thread starts afresh.
import { existsSync, writeFileSync } from "node:fs";
import { unpackBatch } from "../../src/log/batch-message.ts";
import type { WriterReply, WriterRequest } from "../../src/log/writer-worker.ts";

declare const self: Worker;
let marker = "";
let nextId = 0;
const reply = (message: WriterReply) => self.postMessage(message);

self.onmessage = ({ data }: MessageEvent<WriterRequest>) => {
  if (data.type === "open") {
    marker = `${data.options.path}.crashed`;
    reply({ type: "ready" });
  } else if (data.type === "close") {
    reply({ type: "closed" });
  } else if (!existsSync(marker)) {
    writeFileSync(marker, "");
    throw new Error("writer thread crashed");
  } else {
    reply({ type: "committed", results: unpackBatch(data.batch).map(() => ({ id: ++nextId, duplicate: false })), seconds: 0 });
  }
};

// A stand-in for src/log/writer-worker.ts that answers each append at once and takes a while to
// close, as the real writer does while it stops its checkpointer and copies what is left; it
// leaves a marker file beside the log path once it has closed. A log path ending in
// "dies-on-close.db" makes it die at "close" instead: for testing GroupCommit.close().
import { writeFileSync } from "node:fs";
import { unpackBatch } from "../../src/log/batch-message.ts";
import type { WriterReply, WriterRequest } from "../../src/log/writer-worker.ts";

declare const self: Worker;
let path = "";
let nextId = 0;
const reply = (message: WriterReply) => self.postMessage(message);

self.onmessage = ({ data }: MessageEvent<WriterRequest>) => {
  if (data.type === "open") {
    path = data.options.path;
    reply({ type: "ready" });
  } else if (data.type === "close") {
    if (path.endsWith("dies-on-close.db")) throw new Error("writer thread crashed while closing");
    setTimeout(() => {
      writeFileSync(`${path}.closed`, "");
      reply({ type: "closed" });
    }, 100);
  } else {
    // Like the real writer, a refusal handed over last is answered after "close" has arrived.
    setTimeout(() => reply({ type: "committed", results: unpackBatch(data.batch).map(() => ({ id: ++nextId, duplicate: false })), seconds: 0 }), 20);
  }
};

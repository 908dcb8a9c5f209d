// A stand-in for src/log/writer-worker.ts that answers only once a second "append" message has
// reached it, as the real writer does when deliveries queue up behind a commit in progress: for
// testing that GroupCommit hands deliveries over without waiting, and settles each reply's share.
// A log path ending in "fail-first.db" fails the first message's deliveries and commits the
// second's; any other commits both in one reply.
import { unpackBatch } from "../../src/log/batch-message.ts";
import type { WriterReply, WriterRequest } from "../../src/log/writer-worker.ts";

declare const self: Worker;
let failFirst = false;
let nextId = 0;
const held: number[] = [];
const reply = (message: WriterReply) => self.postMessage(message);
const committed = (count: number): WriterReply => ({ type: "committed", results: Array.from({ length: count }, () => ({ id: ++nextId, duplicate: false })), seconds: 0 });

self.onmessage = ({ data }: MessageEvent<WriterRequest>) => {
  if (data.type === "open") {
    failFirst = data.options.path.endsWith("fail-first.db");
    reply({ type: "ready" });
  } else if (data.type === "close") {
    reply({ type: "closed" });
  } else {
    held.push(unpackBatch(data.batch).length);
    if (held.length < 2) return;
    const [first, second] = held.splice(0) as [number, number];
    if (failFirst) {
      reply({ type: "failed", message: "the disk is full", deliveries: first });
      reply(committed(second));
    } else {
      reply(committed(first + second));
    }
  }
};

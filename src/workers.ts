// The worker threads (the log's writer, forwarding), resolved at the root of src/: in the compiled binary every module is
// bundled into one file there, and each worker is embedded as its own entry point at its path.
export const WRITER_WORKER_URL = new URL("./log/writer-worker.ts", import.meta.url).href;
export const FORWARDER_WORKER_URL = new URL("./forward/forwarder-worker.ts", import.meta.url).href;

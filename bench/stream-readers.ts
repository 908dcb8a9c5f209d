// Holds STREAMS open event streams (GET /events/stream) on the receiver at STREAM_URL and reads
// them as a client would, in a process of its own. Prints "ready" once every stream is open, then
// every second one JSON line of how many events each stream has received; on SIGTERM one last
// such line, and exits.
const url = process.env.STREAM_URL!;
const token = process.env.QUERY_TOKEN!;
const streams = Number(process.env.STREAMS ?? 50);
const counts = new Array<number>(streams).fill(0);
const controller = new AbortController();

async function read(i: number, opened: () => void): Promise<void> {
  const response = await fetch(url, { headers: { authorization: `Bearer ${token}` }, signal: controller.signal });
  if (response.status !== 200 || response.body === null) throw new Error(`stream ${i}: status ${response.status}`);
  opened();
  const decoder = new TextDecoder();
  let buffered = "";
  try {
    for await (const chunk of response.body) {
      buffered += decoder.decode(chunk, { stream: true });
      let end: number;
      while ((end = buffered.indexOf("\n\n")) >= 0) {
        if (buffered.startsWith("id: ")) counts[i]!++;
        buffered = buffered.slice(end + 2);
      }
    }
  } catch {
    // Aborted at the end.
  }
}

const report = () => console.log(JSON.stringify({ counts }));
let open = 0;
for (let i = 0; i < streams; i++) {
  void read(i, () => {
    if (++open === streams) {
      console.log("ready");
      setInterval(report, 1000);
    }
  }).catch((error) => (console.error(String(error)), process.exit(1)));
}
process.on("SIGTERM", () => {
  controller.abort();
  report();
  process.exit(0);
});

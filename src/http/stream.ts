// GET /events/stream: the log as Server-Sent Events. A stream first sends what the log already
// holds after its starting point, page by page as the client reads, then each new event once it is
// committed: in id order, no gap, no repeat. One reader follows the log for every live stream, so
// that many streams cost the ingest path one query per commit, not one each.
import type { Server } from "bun";
import { Elysia } from "elysia";
import { eventJson, FILTER_PARAMETERS, FilterError, parseEventFilter, type EventFilter, type EventReader, type EventView } from "../log/event-log.ts";
import { bearerAuth } from "./auth.ts";
import { HttpError } from "./errors.ts";
import { queryParameters } from "./query-parameters.ts";

export interface StreamOptions {
  events: EventReader;
  queryToken: string;
  /** Tells `listener` of every commit; returns how to stop telling it. */
  onCommit: (listener: () => void) => () => void;
  /** Open streams at most: past it, 503 with Retry-After. */
  maxStreams: number;
  /** How often a comment line keeps an idle stream open through proxies. */
  heartbeatMs?: number;
  /** Bytes a stream may hold for a slow reader before it is closed (it resumes at Last-Event-ID). */
  bufferBytes?: number;
  /** Told whenever the number of open streams changes (for the metrics). */
  onOpenStreams?: (open: number) => void;
}

/** What EventSource waits before it reconnects, sent first so that the head goes out at once. */
const RETRY_MS = 2000;
const PAGE = 200;
/** The event name of an unparsed event, and of one whose name would break a line. */
const UNPARSED = "unparsed";
const encoder = new TextEncoder();
/** GET /events' filters, and where to start; a stream has no pages, so no limit or order. */
export const STREAM_PARAMETERS: readonly string[] = FILTER_PARAMETERS.filter((p) => p !== "limit" && p !== "order");

const matches = (filter: EventFilter, event: EventView) =>
  (filter.event === undefined || event.event === filter.event) &&
  (filter.installation === undefined || event.installationId === filter.installation) &&
  (filter.organization === undefined || event.organizationId === filter.organization) &&
  (filter.parsed === undefined || event.parsed === filter.parsed) &&
  (filter.since === undefined || event.receivedAt >= filter.since) &&
  (filter.until === undefined || event.receivedAt < filter.until);

/**
 * One event as an SSE message. Its data is the event as GET /events renders it, on one line: a raw
 * line break can only be whitespace between JSON tokens (inside a string it is escaped), so a
 * space stands in for it. Unnamed (no `event:` line), a message reaches a browser's EventSource
 * `onmessage`, which only hears messages of no name.
 */
function message(event: EventView, named: boolean): Uint8Array {
  const name = event.event !== null && !/[\r\n]/.test(event.event) ? event.event : UNPARSED;
  return encoder.encode(`id: ${event.id}\n${named ? `event: ${name}\n` : ""}data: ${eventJson(event).replace(/[\r\n]/g, " ")}\n\n`);
}

/** An event's message, named or not. */
type MessagesOf = (named: boolean) => Uint8Array;

/** One event's messages, each encoded once however many streams send it. */
function oneEventMessages(event: EventView): MessagesOf {
  const encoded: { named?: Uint8Array; unnamed?: Uint8Array } = {};
  return (named) => (named ? (encoded.named ??= message(event, true)) : (encoded.unnamed ??= message(event, false)));
}

class Stream {
  live = false;
  private controller!: ReadableStreamDefaultController<Uint8Array>;
  private heartbeat: Timer | undefined;
  readonly body: ReadableStream<Uint8Array>;

  constructor(
    private readonly hub: StreamHub,
    private readonly filter: EventFilter,
    /** The last event sent (or the starting point). */
    public lastId: number,
    heartbeatMs: number,
    bufferBytes: number,
    private readonly named: boolean,
  ) {
    this.body = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          this.controller = controller;
          controller.enqueue(encoder.encode(`retry: ${RETRY_MS}\n\n`));
          this.heartbeat = setInterval(() => this.send(encoder.encode(": keep-alive\n\n")), heartbeatMs);
        },
        // The client reads: the backlog, one page at a time, until the stream has caught up.
        pull: () => {
          if (!this.live) this.catchUp();
        },
        cancel: () => this.end(),
      },
      { highWaterMark: bufferBytes, size: (chunk) => chunk?.byteLength ?? 0 },
    );
  }

  private catchUp(): void {
    const page = this.hub.events.list({ ...this.filter, order: "asc", limit: PAGE, after: this.lastId });
    for (const event of page.events) this.deliver(event, oneEventMessages(event));
    if (page.next === null) {
      this.live = true;
      // Every event up to the newest has been considered; the hub offers the ones after it.
      this.hub.follow(this, this.hub.events.list({ order: "desc", limit: 1 }).events[0]?.id ?? 0);
    }
  }

  /** Sends one event (its message from `messages`), unless this stream already has it or does not want it. */
  deliver(event: EventView, messages: MessagesOf): void {
    if (event.id <= this.lastId || !matches(this.filter, event)) return;
    this.lastId = event.id;
    this.send(messages(this.named));
  }

  private send(chunk: Uint8Array): void {
    try {
      this.controller.enqueue(chunk);
    } catch {
      return this.end();
    }
    // A reader this far behind would have the receiver hold its backlog in memory: the stream
    // ends after what is queued (nothing more is added), and the client comes back with
    // Last-Event-ID, reading the log as fast as it can.
    if ((this.controller.desiredSize ?? 0) < 0) this.close();
  }

  close(): void {
    try {
      this.controller.close();
    } catch {}
    this.end();
  }

  private end(): void {
    clearInterval(this.heartbeat);
    this.hub.forget(this);
  }
}

/** Every open stream, and the one reader of the log that follows new commits for the live ones. */
class StreamHub {
  private readonly open = new Set<Stream>();
  private readonly live = new Set<Stream>();
  /** The newest event the live streams have been offered. */
  private lastId = 0;
  private scheduled = false;
  private closing = false;

  constructor(
    readonly events: EventReader,
    private readonly onOpenStreams: (open: number) => void,
  ) {}

  get size(): number {
    return this.open.size;
  }

  add(stream: Stream): void {
    this.open.add(stream);
    this.onOpenStreams(this.open.size);
  }

  /** A stream that has caught up with the log up to `seenThrough` takes new events from here on. */
  follow(stream: Stream, seenThrough: number): void {
    if (this.live.size === 0) this.lastId = seenThrough;
    this.live.add(stream);
    this.committed();
  }

  forget(stream: Stream): void {
    this.live.delete(stream);
    if (this.open.delete(stream)) this.onOpenStreams(this.open.size);
  }

  /** New events are committed: read them once, in one turn however many commits came. */
  committed(): void {
    if (this.scheduled || this.live.size === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.offerNew();
    });
  }

  private offerNew(): void {
    for (let more = true; more && this.live.size > 0; ) {
      const page = this.events.list({ order: "asc", limit: PAGE, after: this.lastId });
      for (const event of page.events) {
        const messages = oneEventMessages(event);
        for (const stream of this.live) stream.deliver(event, messages);
      }
      if (page.events.length > 0) this.lastId = page.events.at(-1)!.id;
      more = page.next !== null;
    }
  }

  get stopping(): boolean {
    return this.closing;
  }

  /** Ends every stream (a stopping receiver); the clients reconnect to whichever receiver serves next. */
  closeAll(): void {
    this.closing = true;
    for (const stream of [...this.open]) stream.close();
  }
}

/** Where a stream starts: after Last-Event-ID or ?after=, else at the end of the log (only new events). */
function startingPoint(request: Request, after: string | undefined, events: EventReader): number {
  const resumeAt = request.headers.get("last-event-id") ?? after;
  if (resumeAt === undefined || resumeAt === null) return events.list({ order: "desc", limit: 1 }).events[0]?.id ?? 0;
  if (!/^(0|[1-9][0-9]{0,15})$/.test(resumeAt)) throw new HttpError(400, "invalid_parameter", "Last-Event-ID / after: must be an event id (0: from the beginning)");
  return Number(resumeAt);
}

export function streamApi({ events, queryToken, onCommit, maxStreams, heartbeatMs = 15_000, bufferBytes = 1024 * 1024, onOpenStreams = () => {} }: StreamOptions) {
  const hub = new StreamHub(events, onOpenStreams);
  const unsubscribe = onCommit(() => hub.committed());
  /**
   * Opens a stream for `request` (its filters, its starting point), for a route that has
   * authenticated it; `named: false` leaves out each message's event name (for EventSource).
   */
  const open = (request: Request, server: Server<unknown> | null, { named = true }: { named?: boolean } = {}): Response => {
    if (hub.stopping || hub.size >= maxStreams) {
      throw new HttpError(503, "too_many_streams", `at most ${maxStreams} streams are open at once`, { "retry-after": "5" });
    }
    const { after, ...filterValues } = queryParameters(request, STREAM_PARAMETERS);
    let filter: EventFilter;
    try {
      filter = parseEventFilter(filterValues);
    } catch (error) {
      if (error instanceof FilterError) throw new HttpError(400, "invalid_parameter", error.message);
      throw error;
    }
    const stream = new Stream(hub, filter, startingPoint(request, after, events), heartbeatMs, bufferBytes, named);
    hub.add(stream);
    // A stream is quiet between events: the server's idle timeout must not end it.
    server?.timeout(request, 0);
    return new Response(stream.body, {
      headers: { "content-type": "text/event-stream", "cache-control": "no-cache", "x-accel-buffering": "no" },
    });
  };
  const plugin = new Elysia({ name: "event-stream" }).use(bearerAuth(queryToken)).get("/events/stream", ({ request, server }) => open(request, server));
  return { plugin, open, closeAll: () => (hub.closeAll(), unsubscribe()) };
}

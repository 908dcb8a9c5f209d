// Which payload digests the log already holds, and under which event id: how the writer tells a
// repeated delivery from a new event without a unique index on a random key (one dirty index page
// per insert, the costliest part of an append). Exact: the table keeps the first 32 bits of each
// digest beside the event id, and a match on those bits is confirmed against the log's own row.

const EMPTY = 0; // event ids start at 1
const MAX_LOAD = 0.75;

/** The full hex digest of an event, read from the log by id. */
type DigestOf = (eventId: number) => string | null;

export class DigestIndex {
  private prefixes: Uint32Array;
  private ids: Uint32Array;
  private mask: number;
  private count = 0;
  /** The highest event id added: the log's rows above it are not in the index yet. */
  lastId = 0;

  constructor(initialSlots = 1 << 16) {
    const slots = 2 ** Math.ceil(Math.log2(Math.max(16, initialSlots)));
    this.prefixes = new Uint32Array(slots);
    this.ids = new Uint32Array(slots);
    this.mask = slots - 1;
  }

  get size(): number {
    return this.count;
  }

  /** The event holding this digest, if any: `digestOf` confirms each candidate whose prefix matches. */
  find(digest: string, digestOf: DigestOf): number | null {
    const prefix = prefixOf(digest);
    // SHA-256 bits are uniform: the prefix itself is a good slot number.
    for (let slot = prefix & this.mask; this.ids[slot] !== EMPTY; slot = (slot + 1) & this.mask) {
      if (this.prefixes[slot] === prefix && digestOf(this.ids[slot]!) === digest) return this.ids[slot]!;
    }
    return null;
  }

  /** Records that event `id` holds `digest`. Ids are added in increasing order. */
  add(digest: string, id: number): void {
    if (!Number.isInteger(id) || id < 1 || id > 0xffff_ffff) throw new RangeError(`event id ${id} is outside 1..2^32-1`);
    if ((this.count + 1) / this.ids.length > MAX_LOAD) this.grow();
    this.insert(prefixOf(digest), id);
    this.count++;
    if (id > this.lastId) this.lastId = id;
  }

  private insert(prefix: number, id: number): void {
    let slot = prefix & this.mask;
    while (this.ids[slot] !== EMPTY) slot = (slot + 1) & this.mask;
    this.prefixes[slot] = prefix;
    this.ids[slot] = id;
  }

  private grow(): void {
    const { prefixes, ids } = this;
    this.prefixes = new Uint32Array(ids.length * 2);
    this.ids = new Uint32Array(ids.length * 2);
    this.mask = this.ids.length - 1;
    for (let slot = 0; slot < ids.length; slot++) {
      if (ids[slot] !== EMPTY) this.insert(prefixes[slot]!, ids[slot]!);
    }
  }
}

const HEX_PREFIX = /^[0-9a-f]{8}/;

/** The first 32 bits of a lower-case hex digest. */
function prefixOf(digest: string): number {
  if (!HEX_PREFIX.test(digest)) throw new TypeError("not a lower-case hex digest");
  return Number.parseInt(digest.slice(0, 8), 16);
}

// Per-address allowance of refused deliveries. Verification always runs first, so a valid
// delivery is never refused: an address that keeps sending forgeries only gets its refusals
// answered 429 (and no longer written to the rejections table) until its allowance refills.

export class RejectionLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  /**
   * @param perMinute refusals an address may earn per minute before they become 429s (0: no limit)
   * @param maxAddresses addresses remembered at once, so a spray of source addresses cannot grow memory
   */
  constructor(
    private readonly perMinute: number,
    private readonly now: () => number = () => performance.now(),
    private readonly maxAddresses = 10_000,
  ) {}

  /** Counts one refusal from `address`; false when the address is over its allowance. */
  allow(address: string): boolean {
    if (this.perMinute <= 0) return true;
    const now = this.now();
    const bucket = this.buckets.get(address);
    const refilled = bucket
      ? Math.min(this.perMinute, bucket.tokens + ((now - bucket.at) / 60_000) * this.perMinute)
      : this.perMinute;
    if (!bucket && this.buckets.size >= this.maxAddresses) this.forgetFullBuckets(now);
    const allowed = refilled >= 1;
    this.buckets.set(address, { tokens: allowed ? refilled - 1 : refilled, at: now });
    return allowed;
  }

  /** Whether `address` has no refusal left to earn now (counts nothing): a login is not even tried then. */
  exhausted(address: string): boolean {
    if (this.perMinute <= 0) return false;
    const bucket = this.buckets.get(address);
    return bucket !== undefined && bucket.tokens + ((this.now() - bucket.at) / 60_000) * this.perMinute < 1;
  }

  /** Seconds until `address` may be refused normally again (for Retry-After). */
  retryAfter(address: string): number {
    const tokens = this.buckets.get(address)?.tokens ?? this.perMinute;
    return Math.max(1, Math.ceil(((1 - tokens) / this.perMinute) * 60));
  }

  private forgetFullBuckets(now: number): void {
    for (const [address, { tokens, at }] of this.buckets) {
      if (tokens + ((now - at) / 60_000) * this.perMinute >= this.perMinute) this.buckets.delete(address);
    }
    // Still full of busy addresses: forget the oldest rather than grow.
    for (const address of this.buckets.keys()) {
      if (this.buckets.size < this.maxAddresses) break;
      this.buckets.delete(address);
    }
  }
}

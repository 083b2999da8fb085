// Token buckets for work a remote party can ask of us (state-creating handshakes and control frames,
// answers that cost a signature). Pure: time comes in as `now` (ms), so the simulator and tests drive them exactly.

export class TokenBucket {
  private tokens: number;
  private stamp = Number.NEGATIVE_INFINITY;
  /** Requests refused since creation. */
  refused = 0;

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
  ) {
    this.tokens = burst;
  }

  /** Takes one token if there is one. */
  take(now: number): boolean {
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.stamp) * this.perSecond) / 1000);
    this.stamp = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    this.refused++;
    return false;
  }
}

/**
 * A fixed array of buckets indexed by the first `bits` bits of a key: a bound per region of the
 * keyspace (a prefix is also an address range) that costs no map and no state per key.
 */
export class PrefixBuckets {
  private readonly tokens: Float64Array;
  private readonly stamps: Float64Array;
  private readonly shift: number;

  constructor(
    private readonly bits: number,
    private readonly perSecond: number,
    private readonly burst: number,
  ) {
    if (bits < 1 || bits > 16) throw new RangeError("PrefixBuckets: 1 to 16 bits");
    this.tokens = new Float64Array(1 << bits).fill(burst);
    this.stamps = new Float64Array(1 << bits).fill(Number.NEGATIVE_INFINITY);
    this.shift = 16 - bits;
  }

  take(key: Uint8Array, now: number): boolean {
    const i = (((key[0]! << 8) | key[1]!) >>> this.shift) & ((1 << this.bits) - 1);
    const tokens = Math.min(this.burst, this.tokens[i]! + ((now - this.stamps[i]!) * this.perSecond) / 1000);
    this.stamps[i] = now;
    if (tokens < 1) {
      this.tokens[i] = tokens;
      return false;
    }
    this.tokens[i] = tokens - 1;
    return true;
  }
}

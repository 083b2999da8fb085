// The stream links' send slabs: frames are copied into one and it is written as one view, and a
// written slab is reused, so a link at line rate allocates none (issue 11).

/** Room for at least one largest frame (65,535 + 2), so every slab has the same size and can be reused. */
export const SLAB_BYTES = 128 * 1024;
/**
 * Written slabs kept for reuse, shared by all stream links: a link at line rate has up to
 * CONGESTION_BYTES (32 slabs) queued in the socket, and the pool must refill faster than it drains.
 * 64 slabs = 8 MiB at most, held only after a burst.
 */
const POOL_SLABS = 64;

/** A send buffer and the socket writes of it still in flight; reusable once none is and it is full. */
export class Slab {
  readonly buf = Buffer.allocUnsafeSlow(SLAB_BYTES);
  writes = 0;
  /** No more frames go in; it returns to the pool when its last write completes. */
  retired = false;
  /** While it is in a SlabQueue: its bytes to write, and the slab queued after it. */
  from = 0;
  to = 0;
  next: Slab | undefined;
  /** The write callback, made once per slab: no closure per flush. */
  readonly written = (): void => {
    if (this.writes > 0) this.writes--;
    if (this.writes === 0 && this.retired) {
      this.retired = false;
      if (pool.length < POOL_SLABS) pool.push(this);
    }
  };

  static allocated = 0;

  static take(): Slab {
    const slab = pool.pop();
    if (slab !== undefined) return slab;
    Slab.allocated++;
    return new Slab();
  }

  retire(): void {
    this.retired = true;
    if (this.writes === 0) this.written();
  }
}
const pool: Slab[] = [];

/** Send slabs allocated by all stream links since start (tests and metrics: the steady state adds none). */
export function sendSlabsAllocated(): number {
  return Slab.allocated;
}

/**
 * Full slabs whose bytes wait for a link's write in Node to complete, oldest first (StreamLink's
 * one-write mode). A queued slab counts as one write of it, so it is not reused before it is written.
 */
export class SlabQueue {
  private first: Slab | undefined;
  private last: Slab | undefined;
  /** Bytes of all queued slabs. */
  bytes = 0;

  push(slab: Slab, from: number, to: number): void {
    slab.from = from;
    slab.to = to;
    slab.writes++;
    this.bytes += to - from;
    if (this.last === undefined) this.first = slab;
    else this.last.next = slab;
    this.last = slab;
  }

  /** The oldest slab (its bytes are [from, to)), still counting its write; undefined when empty. */
  shift(): Slab | undefined {
    const slab = this.first;
    if (slab === undefined) return undefined;
    this.first = slab.next;
    slab.next = undefined;
    if (this.first === undefined) this.last = undefined;
    this.bytes -= slab.to - slab.from;
    return slab;
  }

  /** The link closed: the slabs go back to the pool unwritten. */
  drop(): void {
    for (let slab = this.shift(); slab !== undefined; slab = this.shift()) slab.written();
  }
}

// When to give the C heap's freed pages back to the system. After a burst of traffic glibc keeps
// the pages of the buffers Node, OpenSSL and our addons freed, so RSS stays near its peak long after
// the burst (bench/memory.sh measured 60 MiB idle, 99 MiB after load, and 65-69 MiB after a manual
// malloc_trim). The daemon (node.ts trimHeap) first runs a full V8 collection, because an idle node
// may not collect for minutes and the burst's buffers would still hold their pages, then trims. Both
// walk heaps and the next burst faults the pages back in, so it happens once per burst, after
// traffic has been quiet for a while, never under load. bench/matrix.sh with LOAD_SETTLE=35 (one
// round, planetd-tcp@1420): the two daemons went from 100.6 and 96.4 MiB to 64.4 and 61.1 at the
// trim, 16 s after the load (60.6 idle); with the trim alone, 99.4 and 94.0 went to 84.7 and 64.0.

/** A burst worth trimming after: this many traffic frames since the last trim. */
const BURST_FRAMES = 10_000;
/** Quiet: fewer traffic frames than this per check (about one per second: keepalives pass). */
const QUIET_FRAMES = 100;
/** How long traffic must stay quiet before the trim: V8 frees its side first. */
const QUIET_MS = 15_000;

export class HeapTrimPolicy {
  private lastFrames = 0;
  private framesSinceTrim = 0;
  private lastBusy = Number.NEGATIVE_INFINITY;

  /** Called about once a second with the router's traffic frame total; true when it is time to trim. */
  observe(now: number, trafficFrames: number): boolean {
    const delta = trafficFrames - this.lastFrames;
    this.lastFrames = trafficFrames;
    this.framesSinceTrim += delta;
    if (delta >= QUIET_FRAMES) {
      this.lastBusy = now;
      return false;
    }
    if (this.framesSinceTrim < BURST_FRAMES || now - this.lastBusy < QUIET_MS) return false;
    this.framesSinceTrim = 0;
    return true;
  }
}

// The daemon gives freed C heap back once per burst of traffic, after it has been quiet a while.
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { HeapTrimPolicy } from "../src/daemon/heap-trim.js";
import { releaseFreedHeap } from "../src/tun/native.js";

/** Feeds one observation a second at `perSecond` frames/s for `seconds`; the times it said trim. */
function run(p: HeapTrimPolicy, state: { now: number; frames: number }, perSecond: number, seconds: number) {
  const trims: number[] = [];
  for (let i = 0; i < seconds; i++) {
    state.now += 1000;
    state.frames += perSecond;
    if (p.observe(state.now, state.frames)) trims.push(state.now);
  }
  return trims;
}

describe("heap trim policy", () => {
  it("never trims an idle node or one under load, once after a burst has been quiet for 15 s", () => {
    const p = new HeapTrimPolicy();
    const s = { now: 0, frames: 0 };
    expect(run(p, s, 2, 120)).toEqual([]); // keepalives only: no burst to give back
    expect(run(p, s, 50_000, 60)).toEqual([]); // full load: never while busy
    const busyUntil = s.now;
    const after = run(p, s, 2, 60);
    expect(after).toHaveLength(1);
    expect(after[0]! - busyUntil).toBeGreaterThanOrEqual(15_000);
    expect(after[0]! - busyUntil).toBeLessThanOrEqual(16_000);
  });

  it("a short burst below the threshold waits for more traffic; the next burst trims again", () => {
    const p = new HeapTrimPolicy();
    const s = { now: 0, frames: 0 };
    expect(run(p, s, 1000, 5)).toEqual([]); // 5,000 frames: not worth a trim
    expect(run(p, s, 0, 30)).toEqual([]);
    expect(run(p, s, 1000, 6)).toEqual([]); // now 11,000 since start
    expect(run(p, s, 0, 30)).toHaveLength(1);
    expect(run(p, s, 20_000, 3)).toEqual([]);
    expect(run(p, s, 0, 30)).toHaveLength(1);
  });
});

describe("releaseFreedHeap", () => {
  it("returns the pages of freed buffers to the system (glibc)", () => {
    // 2,000 buffers of 64 KiB (below glibc's mmap threshold, so they live in the heap), then freed.
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    let bufs: Buffer[] | undefined = Array.from({ length: 2000 }, () =>
      Buffer.allocUnsafeSlow(64 * 1024).fill(1),
    );
    expect(bufs).toHaveLength(2000);
    bufs = undefined;
    gc();
    gc();
    expect(releaseFreedHeap()).toBe(true);
  });
});

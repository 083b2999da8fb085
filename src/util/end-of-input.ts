// Idle latency (issue 11): writers that gather packets into one write (a stream link's send slab, the
// TUN's write batch) used to flush from process.nextTick or setImmediate, one more entry into JS per
// hop, with an object allocated for each, and with setImmediate a later phase of the event loop. An
// input that delivers packets (a socket read, a TUN batch) now says where its work ends, and the
// flushes its packets asked for run right there, in the same call: a packet leaves in the JS call
// that read it. A flush asked for outside any input (a timer's keepalive, an admin request) still
// goes through process.nextTick, as before.

/**
 * Writers waiting for the end of the current input; each asks once until it has flushed. A fixed
 * array and a count: emptying an array by `length = 0` is a runtime call in V8 (JSArray::SetLength,
 * perf showed it at every idle hop) that also drops the backing store, so the next input's push
 * allocated a new one.
 */
const MAX_PENDING = 1024;
const pending: Array<(() => void) | undefined> = new Array(MAX_PENDING).fill(undefined);
let pendingCount = 0;
let inputDepth = 0;
let tickQueued = false;
/** Flushes that found the list full and went through process.nextTick on their own. */
let overflowed = 0;

export function endOfInputOverflows(): number {
  return overflowed;
}

/**
 * Runs `flush` once the input being handled is done (or on the next tick outside any input). The
 * caller keeps its own flag so it asks at most once per flush.
 */
export function flushAtEndOfInput(flush: () => void): void {
  if (pendingCount >= MAX_PENDING) {
    overflowed++;
    process.nextTick(flush);
    return;
  }
  pending[pendingCount++] = flush;
  if (inputDepth === 0 && !tickQueued) {
    tickQueued = true;
    process.nextTick(runPendingFromTick);
  }
}

/** An input starts delivering packets; pair with endInput in a finally. */
export function beginInput(): void {
  inputDepth++;
}

/** The input is done: the flushes it asked for run now (unless an outer input is still running). */
export function endInput(): void {
  if (--inputDepth === 0 && pendingCount > 0) runPending();
}

function runPendingFromTick(): void {
  tickQueued = false;
  if (inputDepth === 0) runPending();
}

function runPending(): void {
  let done = 0;
  try {
    // A flush that asks for another one is picked up by the same loop.
    while (done < pendingCount) {
      const flush = pending[done]!;
      pending[done++] = undefined;
      flush();
    }
  } finally {
    // A flush that threw leaves the rest for the next tick rather than stranding their writers.
    if (done < pendingCount) {
      pending.copyWithin(0, done, pendingCount);
      pending.fill(undefined, pendingCount - done, pendingCount);
    }
    pendingCount -= done;
    if (pendingCount > 0 && !tickQueued) {
      tickQueued = true;
      process.nextTick(runPendingFromTick);
    }
  }
}

// A sliding replay window for one receive key (RFC 6479's bitmap, as WireGuard keeps one per key).
// Yggdrasil 0.4.7 moves its "highest nonce seen" only once a minute, so a copy of any packet of the
// last minute opens again; the window drops duplicates at once and reordering within it still passes.
// Counters are U64s (numbers below 2^53, bigints above): the bitmap covers the number range, and a
// bigint counter, which no sender reaches in practice, is accepted only when strictly above the top.
import type { U64 } from "./wire.js";

/** Counters tracked behind the highest one; older ones are refused as too old. */
export const REPLAY_WINDOW = 4096;
const WORDS = REPLAY_WINDOW / 32;

export const ReplayVerdict = { Fresh: 0, Duplicate: 1, TooOld: 2 } as const;
export type ReplayVerdict = (typeof ReplayVerdict)[keyof typeof ReplayVerdict];

export class ReplayWindow {
  /** Highest counter accepted (or the floor set at reset): everything above it is fresh. */
  private top: U64 = 0;
  /** Counters at or below it are refused (0.4.7's rule: nothing at or below the nonce a key started at). */
  private floor: U64 = 0;
  /** Bit (c mod REPLAY_WINDOW) is set once counter c in (top - REPLAY_WINDOW, top] was accepted. */
  private readonly seen = new Uint32Array(WORDS);

  /** A new key: counters up to `floor` are refused, everything above it is fresh. */
  reset(floor: U64): void {
    this.top = floor;
    this.floor = floor;
    this.seen.fill(0);
  }

  /** Whether `n` may be opened; call accept(n) only after it authenticated. */
  check(n: U64): ReplayVerdict {
    const top = this.top;
    if (typeof n !== "number" || typeof top !== "number") {
      return BigInt(n) > BigInt(top) ? ReplayVerdict.Fresh : ReplayVerdict.TooOld;
    }
    if (n > top) return ReplayVerdict.Fresh;
    if (top - n >= REPLAY_WINDOW || n <= (this.floor as number)) return ReplayVerdict.TooOld;
    const bit = n % REPLAY_WINDOW;
    return (this.seen[bit >>> 5]! & (1 << (bit & 31))) !== 0 ? ReplayVerdict.Duplicate : ReplayVerdict.Fresh;
  }

  accept(n: U64): void {
    const top = this.top;
    if (typeof n !== "number" || typeof top !== "number") {
      if (BigInt(n) > BigInt(top)) {
        this.top = n;
        this.seen.fill(0);
      }
      return;
    }
    if (n > top) {
      // Clear the slots the window slides over: they held counters now too old to matter.
      if (n - top >= REPLAY_WINDOW) this.seen.fill(0);
      else for (let c = top + 1; c < n; c++) this.clear(c);
      this.top = n;
    }
    this.mark(n);
  }

  private mark(n: number): void {
    const bit = n % REPLAY_WINDOW;
    this.seen[bit >>> 5]! |= 1 << (bit & 31);
  }

  private clear(n: number): void {
    const bit = n % REPLAY_WINDOW;
    this.seen[bit >>> 5]! &= ~(1 << (bit & 31));
  }
}

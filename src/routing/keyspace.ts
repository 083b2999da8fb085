// An ordered index over the DHT keyspace, so dhtLookup finds the closest key below a target in
// O(log n) comparisons instead of scanning every entry (a hostile peer can fill the table to its cap).
import { cmpKey } from "./state.js";

/** An indexed item: its key and a unique, increasing insertion number that breaks ties between equal keys. */
export interface KeyOrdered {
  readonly key: Buffer;
  readonly order: number;
}

/** Chunks split above this; with n ≤ 2^16 an insert or delete moves at most a few hundred slots. */
const CHUNK_MAX = 512;

function cmpItem(a: KeyOrdered, b: KeyOrdered): number {
  const c = cmpKey(a.key, b.key);
  return c !== 0 ? c : a.order - b.order;
}

/**
 * Items sorted by (key, order), held as a list of sorted chunks (a B-tree of height two): lookups are
 * two binary searches; an insert or delete moves O(CHUNK_MAX + n / CHUNK_MAX) array slots, no allocation
 * beyond an occasional chunk split.
 */
export class KeyIndex<T extends KeyOrdered> {
  private readonly chunks: T[][] = [];
  private count = 0;
  /** Sorts before every item with its key: searching for it finds the first such item. */
  private readonly probe: { key: Buffer; order: number } = {
    key: Buffer.alloc(0),
    order: Number.NEGATIVE_INFINITY,
  };

  get size(): number {
    return this.count;
  }

  insert(item: T): void {
    const chunks = this.chunks;
    if (chunks.length === 0) {
      chunks.push([item]);
      this.count = 1;
      return;
    }
    let ci = this.chunkFor(item);
    if (ci === chunks.length) ci--; // above every item: append to the last chunk
    const chunk = chunks[ci];
    const lo = itemBound(chunk, item);
    chunk.splice(lo, 0, item);
    this.count++;
    if (chunk.length > CHUNK_MAX) chunks.splice(ci + 1, 0, chunk.splice(chunk.length >>> 1));
  }

  /** Remove this exact item (same key and order); false when it is not indexed. */
  delete(item: T): boolean {
    const chunks = this.chunks;
    const ci = this.chunkFor(item);
    if (ci === chunks.length) return false;
    const chunk = chunks[ci];
    const lo = itemBound(chunk, item);
    if (lo === chunk.length || chunk[lo] !== item) return false;
    chunk.splice(lo, 1);
    this.count--;
    if (chunk.length === 0) chunks.splice(ci, 1);
    return true;
  }

  /** The lowest-order item with key == target that passes `ok`. */
  firstEqual(target: Buffer, ok: (item: T) => boolean): T | undefined {
    const chunks = this.chunks;
    const probe = this.probe;
    probe.key = target;
    let ci = this.chunkFor(probe);
    if (ci === chunks.length) return undefined;
    let chunk = chunks[ci];
    let i = itemBound(chunk, probe);
    for (;;) {
      if (i === chunk.length) {
        if (++ci === chunks.length) return undefined;
        chunk = chunks[ci];
        i = 0;
      }
      const item = chunk[i];
      if (cmpKey(item.key, target) !== 0) return undefined;
      if (ok(item)) return item;
      i++;
    }
  }

  /**
   * Among items with floor < key < target that pass `ok`: those with the greatest key, and of them the
   * lowest order (the first inserted). Walks down past items that fail `ok`.
   */
  greatestBelow(target: Buffer, floor: Buffer, ok: (item: T) => boolean): T | undefined {
    const chunks = this.chunks;
    const probe = this.probe;
    probe.key = target;
    let ci = this.chunkFor(probe);
    let chunk: T[];
    let i: number;
    if (ci === chunks.length) {
      if (ci === 0) return undefined;
      ci--;
      chunk = chunks[ci];
      i = chunk.length - 1;
    } else {
      chunk = chunks[ci];
      i = itemBound(chunk, probe) - 1;
    }
    let found: T | undefined;
    for (;;) {
      if (i < 0) {
        if (ci === 0) return found;
        chunk = chunks[--ci];
        i = chunk.length - 1;
      }
      const item = chunk[i];
      if (found !== undefined) {
        if (cmpKey(item.key, found.key) !== 0) return found;
      } else if (cmpKey(item.key, floor) <= 0) {
        return undefined;
      }
      // Walking down, the last passing item of the key's run is its lowest order.
      if (ok(item)) found = item;
      i--;
    }
  }

  /** Items in (key, order) order; for tests. */
  *[Symbol.iterator](): Generator<T> {
    for (const chunk of this.chunks) yield* chunk;
  }

  /** The first chunk whose last item is ≥ item (chunks.length if none). */
  private chunkFor(item: KeyOrdered): number {
    const chunks = this.chunks;
    let lo = 0;
    let hi = chunks.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const c = chunks[mid];
      if (cmpItem(c[c.length - 1], item) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/** The first index in a sorted chunk whose item is ≥ item by (key, order). */
function itemBound<T extends KeyOrdered>(chunk: T[], item: KeyOrdered): number {
  let lo = 0;
  let hi = chunk.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (cmpItem(chunk[mid], item) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

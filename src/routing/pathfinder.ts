// The pathfinder (spec 5.6): notify → lookup → response discovers source routes for keys we send to.
import type { Dht } from "./dht.js";
import {
  PATH_THROTTLE,
  PATH_TIMEOUT,
  type PathEntry,
  type Peer,
  type RouterCore,
  cmpKey,
  keyId,
} from "./state.js";
import type { Tree } from "./tree.js";
import type { PathLookup, PathNotify, PathResponse } from "./types.js";
import { type Signer, encodeLookup, encodeNotify, encodeResponse, makeNotify, verifyNotify } from "./wire.js";

export class Pathfinder {
  /** By keyId(dest); Map order is the expiry queue (an entry is re-queued when it is reached). */
  readonly paths = new Map<string, PathEntry>();
  /**
   * The entry getPath or doNotify found last, while it is in `paths`: a packet's key compared with it
   * in JS instead of made into a map key string by native code, twice per packet at idle.
   */
  private last: PathEntry | undefined;

  constructor(
    private readonly core: RouterCore,
    private readonly signer: Signer,
    private readonly tree: Tree,
    private readonly dht: Dht,
  ) {}

  /** _getPath: we are sending to dest; keep (or create) its entry alive and return its route. */
  getPath(dest: Buffer): number[] | null {
    const now = this.core.now;
    const entry = this.find(dest);
    if (entry !== undefined) {
      entry.expires = now + PATH_TIMEOUT;
      return entry.path;
    }
    if (this.paths.size >= this.core.limits.paths) {
      for (const oldest of this.paths.keys()) {
        this.paths.delete(oldest);
        this.last = undefined;
        this.core.drop("path_entry_evicted");
        break;
      }
    }
    const expires = now + PATH_TIMEOUT;
    this.paths.set(keyId(dest), {
      key: Buffer.from(dest),
      path: null,
      ltime: now - PATH_THROTTLE,
      ntime: now - PATH_THROTTLE,
      expires,
      queuedUntil: expires,
    });
    return null;
  }

  /**
   * A link to `key` came up: a stored route to it (through other nodes) would carry its traffic until
   * the next refresh (up to PATH_TIMEOUT); forgetting the route sends it greedily, which picks the
   * direct peer, and the lookup that follows learns the one-hop route. (A punched NAT link is the
   * common case: without this, the relay keeps the traffic for a minute.)
   */
  peerLinked(key: Buffer): void {
    const entry = this.paths.get(keyId(key));
    if (entry !== undefined) entry.path = null;
  }

  /**
   * Traffic for us arrived from `dest`: tell it our label so it can look up a route to us.
   * keepAlive (traffic that came by source route or locally) uses the 1 min throttle.
   */
  doNotify(dest: Buffer, keepAlive: boolean): void {
    const entry = this.find(dest);
    if (entry === undefined) return;
    const now = this.core.now;
    if (now - entry.ntime <= (keepAlive ? PATH_TIMEOUT : PATH_THROTTLE)) return;
    entry.ntime = now;
    this.handleNotify(makeNotify(this.signer, entry.key, this.tree.label()), null);
  }

  handleNotify(notify: PathNotify, frame: Buffer | null): void {
    const next = this.dht.lookup(notify.dest, false);
    if (next !== null) {
      this.core.sendFrame(next, frame ?? encodeNotify(notify));
      return;
    }
    const entry = this.paths.get(keyId(notify.label.key));
    if (entry === undefined) return;
    const now = this.core.now;
    if (now - entry.ltime < PATH_THROTTLE) return;
    if (!verifyNotify(notify)) {
      this.core.drop("notify_bad_signature");
      return;
    }
    entry.ltime = now;
    this.handleLookup({ notify, rpath: [] });
  }

  /** A lookup (its rpath already extended with the arrival port, if it came from a peer). */
  handleLookup(lookup: PathLookup): void {
    const next = this.tree.lookup(lookup.notify.label);
    if (next !== null) {
      this.core.sendFrame(next, encodeLookup(lookup));
      return;
    }
    if (!lookup.notify.label.key.equals(this.core.ownKey)) return;
    if (!verifyNotify(lookup.notify)) {
      this.core.drop("lookup_bad_signature");
      return;
    }
    const path = new Array<number>(lookup.rpath.length + 1);
    for (let i = 0; i < lookup.rpath.length; i++) path[i] = lookup.rpath[lookup.rpath.length - 1 - i];
    path[lookup.rpath.length] = 0;
    this.handleResponse({ from: this.core.ownKey, path, rpath: [] });
  }

  /** A response (rpath already extended with the arrival port): pop the next port and pass it on. */
  handleResponse(response: PathResponse): void {
    const port = response.path.length > 0 ? (response.path.shift() as number) : 0;
    const peer: Peer | undefined = port === 0 ? undefined : this.core.peers.get(port);
    if (peer !== undefined && !peer.closed) {
      this.core.sendFrame(peer, encodeResponse(response));
      return;
    }
    const entry = this.paths.get(keyId(response.from));
    if (entry === undefined) return;
    const rpath = response.rpath;
    const path = new Array<number>(rpath.length + 1);
    for (let i = 0; i < rpath.length; i++) path[i] = rpath[rpath.length - 1 - i];
    path[rpath.length] = 0;
    entry.path = path;
  }

  onTimeout(now: number): void {
    for (const [id, entry] of this.paths) {
      if (entry.queuedUntil > now) break;
      this.paths.delete(id);
      if (entry.expires > now) {
        entry.queuedUntil = entry.expires;
        this.paths.set(id, entry); // re-queue at the back: it was used since it was queued
      } else if (entry === this.last) {
        this.last = undefined;
      }
    }
  }

  /** The entry for `key`, if any (the last one found when the key is the same). */
  private find(key: Buffer): PathEntry | undefined {
    const last = this.last;
    if (last !== undefined && cmpKey(key, last.key) === 0) return last;
    const entry = this.paths.get(keyId(key));
    if (entry !== undefined) this.last = entry;
    return entry;
  }

  nextTimeout(): number | undefined {
    for (const entry of this.paths.values()) return entry.queuedUntil;
    return undefined;
  }
}

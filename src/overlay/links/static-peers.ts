// Configured (static) peers of the link manager: each is dialled, redialled on the policy of
// redial.ts when its link fails or closes, and dialled at once when a link, a beacon or an interface
// change suggests it is reachable again (nudge).
import type { LimitedLog } from "../../util/log-limit.js";
import { peerKey, plainIp } from "./addresses.js";
import { Refused } from "./admission.js";
import type { DialAttempt, ManagedLink } from "./manager-context.js";
import { RedialBackoff, type RedialOptions } from "./redial.js";
import { type PeerUri, parsePeerUri } from "./uri.js";

/** What the static peers need from the link manager. */
export interface StaticPeersHost {
  dial(parsed: PeerUri, iface: string | undefined, attempt: DialAttempt): Promise<ManagedLink>;
  admit(link: ManagedLink): void;
  stopped(): boolean;
  readonly limitedLog: LimitedLog;
}

export interface PeerState {
  uri: string;
  parsed: PeerUri;
  iface: string | undefined;
  link: ManagedLink | undefined;
  attempt: DialAttempt | undefined;
  timer: NodeJS.Timeout | undefined;
  backoff: RedialBackoff;
  /** The key and IP of its last link: an inbound link from either is a reason to dial now. */
  lastKey: Buffer | undefined;
  lastIp: string | undefined;
  removed: boolean;
}

export class StaticPeers {
  private readonly host: StaticPeersHost;
  private readonly redial: RedialOptions;
  /** By peerKey(uri, iface). */
  private readonly peers = new Map<string, PeerState>();

  constructor(host: StaticPeersHost, redial: RedialOptions) {
    this.host = host;
    this.redial = redial;
  }

  has(uri: string, iface: string | undefined): boolean {
    return this.peers.has(peerKey(uri, iface));
  }

  /** Adds a peer without dialling it (dial() does); a malformed URI throws. */
  add(uri: string, iface: string | undefined): PeerState {
    const parsed = parsePeerUri(uri);
    const peer: PeerState = {
      uri,
      parsed,
      iface,
      link: undefined,
      attempt: undefined,
      timer: undefined,
      backoff: new RedialBackoff(this.redial),
      lastKey: undefined,
      lastIp: undefined,
      removed: false,
    };
    this.peers.set(peerKey(uri, iface), peer);
    return peer;
  }

  /** Forgets a peer and closes its link or dial. */
  remove(uri: string, iface: string | undefined): void {
    const key = peerKey(uri, iface);
    const peer = this.peers.get(key);
    if (!peer) throw new Error("peer not configured");
    this.peers.delete(key);
    this.drop(peer, "peer removed");
  }

  dialAll(): void {
    for (const peer of this.peers.values()) this.dial(peer);
  }

  /** Stops every redial and closes every link and dial (the manager is stopping). */
  dropAll(reason: string): void {
    for (const peer of this.peers.values()) this.drop(peer, reason);
  }

  list(): Array<{ uri: string; iface: string | undefined; connected: boolean }> {
    return [...this.peers.values()].map((p) => ({
      uri: p.uri,
      iface: p.iface,
      connected: p.link !== undefined,
    }));
  }

  private drop(peer: PeerState, reason: string): void {
    peer.removed = true;
    clearTimeout(peer.timer);
    peer.attempt?.socket?.destroy();
    peer.attempt?.cancel?.(reason);
    peer.link?.close(reason);
  }

  dial(peer: PeerState): void {
    const host = this.host;
    peer.timer = undefined;
    if (peer.removed || host.stopped()) return;
    const attempt: DialAttempt = {};
    peer.attempt = attempt;
    peer.backoff.attemptStarted(Date.now());
    host.dial(peer.parsed, peer.iface, attempt).then(
      (link) => {
        peer.attempt = undefined;
        if (peer.removed || host.stopped()) {
          link.close("peer removed");
          return;
        }
        peer.link = link;
        peer.backoff.linkUp(Date.now());
        peer.lastKey = link.remoteKey;
        const ip = attempt.socket?.remoteAddress;
        if (ip !== undefined) peer.lastIp = plainIp(ip);
        link.onClosed(() => {
          peer.link = undefined;
          this.scheduleRedial(peer, peer.backoff.linkLost(Date.now()));
        });
        host.admit(link);
      },
      (e: Error) => {
        peer.attempt = undefined;
        if (peer.removed || host.stopped()) return;
        host.limitedLog.warn(`link to ${peer.uri} failed`, `link to ${peer.uri} failed: ${e.message}`, {
          peer: peer.uri,
          iface: peer.iface,
        });
        this.scheduleRedial(peer, peer.backoff.failed(Date.now(), isHopeless(e)));
      },
    );
  }

  private scheduleRedial(peer: PeerState, at: number): void {
    if (peer.removed || this.host.stopped() || peer.timer) return;
    peer.timer = setTimeout(() => this.dial(peer), Math.max(0, at - Date.now()));
  }

  /**
   * A sign that unlinked static peers may be reachable now: a link to `key`, an inbound link or a
   * beacon from `ip`, or (both undefined) a change of our interfaces. Matching peers waiting for
   * their redial timer dial at once (redial.ts bounds how often).
   */
  nudge(key: Buffer | undefined, ip: string | undefined): void {
    if (this.host.stopped()) return;
    const now = Date.now();
    for (const peer of this.peers.values()) {
      if (peer.link || peer.attempt || !peer.timer) continue;
      const matches =
        (key === undefined && ip === undefined) ||
        (key !== undefined &&
          (peer.lastKey?.equals(key) === true || peer.parsed.keys.some((k) => k.equals(key)))) ||
        (ip !== undefined && (ip === peer.lastIp || ip === plainIp(peer.parsed.host)));
      if (!matches || !peer.backoff.nudge(now)) continue;
      clearTimeout(peer.timer);
      this.dial(peer);
    }
  }
}

/** Failures a redial soon will not mend: the remote was refused, or its name does not resolve. */
function isHopeless(e: Error): boolean {
  return e instanceof Refused || (e as NodeJS.ErrnoException).code === "ENOTFOUND";
}

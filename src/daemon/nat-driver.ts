// NAT traversal's I/O (src/overlay/nat.ts has the decisions): asks udp:// peers which source they
// see for the punch socket, keeps our candidates, signals over sessions, runs the punches through
// the link manager, and closes punched links that carried no traffic for a while.
import { randomBytes } from "node:crypto";
import { networkInterfaces } from "node:os";
import type { Logger } from "pino";
import type { NatView } from "../admin/view.js";
import type { Link } from "../overlay/links/link.js";
import type { LinkManager } from "../overlay/links/manager.js";
import type { UdpLink } from "../overlay/links/udp-link.js";
import { type Candidate, type NatOptions, NatTraversal, mappingName } from "../overlay/nat.js";
import { ipBytes } from "../util/ip-bytes.js";

export interface NatDriverOptions {
  selfKey: Buffer;
  links: LinkManager;
  log: Logger;
  sendSignal(dest: Buffer, body: Buffer): void;
  /** Traffic frames a link carried both ways (idle punched links close). */
  trafficOf(link: Link): number;
  nat?: Partial<NatOptions>;
  /** How long the punches last (default 5 s). */
  punchMs?: number;
  /** A punched link that carried no traffic for this long closes (default 5 min). */
  idleMs?: number;
  /** How often each udp:// peer is asked again what it sees (default 60 s). */
  observeEveryMs?: number;
}

const MAX_PENDING_OBSERVES = 64;
const MAX_LOCAL_CANDIDATES = 4;

/**
 * By scheme, not instanceof: udp-link.js loads with the first udp:// socket (LinkManager), and
 * importing its class here would load all of udp:// in nodes that have none. Every udp:// link's
 * remote is its udp:// URI, inbound or outbound (LinkInfo.remote).
 */
function isUdpLink(link: Link): link is UdpLink {
  return link.remote.startsWith("udp://");
}

export class NatDriver {
  readonly nat: NatTraversal;
  /** Our candidates (reflexive, then local addresses of the punch socket); empty: no udp:// yet. */
  private local: Candidate[] = [];
  private punchPort = 0;
  private punchFamily: 4 | 6 | undefined;
  /** False once a udp:// peer saw the punch socket at one of our own addresses: no NAT to open. */
  private behindNat = true;
  private readonly o: NatDriverOptions;
  private readonly udpLinks = new Set<UdpLink>();
  private readonly pendingObserves = new Map<number, UdpLink>();
  private readonly idle = new Map<UdpLink, { traffic: number; at: number }>();
  private lastObserveRound = 0;
  private stopped = false;

  constructor(o: NatDriverOptions) {
    this.o = o;
    this.nat = new NatTraversal(
      o.selfKey,
      {
        sendSignal: (dest, body) => o.sendSignal(dest, body),
        punch: (dest, candidates, dial) => void this.punch(dest, candidates, dial),
      },
      o.nat,
    );
  }

  stop(): void {
    this.stopped = true;
  }

  /** How many punched links are up now. */
  get punchedLinks(): number {
    let n = 0;
    for (const link of this.udpLinks) if (link.punched) n++;
    return n;
  }

  /** For getNat: the mapping, our reflexive addresses, the counters, and the punched links. */
  view(): NatView {
    const punchedPeers: NatView["punchedPeers"] = [];
    for (const link of this.udpLinks) {
      if (link.punched) punchedPeers.push({ key: link.remoteKey, remote: link.remote });
    }
    return {
      mapping: mappingName(this.nat.reflexive.mapping()),
      reflexive: this.nat.reflexive.addresses(),
      counters: { ...this.nat.counters },
      destinations: this.nat.summary(Date.now()),
      punchedPeers,
    };
  }

  /** Whether noteTraffic can do anything: with no local candidate there is nothing to offer. */
  get offersPunching(): boolean {
    return this.local.length > 0;
  }

  noteTraffic(dest: Buffer, now: number): void {
    if (this.local.length > 0) this.nat.noteTraffic(dest, now, this.local);
  }

  handleSignal(source: Buffer, body: Buffer, now: number): void {
    this.nat.handleSignal(source, body, now, this.local);
  }

  onLink(link: Link): void {
    if (!isUdpLink(link) || this.stopped) return;
    this.udpLinks.add(link);
    link.onObserved = (nonce, ip, port) => {
      if (this.pendingObserves.get(nonce) !== link) return;
      this.pendingObserves.delete(nonce);
      this.nat.reflexive.record(link.remoteKey, link.peerAddress, ip, port, Date.now());
      this.refreshLocal();
    };
    link.onClosed(() => {
      this.udpLinks.delete(link);
      this.idle.delete(link);
      this.nat.reflexive.forget(link.remoteKey);
      if (link.punched) this.nat.linkClosed(link.remoteKey, Date.now());
      this.refreshLocal();
    });
    if (link.punched) this.idle.set(link, { traffic: this.o.trafficOf(link), at: Date.now() });
    void this.observe(link);
  }

  /** Once a second: ask the udp:// peers again now and then; close idle punched links. */
  tick(now: number): void {
    if (now - this.lastObserveRound >= (this.o.observeEveryMs ?? 60_000)) {
      this.lastObserveRound = now;
      for (const link of this.udpLinks) void this.observe(link);
    }
    const idleMs = this.o.idleMs ?? 300_000;
    for (const [link, seen] of this.idle) {
      const traffic = this.o.trafficOf(link);
      if (traffic !== seen.traffic) {
        seen.traffic = traffic;
        seen.at = now;
      } else if (now - seen.at >= idleMs) {
        link.close(`punched link idle for ${Math.round(idleMs / 1000)} s`);
      }
    }
  }

  private async observe(link: UdpLink): Promise<void> {
    const family = link.peerAddress.includes(":") && !link.peerAddress.startsWith("::ffff:") ? 6 : 4;
    const socket = await this.o.links.punchSocket(family).catch((e: Error) => {
      this.o.log.warn(`NAT traversal: no punch socket: ${e.message}`);
      return undefined;
    });
    if (!socket || link.closed || this.stopped) return;
    if (this.punchFamily === undefined) {
      this.punchFamily = family;
      this.punchPort = socket.port;
      this.refreshLocal();
    }
    if (this.pendingObserves.size >= MAX_PENDING_OBSERVES) this.pendingObserves.clear();
    const nonce = randomBytes(4).readUInt32BE(0);
    this.pendingObserves.set(nonce, link);
    // A link this node dialed has its own socket: the question leaves from the punch socket so the
    // answer names that socket's mapping. Other links already live on a listener's socket.
    if (link.outbound && !link.punched) {
      const datagram = link.observeDatagram(nonce);
      if (datagram) socket.sendTo(datagram, link.peerAddress, link.peerPort);
    } else {
      link.observe(nonce);
    }
  }

  private refreshLocal(): void {
    if (this.punchFamily === undefined || this.udpLinks.size === 0) {
      this.local = [];
      return;
    }
    const out = new Map<string, Candidate>();
    const reflexive = this.nat.reflexive.addresses();
    for (const c of reflexive) out.set(`${c.ip}|${c.port}`, c);
    const own = new Set<string>();
    for (const addrs of Object.values(networkInterfaces())) {
      for (const a of addrs ?? []) {
        if (a.internal || (a.family === "IPv4" ? 4 : 6) !== this.punchFamily) continue;
        own.add(ipBytes(a.address)?.toString("hex") ?? a.address);
        if (a.family === "IPv6" && a.address.toLowerCase().startsWith("fe80")) continue;
        if (out.size >= MAX_LOCAL_CANDIDATES + 4) continue;
        out.set(`${a.address}|${this.punchPort}`, { ip: a.address, port: this.punchPort });
      }
    }
    this.local = [...out.values()];
    this.behindNat = !reflexive.some((c) => own.has(ipBytes(c.ip)?.toString("hex") ?? c.ip));
  }

  private async punch(dest: Buffer, candidates: Candidate[], dial: boolean): Promise<void> {
    const started = Date.now();
    const link = await this.o.links
      .punch(dest, candidates, dial, this.o.punchMs ?? 5000, this.behindNat)
      .catch(() => undefined);
    const now = Date.now();
    this.nat.punchDone(dest, link !== undefined, now);
    const key = dest.toString("hex").slice(0, 16);
    if (link)
      this.o.log.info(`NAT traversal: punched a link to ${key} at ${link.remote} in ${now - started} ms`);
    else {
      const at = candidates.map((c) => `${c.ip}:${c.port}`).join(", ");
      this.o.log.info(
        `NAT traversal: no direct link to ${key} (${dial ? "dialed" : "opened towards"} ${at})`,
      );
    }
  }
}

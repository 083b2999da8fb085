// The link manager: listeners, static peers with redial, multicast discovery, and the admission rules
// of spec 4.2 (dedupe per scheme+interface+remote, pins, AllowedPublicKeys, no self-links), the same
// for stream links (TCP, TLS, unix) and our UDP links (udp.ts).
import { hkdfSync } from "node:crypto";
import { lookup } from "node:dns/promises";
import { once } from "node:events";
import { createRequire } from "node:module";
import net, { type Server, type Socket } from "node:net";
import type { SecureContext } from "node:tls";
import type { Logger } from "pino";
import { selfSignedCertificate } from "../../crypto/cert.js";
import type { Identity } from "../../crypto/identity.js";
import { LimitedLog } from "../../util/log-limit.js";
import {
  beaconHost,
  interfaceSignature,
  peerKey,
  plainIp,
  remoteId,
  remoteIp,
  routeVia,
} from "./addresses.js";
import {
  DEFAULT_HANDSHAKE_LIMITS,
  type HandshakeLimits,
  type HandshakeRefusal,
  HandshakeSlots,
  sourceOf,
} from "./handshake-slots.js";
import type { Link } from "./link.js";
import { Multicast, type MulticastInterfaceConfig } from "./multicast.js";
import { Puncher } from "./punch.js";
import { DEFAULT_REDIAL, RedialBackoff, type RedialOptions } from "./redial.js";
import { bindError, clearStaleSocket, requestCongestion, withTimeout } from "./sockets.js";
import { DEFAULT_TIMEOUTS, type LinkTimeouts, type StreamLink, handshake } from "./stream.js";
import type { RekeyOptions } from "./udp-rekey.js";
import { type UdpDial, type UdpHooks, type UdpLink, UdpListener, dialUdp } from "./udp.js";
import { type PeerUri, hostPort, isLinkLocal6, parseListenUri, parsePeerUri } from "./uri.js";

type TlsModule = typeof import("node:tls");
let tlsModule: TlsModule | undefined;
/** node:tls loads with the first tls:// link: a node with none keeps its code out of memory (~0.6 MiB RSS). */
function tls(): TlsModule {
  tlsModule ??= createRequire(import.meta.url)("node:tls") as TlsModule;
  return tlsModule;
}

export interface LinkManagerConfig {
  identity: Identity;
  listen: string[];
  peers: string[];
  interfacePeers: Record<string, string[]>;
  allowedPublicKeys: Buffer[];
  multicast: MulticastInterfaceConfig[];
  logger: Logger;
  /** Spec values by default; tests shorten them. */
  timeouts?: Partial<LinkTimeouts>;
  /** Static peer redial policy (redial.ts; default 1 s doubling to 8 s, 60 s for hopeless peers). */
  redial?: Partial<RedialOptions>;
  dialTimeoutMs?: number;
  /** Congestion control asked for on tcp:// and tls:// sockets (default bbr, as Yggdrasil; see requestCongestion). */
  tcpCongestion?: string;
  /** UDP port of the multicast group (spec: 9001). */
  multicastPort?: number;
  /** Beacon interfaces also announce a udp:// listener, and udp beacons heard are dialled (Planetd.MulticastUdp). */
  multicastUdp?: boolean;
  /** udp:// links: coalescing size (default 1452 bytes) and test hooks (loss injection). */
  udp?: { datagramBytes?: number; hooks?: UdpHooks; rekey?: Partial<RekeyOptions> };
  /** Inbound handshakes in flight: total, per source, first-byte deadline (handshake-slots.ts). */
  handshakes?: Partial<HandshakeLimits>;
}

/** What the manager keeps of a link: the Link seam plus a close watcher. */
type ManagedLink = StreamLink | UdpLink;

/** A dial in progress; cancel() abandons it (peer removed, stopping). */
interface DialAttempt {
  socket?: Socket;
  cancel?: (reason: string) => void;
}

/** What a config reload changes in the link manager (see Node.reload). */
export interface LinkReconfiguration {
  peersRemoved: Array<{ uri: string; iface: string | undefined }>;
  peersAdded: Array<{ uri: string; iface: string | undefined }>;
  listen?: string[];
  allowedPublicKeys?: Buffer[];
  multicast?: MulticastInterfaceConfig[];
}

export interface LinkManagerEvents {
  /** A link passed the handshake and every admission check. */
  onLink(link: Link): void;
}

interface PeerState {
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

export interface ListenerHandle {
  /** The bound URI (actual port), e.g. tcp://127.0.0.1:40123. */
  uri: string;
  port: number;
  /** udp:// listeners: the socket, which NAT traversal punches from, and its address family. */
  udp?: UdpListener;
  family?: 4 | 6;
  close(): Promise<void>;
}

const DIAL_TIMEOUT_MS = 5000;
/** How often the interface list is compared with the last one: a change redials every unlinked peer. */
const INTERFACE_POLL_MS = 3000;

/** The remote answered and refused, or was refused: redialling sooner will not help. */
class Refused extends Error {}

export class LinkManager {
  private readonly cfg: LinkManagerConfig;
  private readonly counters = { handshakeFailures: 0 };
  private readonly handshakes: HandshakeSlots<Socket>;
  private readonly firstByteMs: number;
  private readonly events: LinkManagerEvents;
  private readonly log: Logger;
  /** For lines a remote can cause once per connection, handshake or link. */
  private readonly limitedLog: LimitedLog;
  private readonly allowed: Set<string>;
  private readonly redial: RedialOptions;
  private interfacePoll: NodeJS.Timeout | undefined;
  private interfaceSignature = "";
  private tlsContext: SecureContext | undefined;
  private readonly listeners: ListenerHandle[] = [];
  private readonly peers = new Map<string, PeerState>();
  /** Dedupe ids (spec 4.2) of connections from accept/connect until close. */
  private readonly ids = new Set<string>();
  private readonly sockets = new Set<Socket>();
  private readonly links = new Set<ManagedLink>();
  private readonly udpDials = new Set<UdpDial>();
  /** NAT traversal: punch sockets and punches under way (punch.ts). */
  private readonly puncher: Puncher;
  private multicast: Multicast;
  private inboundSeq = 0;
  private started = false;
  private stopped = false;

  constructor(cfg: LinkManagerConfig, events: LinkManagerEvents) {
    this.cfg = cfg;
    this.events = events;
    this.log = cfg.logger;
    this.limitedLog = new LimitedLog(cfg.logger);
    const limits = { ...DEFAULT_HANDSHAKE_LIMITS, ...cfg.handshakes };
    this.handshakes = new HandshakeSlots(limits);
    this.firstByteMs = limits.firstByteMs;
    this.allowed = new Set(cfg.allowedPublicKeys.map((k) => k.toString("hex")));
    this.redial = { ...DEFAULT_REDIAL, ...cfg.redial };
    for (const uri of cfg.peers) this.addPeerState(uri, undefined);
    for (const [iface, uris] of Object.entries(cfg.interfacePeers)) {
      for (const uri of uris) this.addPeerState(uri, iface);
    }
    this.multicast = this.makeMulticast(cfg.multicast);
    this.puncher = new Puncher({
      configuredUdp: (family) => this.listeners.find((l) => l.udp && l.family === family)?.udp,
      bindPunchSocket: (family) => {
        const uri = family === 4 ? "udp://0.0.0.0:0" : "udp://[::]:0";
        return this.listenUdp(uri, parseListenUri(uri), undefined, true);
      },
      refusal: (key) => this.refusal(key, true, [], ""),
      admit: (link) => this.admit(link),
      stopped: () => this.stopped,
    });
  }

  private makeMulticast(interfaces: MulticastInterfaceConfig[]): Multicast {
    const cfg = this.cfg;
    return new Multicast({
      identity: cfg.identity,
      interfaces,
      logger: cfg.logger,
      port: cfg.multicastPort,
      listen: (host, port, iface, priority) =>
        this.listenOn(`tls://${hostPort(host, port)}?priority=${priority}`, iface),
      listenUdp: cfg.multicastUdp
        ? (host, port, iface, priority) =>
            this.listenOn(`udp://${hostPort(host, port)}?priority=${priority}`, iface)
        : undefined,
      dial: (uri, iface, id) => {
        this.nudgePeers(undefined, beaconHost(uri));
        this.dialOnce(uri, iface, id);
      },
    });
  }

  async start(): Promise<void> {
    if (this.started) throw new Error("link manager already started");
    this.started = true;
    try {
      for (const uri of this.cfg.listen) this.listeners.push(await this.listenOn(uri, undefined));
      await this.multicast.start();
    } catch (e) {
      await this.stop();
      throw e;
    }
    for (const peer of this.peers.values()) this.dialPeer(peer);
    // Node has no netlink: a poll of the interface list stands in for address and link events.
    this.interfaceSignature = interfaceSignature();
    this.interfacePoll = setInterval(() => {
      const now = interfaceSignature();
      if (now === this.interfaceSignature) return;
      this.interfaceSignature = now;
      this.nudgePeers(undefined, undefined);
    }, INTERFACE_POLL_MS);
    this.interfacePoll.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.interfacePoll);
    for (const peer of this.peers.values()) this.dropPeer(peer, "stopping");
    for (const dial of [...this.udpDials]) dial.cancel("stopping");
    await this.multicast.stop();
    const sockets = [...this.sockets];
    const socketsClosed = sockets.map((s) => (s.closed ? undefined : new Promise((r) => s.once("close", r))));
    for (const link of [...this.links]) link.close("stopping");
    for (const socket of sockets) socket.destroy();
    await Promise.all(socketsClosed);
    await Promise.all(this.listeners.splice(0).map((l) => l.close()));
    await this.puncher.close();
    this.limitedLog.flush();
  }

  addPeer(uri: string, iface?: string): void {
    if (this.peers.has(peerKey(uri, iface))) throw new Error("peer already configured");
    const peer = this.addPeerState(uri, iface);
    if (this.started && !this.stopped) this.dialPeer(peer);
  }

  removePeer(uri: string, iface?: string): void {
    const key = peerKey(uri, iface);
    const peer = this.peers.get(key);
    if (!peer) throw new Error("peer not configured");
    this.peers.delete(key);
    this.dropPeer(peer, "peer removed");
  }

  /**
   * A reloaded config's link settings. Peers and listeners that stay are not touched; inbound links
   * from keys AllowedPublicKeys no longer admits are closed. Returns what could not be applied
   * (a Listen address that does not bind), one line each; everything else is applied regardless.
   */
  async reconfigure(change: LinkReconfiguration): Promise<string[]> {
    const problems: string[] = [];
    for (const p of change.peersRemoved)
      if (this.peers.has(peerKey(p.uri, p.iface))) this.removePeer(p.uri, p.iface);
    for (const p of change.peersAdded)
      if (!this.peers.has(peerKey(p.uri, p.iface))) this.addPeer(p.uri, p.iface);
    if (change.allowedPublicKeys) {
      this.allowed.clear();
      for (const k of change.allowedPublicKeys) this.allowed.add(k.toString("hex"));
      for (const link of [...this.links]) {
        if (link.outbound) continue;
        const refused = this.refusal(link.remoteKey, false, [], remoteIp(link.remote));
        if (refused !== undefined) link.close(`${refused} (config reloaded)`);
      }
    }
    if (change.listen) {
      // this.listeners[i] serves this.cfg.listen[i]: keep the ones still listed, bind the new.
      const running = new Map(this.cfg.listen.map((uri, i) => [uri, this.listeners[i]]));
      const kept: ListenerHandle[] = [];
      const keptUris: string[] = [];
      for (const uri of change.listen) {
        let handle = running.get(uri);
        running.delete(uri);
        if (handle === undefined) {
          try {
            handle = await this.listenOn(uri, undefined);
          } catch (e) {
            problems.push((e as Error).message);
            continue;
          }
        }
        kept.push(handle);
        keptUris.push(uri);
      }
      for (const handle of running.values()) if (handle) await handle.close();
      this.listeners.splice(0, this.listeners.length, ...kept);
      this.cfg.listen = keptUris;
    }
    if (change.multicast) {
      await this.multicast.stop();
      this.multicast = this.makeMulticast(change.multicast);
      try {
        await this.multicast.start();
      } catch (e) {
        problems.push(`MulticastInterfaces: ${(e as Error).message}`);
      }
    }
    return problems;
  }

  /** Configured static peers as [uri, iface] pairs. */
  peerList(): Array<{ uri: string; iface: string | undefined; connected: boolean }> {
    return [...this.peers.values()].map((p) => ({
      uri: p.uri,
      iface: p.iface,
      connected: p.link !== undefined,
    }));
  }

  listenAddresses(): string[] {
    return this.listeners.map((l) => l.uri);
  }

  multicastInterfaces(): string[] {
    return this.multicast.interfaces();
  }

  private addPeerState(uri: string, iface: string | undefined): PeerState {
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

  private dropPeer(peer: PeerState, reason: string): void {
    peer.removed = true;
    clearTimeout(peer.timer);
    peer.attempt?.socket?.destroy();
    peer.attempt?.cancel?.(reason);
    peer.link?.close(reason);
  }

  private dialPeer(peer: PeerState): void {
    peer.timer = undefined;
    if (peer.removed || this.stopped) return;
    const attempt: DialAttempt = {};
    peer.attempt = attempt;
    peer.backoff.attemptStarted(Date.now());
    this.dial(peer.parsed, peer.iface, attempt).then(
      (link) => {
        peer.attempt = undefined;
        if (peer.removed || this.stopped) {
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
        this.admit(link);
      },
      (e: Error) => {
        peer.attempt = undefined;
        if (peer.removed || this.stopped) return;
        this.limitedLog.warn(`link to ${peer.uri} failed`, `link to ${peer.uri} failed: ${e.message}`, {
          peer: peer.uri,
          iface: peer.iface,
        });
        this.scheduleRedial(peer, peer.backoff.failed(Date.now(), isHopeless(e)));
      },
    );
  }

  private scheduleRedial(peer: PeerState, at: number): void {
    if (peer.removed || this.stopped || peer.timer) return;
    peer.timer = setTimeout(() => this.dialPeer(peer), Math.max(0, at - Date.now()));
  }

  /**
   * A sign that unlinked static peers may be reachable now: a link to `key`, an inbound link or a
   * beacon from `ip`, or (both undefined) a change of our interfaces. Matching peers waiting for
   * their redial timer dial at once (redial.ts bounds how often).
   */
  private nudgePeers(key: Buffer | undefined, ip: string | undefined): void {
    if (this.stopped) return;
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
      this.dialPeer(peer);
    }
  }

  /** One-shot dial (multicast): no redial; failures are logged. */
  private dialOnce(uri: string, iface: string, id: string): void {
    if (this.ids.has(id) || this.stopped) return;
    let parsed: PeerUri;
    try {
      parsed = parsePeerUri(uri);
    } catch (e) {
      this.limitedLog.warn("multicast beacon refused", `multicast: ${(e as Error).message}`);
      return;
    }
    this.dial(parsed, iface, {}).then(
      (link) => this.admit(link),
      (e: Error) => {
        if (this.stopped) return;
        this.limitedLog.info("multicast link failed", `link to ${uri} failed: ${e.message}`, {
          peer: uri,
          iface,
        });
      },
    );
  }

  private async dial(parsed: PeerUri, iface: string | undefined, attempt: DialAttempt): Promise<ManagedLink> {
    if (this.stopped) throw new Error("stopping");
    if (parsed.scheme === "udp") return this.dialUdp(parsed, iface, attempt);
    const timeoutMs = this.cfg.dialTimeoutMs ?? DIAL_TIMEOUT_MS;
    let raw: Socket;
    if (parsed.scheme === "unix") {
      raw = net.connect({ path: parsed.path });
    } else {
      const { host, localAddress } = routeVia(parsed.host, iface);
      raw = net.connect({ host, port: parsed.port, localAddress });
    }
    attempt.socket = raw;
    raw.on("error", () => {}); // errors surface through the awaited events and "close"
    this.sockets.add(raw);
    raw.once("close", () => this.sockets.delete(raw));
    let id = "";
    let connected = false;
    try {
      await withTimeout(once(raw, "connect"), timeoutMs, raw, "dial timed out");
      connected = true;
      if (parsed.scheme !== "unix") requestCongestion(raw, this.cfg.tcpCongestion);
      id =
        parsed.scheme === "unix"
          ? `unix||${parsed.path}|out`
          : remoteId(parsed.scheme, iface, raw.remoteAddress ?? "", raw.remotePort ?? 0);
      if (this.ids.has(id)) throw new Error("already connected to this address");
      this.ids.add(id);
      raw.once("close", () => this.ids.delete(id));
      let stream: Socket = raw;
      if (parsed.scheme === "tls") {
        const secured = tls().connect({
          socket: raw,
          servername: parsed.sni,
          rejectUnauthorized: false,
          minVersion: "TLSv1.3",
        });
        stream = secured;
        await withTimeout(once(secured, "secureConnect"), timeoutMs, raw, "TLS handshake timed out");
      }
      const link = await handshake(stream, {
        localKey: this.cfg.identity.publicKey,
        outbound: true,
        remote: parsed.base,
        priority: parsed.priority,
        timeouts: this.cfg.timeouts,
      });
      const refused = this.refusal(link.remoteKey, true, parsed.keys, "");
      if (refused !== undefined) {
        link.close(refused);
        throw new Refused(refused);
      }
      return link;
    } catch (e) {
      if (connected) this.counters.handshakeFailures++;
      raw.destroy();
      throw e;
    }
  }

  /**
   * handshakeFailures: connections made but lost in TLS, the metadata exchange or admission (pins,
   * allow-list). handshakeRefusals: inbound connections closed to keep the handshake table fair.
   */
  stats(): { handshakeFailures: number; handshakeRefusals: Record<HandshakeRefusal, number> } {
    return { ...this.counters, handshakeRefusals: { ...this.handshakes.refused } };
  }

  /** Bind one listener; used for Listen URIs and for multicast's link-local TLS listeners. */
  private async listenOn(uri: string, iface: string | undefined): Promise<ListenerHandle> {
    let parsed: PeerUri;
    try {
      parsed = parseListenUri(uri);
    } catch (e) {
      throw new Error(`listen: ${(e as Error).message}`);
    }
    if (parsed.scheme === "udp") return this.listenUdp(uri, parsed, iface);
    const server = net.createServer({ pauseOnConnect: true }, (socket) => this.accept(socket, parsed, iface));
    if (parsed.scheme === "unix") await clearStaleSocket(parsed.path);
    await new Promise<void>((resolve, reject) => {
      server.once("error", (e) => reject(bindError(uri, iface, e)));
      server.once("listening", resolve);
      if (parsed.scheme === "unix") server.listen(parsed.path);
      else server.listen({ host: parsed.host, port: parsed.port });
    });
    server.removeAllListeners("error");
    server.on("error", (e) => this.limitedLog.warn(`listener ${uri}`, `listener ${uri}: ${e.message}`));
    const addr = server.address();
    const port = typeof addr === "object" && addr ? addr.port : 0;
    const actual =
      parsed.scheme === "unix"
        ? `unix://${parsed.path}`
        : `${parsed.scheme}://${hostPort(parsed.host, port)}`;
    this.log.info(`listening on ${actual}`);
    return {
      uri: actual,
      port,
      close: () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
        }),
    };
  }

  private accept(raw: Socket, parsed: PeerUri, iface: string | undefined): void {
    if (this.stopped) {
      raw.destroy();
      return;
    }
    const ip = raw.remoteAddress ?? "";
    const id =
      parsed.scheme === "unix"
        ? `unix||${parsed.path}|in${++this.inboundSeq}`
        : remoteId(parsed.scheme, iface, ip, raw.remotePort ?? 0);
    const remote =
      parsed.scheme === "unix"
        ? `unix://${parsed.path}`
        : `${parsed.scheme}://${hostPort(ip, raw.remotePort ?? 0)}`;
    if (this.ids.has(id)) {
      raw.destroy();
      return;
    }
    const source = sourceOf(parsed.scheme === "unix" ? "" : ip);
    const admission = this.handshakes.acquire(source, raw);
    if (!admission.ok) {
      raw.destroy();
      const why =
        admission.reason === "source_limit" ? "too many handshakes from it" : "handshake table full";
      this.limitedLog.info(
        `inbound connections from ${source} refused`,
        `inbound connection from ${remote} refused: ${why}`,
        { remote, reason: admission.reason },
      );
      return;
    }
    admission.evicted?.destroy();
    this.ids.add(id);
    this.sockets.add(raw);
    raw.once("close", () => {
      this.ids.delete(id);
      this.sockets.delete(raw);
    });
    raw.on("error", () => raw.destroy());
    // An honest peer writes its metadata (or TLS hello) as soon as it connects; a silent one only
    // holds a slot. Only armed when shorter than the handshake deadline, which closes it anyway.
    let closedFor: string | undefined;
    const handshakeMs = this.cfg.timeouts?.handshakeMs ?? DEFAULT_TIMEOUTS.handshakeMs;
    const silence =
      this.firstByteMs < handshakeMs
        ? setTimeout(() => {
            if (raw.bytesRead > 0) return;
            closedFor = `sent nothing for ${this.firstByteMs} ms`;
            this.handshakes.refused.silent++;
            raw.destroy();
          }, this.firstByteMs)
        : undefined;
    this.acceptAsync(raw, parsed, remote, ip).then(
      (link) => {
        clearTimeout(silence);
        this.handshakes.release(source, raw);
        if (link) this.admit(link);
      },
      (e: Error) => {
        clearTimeout(silence);
        if (!this.handshakes.release(source, raw)) {
          closedFor ??= "closed to make room (handshake table full, its source holds the most slots)";
        }
        this.counters.handshakeFailures++;
        raw.destroy();
        if (this.stopped) return;
        this.limitedLog.info(
          `inbound links from ${source} failed`,
          `inbound link from ${remote} failed: ${closedFor ?? e.message}`,
          { remote },
        );
      },
    );
  }

  private async acceptAsync(
    raw: Socket,
    parsed: PeerUri,
    remote: string,
    ip: string,
  ): Promise<StreamLink | null> {
    if (parsed.scheme !== "unix") requestCongestion(raw, this.cfg.tcpCongestion);
    let stream: Socket = raw;
    if (parsed.scheme === "tls") {
      const secured = new (tls().TLSSocket)(raw, {
        isServer: true,
        secureContext: this.serverContext(),
        requestCert: false,
      });
      stream = secured;
      raw.resume();
      const timeoutMs = this.cfg.timeouts?.handshakeMs ?? 6000;
      await withTimeout(once(secured, "secure"), timeoutMs, raw, "TLS handshake timed out");
    } else {
      raw.resume();
    }
    const link = await handshake(stream, {
      localKey: this.cfg.identity.publicKey,
      outbound: false,
      remote,
      priority: parsed.priority,
      timeouts: this.cfg.timeouts,
    });
    const refused = this.refusal(link.remoteKey, false, [], ip);
    if (refused !== undefined) {
      link.close(refused);
      throw new Error(refused);
    }
    return link;
  }

  /**
   * The admission rules every transport shares (spec 4.2): no link to ourselves, pins on outbound
   * links, AllowedPublicKeys on inbound ones (link-local sources exempt). Returns the reason to refuse.
   */
  private refusal(remoteKey: Buffer, outbound: boolean, pins: Buffer[], ip: string): string | undefined {
    if (remoteKey.equals(this.cfg.identity.publicKey)) return "remote key is our own key";
    const keyHex = remoteKey.toString("hex");
    if (outbound) {
      if (pins.length > 0 && !pins.some((k) => k.equals(remoteKey))) {
        return `remote key ${keyHex} does not match the pinned key`;
      }
    } else if (this.allowed.size > 0 && !this.allowed.has(keyHex) && !isLinkLocal6(ip)) {
      return `key ${keyHex} is not in AllowedPublicKeys`;
    }
    return undefined;
  }

  private async dialUdp(parsed: PeerUri, iface: string | undefined, attempt: DialAttempt): Promise<UdpLink> {
    const route = routeVia(parsed.host, iface);
    const address = net.isIP(route.host.split("%")[0]!) ? route.host : (await lookup(route.host)).address;
    if (this.stopped) throw new Error("stopping");
    // One link per peer key and priority: two Peers entries that differ only in priority both link.
    const id = `${remoteId("udp", iface, address, parsed.port)}|p${parsed.priority}`;
    if (this.ids.has(id)) throw new Error("already connected to this address");
    this.ids.add(id);
    const dial = dialUdp({
      address,
      port: parsed.port,
      localAddress: route.localAddress,
      localKey: this.cfg.identity.publicKey,
      sign: (message) => this.cfg.identity.sign(message),
      priority: parsed.priority,
      remote: parsed.base,
      timeouts: { ...DEFAULT_TIMEOUTS, ...this.cfg.timeouts },
      datagramBytes: this.cfg.udp?.datagramBytes,
      hooks: this.cfg.udp?.hooks,
      rekey: this.cfg.udp?.rekey,
      check: (remoteKey) => this.refusal(remoteKey, true, parsed.keys, ""),
    });
    attempt.cancel = (reason) => dial.cancel(reason);
    this.udpDials.add(dial);
    try {
      const link = await dial.link;
      link.onClosed(() => this.ids.delete(id));
      return link;
    } catch (e) {
      this.ids.delete(id);
      if (dial.answered) this.counters.handshakeFailures++;
      throw e;
    } finally {
      this.udpDials.delete(dial);
    }
  }

  /** The socket NAT traversal punches from for `family` (Puncher.socket). */
  punchSocket(family: 4 | 6): Promise<UdpListener | undefined> {
    return this.puncher.socket(family);
  }

  /** Punches a udp:// link to `key` at `candidates` (NAT traversal, Puncher.punch). */
  punch(
    key: Buffer,
    candidates: Array<{ ip: string; port: number }>,
    dial: boolean,
    timeoutMs: number,
    behindNat = true,
  ): Promise<UdpLink | undefined> {
    return this.puncher.punch(key, candidates, dial, timeoutMs, behindNat);
  }

  private async listenUdp(
    uri: string,
    parsed: PeerUri,
    iface: string | undefined,
    punchOnly = false,
  ): Promise<ListenerHandle> {
    const host = net.isIP(parsed.host.split("%")[0]!) ? parsed.host : (await lookup(parsed.host)).address;
    let listener: UdpListener;
    try {
      listener = await UdpListener.bind({
        host,
        port: parsed.port,
        localKey: this.cfg.identity.publicKey,
        sign: (message) => this.cfg.identity.sign(message),
        resetSecret: this.udpResetSecret(),
        priority: parsed.priority,
        timeouts: { ...DEFAULT_TIMEOUTS, ...this.cfg.timeouts },
        datagramBytes: this.cfg.udp?.datagramBytes,
        hooks: this.cfg.udp?.hooks,
        rekey: this.cfg.udp?.rekey,
        check: (remoteKey, ip, port) => {
          const remote = `udp://${hostPort(ip, port)}`;
          const id = remoteId("udp", iface, ip, port);
          const refused = this.stopped
            ? "stopping"
            : punchOnly && !this.puncher.punching(remoteKey.toString("hex"))
              ? "this socket only takes links being punched"
              : this.ids.has(id)
                ? "already connected to this address"
                : this.refusal(remoteKey, false, [], ip);
          if (refused !== undefined) {
            this.counters.handshakeFailures++;
            if (!this.stopped) {
              this.limitedLog.info(
                `inbound links from ${sourceOf(ip)} failed`,
                `inbound link from ${remote} failed: ${refused}`,
                { remote },
              );
            }
          }
          return refused;
        },
        onLink: (link, ip, port) => {
          const id = remoteId("udp", iface, ip, port);
          this.ids.add(id);
          link.onClosed(() => this.ids.delete(id));
          this.puncher.inbound(link);
        },
        onSocketError: (message) => this.limitedLog.warn(`listener ${uri}`, `listener ${uri}: ${message}`),
      });
    } catch (e) {
      throw bindError(uri, iface, e);
    }
    const actual = `udp://${hostPort(parsed.host, listener.port)}`;
    this.log.info(`listening on ${actual}${punchOnly ? " (NAT traversal)" : ""}`);
    const family = net.isIPv4(host) ? 4 : 6;
    return { uri: actual, port: listener.port, udp: listener, family, close: () => listener.close() };
  }

  /** udp:// reset tokens are keyed from the node's private key, so they survive a restart. */
  private udpResetSecret(): Buffer {
    return Buffer.from(hkdfSync("sha256", this.cfg.identity.seed, "", "planetd udp reset token", 32));
  }

  private serverContext(): SecureContext {
    if (!this.tlsContext) {
      const { cert, key } = selfSignedCertificate(this.cfg.identity);
      this.tlsContext = tls().createSecureContext({ cert, key, minVersion: "TLSv1.3" });
    }
    return this.tlsContext;
  }

  private admit(link: ManagedLink): void {
    if (this.stopped) {
      link.close("stopping");
      return;
    }
    this.links.add(link);
    const key = link.remoteKey.toString("hex");
    const dir = link.outbound ? "outbound" : "inbound";
    // Keyed by remote host: a host cycling links with fresh keys floods only its own line.
    const host = link.remote.replace(/:\d+$/, "");
    this.limitedLog.info(`link up: ${dir} ${host}`, `link up: ${dir} ${link.remote} ${key}`, {
      key,
      remote: link.remote,
      dir,
      priority: link.priority,
    });
    link.onClosed((reason) => {
      this.links.delete(link);
      if (!this.stopped || reason !== "stopping") {
        this.limitedLog.info(
          `link down: ${dir} ${host}`,
          `link down: ${dir} ${link.remote} ${key}: ${reason}`,
          {
            key,
            remote: link.remote,
            dir,
          },
        );
      }
    });
    this.events.onLink(link);
    // An inbound link says the path from its address works: a static peer there may be redialled.
    this.nudgePeers(link.remoteKey, link.outbound ? undefined : plainIp(remoteIp(link.remote)));
  }
}

/** Failures a redial soon will not mend: the remote was refused, or its name does not resolve. */
function isHopeless(e: Error): boolean {
  return e instanceof Refused || (e as NodeJS.ErrnoException).code === "ENOTFOUND";
}

// The link manager: listeners, static peers with redial, multicast discovery, and the admission rules
// of spec 4.2 (dedupe per scheme+interface+remote, pins, AllowedPublicKeys, no self-links), the same
// for stream links (TCP, TLS, unix) and our UDP links (udp.ts). Its parts: admission.ts (rules and
// dedupe ids), static-peers.ts (dial and redial), stream-endpoints.ts and udp-endpoints.ts (listen,
// accept, dial per transport), punch.ts (NAT traversal); this file wires them and owns start/stop/reload.
import type { Logger } from "pino";
import { LimitedLog } from "../../util/log-limit.js";
import { beaconHost, interfaceSignature, plainIp, remoteIp } from "./addresses.js";
import { Admission } from "./admission.js";
import type { HandshakeRefusal } from "./handshake-slots.js";
import type { Link } from "./link.js";
import type {
  DialAttempt,
  LinkManagerConfig,
  ListenerHandle,
  ManagedLink,
  ManagerContext,
} from "./manager-context.js";
import { Multicast, type MulticastInterfaceConfig } from "./multicast.js";
import { Puncher, punchPortFor } from "./punch.js";
import { DEFAULT_REDIAL } from "./redial.js";
import { StaticPeers } from "./static-peers.js";
import { StreamEndpoints } from "./stream-endpoints.js";
import type { UdpEndpoints } from "./udp-endpoints.js";
import type { UdpLink, UdpListener } from "./udp.js";
import { type PeerUri, hostPort, parseListenUri, parsePeerUri } from "./uri.js";

export type { LinkManagerConfig, ListenerHandle } from "./manager-context.js";

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

/** How often the interface list is compared with the last one: a change redials every unlinked peer. */
const INTERFACE_POLL_MS = 3000;

export class LinkManager {
  private readonly cfg: LinkManagerConfig;
  private readonly counters = { handshakeFailures: 0 };
  private readonly events: LinkManagerEvents;
  private readonly log: Logger;
  /** For lines a remote can cause once per connection, handshake or link. */
  private readonly limitedLog: LimitedLog;
  /** The admission rules (spec 4.2) and the dedupe ids of every transport. */
  private readonly admission: Admission;
  private readonly staticPeers: StaticPeers;
  private readonly streams: StreamEndpoints;
  private readonly ctx: ManagerContext;
  /**
   * udp:// (udp-endpoints.ts and the ~20 modules under it, a fifth of planetd's code) is loaded at
   * the first udp:// listener, dial or punch socket: a node with tcp:// and tls:// links only never
   * runs it, and its code held ~0.5 MiB of idle RSS (see the commit).
   */
  private udp: UdpEndpoints | undefined;
  private udpLoading: Promise<UdpEndpoints> | undefined;
  private interfacePoll: NodeJS.Timeout | undefined;
  private interfaceSignature = "";
  private readonly listeners: ListenerHandle[] = [];
  private readonly links = new Set<ManagedLink>();
  /** NAT traversal: punch sockets and punches under way (punch.ts). */
  private readonly puncher: Puncher;
  private multicast: Multicast;
  private started = false;
  private stopped = false;

  constructor(cfg: LinkManagerConfig, events: LinkManagerEvents) {
    this.cfg = cfg;
    this.events = events;
    this.log = cfg.logger;
    this.limitedLog = new LimitedLog(cfg.logger);
    this.admission = new Admission(cfg.identity.publicKey, cfg.allowedPublicKeys);
    const ctx: ManagerContext = {
      cfg,
      admission: this.admission,
      counters: this.counters,
      log: this.log,
      limitedLog: this.limitedLog,
      stopped: () => this.stopped,
      admit: (link) => this.admit(link),
    };
    this.ctx = ctx;
    this.streams = new StreamEndpoints(ctx);
    this.staticPeers = new StaticPeers(
      {
        dial: (parsed, iface, attempt) => this.dial(parsed, iface, attempt),
        admit: (link) => this.admit(link),
        stopped: () => this.stopped,
        limitedLog: this.limitedLog,
      },
      { ...DEFAULT_REDIAL, ...cfg.redial },
    );
    for (const uri of cfg.peers) this.staticPeers.add(uri, undefined);
    for (const [iface, uris] of Object.entries(cfg.interfacePeers)) {
      for (const uri of uris) this.staticPeers.add(uri, iface);
    }
    this.multicast = this.makeMulticast(cfg.multicast);
    this.puncher = new Puncher({
      configuredUdp: (family) => this.listeners.find((l) => l.udp && l.family === family)?.udp,
      bindPunchSocket: async (family, port) => {
        const uri = family === 4 ? `udp://0.0.0.0:${port}` : `udp://[::]:${port}`;
        return (await this.udpEndpoints()).listen(uri, parseListenUri(uri), undefined, true);
      },
      preferredPort: punchPortFor(cfg.identity.publicKey),
      refusal: (key) => this.admission.refusal(key, true, [], ""),
      admit: (link) => this.admit(link),
      stopped: () => this.stopped,
    });
  }

  private udpEndpoints(): Promise<UdpEndpoints> {
    this.udpLoading ??= import("./udp-endpoints.js").then(({ UdpEndpoints }) => {
      this.udp = new UdpEndpoints(this.ctx, this.puncher);
      return this.udp;
    });
    return this.udpLoading;
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
        this.staticPeers.nudge(undefined, beaconHost(uri));
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
    this.staticPeers.dialAll();
    // Node has no netlink: a poll of the interface list stands in for address and link events.
    this.interfaceSignature = interfaceSignature();
    this.interfacePoll = setInterval(() => {
      const now = interfaceSignature();
      if (now === this.interfaceSignature) return;
      this.interfaceSignature = now;
      this.staticPeers.nudge(undefined, undefined);
    }, INTERFACE_POLL_MS);
    this.interfacePoll.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.interfacePoll);
    this.staticPeers.dropAll("stopping");
    for (const dial of [...(this.udp?.dials ?? [])]) dial.cancel("stopping");
    await this.multicast.stop();
    const sockets = [...this.streams.sockets];
    const socketsClosed = sockets.map((s) => (s.closed ? undefined : new Promise((r) => s.once("close", r))));
    for (const link of [...this.links]) link.close("stopping");
    for (const socket of sockets) socket.destroy();
    await Promise.all(socketsClosed);
    await Promise.all(this.listeners.splice(0).map((l) => l.close()));
    await this.puncher.close();
    this.limitedLog.flush();
  }

  addPeer(uri: string, iface?: string): void {
    if (this.staticPeers.has(uri, iface)) throw new Error("peer already configured");
    const peer = this.staticPeers.add(uri, iface);
    if (this.started && !this.stopped) this.staticPeers.dial(peer);
  }

  removePeer(uri: string, iface?: string): void {
    this.staticPeers.remove(uri, iface);
  }

  /**
   * A reloaded config's link settings. Peers and listeners that stay are not touched; inbound links
   * from keys AllowedPublicKeys no longer admits are closed. Returns what could not be applied
   * (a Listen address that does not bind), one line each; everything else is applied regardless.
   */
  async reconfigure(change: LinkReconfiguration): Promise<string[]> {
    const problems: string[] = [];
    for (const p of change.peersRemoved)
      if (this.staticPeers.has(p.uri, p.iface)) this.removePeer(p.uri, p.iface);
    for (const p of change.peersAdded)
      if (!this.staticPeers.has(p.uri, p.iface)) this.addPeer(p.uri, p.iface);
    if (change.allowedPublicKeys) {
      this.admission.setAllowed(change.allowedPublicKeys);
      for (const link of [...this.links]) {
        if (link.outbound) continue;
        const refused = this.admission.refusal(link.remoteKey, false, [], remoteIp(link.remote));
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
    return this.staticPeers.list();
  }

  listenAddresses(): string[] {
    return this.listeners.map((l) => l.uri);
  }

  multicastInterfaces(): string[] {
    return this.multicast.interfaces();
  }

  /** One-shot dial (multicast): no redial; failures are logged. */
  private dialOnce(uri: string, iface: string, id: string): void {
    if (this.admission.ids.has(id) || this.stopped) return;
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
    if (parsed.scheme === "udp") {
      const udp = await this.udpEndpoints();
      if (this.stopped) throw new Error("stopping");
      return udp.dial(parsed, iface, attempt);
    }
    return this.streams.dial(parsed, iface, attempt);
  }

  /**
   * handshakeFailures: connections made but lost in TLS, the metadata exchange or admission (pins,
   * allow-list). handshakeRefusals: inbound connections closed to keep the handshake table fair.
   */
  stats(): { handshakeFailures: number; handshakeRefusals: Record<HandshakeRefusal, number> } {
    return { ...this.counters, handshakeRefusals: { ...this.streams.handshakes.refused } };
  }

  /** Bind one listener; used for Listen URIs and for multicast's link-local TLS listeners. */
  private async listenOn(uri: string, iface: string | undefined): Promise<ListenerHandle> {
    let parsed: PeerUri;
    try {
      parsed = parseListenUri(uri);
    } catch (e) {
      throw new Error(`listen: ${(e as Error).message}`);
    }
    if (parsed.scheme === "udp") return (await this.udpEndpoints()).listen(uri, parsed, iface);
    return this.streams.listen(uri, parsed, iface);
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
    this.staticPeers.nudge(link.remoteKey, link.outbound ? undefined : plainIp(remoteIp(link.remote)));
  }
}

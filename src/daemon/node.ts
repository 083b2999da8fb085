// The Node: the one place that owns time and I/O. It builds the link manager, the router, the
// sessions, the IPv6 adapter, the TUN device and the admin socket from a config, and moves events
// between them. Everything below it is sans-I/O; everything above it (CLI, admin) reads it.
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import type { Logger } from "pino";
import { type MetricsServer, startMetrics } from "../admin/metrics.js";
import { type AdminServer, startAdminServer } from "../admin/server.js";
import type { PlanetConfig } from "../config/config.js";
import { type BoxBackend, loadBox } from "../crypto/box.js";
import type { Identity } from "../crypto/identity.js";
import { sessionAeadFromEnv } from "../crypto/session-aead.js";
import type { Link } from "../overlay/links/link.js";
import { LinkManager } from "../overlay/links/manager.js";
import { CORE_PLANETD } from "../overlay/nat.js";
import type { PacketConn } from "../overlay/packetconn.js";
import { Proto } from "../overlay/proto.js";
import { SEAL_HEADROOM, SEAL_TAILROOM, Sessions, newSessionBudget } from "../overlay/sessions.js";
import { Router, type RouterOutput } from "../routing/router.js";
import { FrameType, TrafficKind } from "../routing/types.js";
import type { TunDevice } from "../tun/device.js";
import { FirewallRuleError } from "../tun/firewall-rules.js";
import { type CompiledFirewall, Firewall } from "../tun/firewall.js";
import { MAX_SUPER_PACKET, SIG_SUPER_ACCEPT, SIG_SUPER_TCP6, SUPER_HEADER_BYTES } from "../tun/gso.js";
import { Ipv6Adapter, type SuperPacketTun } from "../tun/ipv6.js";
import { releaseFreedHeap } from "../tun/native.js";
import type { TokenBucket } from "../util/token-bucket.js";
import { HeapTrimPolicy } from "./heap-trim.js";
import { tierUpDataPathEarly } from "./jit-tiering.js";
import { NatDriver } from "./nat-driver.js";
import { ReloadRefused, describePlan, planReload } from "./reload.js";
import { type NodeCounters, adminViewFor, metricsSnapshotFor } from "./views.js";

/** Largest IPv6 packet the overlay carries (spec 5.9). */
export const MAX_IFMTU = 53049;
export const MIN_IFMTU = 1280;
const TICK_MS = 100;
/**
 * A full garbage collection, for the heap trim after a burst (heap-trim.ts). V8 gives it only to
 * scripts started with --expose-gc; setting the flag and fetching it from a fresh context is the
 * documented way round. The context is made per trim and dropped: the function keeps its whole
 * context (a second set of builtins) alive, 0.5 MiB of idle RSS when it was fetched at start.
 */
function fullGc(): void {
  try {
    setFlagsFromString("--expose-gc");
    (runInNewContext("gc") as () => void)();
  } catch {}
}
const CORE_IPV6 = 1;
const CORE_PROTO = 2;

export interface NodeOptions {
  config: PlanetConfig;
  identity: Identity;
  logger: Logger;
  /** Open the TUN device; tests inject an in-memory one. Undefined = decide from config and privileges. */
  openTun?: (name: string, mtu: number, address: Buffer) => Promise<TunDevice>;
}

interface PeerSlot {
  link: Link;
  port: number;
  framesIn: number;
  framesOut: number;
  /** Traffic frames (types 9, 10) both ways: NAT traversal closes punched links that carry none. */
  traffic: number;
  /** What this link may ask of our sessions layer in new-session handshakes and stray-traffic answers. */
  newSessions: TokenBucket;
}

export class Node implements PacketConn {
  readonly identity: Identity;
  readonly publicKey: Buffer;
  readonly mtu: number;
  readonly router: Router;
  readonly sessions: Sessions;
  readonly links: LinkManager;
  readonly proto: Proto;
  readonly box: BoxBackend;
  /** NAT traversal (Planetd.NatTraversal, on by default); undefined when off. */
  readonly natDriver: NatDriver | undefined;
  readonly counters: NodeCounters = {
    trafficDroppedCongested: 0,
    trafficDroppedNoLink: 0,
    tunSendErrors: 0,
  };
  ipv6: Ipv6Adapter | undefined;
  tun: TunDevice | undefined;
  /** Planetd.Firewall, applied by the IPv6 adapter; undefined when not configured. */
  firewall: Firewall | undefined;
  private readonly log: Logger;
  /** Set by the CLI: re-read the config file and reload() it (the admin `reload` command and SIGHUP). */
  reloadFromSource: (() => Promise<string>) | undefined;
  /** The config running now (the last one reload applied). */
  private config: PlanetConfig;
  private readonly peers = new Map<number, PeerSlot>();
  /** Links per peer key (latin1): a key with one is a direct peer, not a NAT traversal target. */
  private readonly peerKeys = new Map<string, number>();
  private lastNatTick = 0;
  private lastTrimCheck = 0;
  private readonly heapTrim = new HeapTrimPolicy();
  private messageHandler: ((source: Buffer, message: Buffer) => void) | undefined;
  private oobHandler: ((source: Buffer, dest: Buffer, payload: Buffer) => void) | undefined;
  private ticker: NodeJS.Timeout | undefined;
  private admin: AdminServer | undefined;
  private metrics: MetricsServer | undefined;
  private stopped = false;
  /**
   * The time of the event being handled. Router output callbacks carry no time, so every entry into
   * the router sets this first and deliveries read it: one clock read per event, not per layer.
   */
  private eventNow = 0;
  /** The budget of the link whose frame is being handled; undefined for local events. */
  private eventVia: TokenBucket | undefined;

  private constructor(opts: NodeOptions) {
    this.identity = opts.identity;
    this.publicKey = opts.identity.publicKey;
    this.log = opts.logger;
    this.config = opts.config;
    this.mtu = Math.min(MAX_IFMTU, Math.max(MIN_IFMTU, opts.config.IfMTU));
    const rules = opts.config.Planetd.Firewall;
    this.firewall = rules ? new Firewall(rules, this.identity) : undefined;
    this.box = loadBox();
    const now = Date.now();
    this.eventNow = now;
    this.router = new Router(this.identity, this.routerOutput(), now);
    this.sessions = new Sessions(
      this.identity,
      {
        sendTraffic: (dest, payload, now, held) => {
          this.eventNow = now;
          this.router.sendTraffic(dest, TrafficKind.Standard, payload, now, held);
        },
        deliver: (source, message, now) => this.deliverCore(source, message, now),
      },
      this.box,
      { aead: sessionAeadFromEnv() },
    );
    this.proto = new Proto(
      { send: (dest, message) => this.sendCore(dest, CORE_PROTO, message, Date.now()) },
      {
        key: this.publicKey,
        nodeInfo: opts.config.NodeInfo,
        privacy: opts.config.NodeInfoPrivacy,
        coords: () => this.router.selfInfo().coords,
        peerKeys: () => this.router.peerInfos().map((p) => p.key),
        dhtKeys: () => this.router.dhtEntries().map((e) => e.key),
      },
    );
    this.links = new LinkManager(
      {
        identity: this.identity,
        listen: opts.config.Listen,
        peers: opts.config.Peers,
        interfacePeers: opts.config.InterfacePeers,
        allowedPublicKeys: opts.config.AllowedPublicKeys.map((k) => Buffer.from(k, "hex")),
        multicast: opts.config.MulticastInterfaces,
        logger: this.log,
        udp: { datagramBytes: opts.config.Planetd.UdpMaxDatagram },
        multicastUdp: opts.config.Planetd.MulticastUdp === true,
      },
      { onLink: (link) => this.attachLink(link) },
    );
    this.natDriver =
      opts.config.Planetd.NatTraversal === false
        ? undefined
        : new NatDriver({
            selfKey: this.publicKey,
            links: this.links,
            log: this.log,
            sendSignal: (dest, body) => this.sendCore(dest, CORE_PLANETD, body, Date.now()),
            trafficOf: (link) => {
              for (const slot of this.peers.values()) if (slot.link === link) return slot.traffic;
              return 0;
            },
          });
  }

  /**
   * Applies a reloaded config: static peers, Listen, AllowedPublicKeys, MulticastInterfaces,
   * NodeInfo and (unless `keepLogLevel`) the log level change; links and sessions the change does
   * not concern stay up. A key that needs a restart refuses the whole reload (ReloadRefused).
   * Returns one line saying what changed.
   */
  async reload(next: PlanetConfig, keepLogLevel = false): Promise<string> {
    const plan = planReload(this.config, next);
    if (plan.needsRestart.length > 0) {
      throw new ReloadRefused(
        `${plan.needsRestart.join(", ")} changed; restart planetd to apply ${plan.needsRestart.length > 1 ? "them" : "it"} (nothing was reloaded)`,
      );
    }
    // The firewall's rules and NodeInfo first: they are the changes that can still fail validation.
    const firewall = this.prepareFirewall(plan.firewall);
    if (plan.nodeInfo) this.proto.setNodeInfo(plan.nodeInfo.nodeInfo, plan.nodeInfo.privacy);
    if (keepLogLevel) plan.logLevel = undefined;
    if (plan.logLevel) this.log.level = plan.logLevel;
    const problems = await this.links.reconfigure({
      peersRemoved: plan.peersRemoved,
      peersAdded: plan.peersAdded,
      listen: plan.listen,
      allowedPublicKeys: plan.allowedPublicKeys?.map((k) => Buffer.from(k, "hex")),
      multicast: plan.multicast,
    });
    if (plan.firewall) this.applyFirewall(firewall);
    this.config = next;
    const summary = describePlan(plan);
    return problems.length === 0 ? summary : `${summary}; ${problems.join("; ")}`;
  }

  /** New rules compiled against the running firewall, or a new firewall; nothing changes yet. */
  private prepareFirewall(
    change: ReturnType<typeof planReload>["firewall"],
  ): Firewall | CompiledFirewall | undefined {
    if (!change?.config) return undefined;
    try {
      return this.firewall
        ? this.firewall.compile(change.config)
        : new Firewall(change.config, this.identity);
    } catch (err) {
      if (err instanceof FirewallRuleError) throw new ReloadRefused(`${err.message} (nothing was reloaded)`);
      throw err;
    }
  }

  /** Flows the new rules still allow keep passing (Firewall.replace). */
  private applyFirewall(prepared: Firewall | CompiledFirewall | undefined): void {
    if (prepared instanceof Firewall || prepared === undefined) this.firewall = prepared;
    else this.firewall?.replace(prepared);
    if (this.ipv6) this.ipv6.firewall = this.firewall;
  }

  static async start(opts: NodeOptions): Promise<Node> {
    const node = new Node(opts);
    await node.startTun(opts);
    node.ticker = setInterval(() => node.tick(), TICK_MS);
    try {
      await node.links.start();
      node.admin = await startAdminServer(opts.config.AdminListen, adminViewFor(node), node.log);
      node.metrics = await startMetrics(
        opts.config.Planetd.MetricsListen,
        () => metricsSnapshotFor(node),
        node.log,
      );
    } catch (err) {
      await node.stop();
      throw err;
    }
    tierUpDataPathEarly();
    return node;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.ticker) clearInterval(this.ticker);
    this.natDriver?.stop();
    await this.admin?.close();
    await this.metrics?.close();
    await this.links.stop();
    this.proto.close();
    this.tun?.close();
  }

  // ---- PacketConn ----

  send(dest: Buffer, message: Uint8Array): void {
    this.sessions.send(dest, message, Date.now());
  }

  onMessage(handler: (source: Buffer, message: Buffer) => void): void {
    this.messageHandler = handler;
  }

  sendOutOfBand(dest: Buffer, payload: Uint8Array): void {
    const now = Date.now();
    this.eventNow = now;
    this.router.sendTraffic(dest, TrafficKind.OutOfBand, Buffer.from(payload), now);
  }

  onOutOfBand(handler: (source: Buffer, dest: Buffer, payload: Buffer) => void): void {
    this.oobHandler = handler;
  }

  /** Peer ports → links, for the admin view. */
  linkForPort(port: number): Link | undefined {
    return this.peers.get(port)?.link;
  }

  portCounters(port: number): { framesIn: number; framesOut: number } | undefined {
    return this.peers.get(port);
  }

  /** Where the metrics endpoint actually listens ("" when disabled). */
  get metricsAddress(): string {
    return this.metrics?.address ?? "";
  }

  // ---- wiring ----

  /** The link a frame of this type to port goes to, counted; undefined when it is dropped, counted too. */
  private linkToSend(port: number, type: number): Link | undefined {
    const slot = this.peers.get(port);
    const isTraffic = type === FrameType.DhtTraffic || type === FrameType.PathTraffic;
    if (!slot) {
      if (isTraffic) this.counters.trafficDroppedNoLink++;
      return undefined;
    }
    // Traffic may be dropped under pressure; protocol frames never are (spec 5.8).
    if (isTraffic && slot.link.congested) {
      this.counters.trafficDroppedCongested++;
      return undefined;
    }
    slot.framesOut++;
    if (isTraffic) slot.traffic++;
    return slot.link;
  }

  private routerOutput(): RouterOutput {
    return {
      send: (port, frame, held) => this.linkToSend(port, frame[0]!)?.send(frame, held),
      sendJoined: (port, head, tail, held) => {
        const link = this.linkToSend(port, head[0]!);
        if (link?.sendJoined) link.sendJoined(head, tail, held);
        else link?.send(Buffer.concat([head, tail]));
      },
      deliver: (source, payload) => this.sessions.handle(source, payload, this.eventNow, this.eventVia),
      deliverOutOfBand: (source, dest, payload) => {
        if (this.ipv6) this.ipv6.handleOutOfBand(source, dest, payload, this.eventNow);
        this.oobHandler?.(source, dest, payload);
      },
      closePeer: (port, reason) => {
        const slot = this.peers.get(port);
        if (slot) {
          this.log.warn({ peer: slot.link.remoteKey.toString("hex"), remote: slot.link.remote }, reason);
          slot.link.close(reason);
        }
      },
    };
  }

  /** Hand the node an authenticated link (the link manager does this; tests pass in-memory links). */
  attachLink(link: Link): void {
    if (this.stopped) {
      link.close("node stopping");
      return;
    }
    // addPeer sends the hello before it returns, so the port must already lead to this link.
    const port = this.router.nextFreePort();
    const slot: PeerSlot = {
      link,
      port,
      framesIn: 0,
      framesOut: 0,
      traffic: 0,
      newSessions: newSessionBudget(),
    };
    this.peers.set(port, slot);
    const keyId = link.remoteKey.toString("latin1");
    this.peerKeys.set(keyId, (this.peerKeys.get(keyId) ?? 0) + 1);
    const now = Date.now();
    this.eventNow = now;
    this.router.addPeer(link.remoteKey, link.priority, now);
    link.setHandler({
      onFrame: (frame, held) => {
        slot.framesIn++;
        if (frame[0] === FrameType.DhtTraffic || frame[0] === FrameType.PathTraffic) slot.traffic++;
        const now = Date.now();
        this.eventNow = now;
        this.eventVia = slot.newSessions;
        this.router.handleFrame(port, frame, now, held);
        this.eventVia = undefined;
      },
      onPriority: (priority) => this.router.setPeerPriority(port, priority),
      onClose: () => {
        if (this.peers.get(port) !== slot) return;
        this.peers.delete(port);
        const left = (this.peerKeys.get(keyId) ?? 1) - 1;
        if (left > 0) this.peerKeys.set(keyId, left);
        else this.peerKeys.delete(keyId);
        const now = Date.now();
        this.eventNow = now;
        this.router.removePeer(port, now);
      },
    });
    this.natDriver?.onLink(link);
  }

  /** A decrypted session message: the first byte says what it carries (spec 7). */
  private deliverCore(source: Buffer, message: Buffer, now: number): void {
    if (message.length === 0) return;
    const kind = message[0];
    if (kind === CORE_IPV6) {
      this.ipv6?.fromNetwork(source, message.subarray(1), now);
    } else if (kind === CORE_PROTO) {
      this.proto.handle(source, message.subarray(1), now);
    } else if (kind === CORE_PLANETD) {
      const type = message[1];
      if (type === SIG_SUPER_ACCEPT || type === SIG_SUPER_TCP6)
        this.ipv6?.handlePlanetd(source, message.subarray(1), now);
      else this.natDriver?.handleSignal(source, message.subarray(1), now);
      return; // planetd's own signalling is not for PacketConn users
    }
    this.messageHandler?.(source, message);
  }

  private sendCore(dest: Buffer, kind: number, body: Uint8Array, now: number, inPlace = false): void {
    // The key string only where NAT traversal can use the traffic: not a string per packet for nothing.
    if (
      kind === CORE_IPV6 &&
      this.natDriver &&
      this.natDriver.offersPunching &&
      !this.peerKeys.has(dest.toString("latin1"))
    ) {
      this.natDriver.noteTraffic(dest, now);
    }
    // Sessions writes the core byte in front of the body in its own buffer: no copy here.
    this.sessions.send(dest, body, now, kind, inPlace);
  }

  private async startTun(opts: NodeOptions): Promise<void> {
    const name = opts.config.IfName;
    const adapterFor = (write: (packet: Buffer, gsoSize: number) => void, superPackets?: SuperPacketTun) =>
      new Ipv6Adapter(
        this.identity,
        {
          sendIPv6: (dest, packet, now, inPlace) => this.sendCore(dest, CORE_IPV6, packet, now, inPlace),
          sendOutOfBand: (dest, payload) => this.sendOutOfBand(dest, payload),
          sendPlanetd: (dest, body, now, inPlace) => this.sendCore(dest, CORE_PLANETD, body, now, inPlace),
          hasSession: (dest) => this.sessions.has(dest),
        },
        write,
        this.mtu,
        superPackets,
      );
    if (name === "none" || name === "dummy") {
      this.log.info("IfName is none: running router-only (no TUN interface)");
      return;
    }
    const open = opts.openTun ?? defaultOpenTun;
    try {
      this.tun = await open(name, this.mtu, this.identity.address);
    } catch (err) {
      this.log.warn(`${(err as Error).message}; running router-only (no TUN interface)`);
      return;
    }
    const tun = this.tun;
    const refused = tun.offloadError ?? 0;
    if (refused > 0)
      this.log.warn(`TUN offloads refused by the kernel (errno ${refused}); ${tun.name} runs without them`);
    // Super-packets travel whole between planetd nodes when the TUN can hand them over and cut them.
    let superPackets: SuperPacketTun | undefined;
    if (tun.enableSuperPackets && tun.segment && tun.offload) {
      const complete = tun.completeChecksum?.bind(tun);
      tun.enableSuperPackets(MAX_SUPER_PACKET, complete !== undefined);
      superPackets = {
        segment: (packet, gsoSize) => tun.segment!(packet, gsoSize),
        completeChecksum: complete,
      };
    }
    const adapter = adapterFor((packet, gsoSize) => tun.write(packet, gsoSize), superPackets);
    adapter.firewall = this.firewall;
    this.ipv6 = adapter;
    // Packets with room around them are sealed where the TUN read them (Sessions.send's inPlace).
    const room = tun.readRoom;
    const inPlace =
      room !== undefined && room.before >= SEAL_HEADROOM + SUPER_HEADER_BYTES && room.after >= SEAL_TAILROOM;
    // An exception thrown back into the native read callback would be fatal to the process:
    // a packet that trips a bug is dropped and counted instead.
    tun.onPackets((packets, gsoSizes) => {
      const now = Date.now();
      for (let i = 0; i < packets.length; i++) {
        try {
          adapter.fromTun(packets[i]!, now, gsoSizes ? gsoSizes[i]! : 0, inPlace);
        } catch (err) {
          this.counters.tunSendErrors++;
          if (this.counters.tunSendErrors === 1)
            this.log.error({ err }, "dropping a TUN packet after an error");
        }
      }
    });
    tun.onError?.((err) => this.log.error(`TUN stopped reading: ${err.message}; running router-only`));
    this.log.info({ ifname: tun.name, mtu: tun.mtu }, "TUN interface up");
  }

  /** After a burst of traffic: the C heap's free pages go back to the system (heap-trim.ts). */
  private trimHeap(): void {
    const mib = (bytes: number) => Math.round(bytes / 104857.6) / 10;
    const before = process.memoryUsage.rss();
    // V8 frees the buffers of the burst only when it next collects, which an idle node may not do
    // for minutes: collect first, or the trim finds their pages still in use.
    fullGc();
    const released = releaseFreedHeap();
    this.log.debug(
      { rssBefore: mib(before), rssAfter: mib(process.memoryUsage.rss()), released },
      "heap trimmed after a burst",
    );
  }

  private tick(): void {
    const now = Date.now();
    this.eventNow = now;
    if ((this.router.nextTimeout() ?? Number.POSITIVE_INFINITY) <= now) this.router.handleTimeout(now);
    if ((this.sessions.nextTimeout() ?? Number.POSITIVE_INFINITY) <= now) this.sessions.handleTimeout(now);
    if (this.ipv6 && (this.ipv6.nextTimeout() ?? Number.POSITIVE_INFINITY) <= now)
      this.ipv6.handleTimeout(now);
    if (this.natDriver && now - this.lastNatTick >= 1000) {
      this.lastNatTick = now;
      this.natDriver.tick(now);
    }
    if (now - this.lastTrimCheck >= 1000) {
      this.lastTrimCheck = now;
      if (this.heapTrim.observe(now, this.router.trafficFrames())) this.trimHeap();
    }
  }
}

// No uid check: an unprivileged process with CAP_NET_ADMIN (a hardened systemd unit) may open it,
// and the addon's error says in one line what is missing when it may not.
async function defaultOpenTun(name: string, mtu: number, address: Buffer): Promise<TunDevice> {
  const { openTun } = await import("../tun/native.js");
  // PLANETD_TUN_OFFLOAD=off: a plain TUN (no checksum/segmentation offloads, no super-packets); =on:
  // offloads at any MTU; unset: by MTU (native.ts OFFLOAD_MAX_MTU). For measuring what the offloads
  // are worth on one tree, and as a way out should a kernel misbehave.
  const knob = process.env.PLANETD_TUN_OFFLOAD;
  const offload = knob === "off" ? false : knob === "on" ? true : undefined;
  return openTun({ name, mtu, address, prefixLength: 7, offload });
}

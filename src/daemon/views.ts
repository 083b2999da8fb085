// Read-only views of a running Node for the admin socket and the metrics endpoint. Nothing here is
// on the data path: it is called per admin request or per scrape.
import type { MetricsSnapshot } from "../admin/metrics.js";
import type { AdminView } from "../admin/view.js";
import type { Link } from "../overlay/links/link.js";
import type { LinkManager } from "../overlay/links/manager.js";
import { udpSocketTotals } from "../overlay/links/udp-native.js";
import { udpRefusalTotals } from "../overlay/links/udp-refusals.js";
import type { Proto } from "../overlay/proto.js";
import type { Sessions } from "../overlay/sessions.js";
import type { Router } from "../routing/router.js";
import type { TunDevice } from "../tun/device.js";
import type { Firewall } from "../tun/firewall.js";
import type { Ipv6Adapter } from "../tun/ipv6.js";
import { endOfInputOverflows } from "../util/end-of-input.js";
import type { NatDriver } from "./nat-driver.js";

/** Counters the data path bumps as plain numbers; metrics read them. */
export interface NodeCounters {
  trafficDroppedCongested: number;
  trafficDroppedNoLink: number;
  /** TUN packets dropped because sending them threw (a bug, logged once). */
  tunSendErrors: number;
}

/**
 * What the views read of a running node. Node implements it; naming the parts here instead of
 * importing Node keeps node.ts → views.ts one-way.
 */
export interface ViewedNode {
  readonly publicKey: Buffer;
  readonly router: Router;
  readonly sessions: Sessions;
  readonly links: LinkManager;
  readonly proto: Proto;
  readonly counters: NodeCounters;
  readonly ipv6: Ipv6Adapter | undefined;
  readonly tun: TunDevice | undefined;
  readonly firewall: Firewall | undefined;
  readonly natDriver: NatDriver | undefined;
  readonly reloadFromSource: (() => Promise<string>) | undefined;
  linkForPort(port: number): Link | undefined;
  portCounters(port: number): { framesIn: number; framesOut: number } | undefined;
}

export function adminViewFor(node: ViewedNode): AdminView {
  return {
    self: () => ({ key: node.publicKey, coords: node.router.selfInfo().coords }),
    peers: () => {
      const now = Date.now();
      const out: ReturnType<AdminView["peers"]> = [];
      for (const info of node.router.peerInfos()) {
        const link = node.linkForPort(info.port);
        // 0.4.7 lists only links that have delivered a tree message (their coords are known).
        if (!link || !info.coords) continue;
        out.push({
          key: info.key,
          port: info.port,
          priority: info.priority,
          coords: info.coords,
          remote: link.remote,
          punched: link.punched === true,
          keyGeneration: link.keyGeneration,
          bytesRecvd: link.bytesIn,
          bytesSent: link.bytesOut,
          uptimeSeconds: (now - link.openedAt) / 1000,
        });
      }
      return out;
    },
    dht: () => node.router.dhtEntries(),
    paths: () => node.router.pathEntries(),
    sessions: () => {
      const now = Date.now();
      return node.sessions.list().map((s) => ({
        key: s.key,
        bytesRecvd: s.bytesIn,
        bytesSent: s.bytesOut,
        uptimeSeconds: (now - s.since) / 1000,
        cipherOut: s.cipherOut,
        cipherIn: s.cipherIn,
      }));
    },
    tun: () => {
      const tun = node.tun;
      if (!tun) return { enabled: false };
      const counters = tun.stats?.();
      // The adapter's super-packet and partial-checksum counters (src/tun/gso.ts) belong with the
      // TUN's offload ones.
      if (counters && node.ipv6) {
        for (const [name, n] of Object.entries(node.ipv6.stats()))
          if (name.startsWith("super") || name.startsWith("partial")) counters[name] = n;
      }
      return { enabled: true, name: tun.name, mtu: tun.mtu, offload: tun.offload, counters };
    },
    multicastInterfaces: () => node.links.multicastInterfaces(),
    addPeer: (uri, iface) => node.links.addPeer(uri, iface),
    removePeer: (uri, iface) => node.links.removePeer(uri, iface),
    reload: () =>
      node.reloadFromSource
        ? node.reloadFromSource()
        : Promise.reject(new Error("reload: this node's config was not read from a file")),
    firewall: () => node.firewall?.view(),
    nat: () => node.natDriver?.view(),
    udpSockets: udpSocketTotals,
    udpRefusals: udpRefusalTotals,
    endOfInputOverflows,
    forwarded: () => {
      const s = node.router.stats();
      return { frames: s.forwarded_frames ?? 0, bytes: s.forwarded_bytes ?? 0 };
    },
    proto: node.proto,
  };
}

function transportOf(remote: string): string {
  const colon = remote.indexOf("://");
  return colon > 0 ? remote.slice(0, colon) : "unknown";
}

export function metricsSnapshotFor(node: ViewedNode): MetricsSnapshot {
  const self = node.router.selfInfo();
  const links: MetricsSnapshot["links"] = [];
  for (const info of node.router.peerInfos()) {
    const link = node.linkForPort(info.port);
    if (!link) continue;
    const counts = node.portCounters(info.port);
    links.push({
      key: info.key,
      port: info.port,
      transport: transportOf(link.remote),
      bytesIn: link.bytesIn,
      bytesOut: link.bytesOut,
      packetsIn: counts?.framesIn ?? 0,
      packetsOut: counts?.framesOut ?? 0,
      ...(link.punched ? { punched: true } : {}),
    });
  }
  const dropped: Record<string, number> = {
    link_congested: node.counters.trafficDroppedCongested,
    no_link: node.counters.trafficDroppedNoLink,
    tun_send_error: node.counters.tunSendErrors,
  };
  const routerStats = node.router.stats();
  for (const [name, n] of Object.entries(routerStats)) {
    if (name.startsWith("drop_")) dropped[`router_${name.slice(5)}`] = n;
  }
  const sessionStats = node.sessions.stats();
  dropped.session_decrypt_failed = sessionStats.decryptFailures;
  dropped.session_replay = sessionStats.replaysDropped;
  dropped.session_init_rate_limited = sessionStats.initsRateLimited;
  dropped.session_answer_rate_limited = sessionStats.answersRateLimited;
  dropped.session_table_full = sessionStats.sessionsRefused;
  dropped.session_pending_evicted = sessionStats.buffersEvicted;
  dropped.session_seal_failed = sessionStats.aeadSealFailures;
  if (node.ipv6) {
    const s = node.ipv6.stats();
    for (const name of [
      "tunBadSource",
      "tunBadDestination",
      "netBadSource",
      "netBadDestination",
      "tunNotIPv6",
      "pendingEvicted",
      "firewallInDropped",
      "firewallOutDropped",
    ]) {
      dropped[`ipv6_${name}`] = s[name] ?? 0;
    }
  }
  return {
    peers: links.length,
    links,
    sessions: sessionStats.sessions,
    dhtEntries: node.router.dhtEntries().length,
    pathEntries: node.router.pathEntries().length,
    treeRoot: self.root,
    treeDepth: self.coords.length,
    droppedPackets: dropped,
    handshakeFailures: node.links.stats().handshakeFailures,
    forwardedFrames: routerStats.forwarded_frames,
    forwardedBytes: routerStats.forwarded_bytes,
    handshakeRefusals: node.links.stats().handshakeRefusals,
    firewall: node.firewall?.view(),
    nat: node.natDriver
      ? { ...node.natDriver.nat.counters, punchedLinks: node.natDriver.punchedLinks }
      : undefined,
    udpSockets: udpSocketTotals(),
    udpRefusals: udpRefusalTotals(),
    endOfInputOverflows: endOfInputOverflows(),
    sessionPackets: {
      sealed: { box: sessionStats.boxSealed, "chacha20-poly1305": sessionStats.aeadSealed },
      opened: { box: sessionStats.boxOpened, "chacha20-poly1305": sessionStats.aeadOpened },
    },
  };
}

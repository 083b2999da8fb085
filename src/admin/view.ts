// What the admin socket reads from and steers in a running node. The daemon (src/daemon/node.ts)
// implements AdminView; the admin server formats it into 0.4.7's JSON shapes (spec 9.2).
import type { UdpSocketTotals } from "../overlay/links/udp-native.js";
import type { UdpRefusalTotals } from "../overlay/links/udp-refusals.js";
import type { RemoteQueries } from "../overlay/proto.js";
import type { FirewallView } from "../tun/firewall.js";

export type { FirewallView, RemoteQueries };

export interface SelfView {
  key: Buffer;
  /** Tree coordinates (ports from the root); [] when this node is the root. */
  coords: number[];
}

export interface PeerView {
  key: Buffer;
  port: number;
  priority: number;
  coords: number[];
  /** Dial URI for outbound links, `tcp://ip:port` / `tls://ip:port` for inbound ones. */
  remote: string;
  /** Opened by NAT traversal (hole punching). */
  punched?: boolean;
  /** udp:// links: how many times the keys were renewed (planetd's own field). */
  keyGeneration?: number;
  /** Raw link bytes including framing. */
  bytesRecvd: number;
  bytesSent: number;
  uptimeSeconds: number;
}

export interface DhtView {
  key: Buffer;
  port: number;
  rest: number;
}

export interface PathView {
  key: Buffer;
  path: number[];
}

export interface SessionView {
  key: Buffer;
  bytesRecvd: number;
  bytesSent: number;
  uptimeSeconds: number;
  /** planetd's own: the session cipher we seal with, and the one of the last traffic we opened. */
  cipherOut?: string;
  cipherIn?: string;
}

export interface TunView {
  enabled: boolean;
  name?: string;
  mtu?: number;
  /** planetd's own: whether the TUN has checksum/segmentation offloads, and their counters. */
  offload?: boolean;
  counters?: Record<string, number>;
}

/** NAT traversal's state for getNat (src/daemon/nat-driver.ts). */
export interface NatView {
  /** "unknown", "independent" or "dependent" (src/overlay/nat.ts Reflexive.mapping). */
  mapping: string;
  /** Our addresses as udp:// peers see them, newest first. */
  reflexive: Array<{ ip: string; port: number }>;
  counters: Record<string, number>;
  destinations: { offered: number; punching: number; direct: number; backingOff: number };
  /** udp:// links open now that hole punching made. */
  punchedPeers: Array<{ key: Buffer; remote: string }>;
}

export interface AdminView {
  self(): SelfView;
  /** Only links that have delivered at least one tree message. */
  peers(): PeerView[];
  dht(): DhtView[];
  paths(): PathView[];
  sessions(): SessionView[];
  tun(): TunView;
  multicastInterfaces(): string[];
  /**
   * Adds `uri` to the persistent peer list and dials it asynchronously. Throws
   * Error("peer already configured") or an Error whose message says what is wrong with the URI.
   */
  addPeer(uri: string, iface?: string): void;
  /** Removes `uri` from the peer list and closes its link; throws Error("peer not configured"). */
  removePeer(uri: string, iface?: string): void;
  /**
   * planetd only: re-read the config file and apply what can change in place; resolves to one line
   * saying what changed, rejects with one line saying why nothing was applied.
   */
  reload(): Promise<string>;
  /** planetd only: the firewall's rules with hit counts and its flow table; undefined when off. */
  firewall?(): FirewallView | undefined;
  /** planetd only: NAT traversal's state and counters; undefined when Planetd.NatTraversal is false. */
  nat?(): NatView | undefined;
  /** planetd only: the native udp sockets' counters, summed (udp-native.ts udpSocketTotals). */
  udpSockets?(): UdpSocketTotals;
  /** planetd only: what the udp:// handshake and reset paths refused (udp-refusals.ts). */
  udpRefusals?(): UdpRefusalTotals;
  /** planetd only: flushes that found the end-of-input list full (src/util/end-of-input.ts). */
  endOfInputOverflows?(): number;
  /** planetd only: traffic frames and bytes this node relayed from one peer to another. */
  forwarded?(): { frames: number; bytes: number };
  proto: RemoteQueries;
}

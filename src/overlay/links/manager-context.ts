import type { Socket } from "node:net";
// What the link manager (manager.ts) shares with its parts: stream-endpoints.ts, udp-endpoints.ts
// and static-peers.ts. One object, so each part sees the same config, dedupe ids, counters and admit step.
import type { Logger } from "pino";
import type { Identity } from "../../crypto/identity.js";
import type { LimitedLog } from "../../util/log-limit.js";
import type { Admission } from "./admission.js";
import type { HandshakeLimits } from "./handshake-slots.js";
import type { MulticastInterfaceConfig } from "./multicast.js";
import type { RedialOptions } from "./redial.js";
import type { LinkTimeouts, StreamLink } from "./stream.js";
import type { RekeyOptions } from "./udp-rekey.js";
import type { UdpHooks, UdpLink, UdpListener } from "./udp.js";

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
export type ManagedLink = StreamLink | UdpLink;

/** A dial in progress; cancel() abandons it (peer removed, stopping). */
export interface DialAttempt {
  socket?: Socket;
  cancel?: (reason: string) => void;
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

export interface ManagerContext {
  readonly cfg: LinkManagerConfig;
  /** The admission rules and the dedupe ids of every transport. */
  readonly admission: Admission;
  /** Connections made but lost in TLS, the metadata exchange or admission (LinkManager.stats). */
  readonly counters: { handshakeFailures: number };
  readonly log: Logger;
  /** For lines a remote can cause once per connection, handshake or link. */
  readonly limitedLog: LimitedLog;
  stopped(): boolean;
  /** Hand a link that passed the handshake and every admission check to the node. */
  admit(link: ManagedLink): void;
}

// The UDP socket interface udp:// links see, apart from its two implementations (udp-socket.ts:
// node:dgram and the choice between them; udp-native.ts: the planetd_udp addon), so that neither
// implementation imports the module that chooses it.
/** Where a datagram came from. The native socket reuses one object: valid only during the call. */
export interface RemoteInfo {
  address: string;
  port: number;
  /** "address|port", the key listeners file links under (the native socket keeps it while the source stays). */
  key: string;
}

/**
 * `opened`: the native socket's receive job opened `msg` in place with the receive key in that
 * slot (>= 0), or its registered key did not open it (OPENED_FAILED); undefined or OPENED_NONE:
 * still sealed, the link opens it.
 */
export type UdpMessageHandler = (msg: Buffer, from: RemoteInfo, opened?: number) => void;
/** udp_recv.c's statuses for `opened`. */
export const OPENED_NONE = -1;
export const OPENED_FAILED = -2;
/**
 * `opened` above 255: the native socket joined (opened >>> OPENED_RUN_SHIFT) fragment datagrams of
 * one traffic frame, every one opened with the key in slot (opened & 255), in order, into one
 * `msg`: type ‖ cookie ‖ the first one's counter ‖ the frame ‖ 16 spare bytes (udp_recv.c).
 */
export const OPENED_RUN_SHIFT = 8;
/** How many datagrams `msg` stands for (1 unless the socket joined a frame's fragments). */
export const openedCount = (opened: number | undefined): number =>
  opened !== undefined && opened > 0xff ? opened >>> OPENED_RUN_SHIFT : 1;
export type UdpErrorHandler = (e: Error & { code?: string }) => void;
/** `to`: the destination an ICMP error names (valid only during the call); errno: what it said. */
export type UdpUnreachableHandler = (to: RemoteInfo, errno: number) => void;

export interface UdpSocket {
  readonly kind: "native" | "dgram";
  /** True when send() copies the datagram at once, so the caller may reuse its buffer. */
  readonly copiesOnSend: boolean;
  /** Datagrams as they arrive; `msg` is a view valid only during the call (copy what you keep). */
  onMessage(handler: UdpMessageHandler | undefined): void;
  /** Receive errors (ECONNREFUSED: an ICMP port unreachable on a connected socket). */
  onError(handler: UdpErrorHandler | undefined): void;
  /**
   * Present on the native socket: ICMP errors its error queue names a destination for, as hints
   * only (unauthenticated: udp-icmp-hints.ts). True when it reads them (IP_RECVERR is on);
   * node:dgram reads no error queue.
   */
  onUnreachable?(handler: UdpUnreachableHandler | undefined): boolean;
  /**
   * Present when the socket seals datagrams itself (the native one, on its send thread): a Sealer
   * registers its key and gets a slot, or -1 when the socket has no room (the Sealer seals then);
   * likewise an Opener its receive key (the socket's receive job opens, else the Opener does).
   */
  readonly sealing?: SealKeys;
  /**
   * Queues one datagram; without address it goes to the connected peer. With `keySlot` (from
   * `sealing`) the counter is already written and the socket seals it. Never throws.
   */
  send(data: Uint8Array, port?: number, address?: string, keySlot?: number): void;
  /**
   * Present when the socket builds fragments itself (the native one): queues `run` as its fragment
   * datagrams, one call and one copy instead of a send() per fragment. False when nothing was
   * queued (no room even after waiting for the send job, or no destination slot): the caller sends
   * the fragments one by one.
   */
  sendFragments?(run: FragmentRun, port?: number, address?: string): boolean;
  connect(port: number, address: string): Promise<void>;
  address(): { address: string; port: number; family: string };
  /** IP_TTL or IPV6_UNICAST_HOPS for what this socket sends. */
  setTTL(ttl: number): void;
  /** True when datagrams wait in the send queue beyond what a link should add to. */
  congested(limitBytes: number): boolean;
  close(): Promise<void>;
}

/**
 * A traffic frame as `count` fragment datagrams (udp-link-send.ts's layout: frame `id`, the peer's
 * `cookie`) whose counters run from counterHi:counterLo on (phase bit included), sealed by the
 * socket under `keySlot`. A link reuses one.
 */
export interface FragmentRun {
  frame: Uint8Array;
  count: number;
  id: number;
  readonly cookie: Uint8Array;
  counterHi: number;
  counterLo: number;
  keySlot: number;
}

/** A socket's tables of send and receive keys (udp-seal.ts's Sealer and Opener use them). */
export interface SealKeys {
  addKey(key: Uint8Array): number;
  /** The key seals nothing more; its slot is reused once what was queued under it has left. */
  dropKey(slot: number): void;
  /** A receive key for datagrams carrying `cookie` (8 bytes) and key `phase`: its slot, or -1. */
  addOpenKey(cookie: Uint8Array, phase: number, key: Uint8Array): number;
  /** The key opens nothing more (the receive job may still be using it: freed after). */
  dropOpenKey(slot: number): void;
}

export interface UdpSocketOptions {
  family: 4 | 6;
  /** Literal address to bind ("" or undefined: any). */
  address?: string;
  port?: number;
  /** SO_RCVBUF and SO_SNDBUF (the kernel caps them at net.core.[rw]mem_max). */
  bufferBytes?: number;
  impl?: "auto" | "native" | "dgram";
}

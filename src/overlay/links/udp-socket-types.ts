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

export type UdpMessageHandler = (msg: Buffer, from: RemoteInfo) => void;
export type UdpErrorHandler = (e: Error & { code?: string }) => void;

export interface UdpSocket {
  readonly kind: "native" | "dgram";
  /** True when send() copies the datagram at once, so the caller may reuse its buffer. */
  readonly copiesOnSend: boolean;
  /** Datagrams as they arrive; `msg` is a view valid only during the call (copy what you keep). */
  onMessage(handler: UdpMessageHandler | undefined): void;
  /** Receive errors (ECONNREFUSED: an ICMP port unreachable on a connected socket). */
  onError(handler: UdpErrorHandler | undefined): void;
  /**
   * Present when the socket seals datagrams itself (the native one, on its send thread): a Sealer
   * registers its key and gets a slot, or -1 when the socket has no room (the Sealer seals then).
   */
  readonly sealing?: SealKeys;
  /**
   * Queues one datagram; without address it goes to the connected peer. With `keySlot` (from
   * `sealing`) the counter is already written and the socket seals it. Never throws.
   */
  send(data: Uint8Array, port?: number, address?: string, keySlot?: number): void;
  connect(port: number, address: string): Promise<void>;
  address(): { address: string; port: number; family: string };
  /** IP_TTL or IPV6_UNICAST_HOPS for what this socket sends. */
  setTTL(ttl: number): void;
  /** True when datagrams wait in the send queue beyond what a link should add to. */
  congested(limitBytes: number): boolean;
  close(): Promise<void>;
}

/** A socket's table of send keys (udp-seal.ts's Sealer uses it). */
export interface SealKeys {
  addKey(key: Uint8Array): number;
  /** The key seals nothing more; its slot is reused once what was queued under it has left. */
  dropKey(slot: number): void;
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

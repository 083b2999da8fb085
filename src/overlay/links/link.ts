// The Link seam: one authenticated connection to one peer key that moves whole frames.
// TCP, TLS, unix sockets, UDP and in-memory pipes are implementations; nothing above sees a socket.

export interface LinkInfo {
  /** The peer's ed25519 public key, as claimed in the metadata handshake. */
  readonly remoteKey: Buffer;
  /** Negotiated priority (lower is better); max(local, announced by the peer). */
  readonly priority: number;
  /** For getPeers: dial URI without query for outbound links, scheme://ip:port for inbound ones. */
  readonly remote: string;
  /** A udp:// link opened by NAT traversal's hole punching. */
  readonly punched?: boolean;
  /** A udp:// link's key generation: 0 for the handshake's keys, one more for each rekey. */
  readonly keyGeneration?: number;
  readonly outbound: boolean;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly openedAt: number;
}

export interface LinkEvents {
  /**
   * One whole frame: type byte ‖ body (the u16 length prefix already removed), valid only during the
   * call and the handler's to rewrite. held: it also stays unchanged until the event loop turns
   * (process.nextTick work included), so it may be forwarded held (Link.send).
   */
  onFrame(frame: Buffer, held?: boolean): void;
  /** The peer announced a priority (dummy frame `p`,prio); `priority` has already been updated. */
  onPriority?(priority: number): void;
  onClose(reason: string): void;
}

export interface Link extends LinkInfo {
  /**
   * Queue one frame (type byte ‖ body). Frames over 65535 bytes are dropped silently (spec 4.4).
   * held: as sendJoined's, for the whole frame.
   */
  send(frame: Uint8Array, held?: boolean): void;
  /**
   * Queue the frame head ‖ tail, copied before the call returns: the data path sends a traffic
   * frame's head and its payload without building the frame. Where absent, the caller joins them.
   * held: `tail` stays unchanged until the event loop turns (process.nextTick work included), so
   * the link may send it from where it lies instead of copying it (a packet sealed in the TUN's
   * read buffer); only the head is copied then.
   */
  sendJoined?(head: Uint8Array, tail: Uint8Array, held?: boolean): void;
  /** True when the socket buffer is full; the caller should drop or queue traffic frames. */
  readonly congested: boolean;
  close(reason: string): void;
  setHandler(events: LinkEvents): void;
}

// The TunDevice seam: a batch of IPv6 packets in, a batch out. The native addon is one
// implementation; an in-memory one drives the multi-node tests.

export interface TunDevice {
  readonly name: string;
  readonly mtu: number;
  /**
   * Called with every batch of packets read from the device. Buffers are valid only during the call.
   * gsoSizes[i] > 0 marks a TCP super-packet, PARTIAL_CHECKSUM (-1) a TCP packet whose checksum field
   * holds only the pseudo-header sum (only after enableSuperPackets, src/tun/gso.ts).
   */
  onPackets(handler: (packets: Buffer[], gsoSizes?: Int32Array) => void): void;
  /**
   * Write one IPv6 packet to the kernel (the native device queues it until this turn's end, or
   * writes a large one at once, and may rewrite its TCP checksum field);
   * gsoSize > 0: a TCP super-packet to be cut into segments of that size (src/tun/gso.ts).
   */
  write(packet: Uint8Array, gsoSize?: number): void;
  /**
   * Hand TCP super-packets over whole, up to maxBytes; with segment(), the device takes them too.
   * partialChecksums: TCP packets may come with partial checksums (then completeChecksum exists).
   */
  enableSuperPackets?(maxBytes: number, partialChecksums?: boolean): void;
  /** Completes the TCP checksum of a PARTIAL_CHECKSUM packet in place; false if it is not one. */
  completeChecksum?(packet: Buffer): boolean;
  /** A super-packet cut into ordinary segments (views valid until the next call). */
  segment?(packet: Buffer, gsoSize: number): Buffer[];
  /**
   * Each packet handed to onPackets has this many bytes free before and after it in its buffer,
   * and it and they stay put until the call that delivered the batch is back in the event loop
   * (process.nextTick work included): the node may seal a packet where it lies and its links send
   * it from there (src/tun/native.ts). Absent: packets are only to be read.
   */
  readonly readRoom?: { before: number; after: number };
  /** Checksum and TCP segmentation offloads are on (IFF_VNET_HDR); absent for in-memory devices. */
  readonly offload?: boolean;
  /** When offloads were asked for and refused: the kernel's errno (logged once by the node). */
  readonly offloadError?: number;
  /** Packet and offload counters, for getTun. */
  stats?(): Record<string, number>;
  /** Called once if the device stops delivering packets (e.g. the interface was deleted). */
  onError?(handler: (err: Error) => void): void;
  close(): void;
}

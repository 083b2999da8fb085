// The TunDevice seam: a batch of IPv6 packets in, a batch out. The native addon is one
// implementation; an in-memory one drives the multi-node tests.

export interface TunDevice {
  readonly name: string;
  readonly mtu: number;
  /** Called with every batch of packets read from the device. Buffers are valid only during the call. */
  onPackets(handler: (packets: Buffer[]) => void): void;
  /** Write one IPv6 packet to the kernel (the native device queues it until this turn's end). */
  write(packet: Uint8Array): void;
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

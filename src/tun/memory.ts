// An in-memory TunDevice for tests and the multi-node simulator: `inject` plays the kernel sending
// packets into the node; what the node writes goes to `onWrite` listeners or, with none, `written`.
import type { TunDevice } from "./device.js";

export class MemoryTun implements TunDevice {
  readonly name: string;
  readonly mtu: number;
  /** Packets the node wrote while no onWrite listener was set (copies). */
  readonly written: Buffer[] = [];
  private packetHandler: ((packets: Buffer[]) => void) | undefined;
  private writeHandler: ((packet: Buffer) => void) | undefined;
  private closed = false;

  constructor(name = "mem0", mtu = 65535) {
    this.name = name;
    this.mtu = mtu;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  onPackets(handler: (packets: Buffer[]) => void): void {
    this.packetHandler = handler;
  }

  write(packet: Uint8Array): void {
    if (this.closed) return;
    const copy = Buffer.from(packet);
    if (this.writeHandler) this.writeHandler(copy);
    else this.written.push(copy);
  }

  /** Test side: receive every packet the node writes (instead of collecting them in `written`). */
  onWrite(handler: (packet: Buffer) => void): void {
    this.writeHandler = handler;
  }

  /** Test side: deliver one batch as if read from the kernel. Returns false if nobody listens. */
  inject(...packets: Uint8Array[]): boolean {
    if (this.closed || !this.packetHandler) return false;
    this.packetHandler(packets.map((p) => Buffer.from(p)));
    return true;
  }

  close(): void {
    this.closed = true;
    this.packetHandler = undefined;
  }
}

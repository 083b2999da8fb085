// In-memory Link pairs for in-process multi-node tests: frames cross on the microtask queue, so
// many nodes run in one process without sockets, and ordering is deterministic.
import type { Link, LinkEvents } from "../../src/overlay/links/link.js";

class MemoryLink implements Link {
  remoteKey: Buffer;
  priority = 0;
  remote: string;
  outbound: boolean;
  bytesIn = 0;
  bytesOut = 0;
  openedAt = Date.now();
  congested = false;
  peer: MemoryLink | undefined;
  private handler: LinkEvents | undefined;
  private closed = false;
  private readonly pending: Buffer[] = [];

  constructor(remoteKey: Buffer, remote: string, outbound: boolean) {
    this.remoteKey = remoteKey;
    this.remote = remote;
    this.outbound = outbound;
  }

  setHandler(events: LinkEvents): void {
    this.handler = events;
    for (const f of this.pending.splice(0)) events.onFrame(f);
  }

  send(frame: Uint8Array): void {
    if (this.closed || frame.length > 65535) return;
    const copy = Buffer.from(frame);
    this.bytesOut += copy.length + 2;
    const peer = this.peer!;
    queueMicrotask(() => peer.receive(copy));
  }

  receive(frame: Buffer): void {
    if (this.closed) return;
    this.bytesIn += frame.length + 2;
    if (this.handler) this.handler.onFrame(frame);
    else this.pending.push(frame);
  }

  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.handler?.onClose(reason);
    const peer = this.peer;
    if (peer && !peer.closed) queueMicrotask(() => peer.close("remote closed"));
  }
}

/** Two connected link ends: `a` is what node A holds (remote = B), `b` the reverse. */
export function memoryLinkPair(keyA: Buffer, keyB: Buffer): { a: Link; b: Link } {
  const a = new MemoryLink(keyB, "memory://b", true);
  const b = new MemoryLink(keyA, "memory://a", false);
  a.peer = b;
  b.peer = a;
  return { a, b };
}

// The in-memory network of Sessions endpoints that the session tests share: a FIFO of packets,
// a virtual clock, a packet log and a filter to drop packets.
import { randomBytes } from "node:crypto";
import { type BoxBackend, loadBox } from "../../src/crypto/box.js";
import { Identity } from "../../src/crypto/identity.js";
import { type SessionOptions, Sessions } from "../../src/overlay/sessions.js";
import { readUvarint, uvarintResult } from "../../src/overlay/sessions/wire.js";

export const T0 = 1795528531_000; // the second of the spec 13.4 capture

export interface Packet {
  from: Peer;
  to: Peer;
  payload: Buffer;
}

export class Peer {
  readonly id = Identity.generate();
  readonly key = this.id.publicKey;
  readonly inbox: Array<{ from: string; message: Buffer }> = [];
  sessions: Sessions;
  constructor(
    readonly net: Net,
    readonly name: string,
    private readonly box: BoxBackend,
    private readonly options: SessionOptions = {},
  ) {
    this.sessions = this.start();
  }
  private start(options = this.options): Sessions {
    return new Sessions(
      this.id,
      {
        sendTraffic: (dest, payload) => this.net.enqueue(this, dest, payload),
        deliver: (source, message) => {
          this.inbox.push({ from: this.net.nameOf(source), message: Buffer.from(message) });
          this.onDeliver?.(source, message);
        },
      },
      this.box,
      options,
    );
  }
  /** A restart with the same key: all session state is gone (other options: another build). */
  restart(options?: SessionOptions): void {
    this.sessions = this.start(options);
  }
  onDeliver?: (source: Buffer, message: Buffer) => void;
  send(to: Peer, message: Uint8Array): boolean {
    return this.sessions.send(to.key, message, this.net.now);
  }
}

/** In-memory network with a virtual clock; packets wait in a FIFO until run(). */
export class Net {
  now = T0;
  readonly queue: Packet[] = [];
  readonly log: Packet[] = [];
  readonly peers: Peer[] = [];
  /** return false to drop a packet */
  filter: (p: Packet) => boolean = () => true;

  add(name: string, box: BoxBackend = loadBox(), options?: SessionOptions): Peer {
    const p = new Peer(this, name, box, options);
    this.peers.push(p);
    return p;
  }
  nameOf(key: Buffer): string {
    return this.peers.find((p) => p.key.equals(key))?.name ?? "?";
  }
  enqueue(from: Peer, dest: Buffer, payload: Buffer): void {
    const to = this.peers.find((p) => p.key.equals(dest));
    if (!to) return;
    const pkt = { from, to, payload: Buffer.from(payload) };
    this.log.push(pkt);
    this.queue.push(pkt);
  }
  run(limit = 10_000): void {
    for (let i = 0; this.queue.length > 0; i++) {
      if (i >= limit) throw new Error("packet storm");
      const p = this.queue.shift() as Packet;
      if (this.filter(p)) p.to.sessions.handle(p.from.key, p.payload, this.now);
    }
  }
  advance(ms: number): void {
    this.now += ms;
    for (const p of this.peers) {
      const t = p.sessions.nextTimeout();
      if (t !== undefined && t <= this.now) p.sessions.handleTimeout(this.now);
    }
  }
}

/**
 * [type, keySeq header fields...] of a logged packet, for comparing with the 0.4.7 capture; planetd's
 * ChaCha20-Poly1305 traffic (type 0x70) is marked "aead".
 */
export function describePacket(p: Packet): string {
  const type = p.payload[0];
  if (type !== 3 && type !== 0x70) return `${p.from.name}>${p.to.name} ${type === 1 ? "init" : "ack"}`;
  const fields: Array<number | bigint> = [];
  let off = 1;
  for (let i = 0; i < 3; i++) {
    off = readUvarint(p.payload, off);
    fields.push(uvarintResult.value);
  }
  return `${p.from.name}>${p.to.name} ${type === 0x70 ? "aead " : ""}[${fields.join(",")}]`;
}

export function pair(boxA?: BoxBackend, boxB?: BoxBackend) {
  const net = new Net();
  return { net, a: net.add("A", boxA), b: net.add("B", boxB) };
}

export function establish(net: Net, a: Peer, b: Peer): void {
  a.send(b, Buffer.from("hello"));
  net.run();
  b.send(a, Buffer.from("hi"));
  net.run();
  a.inbox.length = 0;
  b.inbox.length = 0;
}

/**
 * n random bytes as a session message: the first byte is Yggdrasil's typeSessionTraffic (1), as in
 * every message a node sends. A fully random message starts 0x70 0x05 once in 65,536 and is then a
 * planetd cipher announcement, which Sessions takes for itself and never delivers.
 */
export function trafficMessage(n: number): Buffer {
  const m = randomBytes(n);
  if (n > 0) m[0] = 1;
  return m;
}

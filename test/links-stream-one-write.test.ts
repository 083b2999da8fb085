// A stream link over a socket Node writes for it (TLS) keeps one write in Node at a time, each one
// Buffer: Node's Writable would hand the writes queued behind a pending one over as a writev, which
// TLSWrap joins into a fresh backing store. Here a fake socket completes writes only when told to.
import type { Socket } from "node:net";
import { Duplex } from "node:stream";
import { expect, it } from "vitest";
import { Identity } from "../src/crypto/identity.js";
import { type StreamLink, encodeMetadata, handshake } from "../src/overlay/links/stream.js";
import { numberedFrame, sendUntilClosed } from "./support/stream-pair.js";

/** Records every hand-over (a write or a writev) and completes it only on release(). */
class HeldWritesSocket extends Duplex {
  /** Chunks per hand-over, in order. */
  readonly handovers: number[] = [];
  /** Copies of every byte handed over (the link reuses its buffers once a write completes). */
  readonly written: Buffer[] = [];
  private readonly pending: Array<() => void> = [];

  override _read(): void {}

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: () => void): void {
    this.hold([chunk], done);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, done: () => void): void {
    this.hold(
      chunks.map((c) => c.chunk),
      done,
    );
  }

  private hold(chunks: Buffer[], done: () => void): void {
    this.handovers.push(chunks.length);
    for (const c of chunks) this.written.push(Buffer.from(c));
    this.pending.push(done);
  }

  /** Completes the oldest write; false when none is pending. */
  release(): boolean {
    const done = this.pending.shift();
    done?.();
    return done !== undefined;
  }
}

async function linkOverHeldWrites(
  congestionBytes: number,
): Promise<{ link: StreamLink; socket: HeldWritesSocket }> {
  const socket = new HeldWritesSocket();
  const opening = handshake(socket as unknown as Socket, {
    localKey: Identity.generate().publicKey,
    outbound: true,
    remote: "tls://fake",
    priority: 0,
    congestionBytes,
  });
  socket.push(encodeMetadata(Identity.generate().publicKey));
  const link = await opening;
  link.setHandler({ onFrame() {}, onClose() {} });
  return { link, socket };
}

const turn = () => new Promise((r) => setImmediate(r));

/** The traffic frames (type 9) in a written byte stream, after the 38-byte metadata. */
function trafficFrames(stream: Buffer): Buffer[] {
  const frames: Buffer[] = [];
  for (let at = 38; at + 2 <= stream.length; ) {
    const len = stream.readUInt16BE(at);
    const frame = stream.subarray(at + 2, at + 2 + len);
    if (frame[0] === 9) frames.push(frame);
    at += 2 + len;
  }
  return frames;
}

it("hands Node one Buffer at a time while writes complete late, loses nothing, keeps the order and reports congestion", async () => {
  const { link, socket } = await linkOverHeldWrites(256 * 1024);
  const sizes = Array.from({ length: 400 }, (_, i) => 1 + ((i * 7919 + 13) % 30_000));
  const frame = (i: number) => numberedFrame(i, sizes[i]!);
  let maxInNode = 0;
  let congestedSeen = false;
  for (let i = 0; i < sizes.length; i += 8) {
    for (let j = i; j < i + 8; j++) link.send(frame(j));
    await turn();
    maxInNode = Math.max(maxInNode, socket.writableLength);
    congestedSeen ||= link.congested;
    if ((i / 8) % 3 === 0) socket.release(); // writes complete at a third of the rate frames come
  }
  expect(congestedSeen).toBe(true);
  for (let i = 0; i < 1000 && socket.release(); i++) await turn();
  expect(link.congested).toBe(false);
  expect(socket.handovers.every((chunks) => chunks === 1)).toBe(true);
  // At most the pending write (one slab, 128 KiB) and the metadata ever waited in Node.
  expect(maxInNode).toBeLessThanOrEqual(128 * 1024 + 38);
  const frames = trafficFrames(Buffer.concat(socket.written));
  expect(frames.length).toBe(sizes.length);
  expect(frames.filter((f, i) => !f.equals(frame(i))).length).toBe(0);
  link.close("done");
});

it("closes a link whose writes never complete once 16 MiB wait in its slabs", async () => {
  const { link, socket } = await linkOverHeldWrites(4 * 1024 * 1024);
  const { closedWith, sent } = await sendUntilClosed(link, 1000);
  expect(closedWith).toMatch(/^peer stopped reading \(\d+ bytes queued\)$/);
  expect(sent * 60_000).toBeGreaterThan(16 * 1024 * 1024);
  expect(socket.handovers.length).toBeLessThanOrEqual(2); // the metadata and the first slab
});

// Router event handling around the layers above and peers being closed.
import { describe, expect, it } from "vitest";
import { Identity } from "../src/crypto/identity.js";
import { Router, type RouterOutput } from "../src/routing/router.js";
import { TrafficKind } from "../src/routing/types.js";
import { encodeDhtTraffic, encodePathTraffic, encodeResponse } from "../src/routing/wire.js";

const NOW = 1_700_000_000_000;

describe("exceptions from the layers above", () => {
  it("a throwing deliver / deliverOutOfBand costs a counted drop, not the relaying peer's link", () => {
    const [us, peer, src] = [Identity.generate(), Identity.generate(), Identity.generate()];
    const closed: string[] = [];
    let calls = 0;
    const out: RouterOutput = {
      send: () => {},
      deliver: () => {
        calls++;
        throw new Error("session layer bug");
      },
      deliverOutOfBand: () => {
        calls++;
        throw new TypeError("oob handler bug");
      },
      closePeer: (_port, reason) => closed.push(reason),
    };
    const r = new Router(us, out, NOW, () => 0.5);
    const port = r.addPeer(peer.publicKey, 0, NOW);
    const traffic = { source: src.publicKey, dest: us.publicKey, payload: Buffer.from("x") };
    r.handleFrame(port, encodeDhtTraffic({ ...traffic, kind: TrafficKind.Standard }), NOW);
    r.handleFrame(port, encodeDhtTraffic({ ...traffic, kind: TrafficKind.OutOfBand }), NOW);
    r.handleFrame(
      port,
      encodePathTraffic({ path: [0], traffic: { ...traffic, kind: TrafficKind.Standard } }),
      NOW,
    );
    expect(calls).toBe(3);
    expect(closed).toEqual([]);
    const stats = r.stats();
    expect(stats.drop_deliver_error).toBe(3);
    expect(stats.drop_peer_closed_protocol_violation).toBeUndefined();
    expect(stats.peers).toBe(1);
  });
});

/** A router between two peers, left and right, recording what it sends (and whether held). */
function relay() {
  const [us, left, right] = [Identity.generate(), Identity.generate(), Identity.generate()];
  const sent: Array<{ port: number; frame: Buffer; held: boolean }> = [];
  const out: RouterOutput = {
    send: (port, frame, held) => sent.push({ port, frame, held: held === true }),
    deliver: () => {},
    deliverOutOfBand: () => {},
    closePeer: () => {},
  };
  const r = new Router(us, out, NOW, () => 0.5);
  const fromLeft = r.addPeer(left.publicKey, 0, NOW);
  const toRight = r.addPeer(right.publicKey, 0, NOW);
  sent.length = 0;
  return { us, left, right, sent, r, fromLeft, toRight };
}

describe("forwarded traffic counters", () => {
  it("count frames relayed from one peer to another, not frames delivered here or sent from here", () => {
    const { us, left, right, sent, r, fromLeft, toRight } = relay();
    const payload = Buffer.alloc(100, 7);
    const relayed = encodePathTraffic({
      path: [toRight, 0],
      traffic: { source: left.publicKey, dest: right.publicKey, kind: TrafficKind.Standard, payload },
    });
    r.handleFrame(fromLeft, relayed, NOW);
    r.handleFrame(fromLeft, relayed, NOW);
    const out1 = sent.filter((s) => s.port === toRight);
    expect(out1).toHaveLength(2);
    let stats = r.stats();
    expect(stats.forwarded_frames).toBe(2);
    expect(stats.forwarded_bytes).toBe(out1[0]!.frame.length + out1[1]!.frame.length);
    // Delivered here, and sent from here: neither is forwarding.
    const toUs = { source: left.publicKey, dest: us.publicKey, kind: TrafficKind.Standard, payload };
    r.handleFrame(fromLeft, encodeDhtTraffic(toUs), NOW);
    r.sendTraffic(right.publicKey, TrafficKind.Standard, payload, NOW);
    stats = r.stats();
    expect(stats.delivered).toBe(1);
    expect(stats.forwarded_frames).toBe(2);
  });
});

describe("the data path without a frame copy", () => {
  it("a local send by a known path goes out as a head and the payload itself; a frame ending here is delivered as a view", () => {
    const [us, right, far] = [Identity.generate(), Identity.generate(), Identity.generate()];
    const joined: Array<{ port: number; head: Buffer; tail: Buffer }> = [];
    const delivered: Buffer[] = [];
    const out: RouterOutput = {
      send: () => {},
      sendJoined: (port, head, tail) => joined.push({ port, head: Buffer.from(head), tail }),
      deliver: (_source, payload) => delivered.push(payload),
      deliverOutOfBand: () => {},
      closePeer: () => {},
    };
    const r = new Router(us, out, NOW, () => 0.5);
    const toRight = r.addPeer(right.publicKey, 0, NOW);
    const payload = Buffer.alloc(1000, 3);
    // The first send asks for a path; the response (through right) installs [toRight, 0].
    r.sendTraffic(far.publicKey, TrafficKind.Standard, payload, NOW);
    expect(joined).toEqual([]);
    r.handleFrame(toRight, encodeResponse({ from: far.publicKey, path: [0], rpath: [] }), NOW);
    r.sendTraffic(far.publicKey, TrafficKind.Standard, payload, NOW);
    expect(joined).toHaveLength(1);
    const { port, head, tail } = joined[0]!;
    expect(port).toBe(toRight);
    expect(tail).toBe(payload);
    const traffic = { source: us.publicKey, dest: far.publicKey, kind: TrafficKind.Standard, payload };
    expect(Buffer.concat([head, tail]).equals(encodePathTraffic({ path: [0], traffic }))).toBe(true);
    expect(r.stats().out_path_traffic).toBe(1);

    const toUs = encodePathTraffic({
      path: [0],
      traffic: { source: far.publicKey, dest: us.publicKey, kind: TrafficKind.Standard, payload },
    });
    r.handleFrame(toRight, toUs, NOW);
    expect(delivered).toHaveLength(1);
    expect(delivered[0]!.equals(payload)).toBe(true);
    expect(delivered[0]!.buffer).toBe(toUs.buffer);
    expect(delivered[0]!.byteOffset).toBe(toUs.byteOffset + toUs.length - payload.length);
  });

  it("path traffic whose next hop is gone falls back to the DHT past the whole path, here delivered as a view", () => {
    const [us, left] = [Identity.generate(), Identity.generate()];
    const delivered: Buffer[] = [];
    const out: RouterOutput = {
      send: () => {},
      deliver: (_source, payload) => delivered.push(payload),
      deliverOutOfBand: () => {},
      closePeer: () => {},
    };
    const r = new Router(us, out, NOW, () => 0.5);
    const fromLeft = r.addPeer(left.publicKey, 0, NOW);
    const payload = Buffer.alloc(300, 5);
    const traffic = { source: left.publicKey, dest: us.publicKey, kind: TrafficKind.Standard, payload };
    const frame = encodePathTraffic({ path: [fromLeft + 50, 300, 0], traffic });
    r.handleFrame(fromLeft, frame, NOW);
    expect(delivered).toHaveLength(1);
    expect(delivered[0]!.equals(payload)).toBe(true);
    expect(delivered[0]!.buffer).toBe(frame.buffer);
    expect(delivered[0]!.byteOffset).toBe(frame.byteOffset + frame.length - payload.length);
    expect(r.stats().forwarded_frames).toBe(0);
  });
});

describe("forwarding a held frame (the link's read buffer, LinkEvents.onFrame's held)", () => {
  it("path traffic goes on from where it lies, one port shorter, byte for byte what the copy is", () => {
    const { left, right, sent, r, fromLeft, toRight } = relay();
    const payload = Buffer.alloc(1000, 7);
    const relayed = encodePathTraffic({
      path: [toRight, 0],
      traffic: { source: left.publicKey, dest: right.publicKey, kind: TrafficKind.Standard, payload },
    });
    r.handleFrame(fromLeft, Buffer.from(relayed), NOW);
    const read = Buffer.from(relayed);
    r.handleFrame(fromLeft, read, NOW, true);
    const [copied, inPlace] = sent.filter((s) => s.port === toRight);
    expect(copied!.held).toBe(false);
    expect(inPlace!.held).toBe(true);
    expect(inPlace!.frame.equals(copied!.frame)).toBe(true);
    expect(inPlace!.frame.length).toBe(relayed.length - 1); // the port's one byte
    // The very bytes it arrived in: the frame ends where the read one ends.
    expect(inPlace!.frame.buffer).toBe(read.buffer);
    expect(inPlace!.frame.byteOffset + inPlace!.frame.length).toBe(read.byteOffset + read.length);
  });
});

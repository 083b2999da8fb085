import { describe, expect, it } from "vitest";
import { addressForKey, partialKeyFor, subnetForKey } from "../src/crypto/address.js";
import { Identity } from "../src/crypto/identity.js";
import { type CoreSender, Ipv6Adapter } from "../src/tun/ipv6.js";
import { inSubnet, ipv6Packet } from "./support/packets.js";

const A = Identity.fromSeed(Buffer.alloc(32));
const B = Identity.fromSeed(Buffer.from(Array.from({ length: 32 }, (_, i) => i + 1)));
const C = Identity.fromSeed(Buffer.alloc(32, 0x42));
const T0 = 1_700_000_000_000;

/** A minimal IPv6 packet: next header 59 (none), `payload` bytes of 0xab. */
const ipv6 = (src: Buffer, dst: Buffer, payload = 16): Buffer =>
  ipv6Packet(src, dst, Buffer.alloc(payload, 0xab));

interface Sent {
  ipv6: { dest: Buffer; packet: Buffer; now: number }[];
  oob: { dest: Buffer; payload: Buffer }[];
  tun: Buffer[];
}

function lone(id: Identity, mtu = 65535): { adapter: Ipv6Adapter; sent: Sent } {
  const sent: Sent = { ipv6: [], oob: [], tun: [] };
  const core: CoreSender = {
    sendIPv6: (dest, packet, now) =>
      sent.ipv6.push({ dest: Buffer.from(dest), packet: Buffer.from(packet), now }),
    sendOutOfBand: (dest, payload) =>
      sent.oob.push({ dest: Buffer.from(dest), payload: Buffer.from(payload) }),
  };
  return { adapter: new Ipv6Adapter(id, core, (p) => sent.tun.push(Buffer.from(p)), mtu), sent };
}

/**
 * Adapters wired back to back through fake cores. OOB goes to the node whose /64 the (partial) key
 * covers, as greedy DHT routing would end there; IPv6 goes to the exact key. Deliveries are queued
 * and drained in order so that no adapter is re-entered while it is sending.
 */
function network(ids: Identity[], mtus: number[] = []) {
  const queue: (() => void)[] = [];
  const nodes = ids.map((id, i) => {
    const tun: Buffer[] = [];
    const log = { oob: 0, ipv6: 0 };
    const core: CoreSender = {
      sendIPv6: (dest, packet) => {
        log.ipv6++;
        const copy = Buffer.from(packet);
        const to = nodes.find((n) => n.id.publicKey.equals(dest));
        if (to) queue.push(() => to.adapter.fromNetwork(id.publicKey, copy, now));
      },
      sendOutOfBand: (dest, payload) => {
        log.oob++;
        const d = Buffer.from(dest);
        const p = Buffer.from(payload);
        const to = nodes.find((n) => subnetForKey(d).equals(n.id.subnet));
        if (to) queue.push(() => to.adapter.handleOutOfBand(id.publicKey, d, p, now));
      },
    };
    const adapter = new Ipv6Adapter(id, core, (p) => tun.push(Buffer.from(p)), mtus[i] ?? 65535);
    return { id, adapter, tun, log };
  });
  let now = T0;
  return {
    nodes,
    setNow(t: number) {
      now = t;
    },
    drain() {
      for (let i = 0; i < 1000 && queue.length > 0; i++) queue.shift()!();
      expect(queue.length).toBe(0);
    },
  };
}

/** Vectors 8 and 9 (spec 13.3): `len(2) ‖ 09 ‖ src(32) ‖ dst(32) ‖ kind 02 ‖ payload(65)`. */
function parseOob(hex: string) {
  const f = Buffer.from(hex, "hex");
  expect(f.readUInt16BE(0)).toBe(f.length - 2);
  expect(f[2]).toBe(0x09);
  expect(f[67]).toBe(0x02);
  return { src: f.subarray(3, 35), dst: f.subarray(35, 67), payload: f.subarray(68) };
}
const VECTOR_8 =
  "00830979b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad0496643b6a27bcceb6a42d62a3a8d02a6f1fffffffffffffffffffffffffffffffffff0201e072c72e096b67eb4bfb6e9aeb39c98303eee43eba3a4ac5fa50a921ab783fa2fdb66467b4d504603b7f3425cc8f8e71350ffea2be9e4a1a13499b29f4ac7c06";
const VECTOR_9 =
  "0083093b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da2979b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad0496640202fa7eb602f16115edd21d31154a3d60ce2d58b73e8fd666534a09c3c62352749cfd07dd47951bdc826696d30549443b62287df4784facebe5b5de7ead1938820e";

describe("key lookup vectors (spec 13.3 #8, #9)", () => {
  it("B's first packet to A's address sends exactly vector 8's lookup", () => {
    const v = parseOob(VECTOR_8);
    expect(v.src.equals(B.publicKey)).toBe(true);
    const { adapter, sent } = lone(B);
    adapter.fromTun(ipv6(B.address, A.address), T0);
    expect(sent.ipv6).toHaveLength(0);
    expect(sent.oob).toHaveLength(1);
    expect(sent.oob[0]!.dest.toString("hex")).toBe(v.dst.toString("hex"));
    expect(sent.oob[0]!.payload.toString("hex")).toBe(v.payload.toString("hex"));
  });

  it("A answers vector 8's lookup with exactly vector 9's response", () => {
    const lookup = parseOob(VECTOR_8);
    const v = parseOob(VECTOR_9);
    const { adapter, sent } = lone(A);
    adapter.handleOutOfBand(
      Buffer.from(lookup.src),
      Buffer.from(lookup.dst),
      Buffer.from(lookup.payload),
      T0,
    );
    expect(sent.oob).toHaveLength(1);
    expect(sent.oob[0]!.dest.equals(v.dst)).toBe(true);
    expect(sent.oob[0]!.payload.toString("hex")).toBe(v.payload.toString("hex"));
    expect(adapter.stats().lookupsAnswered).toBe(1);
  });

  it("B learns A from vector 9 and flushes its pending packet to A", () => {
    const v = parseOob(VECTOR_9);
    const { adapter, sent } = lone(B);
    const packet = ipv6(B.address, A.address);
    adapter.fromTun(packet, T0);
    adapter.handleOutOfBand(Buffer.from(v.src), Buffer.from(v.dst), Buffer.from(v.payload), T0 + 10);
    expect(sent.ipv6).toHaveLength(1);
    expect(sent.ipv6[0]!.dest.equals(A.publicKey)).toBe(true);
    expect(sent.ipv6[0]!.packet.equals(packet)).toBe(true);
    expect(sent.ipv6[0]!.now).toBe(T0 + 10);
    // Known now: the next packet goes straight out, without a lookup.
    adapter.fromTun(packet, T0 + 20);
    expect(sent.oob).toHaveLength(1);
    expect(sent.ipv6).toHaveLength(2);
    expect(sent.ipv6[1]!.now).toBe(T0 + 20);
  });
});

describe("two adapters back to back", () => {
  it("lookup, response, pending flush, then the reply needs no lookup", () => {
    const net = network([A, B]);
    const [a, b] = net.nodes;
    const ping = ipv6(A.address, B.address, 24);
    a!.adapter.fromTun(ping, T0);
    net.drain();
    expect(b!.tun).toHaveLength(1);
    expect(b!.tun[0]!.equals(ping)).toBe(true);
    expect(a!.adapter.stats()).toMatchObject({ lookupsSent: 1, responsesAccepted: 1, pendingFlushed: 1 });
    // B learnt A from the traffic itself (8.3 step 4).
    const pong = ipv6(B.address, A.address, 24);
    b!.adapter.fromTun(pong, T0 + 1);
    net.drain();
    expect(b!.log.oob).toBe(1); // only its response to A's lookup
    expect(b!.adapter.stats().lookupsSent).toBe(0);
    expect(a!.tun).toHaveLength(1);
    expect(a!.tun[0]!.equals(pong)).toBe(true);
  });

  it("routes workload /64 traffic: subnet destinations and sources inside our /64", () => {
    const net = network([A, B]);
    const [a, b] = net.nodes;
    const fromWorkload = ipv6(inSubnet(A.subnet, 7), inSubnet(B.subnet, 9));
    a!.adapter.fromTun(fromWorkload, T0);
    net.drain();
    expect(b!.tun.map((p) => p.toString("hex"))).toEqual([fromWorkload.toString("hex")]);
    // Address and subnet of the same key share one entry: no second lookup for B's address.
    a!.adapter.fromTun(ipv6(A.address, B.address), T0 + 1);
    net.drain();
    expect(a!.adapter.stats().lookupsSent).toBe(1);
    expect(b!.tun).toHaveLength(2);
  });

  it("only the last packet to an unresolved destination waits, and every packet sends a lookup", () => {
    const { adapter, sent } = lone(A);
    const first = ipv6(A.address, B.address, 8);
    const second = ipv6(A.address, B.address, 9);
    adapter.fromTun(first, T0);
    adapter.fromTun(second, T0 + 1);
    expect(sent.oob).toHaveLength(2);
    expect(sent.oob[1]!.payload.equals(sent.oob[0]!.payload)).toBe(true);
    expect(sent.oob[0]!.dest.equals(partialKeyFor(B.address))).toBe(true);
    adapter.handleOutOfBand(
      B.publicKey,
      A.publicKey,
      Buffer.concat([Buffer.of(2), B.sign(A.publicKey)]),
      T0 + 2,
    );
    expect(sent.ipv6.map((s) => s.packet.toString("hex"))).toEqual([second.toString("hex")]);
  });

  it("a subnet lookup goes to the subnet's partial key", () => {
    const { adapter, sent } = lone(A);
    adapter.fromTun(ipv6(A.address, inSubnet(C.subnet, 1)), T0);
    expect(sent.oob[0]!.dest.equals(partialKeyFor(C.subnet))).toBe(true);
    expect(subnetForKey(sent.oob[0]!.dest).equals(C.subnet)).toBe(true);
  });
});

describe("8.1 checks on packets from the TUN", () => {
  it("drops non-IPv6, short, foreign-source and non-overlay-destination packets", () => {
    const { adapter, sent } = lone(A);
    const v4 = ipv6(A.address, B.address);
    v4[0] = 0x45;
    adapter.fromTun(v4, T0);
    adapter.fromTun(ipv6(A.address, B.address).subarray(0, 39), T0);
    const linkLocal = Buffer.from("fe800000000000000000000000000001", "hex");
    adapter.fromTun(ipv6(linkLocal, B.address), T0);
    adapter.fromTun(ipv6(B.address, C.address), T0); // someone else's address as source
    adapter.fromTun(ipv6(A.address, Buffer.from("ff020000000000000000000000000002", "hex")), T0);
    adapter.fromTun(ipv6(A.address, Buffer.from("20010db8000000000000000000000001", "hex")), T0);
    expect(sent.oob).toHaveLength(0);
    expect(sent.ipv6).toHaveLength(0);
    expect(adapter.stats()).toMatchObject({
      tunNotIPv6: 1,
      tunTooShort: 1,
      tunBadSource: 2,
      tunBadDestination: 2,
    });
  });
});

describe("8.3 checks on packets from the network", () => {
  it("delivers only to our address or /64, from the sender's address or /64", () => {
    const { adapter, sent } = lone(A);
    adapter.fromNetwork(B.publicKey, ipv6(B.address, C.address), T0); // not for us
    adapter.fromNetwork(B.publicKey, ipv6(C.address, A.address), T0); // spoofed source
    adapter.fromNetwork(B.publicKey, ipv6(inSubnet(C.subnet, 1), inSubnet(A.subnet, 1)), T0); // spoofed /64
    expect(sent.tun).toHaveLength(0);
    const good = [ipv6(B.address, A.address), ipv6(inSubnet(B.subnet, 5), inSubnet(A.subnet, 6))];
    for (const p of good) adapter.fromNetwork(B.publicKey, p, T0);
    expect(sent.tun.map((p) => p.toString("hex"))).toEqual(good.map((p) => p.toString("hex")));
    expect(adapter.stats()).toMatchObject({ netBadDestination: 1, netBadSource: 2, delivered: 2 });
  });

  it("drops non-IPv6 and short packets", () => {
    const { adapter, sent } = lone(A);
    const bad = ipv6(B.address, A.address);
    bad[0] = 0x40;
    adapter.fromNetwork(B.publicKey, bad, T0);
    adapter.fromNetwork(B.publicKey, Buffer.alloc(20, 0x60), T0);
    expect(sent.tun).toHaveLength(0);
    expect(adapter.stats()).toMatchObject({ netNotIPv6: 1, netTooShort: 1 });
  });
});

describe("8.2 lookup and response validation", () => {
  it("ignores a lookup with a bad signature, for another subnet, or of the wrong length", () => {
    const { adapter, sent } = lone(A);
    const partial = partialKeyFor(A.address);
    const sig = B.sign(partial);
    const tampered = Buffer.from(sig);
    tampered[10]! ^= 1;
    adapter.handleOutOfBand(B.publicKey, partial, Buffer.concat([Buffer.of(1), tampered]), T0);
    adapter.handleOutOfBand(C.publicKey, partial, Buffer.concat([Buffer.of(1), sig]), T0); // wrong signer
    const other = partialKeyFor(C.address);
    adapter.handleOutOfBand(B.publicKey, other, Buffer.concat([Buffer.of(1), B.sign(other)]), T0);
    adapter.handleOutOfBand(B.publicKey, partial, Buffer.concat([Buffer.of(1), sig, Buffer.of(0)]), T0);
    adapter.handleOutOfBand(B.publicKey, partial, Buffer.concat([Buffer.of(7), sig]), T0);
    expect(sent.oob).toHaveLength(0);
    expect(adapter.stats()).toMatchObject({
      lookupsBadSignature: 2,
      lookupsNotOurs: 1,
      oobBadLength: 1,
      oobUnknownType: 1,
      lookupsAnswered: 0,
    });
    // The untampered lookup is answered, so the rejections above were the signature's doing.
    adapter.handleOutOfBand(B.publicKey, partial, Buffer.concat([Buffer.of(1), sig]), T0);
    expect(sent.oob).toHaveLength(1);
  });

  it("does not learn from a response with a bad signature", () => {
    const { adapter, sent } = lone(A);
    adapter.fromTun(ipv6(A.address, B.address), T0);
    const sig = B.sign(A.publicKey);
    sig[0]! ^= 0x80;
    adapter.handleOutOfBand(B.publicKey, A.publicKey, Buffer.concat([Buffer.of(2), sig]), T0);
    expect(sent.ipv6).toHaveLength(0);
    expect(adapter.stats().responsesBadSignature).toBe(1);
    adapter.fromTun(ipv6(A.address, B.address), T0 + 1);
    expect(sent.oob).toHaveLength(2); // still unknown: another lookup
  });
});

describe("expiry", () => {
  it("keeps a key 120 s after its last use, then looks it up again", () => {
    const { adapter, sent } = lone(A);
    expect(adapter.nextTimeout()).toBeUndefined();
    adapter.fromNetwork(B.publicKey, ipv6(B.address, A.address), T0); // learn B from traffic
    expect(adapter.nextTimeout()).toBe(T0 + 120_000);
    adapter.fromTun(ipv6(A.address, B.address), T0 + 100_000); // use refreshes
    adapter.handleTimeout(T0 + 120_000);
    expect(adapter.stats().keysExpired).toBe(0);
    expect(adapter.nextTimeout()).toBe(T0 + 220_000);
    adapter.fromTun(ipv6(A.address, B.address), T0 + 150_000);
    expect(sent.ipv6).toHaveLength(2);
    expect(sent.oob).toHaveLength(0);
    adapter.handleTimeout(T0 + 270_000);
    expect(adapter.stats().keysExpired).toBe(1);
    expect(adapter.nextTimeout()).toBeUndefined();
    adapter.fromTun(ipv6(A.address, B.address), T0 + 270_001);
    expect(sent.ipv6).toHaveLength(2);
    expect(sent.oob).toHaveLength(1);
    // Heard from again: learnt afresh (the pending packet goes out), not refreshed as a gone entry.
    adapter.fromNetwork(B.publicKey, ipv6(B.address, A.address), T0 + 270_002);
    expect(sent.ipv6).toHaveLength(3);
    expect(adapter.knownKeys().map((k) => k.expires)).toEqual([T0 + 390_002]);
    adapter.fromTun(ipv6(A.address, B.subnet), T0 + 270_003);
    adapter.fromTun(ipv6(A.address, B.subnet), T0 + 270_004);
    expect(sent.ipv6.map((p) => p.dest.equals(B.publicKey))).toEqual([true, true, true, true, true]);
    adapter.handleTimeout(T0 + 390_004);
    expect(adapter.stats().keysExpired).toBe(2);
    adapter.fromTun(ipv6(A.address, B.subnet), T0 + 390_005);
    expect(sent.ipv6).toHaveLength(5);
    expect(sent.oob).toHaveLength(2);
  });

  it("drops a pending packet after 120 s, so a late response flushes nothing", () => {
    const { adapter, sent } = lone(A);
    adapter.fromTun(ipv6(A.address, B.address), T0);
    expect(adapter.nextTimeout()).toBe(T0 + 120_000);
    adapter.handleTimeout(T0 + 119_999);
    expect(adapter.stats().pendingExpired).toBe(0);
    adapter.handleTimeout(T0 + 120_000);
    expect(adapter.stats().pendingExpired).toBe(1);
    adapter.handleOutOfBand(
      B.publicKey,
      A.publicKey,
      Buffer.concat([Buffer.of(2), B.sign(A.publicKey)]),
      T0 + 121_000,
    );
    expect(adapter.stats().responsesAccepted).toBe(1);
    expect(sent.ipv6).toHaveLength(0);
  });
});

describe("addresses used by the tests", () => {
  it("A, B and C have distinct /64s", () => {
    const subs = [A, B, C].map((i) => i.subnet.toString("hex"));
    expect(new Set(subs).size).toBe(3);
    expect(addressForKey(A.publicKey).equals(A.address)).toBe(true);
  });
});

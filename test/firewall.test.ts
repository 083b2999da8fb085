import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { COMMANDS } from "../src/admin/commands.js";
import { formatResponse } from "../src/admin/format.js";
import type { AdminView } from "../src/admin/view.js";
import { parseConfig } from "../src/config/config.js";
import { Identity } from "../src/crypto/identity.js";
import { type FirewallConfig, readFirewallConfig } from "../src/tun/firewall-config.js";
import { FirewallRuleError } from "../src/tun/firewall-rules.js";
import { FLOW_TIMEOUTS, Firewall, VERDICT_DROP, VERDICT_PASS, VERDICT_REJECT } from "../src/tun/firewall.js";
import { buildAdminProhibited } from "../src/tun/icmpv6.js";
import { type CoreSender, Ipv6Adapter } from "../src/tun/ipv6.js";
import { checksumHolds, inSubnet, ipv6Packet } from "./support/packets.js";

const SELF = Identity.fromSeed(Buffer.alloc(32, 1));
const FRIEND = Identity.fromSeed(Buffer.alloc(32, 2));
const STRANGER = Identity.fromSeed(Buffer.alloc(32, 3));
const T0 = 1_700_000_000_000;
const WORKLOAD = inSubnet(SELF.subnet, 2);

const SYN = 0x02;
const ACK = 0x10;
const FIN = 0x01;

function tcp(src: Buffer, dst: Buffer, sport: number, dport: number, flags = SYN): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt16BE(sport, 0);
  h.writeUInt16BE(dport, 2);
  h[12] = 0x50;
  h[13] = flags;
  return ipv6Packet(src, dst, h, 6);
}

function udp(src: Buffer, dst: Buffer, sport: number, dport: number): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(sport, 0);
  h.writeUInt16BE(dport, 2);
  h.writeUInt16BE(12, 4);
  return ipv6Packet(src, dst, h, 17);
}

function icmp(src: Buffer, dst: Buffer, type: number, id = 7, body: Buffer = Buffer.alloc(8)): Buffer {
  const h = Buffer.concat([Buffer.alloc(8), body]);
  h[0] = type;
  h.writeUInt16BE(id, 4);
  return ipv6Packet(src, dst, h, 58);
}

function config(text: Record<string, unknown>): FirewallConfig {
  const r = readFirewallConfig(text);
  expect(r.errors).toEqual([]);
  return r.firewall!;
}

const sshFromFriend = {
  InboundDefault: "drop",
  Inbound: [
    {
      Name: "ssh",
      Action: "accept",
      PublicKeys: [FRIEND.publicKey.toString("hex")],
      Local: ["self"],
      Protocol: "tcp",
      Ports: "22",
    },
  ],
};

describe("firewall config", () => {
  it("names the rule and the field in one line", () => {
    const r = readFirewallConfig({
      Inbound: [
        { Action: "accept" },
        { Action: "accept", Protocol: "udp", Ports: ["53", "1000-2000"] },
        { Action: "accept", Protocol: "tcp", Ports: "80-" },
      ],
    });
    expect(r.errors).toEqual([
      'config: Planetd.Firewall.Inbound[2].Ports "80-" is not a port range (expected 80 or 80-90)',
    ]);
  });

  it("comes through the config file under Planetd.Firewall, and round-trips", () => {
    const text = JSON.stringify({
      Planetd: { Firewall: { Inbound: [{ Action: "accept", Protocol: "tcp", Ports: "80-" }] } },
    });
    expect(() => parseConfig(text, "test.conf")).toThrow(
      'config: Planetd.Firewall.Inbound[0].Ports "80-" is not a port range (expected 80 or 80-90)',
    );
    const good = { InboundDefault: "drop", Inbound: [{ Action: "accept", Protocol: "tcp", Ports: ["22"] }] };
    const { config: parsed } = parseConfig(JSON.stringify({ Planetd: { Firewall: good } }), "test.conf");
    expect(parsed.Planetd.Firewall).toMatchObject(good);
    const again = parseConfig(JSON.stringify({ Planetd: parsed.Planetd }), "again.conf").config;
    expect(again.Planetd.Firewall).toEqual(parsed.Planetd.Firewall);
  });

  it("reports every bad field, including misspelt ones and a missing action", () => {
    const r = readFirewallConfig({
      InboundDefault: "deny",
      Outbound: [
        { Action: "accept", Port: 22 },
        { Protocol: "tcp" },
        { Action: "drop", Remote: ["fd00::1"] },
      ],
      Inbound: [
        { Action: "accept", Ports: 22 },
        { Action: "accept", Protocol: "icmpv6", IcmpTypes: ["echo"] },
      ],
    });
    expect(r.errors).toEqual([
      'config: Planetd.Firewall.InboundDefault "deny" is not an action (expected "accept", "drop" or "reject")',
      'config: Planetd.Firewall.Inbound[0].Ports 22 needs a Protocol of tcp or udp (expected Protocol: "tcp" or "udp")',
      expect.stringMatching(
        /^config: Planetd\.Firewall\.Inbound\[1\]\.IcmpTypes\[0\] "echo" is not an ICMPv6 type/,
      ),
      expect.stringMatching(/^config: Planetd\.Firewall\.Outbound\[0\]\.Port 22 is not a field here/),
      'config: Planetd.Firewall.Outbound[1].Action is missing (expected "accept", "drop" or "reject")',
      expect.stringMatching(
        /^config: Planetd\.Firewall\.Outbound\[2\]\.Remote\[0\] "fd00::1" is not inside 200::\/7/,
      ),
    ]);
    for (const e of r.errors) expect(e).not.toContain("\n");
  });

  it("refuses a Local prefix outside the node's /64 when the rules are compiled", () => {
    const c = config({ Inbound: [{ Action: "accept", Local: ["self", "300:1:2:3::/64"] }] });
    expect(() => new Firewall(c, SELF)).toThrow(FirewallRuleError);
    expect(() => new Firewall(c, SELF)).toThrow(
      /^config: Planetd\.Firewall\.Inbound\[0\]\.Local\[1\] "300:1:2:3::\/64" is not inside this node's \/64/,
    );
  });
});

describe("firewall matching", () => {
  it("accepts port 22 from one key only, and counts what it drops", () => {
    const fw = new Firewall(config(sshFromFriend), SELF);
    expect(fw.filterInbound(FRIEND.publicKey, tcp(FRIEND.address, SELF.address, 40000, 22), T0)).toBe(
      VERDICT_PASS,
    );
    expect(fw.filterInbound(STRANGER.publicKey, tcp(STRANGER.address, SELF.address, 40000, 22), T0)).toBe(
      VERDICT_DROP,
    );
    expect(fw.filterInbound(FRIEND.publicKey, tcp(FRIEND.address, SELF.address, 40000, 23), T0)).toBe(
      VERDICT_DROP,
    );
    // The rule names Local "self": the workload's port 22 is not covered.
    expect(fw.filterInbound(FRIEND.publicKey, tcp(FRIEND.address, WORKLOAD, 40000, 22), T0)).toBe(
      VERDICT_DROP,
    );
    expect(fw.filterInbound(STRANGER.publicKey, icmp(STRANGER.address, SELF.address, 128), T0)).toBe(
      VERDICT_DROP,
    );
    const v = fw.view();
    expect(v.inbound.rules).toEqual([
      { index: 0, name: "ssh", action: "accept", match: expect.stringContaining("tcp port 22"), hits: 1 },
    ]);
    expect(v.inbound.defaultHits).toBe(4);
  });

  it("matches remote prefixes, port ranges, ICMPv6 types, first rule wins", () => {
    const fw = new Firewall(
      config({
        InboundDefault: "drop",
        Inbound: [
          { Action: "drop", Protocol: "udp", Ports: "5000-5009", Remote: [`${fmt(STRANGER.address)}/128`] },
          { Action: "accept", Protocol: "udp", Ports: ["53", "5000-5100"] },
          { Action: "reject", Protocol: "icmpv6", IcmpTypes: ["echo-request"], Local: ["subnet"] },
          { Action: "accept", Protocol: 47 },
        ],
      }),
      SELF,
    );
    const inb = (who: Identity, p: Buffer) => fw.filterInbound(who.publicKey, p, T0);
    expect(inb(STRANGER, udp(STRANGER.address, SELF.address, 1, 5005))).toBe(VERDICT_DROP);
    expect(inb(STRANGER, udp(STRANGER.address, SELF.address, 1, 5010))).toBe(VERDICT_PASS);
    expect(inb(FRIEND, udp(FRIEND.address, SELF.address, 1, 5005))).toBe(VERDICT_PASS);
    expect(inb(FRIEND, udp(FRIEND.address, SELF.address, 1, 53))).toBe(VERDICT_PASS);
    expect(inb(FRIEND, udp(FRIEND.address, SELF.address, 1, 54))).toBe(VERDICT_DROP);
    expect(inb(FRIEND, udp(FRIEND.address, SELF.address, 1, 5101))).toBe(VERDICT_DROP);
    // Local "subnet" covers the workload, not the node's own address.
    expect(inb(FRIEND, icmp(FRIEND.address, WORKLOAD, 128))).toBe(VERDICT_REJECT);
    expect(inb(FRIEND, icmp(FRIEND.address, SELF.address, 128))).toBe(VERDICT_DROP);
    expect(inb(FRIEND, ipv6Packet(FRIEND.address, SELF.address, Buffer.alloc(8), 47))).toBe(VERDICT_PASS);
    expect(fw.view().inbound.rules.map((r) => r.hits)).toEqual([1, 3, 1, 1]);
  });

  it("matches prefixes of any length", () => {
    const friend20 = Buffer.from(FRIEND.address);
    friend20[2]! &= 0xf0;
    friend20.fill(0, 3);
    const fw = new Firewall(
      config({
        InboundDefault: "drop",
        Inbound: [
          { Action: "accept", Protocol: "udp", Ports: "1", Remote: ["300::/8"] },
          { Action: "accept", Protocol: "udp", Ports: "2", Remote: [`${fmt(friend20)}/20`] },
          { Action: "accept", Protocol: "udp", Ports: "3", Remote: ["200::/7"] },
        ],
      }),
      SELF,
    );
    const from = (src: Buffer, port: number) =>
      fw.filterInbound(FRIEND.publicKey, udp(src, SELF.address, 9, port), T0);
    expect(from(inSubnet(FRIEND.subnet, 5), 1)).toBe(VERDICT_PASS);
    expect(from(FRIEND.address, 1)).toBe(VERDICT_DROP);
    expect(from(FRIEND.address, 2)).toBe(VERDICT_PASS);
    const outside = Buffer.from(FRIEND.address);
    outside[2]! ^= 0x10; // the 20th bit
    expect(from(outside, 2)).toBe(VERDICT_DROP);
    outside[2]! ^= 0x18; // back, and flip the 21st: still inside the /20
    expect(from(outside, 2)).toBe(VERDICT_PASS);
    expect(from(FRIEND.address, 3)).toBe(VERDICT_PASS);
    expect(from(inSubnet(FRIEND.subnet, 5), 3)).toBe(VERDICT_PASS);
  });

  it("lets Packet Too Big and neighbour discovery through a drop-everything policy", () => {
    const fw = new Firewall(config({ InboundDefault: "drop", OutboundDefault: "drop" }), SELF);
    expect(fw.filterInbound(FRIEND.publicKey, icmp(FRIEND.address, SELF.address, 2), T0)).toBe(VERDICT_PASS);
    expect(fw.filterOutbound(FRIEND.publicKey, icmp(SELF.address, FRIEND.address, 2), T0)).toBe(VERDICT_PASS);
    expect(fw.filterInbound(FRIEND.publicKey, icmp(FRIEND.address, SELF.address, 135), T0)).toBe(
      VERDICT_PASS,
    );
    expect(fw.filterInbound(FRIEND.publicKey, icmp(FRIEND.address, SELF.address, 1), T0)).toBe(VERDICT_DROP);
  });
});

describe("firewall state tracking", () => {
  const closed = () => new Firewall(config({ InboundDefault: "drop" }), SELF);

  it("passes the replies to flows opened from this side, and nothing else", () => {
    const fw = closed();
    const out = (p: Buffer) => fw.filterOutbound(FRIEND.publicKey, p, T0);
    const inb = (p: Buffer, t = T0 + 10) => fw.filterInbound(FRIEND.publicKey, p, t);
    expect(out(tcp(SELF.address, FRIEND.address, 50000, 80))).toBe(VERDICT_PASS);
    expect(inb(tcp(FRIEND.address, SELF.address, 80, 50000, SYN | ACK))).toBe(VERDICT_PASS);
    expect(inb(tcp(FRIEND.address, SELF.address, 80, 50001, SYN | ACK))).toBe(VERDICT_DROP);
    // A workload's flow is its own: the same ports to the node's address do not match it.
    expect(out(udp(WORKLOAD, FRIEND.address, 4000, 53))).toBe(VERDICT_PASS);
    expect(inb(udp(FRIEND.address, WORKLOAD, 53, 4000))).toBe(VERDICT_PASS);
    expect(inb(udp(FRIEND.address, SELF.address, 53, 4000))).toBe(VERDICT_DROP);
    // Echo: the reply matches the request; a request from the far side with the same id does not.
    expect(out(icmp(SELF.address, FRIEND.address, 128, 99))).toBe(VERDICT_PASS);
    expect(inb(icmp(FRIEND.address, SELF.address, 129, 99))).toBe(VERDICT_PASS);
    expect(inb(icmp(FRIEND.address, SELF.address, 128, 99))).toBe(VERDICT_DROP);
    expect(inb(icmp(FRIEND.address, SELF.address, 129, 98))).toBe(VERDICT_DROP);
    const v = fw.view();
    expect(v.flows).toBe(3);
    expect(v.inbound.established).toBe(3);
    expect(v.inbound.defaultHits).toBe(4);
  });

  it("passes an ICMPv6 error about a tracked flow as related", () => {
    const fw = closed();
    const sent = udp(SELF.address, FRIEND.address, 4000, 9999);
    fw.filterOutbound(FRIEND.publicKey, sent, T0);
    const portUnreachable = icmp(FRIEND.address, SELF.address, 1, 0, sent);
    expect(fw.filterInbound(FRIEND.publicKey, portUnreachable, T0 + 1)).toBe(VERDICT_PASS);
    const other = icmp(FRIEND.address, SELF.address, 1, 0, udp(SELF.address, FRIEND.address, 4001, 9999));
    expect(fw.filterInbound(FRIEND.publicKey, other, T0 + 1)).toBe(VERDICT_DROP);
  });

  it("forgets flows after their timeout, and a closed TCP flow soon", () => {
    const fw = closed();
    fw.filterOutbound(FRIEND.publicKey, udp(SELF.address, FRIEND.address, 4000, 53), T0);
    fw.filterOutbound(FRIEND.publicKey, tcp(SELF.address, FRIEND.address, 5000, 80), T0);
    fw.filterInbound(FRIEND.publicKey, tcp(FRIEND.address, SELF.address, 80, 5000, SYN | ACK), T0);
    fw.filterOutbound(FRIEND.publicKey, tcp(SELF.address, FRIEND.address, 5000, 80, FIN | ACK), T0);
    const late = T0 + FLOW_TIMEOUTS.udpUnreplied + 1;
    expect(fw.filterInbound(FRIEND.publicKey, udp(FRIEND.address, SELF.address, 53, 4000), late)).toBe(
      VERDICT_DROP,
    );
    expect(fw.filterInbound(FRIEND.publicKey, tcp(FRIEND.address, SELF.address, 80, 5000, ACK), late)).toBe(
      VERDICT_DROP,
    );
    expect(fw.view().flows).toBe(0);
    expect(fw.view().flowsExpired).toBe(2);
  });

  it("sweeps expired flows on its timer", () => {
    const fw = closed();
    for (let port = 1000; port < 1100; port++)
      fw.filterOutbound(FRIEND.publicKey, udp(SELF.address, FRIEND.address, port, 53), T0);
    expect(fw.nextTimeout()).toBeDefined();
    let t = T0 + FLOW_TIMEOUTS.udpUnreplied + 1;
    for (let i = 0; i < 40 && fw.view().flows > 0; i++, t += 1000) fw.handleTimeout(t);
    expect(fw.view().flows).toBe(0);
    expect(fw.nextTimeout()).toBeUndefined();
  });

  it("keeps 10^5 flows from random sources within the bound, counting evictions", () => {
    const max = 4096;
    const fw = new Firewall(config({ MaxFlows: max }), SELF);
    const packet = tcp(FRIEND.address, SELF.address, 1, 443);
    const random = randomBytes(100_000 * 48);
    let passed = 0;
    let largest = 0;
    for (let i = 0; i < 100_000; i++) {
      random.copy(packet, 8, i * 48, i * 48 + 16);
      packet[8] = 0x02;
      packet.writeUInt16BE(1024 + (i % 60000), 40);
      if (fw.filterInbound(random.subarray(i * 48 + 16, i * 48 + 48), packet, T0 + i) === VERDICT_PASS)
        passed++;
      if (i % 1000 === 0) largest = Math.max(largest, fw.view().flows);
    }
    expect(passed).toBe(100_000);
    expect(largest).toBeLessThanOrEqual(max);
    const src = packet.subarray(8, 24);
    const key = random.subarray(99_999 * 48 + 16, 99_999 * 48 + 48);
    const v = fw.view();
    expect(v.flows).toBe(max);
    expect(v.flowsEvicted + v.flowsExpired).toBe(100_000 - max);
    expect(v.flowsEvicted).toBeGreaterThan(0);
    // The newest flow is still tracked: its reply counts as established.
    const reply = tcp(SELF.address, src, 443, 1024 + (99_999 % 60000), SYN | ACK);
    expect(fw.filterOutbound(key, reply, T0 + 100_000)).toBe(VERDICT_PASS);
    expect(fw.view().outbound.established).toBe(1);
  });
});

describe("getFirewall", () => {
  it("lists the rules with their hit counts, for the admin socket and planetctl", async () => {
    const fw = new Firewall(config(sshFromFriend), SELF);
    fw.filterInbound(FRIEND.publicKey, tcp(FRIEND.address, SELF.address, 40000, 22), T0);
    fw.filterInbound(STRANGER.publicKey, tcp(STRANGER.address, SELF.address, 40000, 22), T0);
    fw.filterInbound(FRIEND.publicKey, tcp(FRIEND.address, SELF.address, 40000, 22, ACK), T0);
    const view = { firewall: () => fw.view() } as unknown as AdminView;
    const response = (await COMMANDS.getfirewall!.run({ view, remoteTimeoutMs: 0 }, {})) as Record<
      string,
      unknown
    >;
    expect(response).toMatchObject({
      enabled: true,
      inbound: {
        default: "drop",
        default_hits: 1,
        established: 1,
        rules: [{ index: 0, name: "ssh", action: "accept", hits: 1 }],
      },
      outbound: { default: "accept", default_hits: 0, rules: [] },
      flows: 1,
      max_flows: 16384,
    });
    const text = formatResponse("getfirewall", response);
    expect(text).toMatch(/^Direction +# +Name +Action +Match +Hits\n/);
    expect(text).toMatch(/\ninbound +0 +ssh +accept +tcp port 22 key [0-9a-f]{16}… local self +1\n/);
    expect(text).toMatch(/\ninbound +- +default +drop +1\n/);
    expect(text).toContain("Flows: 1 of 16384");
    const off = await COMMANDS.getfirewall!.run({ view: {} as AdminView, remoteTimeoutMs: 0 }, {});
    expect(off).toEqual({ enabled: false });
  });
});

describe("firewall reload", () => {
  it("keeps established flows the new rules allow and drops the others", () => {
    const fw = new Firewall(
      config({
        InboundDefault: "drop",
        Inbound: [{ Action: "accept", Protocol: "tcp", Ports: ["22", "80"] }],
      }),
      SELF,
    );
    const inb = (who: Identity, sport: number, dport: number, flags = SYN) =>
      fw.filterInbound(who.publicKey, tcp(who.address, SELF.address, sport, dport, flags), T0 + 5);
    expect(inb(FRIEND, 1111, 22)).toBe(VERDICT_PASS);
    expect(inb(STRANGER, 2222, 22)).toBe(VERDICT_PASS);
    expect(inb(STRANGER, 3333, 80)).toBe(VERDICT_PASS);
    fw.filterOutbound(FRIEND.publicKey, tcp(SELF.address, FRIEND.address, 6000, 443), T0);
    const friendSsh = {
      Action: "accept",
      Protocol: "tcp",
      Ports: "22",
      PublicKeys: [FRIEND.publicKey.toString("hex")],
    };
    fw.replace(
      fw.compile(
        config({
          InboundDefault: "drop",
          Inbound: [friendSsh, { Action: "accept", Protocol: "tcp", Ports: ["22", "80"] }],
        }),
      ),
    );
    // Still allowed (by the first and the second rule); the outbound flow is untouched.
    expect(inb(FRIEND, 1111, 22, ACK)).toBe(VERDICT_PASS);
    expect(inb(STRANGER, 3333, 80, ACK)).toBe(VERDICT_PASS);
    expect(fw.view().flowsRevoked).toBe(0);
    // The second rule's hits stay with it; the new first rule starts at 0.
    expect(fw.view().inbound.rules.map((r) => r.hits)).toEqual([0, 3]);
    fw.replace(
      fw.compile(
        config({
          InboundDefault: "drop",
          Inbound: [friendSsh],
        }),
      ),
    );
    expect(fw.view().flowsRevoked).toBe(2);
    expect(inb(FRIEND, 1111, 22, ACK)).toBe(VERDICT_PASS);
    expect(inb(STRANGER, 2222, 22, ACK)).toBe(VERDICT_DROP);
    expect(inb(STRANGER, 3333, 80, ACK)).toBe(VERDICT_DROP);
    expect(
      fw.filterInbound(FRIEND.publicKey, tcp(FRIEND.address, SELF.address, 443, 6000, ACK), T0 + 6),
    ).toBe(VERDICT_PASS);
  });
});

function fmt(address: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(address.readUInt16BE(i).toString(16));
  return groups.join(":");
}

describe("reject: ICMPv6 administratively prohibited", () => {
  function adapter(fw: Firewall) {
    const sent: { dest: Buffer; packet: Buffer }[] = [];
    const tun: Buffer[] = [];
    const core: CoreSender = {
      sendIPv6: (dest, packet) => sent.push({ dest: Buffer.from(dest), packet: Buffer.from(packet) }),
      sendOutOfBand: () => {},
    };
    const a = new Ipv6Adapter(SELF, core, (p) => tun.push(Buffer.from(p)), 65535);
    a.firewall = fw;
    return { a, sent, tun };
  }

  it("has the RFC 4443 layout: type 1 code 1, addresses swapped, the packet quoted, a valid checksum", () => {
    const original = tcp(STRANGER.address, WORKLOAD, 40000, 8080);
    const r = buildAdminProhibited(original);
    expect(r.length).toBe(40 + 8 + original.length);
    expect(r.readUInt32BE(0)).toBe(0x60000000);
    expect(r.readUInt16BE(4)).toBe(8 + original.length);
    expect(r[6]).toBe(58);
    expect(r[7]).toBe(64);
    expect(r.subarray(8, 24).equals(WORKLOAD)).toBe(true);
    expect(r.subarray(24, 40).equals(STRANGER.address)).toBe(true);
    expect([r[40], r[41]]).toEqual([1, 1]);
    expect(r.readUInt32BE(44)).toBe(0);
    expect(r.subarray(48).equals(original)).toBe(true);
    expect(checksumHolds(r)).toBe(true);
    // A large packet is quoted only as far as the answer fits in 1280 bytes.
    const big = ipv6Packet(STRANGER.address, WORKLOAD, Buffer.alloc(3000), 17);
    expect(buildAdminProhibited(big).length).toBe(1280);
    expect(checksumHolds(buildAdminProhibited(big))).toBe(true);
  });

  it("answers inbound rejects through the session, outbound ones on the TUN, at a limited rate", () => {
    const fw = new Firewall(config({ InboundDefault: "reject", OutboundDefault: "reject" }), SELF);
    const { a, sent, tun } = adapter(fw);
    for (let i = 0; i < 50; i++)
      a.fromNetwork(STRANGER.publicKey, tcp(STRANGER.address, SELF.address, 40000 + i, 22), T0);
    expect(sent).toHaveLength(20); // the burst
    expect(sent[0]!.dest.equals(STRANGER.publicKey)).toBe(true);
    expect([sent[0]!.packet[40], sent[0]!.packet[41]]).toEqual([1, 1]);
    expect(sent[0]!.packet.subarray(8, 24).equals(SELF.address)).toBe(true);
    expect(fw.view().rejectsRateLimited).toBe(30);
    expect(a.stats().firewallInDropped).toBe(50);
    expect(tun).toHaveLength(0);
    // An ICMPv6 error is never answered with another.
    a.fromNetwork(STRANGER.publicKey, icmp(STRANGER.address, SELF.address, 1), T0 + 60_000);
    expect(sent).toHaveLength(20);
    // Outbound: learn the key first (an inbound packet does), then the reject goes to the TUN.
    a.fromTun(tcp(SELF.address, STRANGER.address, 5000, 80), T0 + 60_000);
    expect(tun).toHaveLength(1);
    expect(tun[0]!.subarray(8, 24).equals(STRANGER.address)).toBe(true);
    expect(tun[0]!.subarray(24, 40).equals(SELF.address)).toBe(true);
  });
});

// Cost of Planetd.Firewall on the IPv6 adapter's packet path: 100 rules per direction against none,
// in the same run, rounds interleaved (which goes first alternates), medians of each.
// Run: node bench/firewall.mjs [rounds]. It measures dist/ (rebuilt first when src/ is newer), the
// tsc output the daemon runs: vite-node's transform of the sources runs this code measurably slower.
// Time is this process's CPU time (process.cpuUsage), not the wall clock, so other load on a shared
// machine does not land in one side. Cases, 1400-byte TCP packets unless said:
//   - TUN→TUN: node A's adapter (outbound filter) → A's Sessions (seal) → B's Sessions (open) → B's
//     adapter (inbound filter) → B's TUN: the daemon's path without router and link. Established flow.
//   - adapter in / out, established: the adapter alone (no crypto) on a tracked flow.
//   - adapter in, rules scanned: packets of a protocol no rule tracks (GRE), dropped by the
//     default after every rule that can match was tried; nothing is tracked (the worst case).
// Nothing here asserts on time; the ratio is "100 rules throughput / no firewall throughput".

import { ensureBuilt } from "../bin/ensure-built.mjs";

ensureBuilt();
const { loadBox } = await import("../dist/crypto/box.js");
const { Identity } = await import("../dist/crypto/identity.js");
const { Sessions } = await import("../dist/overlay/sessions.js");
const { readFirewallConfig } = await import("../dist/tun/firewall-config.js");
const { Firewall } = await import("../dist/tun/firewall.js");
const { Ipv6Adapter } = await import("../dist/tun/ipv6.js");

const ROUNDS = Math.max(3, Number(process.argv[2] ?? 9));
const SIZE = 1400;

const self = Identity.generate();
const peer = Identity.generate();
const others = Array.from({ length: 40 }, () => Identity.generate());

function packet(src, dst, protocol, sport, dport) {
  const p = Buffer.alloc(SIZE);
  p[0] = 0x60;
  p.writeUInt16BE(SIZE - 40, 4);
  p[6] = protocol;
  p[7] = 64;
  src.copy(p, 8);
  dst.copy(p, 24);
  p.writeUInt16BE(sport, 40);
  p.writeUInt16BE(dport, 42);
  p[40 + 13] = 0x10; // ACK
  return p;
}

/** 100 rules per direction that the bench traffic does not match, then one that accepts it. */
function hundredRules() {
  const rules = [];
  for (let i = 0; rules.length < 99; i++) {
    const key = others[i % others.length].publicKey.toString("hex");
    switch (i % 4) {
      case 0:
        rules.push({ Action: "accept", PublicKeys: [key], Protocol: "tcp", Ports: String(1000 + i) });
        break;
      case 1:
        rules.push({ Action: "drop", Remote: [`20${(i % 10).toString(16)}:${i.toString(16)}::/32`] });
        break;
      case 2:
        rules.push({ Action: "reject", Protocol: "udp", Ports: `${2000 + i * 10}-${2005 + i * 10}` });
        break;
      default:
        rules.push({ Action: "accept", PublicKeys: [key], Protocol: "icmpv6", IcmpTypes: [128] });
    }
  }
  rules.push({
    Action: "accept",
    PublicKeys: [peer.publicKey.toString("hex")],
    Protocol: "tcp",
    Ports: "22",
  });
  const { firewall, errors } = readFirewallConfig({
    InboundDefault: "drop",
    OutboundDefault: "drop",
    Inbound: rules,
    Outbound: [...rules.slice(0, 99), { Action: "accept", Protocol: "tcp", Ports: "443" }],
  });
  if (errors.length > 0) throw new Error(errors.join("\n"));
  return firewall;
}

const box = loadBox();
let sink = 0;
const count = (p) => {
  sink += p.length;
};

/** An adapter with `rules` (a Planetd.Firewall config) or no firewall when undefined. */
function adapter(id, rules, core) {
  const a = new Ipv6Adapter(id, core, count, 65535);
  if (rules) a.firewall = new Firewall(rules, id);
  return a;
}

const inbound = packet(peer.address, self.address, 6, 40000, 22);
const outbound = packet(self.address, peer.address, 6, 40001, 443);
const gre = packet(peer.address, self.address, 47, 0, 0);
const now = Date.now();

/** A step function over a fresh setup; the first packets open the flows and learn the keys. */
const cases = {
  "TUN→TUN (seal+open), established": (withFirewall) => {
    // A = self sends to B = peer port 443: B's last inbound rule accepts that instead of port 22.
    const rules = withFirewall ? hundredRules() : undefined;
    if (rules) rules.Inbound[99] = { Action: "accept", Protocol: "tcp", Ports: ["443"] };
    const sessions = {};
    const adapters = {};
    for (const [name, id, other] of [
      ["a", self, "b"],
      ["b", peer, "a"],
    ]) {
      sessions[name] = new Sessions(
        id,
        {
          sendTraffic: (_dest, payload, t) => sessions[other].handle(id.publicKey, payload, t),
          deliver: (source, message, t) => adapters[name].fromNetwork(source, message.subarray(1), t),
        },
        box,
      );
      adapters[name] = adapter(id, rules, {
        sendIPv6: (dest, p, t) => sessions[name].send(dest, p, t, 1),
        sendOutOfBand: () => {},
      });
    }
    // Keys learnt both ways (as a first exchange would), sessions up.
    adapters.a.fromNetwork(peer.publicKey, packet(peer.address, self.address, 6, 443, 40001), now);
    adapters.b.fromNetwork(self.publicKey, packet(self.address, peer.address, 6, 40001, 443), now);
    for (let i = 0; i < 3; i++) adapters.a.fromTun(outbound, now + 1000);
    return () => adapters.a.fromTun(outbound, now + 1000);
  },
  "adapter in, established": (withFirewall) => {
    const a = adapter(self, withFirewall ? hundredRules() : undefined, {
      sendIPv6: () => {},
      sendOutOfBand: () => {},
    });
    return () => a.fromNetwork(peer.publicKey, inbound, now);
  },
  "adapter out, established": (withFirewall) => {
    const a = adapter(self, withFirewall ? hundredRules() : undefined, {
      sendIPv6: (_d, p) => count(p),
      sendOutOfBand: () => {},
    });
    a.fromNetwork(peer.publicKey, inbound, now);
    return () => a.fromTun(outbound, now);
  },
  "adapter in, rules scanned": (withFirewall) => {
    const a = adapter(self, withFirewall ? hundredRules() : undefined, {
      sendIPv6: () => {},
      sendOutOfBand: () => {},
    });
    return () => a.fromNetwork(peer.publicKey, gre, now);
  },
};
const COUNTS = {
  "TUN→TUN (seal+open), established": 20_000,
  "adapter in, established": 200_000,
  "adapter out, established": 200_000,
  "adapter in, rules scanned": 200_000,
};

/** Packets per CPU second through a fresh setup. */
function throughput(name, withFirewall) {
  const step = cases[name](withFirewall);
  const count = COUNTS[name];
  for (let i = 0; i < count / 10; i++) step();
  const start = process.cpuUsage();
  for (let i = 0; i < count; i++) step();
  const used = process.cpuUsage(start);
  return count / ((used.user + used.system) / 1e6);
}

const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const results = new Map();
for (let round = 0; round < ROUNDS; round++) {
  for (const name of Object.keys(cases)) {
    const order = round % 2 === 0 ? [false, true] : [true, false];
    for (const withFirewall of order) {
      const key = `${name}|${withFirewall}`;
      results.set(key, [...(results.get(key) ?? []), throughput(name, withFirewall)]);
    }
  }
}

console.log(
  `firewall on the IPv6 adapter path: 100 rules per direction vs none, ${SIZE}-byte packets, median of ${ROUNDS} interleaved rounds, per CPU second`,
);
console.log(
  `${"case".padEnd(36)} ${"none (pkt/s)".padStart(14)} ${"100 rules".padStart(14)} ${"ratio".padStart(7)}`,
);
for (const name of Object.keys(cases)) {
  const none = median(results.get(`${name}|false`));
  const fw = median(results.get(`${name}|true`));
  console.log(
    `${name.padEnd(36)} ${Math.round(none).toLocaleString("en").padStart(14)} ${Math.round(fw).toLocaleString("en").padStart(14)} ${(fw / none).toFixed(3).padStart(7)}`,
  );
}
if (sink < 0) console.log(sink);

import type { NetworkInterfaceInfo } from "node:os";
import { describe, expect, it } from "vitest";
import { Identity } from "../src/crypto/identity.js";
import {
  type MulticastInterfaceConfig,
  beaconDialUri,
  compileMulticastConfig,
  eligibleInterfaces,
  encodeBeacon,
  encodeUdpBeacon,
  parseIPv6,
} from "../src/overlay/links/multicast.js";
import { parsePeerUri } from "../src/overlay/links/uri.js";

const B = Identity.fromSeed(Buffer.from(Array.from({ length: 32 }, (_, i) => i + 1)));
const B_HEX = "79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664";

function addr(address: string, family: "IPv4" | "IPv6" = "IPv6"): NetworkInterfaceInfo {
  return family === "IPv6"
    ? {
        address,
        family,
        netmask: "ffff:ffff:ffff:ffff::",
        mac: "00:00:00:00:00:00",
        internal: false,
        cidr: null,
        scopeid: 2,
      }
    : { address, family, netmask: "255.0.0.0", mac: "00:00:00:00:00:00", internal: false, cidr: null };
}

const entry = (Regex: string, over: Partial<MulticastInterfaceConfig> = {}): MulticastInterfaceConfig => ({
  Regex,
  Beacon: true,
  Listen: true,
  Port: 0,
  Priority: 0,
  ...over,
});

describe("eligibleInterfaces", () => {
  const ifaces = {
    lo: [addr("127.0.0.1", "IPv4"), addr("::1")],
    eth0: [addr("10.0.0.2", "IPv4"), addr("2001:db8::2"), addr("fe80::1"), addr("fe80::99")],
    eth1: [addr("10.1.0.2", "IPv4")],
    wg0: [addr("fe80::5")],
    veth7: [addr("fe80::7")],
    down0: [addr("fe80::8")],
  };
  const flags = (name: string) => ({ wg0: 0x1 | 0x10 | 0x1000, down0: 0x1000 })[name] ?? 0x1 | 0x1000;

  it("keeps up, multicast, non-p2p interfaces with a link-local address matching a regex", () => {
    const got = eligibleInterfaces(ifaces, [entry(".*")], flags);
    expect(got.map((g) => [g.name, g.linkLocal])).toEqual([
      ["eth0", "fe80::1"],
      ["veth7", "fe80::7"],
    ]);
  });

  it("uses the first matching entry and skips entries with neither Beacon nor Listen", () => {
    const cfg = [
      entry("^veth", { Beacon: false, Listen: false }),
      entry("eth", { Port: 12400, Priority: 4, Beacon: false }),
    ];
    const got = eligibleInterfaces(ifaces, cfg, flags);
    expect(got).toEqual([
      { name: "eth0", linkLocal: "fe80::1", beacon: false, listen: true, port: 12400, priority: 4 },
    ]);
  });

  it("treats unknown flags as eligible and strips zones", () => {
    const got = eligibleInterfaces({ x: [addr("fe80::a%x")] }, [entry("x")]);
    expect(got[0]!.linkLocal).toBe("fe80::a");
  });

  it("reports a bad regex with its position in the config", () => {
    expect(() => compileMulticastConfig([entry(".*"), entry("(")])).toThrow(
      /^MulticastInterfaces\[1\]\.Regex "\("/,
    );
  });
});

describe("beacons", () => {
  it("encodes the spec's observed beacon", () => {
    const beacon = encodeBeacon(B.publicKey, "fe80::2816:78ff:fe0d:246d", 12400);
    expect(beacon.toString("hex")).toBe(`${B_HEX}fe80000000000000281678fffe0d246d3070`);
  });

  const iface = { name: "yspecvA", linkLocal: "fe80::1", beacon: true, listen: true, port: 0, priority: 2 };
  const ours = Identity.generate().publicKey;
  const beacon = encodeBeacon(B.publicKey, "fe80::2816:78ff:fe0d:246d", 12400);

  it("dials a valid beacon over TLS with the key pinned and the interface priority", () => {
    const uri = beaconDialUri(beacon, "fe80::2816:78ff:fe0d:246d%yspecvA", ours, iface);
    expect(uri).toBe(`tls://[fe80::2816:78ff:fe0d:246d%yspecvA]:12400?key=${B_HEX}&priority=2`);
    const parsed = parsePeerUri(uri!);
    expect(parsed.keys[0]!.equals(B.publicKey)).toBe(true);
    expect(parsed.base).toBe("tls://[fe80::2816:78ff:fe0d:246d%yspecvA]:12400");
  });

  it("ignores our own beacons, spoofed addresses, non-Listen interfaces and short datagrams", () => {
    expect(beaconDialUri(beacon, "fe80::2816:78ff:fe0d:246d", B.publicKey, iface)).toBeNull();
    expect(beaconDialUri(beacon, "fe80::1%yspecvA", ours, iface)).toBeNull();
    expect(beaconDialUri(beacon, "fe80::2816:78ff:fe0d:246d", ours, { ...iface, listen: false })).toBeNull();
    expect(beaconDialUri(beacon, "fe80::2816:78ff:fe0d:246d", ours, undefined)).toBeNull();
    expect(beaconDialUri(beacon.subarray(0, 33), "fe80::2816:78ff:fe0d:246d", ours, iface)).toBeNull();
    expect(beaconDialUri(beacon, "10.0.0.1", ours, iface)).toBeNull();
  });

  it("a udp beacon (planetd's) is a udp:// dial only for a node that announces udp:// itself", () => {
    const udp = encodeUdpBeacon(B.publicKey, "fe80::2816:78ff:fe0d:246d", 12401);
    expect(udp.toString("hex")).toBe(
      `${B_HEX}fe80000000000000281678fffe0d246d${Buffer.from("pdU1").toString("hex")}3071`,
    );
    const src = "fe80::2816:78ff:fe0d:246d%yspecvA";
    expect(beaconDialUri(udp, src, ours, iface, true)).toBe(
      `udp://[fe80::2816:78ff:fe0d:246d%yspecvA]:12401?key=${B_HEX}&priority=2`,
    );
    expect(beaconDialUri(udp, src, ours, iface, false)).toBeNull();
    expect(beaconDialUri(udp, "fe80::1%yspecvA", ours, iface, true)).toBeNull();
    // The standard beacon still dials TLS for a udp-announcing node (Yggdrasil only sends that one).
    expect(beaconDialUri(beacon, src, ours, iface, true)).toMatch(/^tls:/);
  });

  it("Yggdrasil 0.4.7's reading of a udp beacon is no IPv6 address (bytes 32..n-2: 20 of them)", () => {
    // Go takes net.IP(bs[32:n-2]) and the port from the last two bytes: an IP of 20 bytes has no
    // text form, so the dial address does not resolve and the datagram is dropped.
    const udp = encodeUdpBeacon(B.publicKey, "fe80::2816:78ff:fe0d:246d", 12401);
    expect(udp.length - 2 - 32).toBe(20);
    // planetd's own reading before the udp beacon (a 50-byte beacon only) ignores it too.
    expect(beaconDialUri(udp, "fe80::2816:78ff:fe0d:246d%yspecvA", ours, iface)).toBeNull();
  });

  it("parses IPv6 text to bytes", () => {
    expect(parseIPv6("::1").toString("hex")).toBe(`${"00".repeat(15)}01`);
    expect(parseIPv6("fe80::").toString("hex")).toBe(`fe80${"00".repeat(14)}`);
    expect(parseIPv6("1:2:3:4:5:6:7:8").toString("hex")).toBe("00010002000300040005000600070008");
  });
});

// planReload: what a reload changes and what refuses it, compared key by key.
import { describe, expect, it } from "vitest";
import { type PlanetConfig, generateConfig } from "../src/config/config.js";
import { describePlan, planReload } from "../src/daemon/reload.js";

function base(): PlanetConfig {
  const c = generateConfig();
  c.Peers = ["tcp://[fd00::1]:1", "tls://[fd00::2]:2"];
  c.InterfacePeers = { eth0: ["tcp://[fe80::1%eth0]:3"] };
  c.Listen = ["tcp://[::]:4"];
  c.AllowedPublicKeys = ["AA".repeat(32)];
  return c;
}

describe("planReload", () => {
  it("an identical config changes nothing", () => {
    const c = base();
    const plan = planReload(c, structuredClone(c));
    expect(plan.needsRestart).toEqual([]);
    expect(describePlan(plan)).toBe("nothing changed");
  });

  it("peers are diffed by URI and interface; order and key case of lists do not matter", () => {
    const c = base();
    const n = structuredClone(c);
    n.Peers = ["tls://[fd00::2]:2", "tcp://[fd00::9]:9"];
    n.InterfacePeers = { eth1: ["tcp://[fe80::1%eth0]:3"] };
    n.Listen = [...c.Listen];
    n.AllowedPublicKeys = ["aa".repeat(32)];
    const plan = planReload(c, n);
    expect(plan.peersAdded).toEqual([
      { uri: "tcp://[fd00::9]:9", iface: undefined },
      { uri: "tcp://[fe80::1%eth0]:3", iface: "eth1" },
    ]);
    expect(plan.peersRemoved).toEqual([
      { uri: "tcp://[fd00::1]:1", iface: undefined },
      { uri: "tcp://[fe80::1%eth0]:3", iface: "eth0" },
    ]);
    expect(plan.listen).toBeUndefined();
    expect(plan.allowedPublicKeys).toBeUndefined();
    expect(describePlan(plan)).toBe("Peers +2 -2");
  });

  it("Listen, AllowedPublicKeys, multicast, NodeInfo and the log level are applied in place", () => {
    const c = base();
    const n = structuredClone(c);
    n.Listen.push("udp://[::]:5");
    n.AllowedPublicKeys = [];
    n.MulticastInterfaces = [];
    n.NodeInfoPrivacy = !c.NodeInfoPrivacy;
    n.Planetd.LogLevel = "debug";
    const plan = planReload(c, n);
    expect(plan.needsRestart).toEqual([]);
    expect(plan.listen).toEqual(["tcp://[::]:4", "udp://[::]:5"]);
    expect(plan.allowedPublicKeys).toEqual([]);
    expect(plan.multicast).toEqual([]);
    expect(plan.nodeInfo?.privacy).toBe(n.NodeInfoPrivacy);
    expect(describePlan(plan)).toBe(
      "Listen, AllowedPublicKeys, MulticastInterfaces, NodeInfo, LogLevel debug",
    );
  });

  it("the key, the TUN, the admin and metrics endpoints need a restart", () => {
    const c = base();
    const n = structuredClone(c);
    n.PrivateKey = generateConfig().PrivateKey;
    n.IfName = "pd9";
    n.Planetd.MetricsListen = "127.0.0.1:9";
    expect(planReload(c, n).needsRestart).toEqual(["PrivateKey", "IfName", "Planetd.MetricsListen"]);
  });

  it("Planetd.Firewall: rules change in place, MaxFlows needs a restart", () => {
    const c = base();
    const fw = {
      InboundDefault: "drop" as const,
      OutboundDefault: "accept" as const,
      MaxFlows: 1024,
      Inbound: [],
      Outbound: [],
    };
    const n = structuredClone(c);
    n.Planetd.Firewall = fw;
    expect(describePlan(planReload(c, n))).toBe("Firewall");
    const m = structuredClone(n);
    m.Planetd.Firewall = { ...fw, Inbound: [{ Action: "accept", Protocol: "tcp", Ports: ["22"] }] };
    expect(planReload(n, m).firewall?.config?.Inbound).toHaveLength(1);
    expect(planReload(n, structuredClone(n)).firewall).toBeUndefined();
    m.Planetd.Firewall = { ...fw, MaxFlows: 2048 };
    expect(planReload(n, m).needsRestart).toEqual(["Planetd.Firewall.MaxFlows"]);
    expect(describePlan(planReload(n, c))).toBe("Firewall off");
  });
});

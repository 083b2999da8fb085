// The firewall in whole Nodes over in-memory links: the adapter applies it, a reload swaps the rules
// (or is refused in one line, changing nothing), and the views and metrics read its counters.
import { afterEach, describe, expect, it } from "vitest";
import { createMetricsRegistry } from "../src/admin/metrics-registry.js";
import type { PlanetConfig } from "../src/config/config.js";
import { ReloadRefused } from "../src/daemon/reload.js";
import { metricsSnapshotFor } from "../src/daemon/views.js";
import { type FirewallConfig, readFirewallConfig } from "../src/tun/firewall-config.js";
import { connect, deliver, ipv6Packet, startMember, stopAll } from "./support/nodes.js";
import { parsePrometheus } from "./support/prometheus.js";

afterEach(stopAll);

function udp(src: Buffer, dst: Buffer, dport: number): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(40000, 0);
  h.writeUInt16BE(dport, 2);
  h.writeUInt16BE(12, 4);
  return ipv6Packet(src, dst, h, 17);
}

function rules(value: unknown): FirewallConfig {
  const r = readFirewallConfig(value);
  expect(r.errors).toEqual([]);
  return r.firewall!;
}

describe("firewall in a Node", () => {
  it("filters what arrives, reloads new rules, refuses bad ones", async () => {
    const b = await startMember();
    const firewall = rules({
      InboundDefault: "drop",
      Inbound: [
        {
          Name: "echo",
          Action: "accept",
          Protocol: "udp",
          Ports: "7",
          PublicKeys: [b.node.publicKey.toString("hex")],
        },
      ],
    });
    const a = await startMember({ Planetd: { MetricsListen: "none", LogLevel: "info", Firewall: firewall } });
    connect(a, b);
    const from = b.node.identity.address;
    const to = a.node.identity.address;
    await deliver(b, a, udp(from, to, 7));
    // Port 8 is dropped: it never comes out, and the default policy counts it.
    await expect(deliver(b, a, udp(from, to, 8), 800)).rejects.toThrow(/did not arrive/);
    const view = a.node.firewall!.view();
    expect(view.inbound.rules[0]!.hits).toBeGreaterThanOrEqual(1);
    expect(view.inbound.defaultHits).toBeGreaterThanOrEqual(1);
    const snapshot = metricsSnapshotFor(a.node);
    expect(snapshot.firewall?.inbound.defaultHits).toBe(view.inbound.defaultHits);
    expect(snapshot.droppedPackets.ipv6_firewallInDropped).toBeGreaterThanOrEqual(1);
    const { samples } = parsePrometheus(await createMetricsRegistry(() => snapshot).metrics());
    const hits = (rule: string) =>
      samples.find((x) => x.name === "planetd_firewall_rule_hits_total" && x.labels.rule === rule);
    expect(hits("0")?.labels).toEqual({ direction: "inbound", rule: "0", name: "echo", action: "accept" });
    expect(hits("0")?.value).toBe(view.inbound.rules[0]!.hits);
    expect(hits("default")?.value).toBe(view.inbound.defaultHits);
    expect(samples.find((x) => x.name === "planetd_firewall_flows")?.value).toBe(view.flows);

    const bad = rules({ InboundDefault: "drop", Inbound: [{ Action: "accept", Local: ["300:1:2:3::/64"] }] });
    // The running config (private to Node): reloads below change only its firewall.
    const base = (a.node as unknown as { config: PlanetConfig }).config;
    await expect(a.node.reload({ ...base, Planetd: { ...base.Planetd, Firewall: bad } })).rejects.toThrow(
      ReloadRefused,
    );
    await expect(deliver(b, a, udp(from, to, 8), 500)).rejects.toThrow(/did not arrive/);

    const open8 = rules({
      InboundDefault: "drop",
      Inbound: [{ Action: "accept", Protocol: "udp", Ports: "7-8" }],
    });
    expect(await a.node.reload({ ...base, Planetd: { ...base.Planetd, Firewall: open8 } })).toBe("Firewall");
    await deliver(b, a, udp(from, to, 8));
    expect(a.node.firewall!.view().inbound.rules[0]!.hits).toBeGreaterThanOrEqual(1);
    expect(await a.node.reload({ ...base, Planetd: { ...base.Planetd, Firewall: undefined } })).toBe(
      "Firewall off",
    );
    expect(a.node.firewall).toBeUndefined();
    await deliver(b, a, udp(from, to, 9));
  });

  // A node without Planetd.Firewall loads the firewall's modules only at the reload that sets one.
  it("takes a first firewall at a reload, after refusing bad rules", async () => {
    const b = await startMember();
    const a = await startMember();
    connect(a, b);
    const from = b.node.identity.address;
    const to = a.node.identity.address;
    await deliver(b, a, udp(from, to, 8));
    expect(a.node.firewall).toBeUndefined();
    const base = (a.node as unknown as { config: PlanetConfig }).config;
    const bad = rules({ InboundDefault: "drop", Inbound: [{ Action: "accept", Local: ["300:1:2:3::/64"] }] });
    await expect(a.node.reload({ ...base, Planetd: { ...base.Planetd, Firewall: bad } })).rejects.toThrow(
      ReloadRefused,
    );
    expect(a.node.firewall).toBeUndefined();
    await deliver(b, a, udp(from, to, 8));
    const only7 = rules({
      InboundDefault: "drop",
      Inbound: [{ Action: "accept", Protocol: "udp", Ports: "7" }],
    });
    expect(await a.node.reload({ ...base, Planetd: { ...base.Planetd, Firewall: only7 } })).toBe("Firewall");
    await deliver(b, a, udp(from, to, 7));
    await expect(deliver(b, a, udp(from, to, 8), 800)).rejects.toThrow(/did not arrive/);
    expect(a.node.firewall!.view().inbound.defaultHits).toBeGreaterThanOrEqual(1);
  });
});

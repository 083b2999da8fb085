// The /metrics endpoint of a running Node, parsed as Prometheus text: counters move with traffic.
import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { connect, deliver, ipv6Packet, startMember, stopAll } from "./support/nodes.js";
import { type Sample, parsePrometheus } from "./support/prometheus.js";

afterEach(stopAll);

async function scrape(address: string): Promise<Sample[]> {
  const res = await fetch(address);
  expect(res.status).toBe(200);
  return parsePrometheus(await res.text()).samples;
}

function sum(samples: Sample[], name: string): number {
  return samples.filter((s) => s.name === name).reduce((n, s) => n + s.value, 0);
}

describe("metrics of a running node", () => {
  it("link bytes, frames and sessions rise when packets flow", async () => {
    const a = await startMember({ Planetd: { MetricsListen: "127.0.0.1:0", LogLevel: "info" } });
    const b = await startMember();
    connect(a, b);
    const idle = await scrape(a.node.metricsAddress);
    expect(sum(idle, "planetd_peers")).toBe(1);
    for (let i = 0; i < 20; i++) {
      await deliver(a, b, ipv6Packet(a.node.identity.address, b.node.identity.address, randomBytes(1000)));
    }
    const busy = await scrape(a.node.metricsAddress);
    expect(sum(busy, "planetd_link_sent_bytes_total")).toBeGreaterThan(
      sum(idle, "planetd_link_sent_bytes_total") + 20 * 1000,
    );
    expect(sum(busy, "planetd_link_sent_packets_total")).toBeGreaterThanOrEqual(
      sum(idle, "planetd_link_sent_packets_total") + 20,
    );
    expect(sum(busy, "planetd_sessions")).toBe(1);
    expect(busy.some((s) => s.name === "nodejs_eventloop_lag_seconds")).toBe(true);
  });
});

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type MetricsServer, type MetricsSnapshot, startMetrics } from "../src/admin/metrics.js";
import { keyA, keyB, keyC } from "./admin-fake.js";
import { type Sample, parsePrometheus } from "./support/prometheus.js";

const find = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
  samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));

describe("Prometheus metrics", () => {
  const snapshot: MetricsSnapshot = {
    peers: 2,
    links: [
      { key: keyB, port: 1, transport: "tcp", bytesIn: 100, bytesOut: 200, packetsIn: 3, packetsOut: 4 },
      {
        key: keyC,
        port: 2,
        transport: "udp",
        bytesIn: 5,
        bytesOut: 6,
        packetsIn: 1,
        packetsOut: 1,
        punched: true,
      },
    ],
    sessions: 1,
    dhtEntries: 4,
    pathEntries: 2,
    treeRoot: keyA,
    treeDepth: 2,
    droppedPackets: { queue_full: 1 },
    handshakeFailures: 0,
    forwardedFrames: 7,
    forwardedBytes: 7000,
    nat: { attempts: 3, successes: 1, failures: 1, skipped: 1, punchedLinks: 1 },
  };
  let server: MetricsServer;
  let scrapes = 0;
  const quiet = { info: () => {}, warn: () => {}, debug: () => {} };
  beforeAll(async () => {
    server = await startMetrics(
      "127.0.0.1:0",
      () => {
        scrapes++;
        return snapshot;
      },
      quiet,
    );
  });
  afterAll(() => server.close());

  const scrape = async () => {
    const res = await fetch(server.address);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/plain");
    return parsePrometheus(await res.text());
  };

  it("serves the node's gauges, per-link counters and the event-loop lag", async () => {
    expect(server.address).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const { samples, types } = await scrape();
    expect(find(samples, "planetd_peers")[0].value).toBe(2);
    expect(find(samples, "planetd_sessions")[0].value).toBe(1);
    expect(find(samples, "planetd_dht_entries")[0].value).toBe(4);
    expect(find(samples, "planetd_path_entries")[0].value).toBe(2);
    expect(find(samples, "planetd_tree_depth")[0].value).toBe(2);
    expect(find(samples, "planetd_tree_root_info")[0].labels.root).toBe(keyA.toString("hex"));
    expect(find(samples, "planetd_links", { transport: "tcp" })[0].value).toBe(1);
    expect(find(samples, "planetd_links", { transport: "udp" })[0].value).toBe(1);
    const peerB = keyB.toString("hex").slice(0, 16);
    expect(find(samples, "planetd_link_received_bytes_total", { peer: peerB, port: "1" })[0].value).toBe(100);
    expect(find(samples, "planetd_link_sent_packets_total", { peer: peerB, port: "1" })[0].value).toBe(4);
    expect(find(samples, "planetd_dropped_packets_total", { reason: "queue_full" })[0].value).toBe(1);
    expect(find(samples, "planetd_forwarded_frames_total")[0].value).toBe(7);
    expect(find(samples, "planetd_forwarded_bytes_total")[0].value).toBe(7000);
    expect(find(samples, "planetd_nat_punch_attempts_total")[0].value).toBe(3);
    expect(find(samples, "planetd_nat_punch_successes_total")[0].value).toBe(1);
    expect(find(samples, "planetd_nat_punch_skipped_total")[0].value).toBe(1);
    expect(find(samples, "planetd_nat_punched_links")[0].value).toBe(1);
    const peerC = keyC.toString("hex").slice(0, 16);
    expect(find(samples, "planetd_nat_punched_link").map((s) => s.labels)).toEqual([
      { peer: peerC, port: "2" },
    ]);
    expect(types.get("planetd_link_received_bytes_total")).toBe("counter");
    expect(types.get("planetd_peers")).toBe("gauge");
    expect(find(samples, "nodejs_eventloop_lag_seconds")).toHaveLength(1);
  });

  it("counters move when the snapshot changes; gone links disappear", async () => {
    const before = scrapes;
    snapshot.links[0].bytesIn += 1500;
    snapshot.links[0].packetsIn += 1;
    snapshot.links.pop();
    snapshot.handshakeFailures = 3;
    snapshot.droppedPackets.no_route = 2;
    const { samples } = await scrape();
    expect(scrapes).toBe(before + 1);
    const peerB = keyB.toString("hex").slice(0, 16);
    expect(find(samples, "planetd_link_received_bytes_total", { peer: peerB })[0].value).toBe(1600);
    expect(find(samples, "planetd_link_received_packets_total", { peer: peerB })[0].value).toBe(4);
    expect(find(samples, "planetd_link_received_bytes_total")).toHaveLength(1);
    expect(find(samples, "planetd_links", { transport: "udp" })).toHaveLength(0);
    expect(find(samples, "planetd_handshake_failures_total")[0].value).toBe(3);
    expect(find(samples, "planetd_dropped_packets_total", { reason: "no_route" })[0].value).toBe(2);
  });

  it("answers 404 elsewhere and refuses bad listen addresses", async () => {
    expect((await fetch(server.address.replace("/metrics", "/"))).status).toBe(404);
    await expect(startMetrics("nonsense", () => snapshot, quiet)).rejects.toThrow(/is not host:port/);
    expect((await startMetrics("none", () => snapshot, quiet)).enabled).toBe(false);
  });
});

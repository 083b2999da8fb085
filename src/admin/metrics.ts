// Opt-in Prometheus endpoint. The data path only bumps plain numbers; everything here is read from
// one snapshot taken per scrape, so metrics cost nothing between scrapes.
import type net from "node:net";
import type { Registry } from "prom-client";
import type { UdpSocketTotals } from "../overlay/links/udp-native.js";
import type { UdpRefusalTotals } from "../overlay/links/udp-refusals.js";
import type { FirewallView } from "../tun/firewall.js";
import { systemErrorText } from "../util/system-error.js";
import type { AdminLogger } from "./server.js";

export interface LinkMetrics {
  key: Buffer;
  port: number;
  /** "tcp", "tls", "unix", "udp", … */
  transport: string;
  bytesIn: number;
  bytesOut: number;
  packetsIn: number;
  packetsOut: number;
  /** Opened by NAT traversal (hole punching). */
  punched?: boolean;
}

export interface MetricsSnapshot {
  peers: number;
  links: LinkMetrics[];
  sessions: number;
  dhtEntries: number;
  pathEntries: number;
  treeRoot: Buffer;
  /** Hops from the root (coords length); 0 at the root. */
  treeDepth: number;
  /** Cumulative dropped packets by reason, e.g. { queue_full: 3, no_route: 1 }. */
  droppedPackets: Record<string, number>;
  /** Cumulative failed link handshakes. */
  handshakeFailures: number;
  /** Traffic frames (and their bytes) this node relayed from one peer to another. */
  forwardedFrames?: number;
  forwardedBytes?: number;
  /** Cumulative inbound connections closed to keep the handshake table fair, by reason. */
  handshakeRefusals?: Record<string, number>;
  /** Planetd.Firewall's counters; undefined when no firewall is configured. */
  firewall?: FirewallView;
  /** NAT traversal's counters (src/overlay/nat.ts); undefined when Planetd.NatTraversal is false. */
  nat?: Record<string, number>;
  /** The native udp sockets' counters, summed (udp-native.ts udpSocketTotals). */
  udpSockets?: UdpSocketTotals;
  /** What the udp:// handshake and reset paths refused (udp-refusals.ts udpRefusalTotals). */
  udpRefusals?: UdpRefusalTotals;
  /** Flushes that found the end-of-input list full (src/util/end-of-input.ts endOfInputOverflows). */
  endOfInputOverflows?: number;
  /** Session traffic sealed and opened, by cipher (box, chacha20-poly1305: src/overlay/sessions/aead.ts). */
  sessionPackets?: { sealed: Record<string, number>; opened: Record<string, number> };
}

export interface MetricsServer {
  enabled: boolean;
  /** `http://host:port/metrics` ("" when disabled). */
  address: string;
  /** The registry /metrics serves; absent when disabled. */
  registry?: Registry;
  close(): Promise<void>;
}

const PEER_LABEL_HEX = 16;
function parseMetricsListen(listen: string): { host: string; port: number } | null {
  const value = listen.trim();
  if (value === "" || value === "none") return null;
  const hostPort = value.replace(/^(https?|tcp):\/\//i, "").replace(/\/(metrics)?$/, "");
  const match = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(hostPort);
  if (!match || Number(match[3]) > 65535) {
    throw new Error(`metrics: listen address "${listen}" is not host:port (e.g. 127.0.0.1:9101)`);
  }
  return { host: match[1] ?? (match[2] || "127.0.0.1"), port: Number(match[3]) };
}

/** Serves /metrics on `listen` (host:port, http://host:port or tcp://host:port; none/"" disables). */
export async function startMetrics(
  listen: string,
  collect: () => MetricsSnapshot,
  logger: AdminLogger,
): Promise<MetricsServer> {
  const endpoint = parseMetricsListen(listen);
  if (!endpoint) return { enabled: false, address: "", close: async () => {} };
  // Loaded here, not at the top: a daemon without MetricsListen never pays for http or prom-client.
  const [http, { createMetricsRegistry }] = await Promise.all([
    import("node:http"),
    import("./metrics-registry.js"),
  ]);
  let snapshot: MetricsSnapshot | undefined;
  const registry = createMetricsRegistry(() => snapshot);

  const server = http.createServer((req, res) => {
    if (req.method !== "GET" || (req.url ?? "").split("?")[0] !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found: try /metrics\n");
      return;
    }
    try {
      snapshot = collect();
    } catch (err) {
      logger.warn(`metrics: collecting the snapshot failed: ${(err as Error).message}`);
      snapshot = undefined;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { "content-type": registry.contentType }).end(text),
      (err: Error) => res.writeHead(500, { "content-type": "text/plain" }).end(`${err.message}\n`),
    );
  });
  server.requestTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err) =>
      reject(
        new Error(`metrics: MetricsListen ${JSON.stringify(listen)}: cannot bind: ${systemErrorText(err)}`),
      ),
    );
    server.listen(endpoint.port, endpoint.host, () => resolve());
  });
  const bound = server.address() as net.AddressInfo;
  const host = bound.family === "IPv6" ? `[${bound.address}]` : bound.address;
  const address = `http://${host}:${bound.port}/metrics`;
  if (!(endpoint.host === "localhost" || endpoint.host === "::1" || endpoint.host.startsWith("127."))) {
    logger.warn(`metrics: ${address} is not on loopback`);
  }
  // After listen, an accept failure (e.g. EMFILE) is emitted here; without a listener it would kill the daemon.
  server.on("error", (err) => logger.warn(`metrics: ${err.message}`));
  logger.info(`metrics listening on ${address}`);
  return {
    enabled: true,
    address,
    registry,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

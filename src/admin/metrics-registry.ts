// The Prometheus registry behind /metrics. Loaded only when MetricsListen is set: prom-client and its
// default collectors (an event-loop-delay monitor among them) cost an idle daemon memory and wakeups.
import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";
import type { LinkMetrics, MetricsSnapshot } from "./metrics.js";

const PEER_LABEL_HEX = 16;

/** Builds a registry whose metrics read `current()` at scrape time. */
export function createMetricsRegistry(current: () => MetricsSnapshot | undefined): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const gauge = (name: string, help: string, read: (s: MetricsSnapshot) => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        const s = current();
        if (s) this.set(read(s));
      },
    });
  gauge("planetd_peers", "Directly connected peers", (s) => s.peers);
  gauge("planetd_sessions", "End-to-end encrypted sessions", (s) => s.sessions);
  gauge("planetd_dht_entries", "DHT table size", (s) => s.dhtEntries);
  gauge("planetd_path_entries", "Pathfinder table size", (s) => s.pathEntries);
  gauge("planetd_tree_depth", "Hops from the spanning-tree root", (s) => s.treeDepth);

  new Gauge({
    name: "planetd_tree_root_info",
    help: "The spanning-tree root this node follows (label root = its key)",
    labelNames: ["root"],
    registers: [registry],
    collect() {
      const s = current();
      this.reset();
      if (s) this.set({ root: s.treeRoot.toString("hex") }, 1);
    },
  });
  new Gauge({
    name: "planetd_links",
    help: "Open links by transport",
    labelNames: ["transport"],
    registers: [registry],
    collect() {
      const s = current();
      this.reset();
      const counts = new Map<string, number>();
      for (const link of s?.links ?? []) counts.set(link.transport, (counts.get(link.transport) ?? 0) + 1);
      for (const [transport, count] of counts) this.set({ transport }, count);
    },
  });

  const linkCounter = (name: string, help: string, read: (l: LinkMetrics) => number) =>
    new Counter({
      name,
      help,
      labelNames: ["peer", "port", "transport"],
      registers: [registry],
      collect() {
        // Links come and go: rebuild the label sets from the snapshot at every scrape.
        this.reset();
        for (const link of current()?.links ?? []) {
          const labels = {
            peer: link.key.toString("hex").slice(0, PEER_LABEL_HEX),
            port: String(link.port),
            transport: link.transport,
          };
          this.inc(labels, Math.max(0, read(link)));
        }
      },
    });
  linkCounter("planetd_link_received_bytes_total", "Bytes received on a link", (l) => l.bytesIn);
  linkCounter("planetd_link_sent_bytes_total", "Bytes sent on a link", (l) => l.bytesOut);
  linkCounter("planetd_link_received_packets_total", "Frames received on a link", (l) => l.packetsIn);
  linkCounter("planetd_link_sent_packets_total", "Frames sent on a link", (l) => l.packetsOut);

  const reasonCounter = (name: string, help: string, read: (s: MetricsSnapshot) => Record<string, number>) =>
    new Counter({
      name,
      help,
      labelNames: ["reason"],
      registers: [registry],
      collect() {
        this.reset();
        const s = current();
        for (const [reason, count] of Object.entries(s ? read(s) : {}))
          this.inc({ reason }, Math.max(0, count));
      },
    });
  reasonCounter("planetd_dropped_packets_total", "Packets dropped, by reason", (s) => s.droppedPackets);
  const nodeCounter = (name: string, help: string, read: (s: MetricsSnapshot) => number | undefined) =>
    snapshotCounter(registry, current, name, help, read);
  nodeCounter(
    "planetd_forwarded_frames_total",
    "Traffic frames relayed from one peer to another",
    (s) => s.forwardedFrames,
  );
  nodeCounter(
    "planetd_forwarded_bytes_total",
    "Bytes of traffic frames relayed from one peer to another",
    (s) => s.forwardedBytes,
  );
  new Counter({
    name: "planetd_handshake_failures_total",
    help: "Link handshakes that failed",
    registers: [registry],
    collect() {
      this.reset();
      const s = current();
      if (s) this.inc(Math.max(0, s.handshakeFailures));
    },
  });
  reasonCounter(
    "planetd_handshake_refused_total",
    "Inbound connections refused or closed before their handshake, by reason (source_limit, table_full, evicted, silent)",
    (s) => s.handshakeRefusals ?? {},
  );
  addFirewallMetrics(registry, current);
  addNatMetrics(registry, current);
  addUdpSocketMetrics(registry, current);
  addUdpRefusalMetrics(registry, current);
  snapshotCounter(
    registry,
    current,
    "planetd_end_of_input_overflows_total",
    "Flushes (a udp:// link's send, a stream link's slab, the TUN's write batch) that found the end-of-input list full (1024 writers) and went out on the next tick instead of at the end of the read that asked",
    (s) => s.endOfInputOverflows,
  );
  new Counter({
    name: "planetd_session_packets_total",
    help: "Session traffic sealed and opened, by cipher (box: NaCl as Yggdrasil; chacha20-poly1305: between planetd nodes)",
    labelNames: ["direction", "cipher"],
    registers: [registry],
    collect() {
      this.reset();
      const p = current()?.sessionPackets;
      if (!p) return;
      for (const [cipher, n] of Object.entries(p.sealed)) this.inc({ direction: "sealed", cipher }, n);
      for (const [cipher, n] of Object.entries(p.opened)) this.inc({ direction: "opened", cipher }, n);
    },
  });
  return registry;
}

/**
 * The native udp sockets' own counters (udp_send.c, udp_recv.c), summed over every socket this
 * process opened: what they dropped and why, the keys their tables refused, and what went through.
 */
function addUdpSocketMetrics(registry: Registry, current: () => MetricsSnapshot | undefined): void {
  const labelled = (
    name: string,
    help: string,
    label: string,
    read: (u: NonNullable<MetricsSnapshot["udpSockets"]>) => Record<string, number>,
  ) => snapshotLabelled(registry, current, name, help, label, (s) => s.udpSockets && read(s.udpSockets));
  labelled(
    "planetd_udp_socket_dropped_total",
    "Datagrams the native udp sockets dropped: send (queue full or the kernel refused), seal_failed, truncated (larger than a receive slot), open_failed (did not open under the link's key)",
    "reason",
    (u) => u.dropped,
  );
  labelled(
    "planetd_udp_socket_keys_refused_total",
    "Keys the native udp sockets' tables had no room for (the link seals or opens in JS instead), by direction",
    "direction",
    (u) => u.keysRefused,
  );
  labelled(
    "planetd_udp_socket_datagrams_total",
    "Datagrams the native udp sockets sent and opened, GSO sends and GRO buffers",
    "kind",
    (u) => ({ sent: u.sent, opened: u.opened, gso_messages: u.gsoMessages, gro_buffers: u.groBuffers }),
  );
  labelled(
    "planetd_udp_socket_receive_batches_total",
    "Receive batches the native udp sockets read, by path: job (a threadpool job) or inline (the main thread, when a read drained the socket)",
    "path",
    (u) => u.paths.reads,
  );
  labelled(
    "planetd_udp_socket_opened_total",
    "Datagrams the native udp sockets opened in place, by path: job or inline (main thread)",
    "path",
    (u) => u.paths.opened,
  );
  labelled(
    "planetd_udp_socket_send_batches_total",
    "Send buffers the native udp sockets sealed and sent, by path: job (a threadpool job) or inline (the main thread, a small flush with no job out)",
    "path",
    (u) => u.paths.sends,
  );
  labelled(
    "planetd_udp_icmp_hints_total",
    "ICMP errors the native udp sockets read from their error queues (IP_RECVERR), taken as hints only, by outcome: received, no_link (no link at that address), probed (its link probed and gave the peer a short deadline), repeated (that link was probing already), held_off (that link's last hint was ended by an authentic datagram less than its silence deadline ago: ignored, so a forger gets one short deadline per ~8 s), cancelled (an authentic datagram came: the peer lives), closed (silent through the short deadline)",
    "outcome",
    (u) => u.icmpHints,
  );
  snapshotCounter(
    registry,
    current,
    "planetd_udp_socket_frames_joined_total",
    "Traffic frames the native udp sockets handed over whole: all of a frame's fragment datagrams came in one read, in order, and were joined there (no reassembly in JS)",
    (s) => s.udpSockets?.framesJoined,
  );
  new Gauge({
    name: "planetd_udp_sockets",
    help: "Native udp sockets open now",
    registers: [registry],
    collect() {
      this.set(current()?.udpSockets?.sockets ?? 0);
    },
  });
}

/** What the udp:// receive path refused, stage by stage (udp-refusals.ts), native sockets or not. */
function addUdpRefusalMetrics(registry: Registry, current: () => MetricsSnapshot | undefined): void {
  snapshotLabelled(
    registry,
    current,
    "planetd_udp_resets_refused_total",
    "udp:// RESETs refused: send (withheld from a stray datagram naming a cookie that may be live), receive (naming a link without its reset token, ignored)",
    "direction",
    (s) => s.udpRefusals?.resetsRefused,
  );
  snapshotLabelled(
    registry,
    current,
    "planetd_udp_confirms_refused_total",
    "udp:// handshake CONFIRMs a listener refused, by reason: replayed (its link here was made and closed), stale (not a cookie this socket made for that address in this minute or the last), signature (does not verify under the key it names), not_allowed (admission refused the key: AllowedPublicKeys), malformed (metadata or ephemeral key)",
    "reason",
    (s) => s.udpRefusals?.confirmsRefused,
  );
  snapshotLabelled(
    registry,
    current,
    "planetd_udp_dial_answers_refused_total",
    "udp:// CHALLENGEs and ACCEPTs a dialer refused, by reason: unsolicited (not naming its dial's cookie, or an ACCEPT before any CHALLENGE), forged (an ACCEPT with another listener cookie or key, or a bad signature), not_allowed (a CHALLENGE from a key the key= pin or a punch's expected key refuses), malformed (metadata)",
    "reason",
    (s) => s.udpRefusals?.dialAnswersRefused,
  );
  snapshotLabelled(
    registry,
    current,
    "planetd_udp_stray_datagrams_total",
    "Datagrams a udp:// socket gave to no one, by reason: short (shorter than a header; hole punches not counted), type (no udp:// datagram type), size (an INIT or CONFIRM not 168 bytes), cookie (a link datagram, CLOSE or RESET naming no link of the socket)",
    "reason",
    (s) => s.udpRefusals?.strayDatagrams,
  );
  snapshotLabelled(
    registry,
    current,
    "planetd_udp_link_datagrams_refused_total",
    "Datagrams naming a udp:// link that it dropped: forged (did not open under its key: corrupted, or sent by whoever read the cookie), replayed (seen before or older than the replay window)",
    "reason",
    (s) => s.udpRefusals?.datagramsRefused,
  );
  snapshotLabelled(
    registry,
    current,
    "planetd_udp_reassembly_refused_total",
    "udp:// links' fragment reassembly, by reason: fragment (a fragment repeated, contradicting its frame, or for a finished frame; dropped), evicted (an incomplete frame pushed out by a newer one: 16 per link), abandoned (an incomplete frame given up after 4 repair requests)",
    "reason",
    (s) => s.udpRefusals?.reassemblyRefused,
  );
  snapshotCounter(
    registry,
    current,
    "planetd_udp_spent_cookies_evicted_total",
    "Closed udp:// links' cookies forgotten before their two minutes because 4096 were kept (a replayed CONFIRM for one gets through)",
    (s) => s.udpRefusals?.spentCookiesEvicted,
  );
}

/** A counter with one label whose values and counts are read from the snapshot at scrape time. */
function snapshotLabelled(
  registry: Registry,
  current: () => MetricsSnapshot | undefined,
  name: string,
  help: string,
  label: string,
  read: (s: MetricsSnapshot) => Record<string, number> | undefined,
): Counter {
  return new Counter({
    name,
    help,
    labelNames: [label],
    registers: [registry],
    collect() {
      this.reset();
      const s = current();
      const counts = s && read(s);
      if (!counts) return;
      for (const [value, n] of Object.entries(counts)) this.inc({ [label]: value }, n);
    },
  });
}

/** A counter without labels that reads one number from the snapshot at scrape time. */
function snapshotCounter(
  registry: Registry,
  current: () => MetricsSnapshot | undefined,
  name: string,
  help: string,
  read: (s: MetricsSnapshot) => number | undefined,
): Counter {
  return new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      const s = current();
      if (s) this.inc(Math.max(0, read(s) ?? 0));
    },
  });
}

/** NAT traversal: punch attempts, successes and failures, signalling, and punched links open now. */
function addNatMetrics(registry: Registry, current: () => MetricsSnapshot | undefined): void {
  const counter = (name: string, help: string, field: string) =>
    snapshotCounter(registry, current, name, help, (s) => s.nat?.[field]);
  counter("planetd_nat_punch_attempts_total", "Hole punches started towards a session peer", "attempts");
  counter("planetd_nat_punch_successes_total", "Hole punches that opened a direct udp:// link", "successes");
  counter("planetd_nat_punch_failures_total", "Hole punches that got no answer", "failures");
  counter(
    "planetd_nat_punch_skipped_total",
    "Hole punches not started: both sides' mappings are endpoint-dependent",
    "skipped",
  );
  counter("planetd_nat_offers_sent_total", "Candidate offers sent over sessions", "offersSent");
  counter("planetd_nat_answers_sent_total", "Candidate answers sent over sessions", "answersSent");
  counter(
    "planetd_nat_offers_ignored_total",
    "Offers ignored (backing off, no udp://, table full)",
    "offersIgnored",
  );
  counter("planetd_nat_table_full_total", "Destinations turned away by the full state table", "tableFull");
  new Gauge({
    name: "planetd_nat_punched_links",
    help: "udp:// links open now that hole punching made",
    registers: [registry],
    collect() {
      const nat = current()?.nat;
      this.set(nat?.punchedLinks ?? 0);
    },
  });
  new Gauge({
    name: "planetd_nat_punched_link",
    help: "1 for each link hole punching made (labels peer and port as on planetd_link_*)",
    labelNames: ["peer", "port"],
    registers: [registry],
    collect() {
      this.reset();
      for (const link of current()?.links ?? []) {
        if (link.punched)
          this.set({ peer: link.key.toString("hex").slice(0, PEER_LABEL_HEX), port: String(link.port) }, 1);
      }
    },
  });
}

/** Per-rule hit counters (the default policy as rule="default") and the flow table. */
function addFirewallMetrics(registry: Registry, current: () => MetricsSnapshot | undefined): void {
  new Counter({
    name: "planetd_firewall_rule_hits_total",
    help: "Packets a firewall rule (or the default policy) decided, by direction, rule index, name and action",
    labelNames: ["direction", "rule", "name", "action"],
    registers: [registry],
    collect() {
      this.reset();
      const fw = current()?.firewall;
      if (!fw) return;
      for (const [direction, d] of [
        ["inbound", fw.inbound],
        ["outbound", fw.outbound],
      ] as const) {
        for (const r of d.rules)
          this.inc({ direction, rule: String(r.index), name: r.name, action: r.action }, r.hits);
        this.inc({ direction, rule: "default", name: "default", action: d.default }, d.defaultHits);
      }
    },
  });
  new Counter({
    name: "planetd_firewall_established_total",
    help: "Packets of tracked flows (and related ICMPv6 errors) the firewall passed without its rules",
    labelNames: ["direction"],
    registers: [registry],
    collect() {
      this.reset();
      const fw = current()?.firewall;
      if (!fw) return;
      this.inc({ direction: "inbound" }, fw.inbound.established);
      this.inc({ direction: "outbound" }, fw.outbound.established);
    },
  });
  new Gauge({
    name: "planetd_firewall_flows",
    help: "Flows in the firewall's connection-tracking table",
    registers: [registry],
    collect() {
      const fw = current()?.firewall;
      this.set(fw ? fw.flows : 0);
    },
  });
  new Counter({
    name: "planetd_firewall_flows_removed_total",
    help: "Flows removed from the tracking table: expired, evicted (table full) or revoked (a reload no longer allows them)",
    labelNames: ["reason"],
    registers: [registry],
    collect() {
      this.reset();
      const fw = current()?.firewall;
      if (!fw) return;
      this.inc({ reason: "expired" }, fw.flowsExpired);
      this.inc({ reason: "evicted" }, fw.flowsEvicted);
      this.inc({ reason: "revoked" }, fw.flowsRevoked);
    },
  });
}

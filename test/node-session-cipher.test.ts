// Whole nodes in one process: two planetd ends seal their session with ChaCha20-Poly1305 once both
// announced it, through a planetd forwarder that never looks inside; an end started with
// PLANETD_SESSION_CIPHER=box (like a Yggdrasil node, it never announces) keeps NaCl box with them.
import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { formatResponse } from "../src/admin/format.js";
import { createMetricsRegistry } from "../src/admin/metrics-registry.js";
import { loadSessionAead } from "../src/crypto/session-aead.js";
import { adminViewFor, metricsSnapshotFor } from "../src/daemon/views.js";
import { type Member, connect, deliver, ipv6Packet, startMember, stopAll } from "./support/nodes.js";
import { parsePrometheus } from "./support/prometheus.js";

afterEach(stopAll);

async function boxOnlyMember(): Promise<Member> {
  const before = process.env.PLANETD_SESSION_CIPHER;
  process.env.PLANETD_SESSION_CIPHER = "box";
  try {
    return await startMember();
  } finally {
    if (before === undefined) Reflect.deleteProperty(process.env, "PLANETD_SESSION_CIPHER");
    else process.env.PLANETD_SESSION_CIPHER = before;
  }
}

/** Packets both ways until each has been delivered `rounds` times (bounded by deliver's timeout). */
async function exchange(x: Member, y: Member, rounds: number): Promise<void> {
  const ax = x.node.identity.address;
  const ay = y.node.identity.address;
  for (let i = 0; i < rounds; i++) {
    await deliver(x, y, ipv6Packet(ax, ay, randomBytes(200)));
    await deliver(y, x, ipv6Packet(ay, ax, randomBytes(1200)));
  }
}

function ciphers(m: Member) {
  return adminViewFor(m.node)
    .sessions()
    .map((s) => [s.cipherOut, s.cipherIn]);
}

describe.skipIf(loadSessionAead() === undefined)("session cipher between whole nodes", () => {
  it("A and C switch to ChaCha20-Poly1305 through forwarder B; getSessions says so", async () => {
    const [a, b, c] = [await startMember(), await startMember(), await startMember()];
    connect(a, b);
    connect(b, c);
    await exchange(a, c, 3);
    expect(ciphers(a)).toEqual([["chacha20-poly1305", "chacha20-poly1305"]]);
    expect(ciphers(c)).toEqual([["chacha20-poly1305", "chacha20-poly1305"]]);
    expect(b.node.sessions.list()).toHaveLength(0);
    const sa = a.node.sessions.stats();
    expect(sa.aeadSealed).toBeGreaterThan(0);
    expect(sa.aeadOpened).toBeGreaterThan(0);
    expect(sa.decryptFailures).toBe(0);
    // /metrics counts the same packets by cipher.
    const snapshot = metricsSnapshotFor(a.node);
    const { samples } = parsePrometheus(await createMetricsRegistry(() => snapshot).metrics());
    const packets = (direction: string, cipher: string) =>
      samples.find(
        (x) =>
          x.name === "planetd_session_packets_total" &&
          x.labels.direction === direction &&
          x.labels.cipher === cipher,
      )?.value;
    const now = a.node.sessions.stats();
    expect(packets("sealed", "chacha20-poly1305")).toBe(now.aeadSealed);
    expect(packets("opened", "chacha20-poly1305")).toBe(now.aeadOpened);
    expect(packets("sealed", "box")).toBe(now.boxSealed);
    expect(packets("opened", "box")).toBe(now.boxOpened);
    expect(now.boxSealed).toBeGreaterThan(0); // before A heard C's announcement
    const sealFailed = samples.find(
      (x) => x.name === "planetd_dropped_packets_total" && x.labels.reason === "session_seal_failed",
    );
    expect(sealFailed?.value).toBe(now.aeadSealFailures);
  });

  it("with an end on PLANETD_SESSION_CIPHER=box both directions stay box", async () => {
    const [a, c] = [await startMember(), await boxOnlyMember()];
    connect(a, c);
    await exchange(a, c, 3);
    expect(ciphers(a)).toEqual([["box", "box"]]);
    expect(ciphers(c)).toEqual([["box", "box"]]);
    expect(a.node.sessions.stats().aeadSealed).toBe(0);
    expect(c.node.sessions.stats().announcesSent).toBe(0);
    expect(c.node.sessions.stats().announcesHeard).toBeGreaterThan(0);
  });
});

describe("planetctl getSessions", () => {
  const session = { key: "ab", address: "200::1", uptime: 5, bytes_recvd: 1, bytes_sent: 2 };
  it("shows a Cipher column when the node reports one (planetd), none for Yggdrasil's answer", () => {
    const planetd = formatResponse("getsessions", {
      sessions: [
        { ...session, cipher_out: "chacha20-poly1305", cipher_in: "chacha20-poly1305" },
        { ...session, key: "cd", cipher_out: "box", cipher_in: "chacha20-poly1305" },
      ],
    }).split("\n");
    expect(planetd[0]!.split(/\s{2,}/).at(-1)).toBe("Cipher");
    expect(planetd[1]!.split(/\s{2,}/).at(-1)).toBe("chacha20-poly1305");
    expect(planetd[2]!.split(/\s{2,}/).at(-1)).toBe("box out, chacha20-poly1305 in");
    const ygg = formatResponse("getsessions", { sessions: [session] }).split("\n");
    expect(ygg[0]!.split(/\s{2,}/)).toEqual(["Public Key", "IP Address", "Uptime", "RX", "TX"]);
  });
});

// Where the udp:// refusal counters (udp-refusals.ts) show: the Prometheus scrape and planetctl
// getUdp, read the way an operator reads them (udp-refusal-*.test.ts).
import { expect } from "vitest";
import { COMMANDS } from "../../src/admin/commands.js";
import { formatResponse } from "../../src/admin/format.js";
import { createMetricsRegistry } from "../../src/admin/metrics-registry.js";
import type { AdminView } from "../../src/admin/view.js";
import { type UdpRefusalTotals, udpRefusalTotals } from "../../src/overlay/links/udp-refusals.js";
import { type Sample, emptySnapshot, parsePrometheus } from "./prometheus.js";

export const value = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
  samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;

/** The refusal metrics as a scrape of a node whose only counts are the process's udp:// refusals. */
export async function scrapeRefusals(): Promise<Sample[]> {
  const snapshot = emptySnapshot({ udpRefusals: udpRefusalTotals() });
  return parsePrometheus(await createMetricsRegistry(() => snapshot).metrics()).samples;
}

/** getUdp's answer (node:dgram sockets only: the refusals are there with or without the addon). */
export async function getUdp(): Promise<{ json: Record<string, unknown>; text: string }> {
  const view = { udpRefusals: udpRefusalTotals } as unknown as AdminView;
  const json = (await COMMANDS.getudp!.run({ view, remoteTimeoutMs: 0 }, {})) as Record<string, unknown>;
  return { json, text: formatResponse("getudp", json) };
}

/** Each stage's metric, its getUdp field and the totals it reads, labelled by reason. */
export const STAGES: Array<[metric: string, field: string, totals: keyof UdpRefusalTotals]> = [
  ["planetd_udp_confirms_refused_total", "confirms_refused", "confirmsRefused"],
  ["planetd_udp_dial_answers_refused_total", "dial_answers_refused", "dialAnswersRefused"],
  ["planetd_udp_stray_datagrams_total", "stray_datagrams", "strayDatagrams"],
  ["planetd_udp_link_datagrams_refused_total", "link_datagrams_refused", "datagramsRefused"],
  ["planetd_udp_reassembly_refused_total", "reassembly_refused", "reassemblyRefused"],
];

/** Every reason of every stage reads `now`'s count in the scrape and in getUdp's JSON. */
export async function expectShown(now: UdpRefusalTotals): Promise<string> {
  const samples = await scrapeRefusals();
  const { json, text } = await getUdp();
  for (const [metric, field, totals] of STAGES) {
    const counts = now[totals] as Record<string, number>;
    for (const [reason, n] of Object.entries(counts)) {
      expect(value(samples, metric, { reason }), `${metric}{reason="${reason}"}`).toBe(n);
    }
    expect(json[field], field).toEqual(counts);
  }
  return text;
}

// A small parser for the Prometheus text exposition format, shared by the metrics tests, and the
// snapshot of an empty node for tests that look at one metric family.
import type { MetricsSnapshot } from "../../src/admin/metrics.js";

/** A node with nothing: no links, sessions or drops; `extra` sets what the test looks at. */
export function emptySnapshot(extra: Partial<MetricsSnapshot> = {}): MetricsSnapshot {
  return {
    peers: 0,
    links: [],
    sessions: 0,
    dhtEntries: 0,
    pathEntries: 0,
    treeRoot: Buffer.alloc(32),
    treeDepth: 0,
    droppedPackets: {},
    handshakeFailures: 0,
    ...extra,
  };
}

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Prometheus text exposition format 0.0.4: # HELP / # TYPE lines and `name{labels} value` samples. */
export function parsePrometheus(text: string): { samples: Sample[]; types: Map<string, string> } {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split("\n")) {
    if (line === "") continue;
    if (line.startsWith("#")) {
      const m = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line);
      if (m) types.set(m[1], m[2]);
      else if (!/^# HELP \S+ /.test(line)) throw new Error(`bad comment line: ${line}`);
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: \d+)?$/.exec(line);
    if (!m) throw new Error(`bad sample line: ${line}`);
    const labels: Record<string, string> = {};
    const labelText = m[2] ?? "";
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/gy;
    let consumed = 0;
    for (let lm = re.exec(labelText); lm; lm = re.exec(labelText)) {
      labels[lm[1]] = lm[2].replace(/\\n/g, "\n").replace(/\\"/g, '"').replace(/\\\\/g, "\\");
      consumed = re.lastIndex;
    }
    if (consumed !== labelText.length) throw new Error(`bad labels: ${line}`);
    // Go's strconv.ParseFloat (Prometheus' parser) takes NaN and Inf in any case; prom-client writes "Nan".
    const special: Record<string, number> = {
      nan: Number.NaN,
      "+inf": Number.POSITIVE_INFINITY,
      "-inf": Number.NEGATIVE_INFINITY,
    };
    const value = special[m[3].toLowerCase()] ?? Number(m[3]);
    if (Number.isNaN(value) && m[3].toLowerCase() !== "nan") throw new Error(`bad value: ${line}`);
    samples.push({ name: m[1], labels, value });
  }
  return { samples, types };
}

// bench/matrix.sh's table: reads its raw lines (`system=planetd-tcp@1420 mbps1=… rtt_idle=…`, one
// per system and round) on stdin and prints one markdown table of medians, with ratios to Yggdrasil
// 0.4.7 at the same MTU (the veths and the bare node against Yggdrasil at 65535).
//   node bench/matrix-table.mjs "<header line>" < matrix.raw
const header = process.argv[2] ?? "bench/matrix.sh";

/** figures[system][key] = every round's value. */
const figures = new Map();
let input = "";
for await (const chunk of process.stdin) input += chunk;
for (const line of input.split("\n")) {
  const fields = Object.fromEntries(
    line
      .trim()
      .split(/\s+/)
      .filter((f) => f.includes("="))
      .map((f) => f.split("=", 2)),
  );
  if (!fields.system) continue;
  const bySystem = figures.get(fields.system) ?? new Map();
  figures.set(fields.system, bySystem);
  for (const [key, text] of Object.entries(fields)) {
    const value = Number(text);
    if (key === "system" || !Number.isFinite(value)) continue;
    bySystem.set(key, [...(bySystem.get(key) ?? []), value]);
  }
}

function median(values) {
  if (!values || values.length === 0) return undefined;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

const mtuOf = (system) => (system.includes("@") ? system.split("@")[1] : "65535");
const yggFor = (system) => figures.get(`ygg@${mtuOf(system)}`);

function cell(system, key, digits) {
  const m = median(figures.get(system).get(key));
  return m === undefined ? "—" : m.toFixed(digits);
}

function ratio(system, key) {
  const mine = median(figures.get(system).get(key));
  const ygg = median(yggFor(system)?.get(key));
  return mine === undefined || !ygg ? "—" : (mine / ygg).toFixed(2);
}

const columns = [
  ["Mbit/s 1 stream", "mbps1", 0, true],
  ["Mbit/s 4 streams", "mbps4", 0, true],
  ["idle RTT ms", "rtt_idle", 3, true],
  ["RTT under load ms", "rtt_load", 2, false],
  ["CPU-s per GB", "cpu_s_per_gb", 1, true],
  ["RSS idle MiB", "rss_idle", 1, false],
  ["RSS after load MiB", "rss_load", 1, false],
];
const head = ["system", "MTU", "rounds"];
for (const [title, , , withRatio] of columns) {
  head.push(title);
  if (withRatio) head.push("×ygg");
}
// Memory targets (issue 11): idle RSS within 10 MiB of a bare node, after load at most 1.5x idle.
head.push("RSS load/idle", "idle − bare node MiB");
const bareNode = median(figures.get("node")?.get("rss_idle"));
const rows = [`| ${head.join(" | ")} |`, `|${head.map((h, i) => (i < 1 ? "---" : "---:")).join("|")}|`];
for (const system of figures.keys()) {
  const rounds = Math.max(...[...figures.get(system).values()].map((v) => v.length));
  const row = [system.split("@")[0], system === "node" ? "—" : mtuOf(system), String(rounds)];
  for (const [, key, digits, withRatio] of columns) {
    row.push(cell(system, key, digits));
    if (withRatio) row.push(ratio(system, key));
  }
  const idle = median(figures.get(system).get("rss_idle"));
  const load = median(figures.get(system).get("rss_load"));
  row.push(idle && load ? (load / idle).toFixed(2) : "—");
  row.push(idle && bareNode && system.startsWith("planetd") ? (idle - bareNode).toFixed(1) : "—");
  rows.push(`| ${row.join(" | ")} |`);
}
console.log(
  `${header}\nmedians of interleaved rounds; CPU-s per GB sums every daemon on the path; RSS is the largest daemon's\n`,
);
console.log(rows.join("\n"));

// Two targets compare planetd systems with each other rather than with Yggdrasil: tcp:// at the
// default MTU against the raw veth (issue 11: >= 30 %) and udp:// against tcp:// at IfMTU 1420
// (issue 9: not below). Both as a ratio of the medians and as the median of each round's own ratio:
// rounds interleave, so a round's two figures share the machine's state, and the raw veth alone
// swings by half between rounds here.
function pairLine(label, mine, base, asPercent) {
  const a = figures.get(mine)?.get("mbps1");
  const b = figures.get(base)?.get("mbps1");
  if (!a || !b) return undefined;
  const show = (r) => (asPercent ? `${(100 * r).toFixed(1)} %` : r.toFixed(2));
  const perRound = a.slice(0, b.length).map((v, i) => v / b[i]);
  return `${label}: ratio of medians ${show(median(a) / median(b))}; per round ${perRound.map(show).join(", ")} (median ${show(median(perRound))})`;
}
const pairs = [
  pairLine("planetd-tcp@65535 / raw veth, one stream", "planetd-tcp@65535", "raw", true),
  pairLine("planetd-udp@1420 / planetd-tcp@1420, one stream", "planetd-udp@1420", "planetd-tcp@1420", false),
].filter(Boolean);
if (pairs.length > 0) console.log(`\n${pairs.join("\n")}`);

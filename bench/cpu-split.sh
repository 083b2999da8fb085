#!/usr/bin/env bash
# Where the CPU goes per Gbit/s of iperf3 throughput through a planetd pair, tcp:// against udp://:
# each kind runs bench/iperf.sh once while `perf record` samples the pair's two daemons and the
# iperf3 processes in their namespaces (kernel work done in their context included, so a loaded
# machine's other processes do not count), and the samples are split into OpenSSL ChaCha20-Poly1305,
# session box (sodium), kernel, JS (JIT, V8 builtins, GC), memmove and other, as CPU-ms per second per
# Gbit/s. On a machine the run saturates, throughput is about the CPUs divided by that cost, so the
# ratio of the two totals predicts udp/tcp. OpenSSL's share is the sessions' ChaCha20-Poly1305 between
# planetd nodes (src/overlay/sessions/aead.ts) plus, on udp://, the link AEAD: perf sees the same
# symbols for both, so PLANETD_SESSION_CIPHER=box in the environment puts the sessions back on sodium
# and leaves OpenSSL to the link alone. Session crypto costs the same per byte on both links: where
# its two figures differ, the run's load changed (run it again).
#   sudo bench/cpu-split.sh                       (IfMTU 1420, 8 s runs)
#   IFMTU=65535 KINDS="udp" sudo bench/cpu-split.sh
# Needs root, perf, and what bench/iperf.sh needs. Namespaces: PD_NETNS_TAG as in bench/iperf.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench/cpu-split.sh: must run as root" >&2; exit 1; }
command -v perf >/dev/null || { echo "bench/cpu-split.sh: perf is not installed" >&2; exit 1; }
export IFMTU=${IFMTU:-1420} IPERF_SECONDS=${IPERF_SECONDS:-8}
work=$(mktemp -d /tmp/pdcpu-XXXXXX)
trap 'rm -rf "$work"' EXIT

for kind in ${KINDS:-tcp udp}; do
  PLANETD_LINK=$kind bash bench/iperf.sh __one planetd >"$work/$kind.mbit" 2>"$work/$kind.log" &
  run=$!
  # Sample the whole transfer, so that iperf3's average is the throughput of the samples.
  for _ in $(seq 1 600); do pgrep -f "iperf3 -6 -c" >/dev/null && break; sleep 0.05; done
  daemons=$(pgrep -f "bin/planetd run --config /tmp/pdbench" || true)
  pids=$daemons
  for p in $(pgrep -x iperf3 || true); do
    for d in $daemons; do
      [ "$(readlink "/proc/$p/ns/net")" = "$(readlink "/proc/$d/ns/net")" ] && pids+=" $p" && break
    done
  done
  # One second short of the transfer: perf ends by killing its sleep (and dies of that signal) when
  # the sampled processes exit first.
  perf record -F 999 -p "$(echo $pids | tr ' ' ,)" -o "$work/$kind.data" -- sleep "$((IPERF_SECONDS - 1))" >/dev/null 2>&1 || true
  wait "$run" || { echo "$kind: bench/iperf.sh failed:" >&2; tail -n 5 "$work/$kind.log" >&2; exit 1; }
  perf report -i "$work/$kind.data" --no-children --sort dso,sym --stdio -n -g none 2>/dev/null >"$work/$kind.txt"
done

node - "$work" ${KINDS:-tcp udp} <<'EOF'
const { readFileSync } = require("node:fs");
const [dir, ...kinds] = process.argv.slice(2);
const category = (dso, sym) => {
  if (dso.includes("sodium")) return "session box (sodium)";
  if (/ChaCha20|chacha20|poly1305|Poly1305|^EVP_|^OSSL_|^ossl_|^OPENSSL_/.test(sym)) return "ChaCha20-Poly1305 (OpenSSL)";
  if (dso.includes("kernel")) return "kernel";
  if (/memmove|memcpy/.test(sym)) return "memmove";
  if (dso.includes("JIT") || dso === "node" || sym.startsWith("Builtins_")) return "JS (JIT, V8, GC)";
  return "other";
};
const rows = new Map();
const busy = {};
const mbit = {};
for (const kind of kinds) {
  mbit[kind] = Number(readFileSync(`${dir}/${kind}.mbit`, "utf8").trim());
  busy[kind] = 0;
  for (const line of readFileSync(`${dir}/${kind}.txt`, "utf8").split("\n")) {
    const m = /^\s*[\d.]+%\s+(\d+)\s+(.+?)\s+\[[.k]\]\s+(.*)$/.exec(line);
    if (!m) continue;
    const c = category(m[2].trim(), m[3].trim());
    // Samples at 999 Hz over the run: CPU-ms per second, per Gbit/s.
    const perGbit = ((Number(m[1]) / 999 / Number(process.env.IPERF_SECONDS)) * 1000) / (mbit[kind] / 1000);
    rows.set(c, { ...rows.get(c), [kind]: (rows.get(c)?.[kind] ?? 0) + perGbit });
    busy[kind] += perGbit;
  }
}
console.log(`CPU-ms per second per Gbit/s, IfMTU ${process.env.IFMTU}, one run each (${kinds.map((k) => `${k} ${mbit[k]} Mbit/s`).join(", ")})`);
console.log(["category".padEnd(30), ...kinds.map((k) => k.padStart(8))].join(""));
for (const [c, v] of [...rows].sort((a, b) => (b[1][kinds.at(-1)] ?? 0) - (a[1][kinds.at(-1)] ?? 0))) {
  console.log([c.padEnd(30), ...kinds.map((k) => (v[k] ?? 0).toFixed(0).padStart(8))].join(""));
}
console.log(["total".padEnd(30), ...kinds.map((k) => busy[k].toFixed(0).padStart(8))].join(""));
if (busy.tcp && busy.udp) console.log(`cost tcp/udp ${(busy.tcp / busy.udp).toFixed(2)} (udp/tcp throughput where the CPUs are the limit)`);
EOF

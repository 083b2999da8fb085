#!/usr/bin/env bash
# Who mallocs in a daemon under load (issue 11: RSS after load is the C heap glibc keeps): a planetd
# pair as bench/iperf.sh makes it, one iperf3 stream, and a uprobe on libc's malloc recorded with call
# stacks on one daemon for SECS-1 s; prints the MiB and calls malloc'ed per caller stack (DEPTH frames
# above malloc), largest first, and both daemons' RSS and [heap] (/proc/PID/smaps) idle, right after
# the load and AFTER s later. Needs root, perf, and what bench/iperf.sh needs.
#   sudo bench/malloc-trace.sh                 (the receiving daemon, the iperf3 server's, over tls://)
#   SIDE=sender PLANETD_LINK=tcp IFMTU=1420 SECS=5 DEPTH=6 AFTER=20 sudo bench/malloc-trace.sh
# The receiver is the listener, as in bench/matrix.sh. The probe (probe_libc:pdmalloc) is removed at
# the end. Sizes only: frees are not traced, so this says who churns the heap, not who holds it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PLANETD_LINK=${PLANETD_LINK:-tls} IFMTU=${IFMTU:-65535} PD_NETNS_TAG=${PD_NETNS_TAG:-m}
side=${SIDE:-receiver}
secs=${SECS:-5}
depth=${DEPTH:-4}
command -v perf >/dev/null || { echo "bench/malloc-trace.sh: perf is not installed" >&2; exit 1; }
libc=$(ldconfig -p | awk '/libc\.so\.6 .*x86-64/ {print $NF; exit}')
# shellcheck source=bench/iperf.sh
source bench/iperf.sh __one
perf probe -q -x "$libc" 'pdmalloc=malloc size=%di:u64' 2>/dev/null || true
trap 'perf probe -q -d probe_libc:pdmalloc 2>/dev/null || true; cleanup; rm -rf "$work"' EXIT

pair_up planetd "$PLANETD_LINK"
receiver=${pids[0]} sender=${pids[1]}
traced=$receiver
[ "$side" = sender ] && traced=$sender
mem() { # pid -> "RSS/[heap] MiB"
  awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"
  awk '/\[heap\]/ {f = 1; next} f && /^Rss:/ {printf "/%.1f", $2 / 1024; exit}' "/proc/$1/smaps"
}
sleep 5
echo "idle: receiver $(mem "$receiver") sender $(mem "$sender") (RSS/[heap] MiB)"
start_in "$a" "$dir/iperf-server.log" iperf3 -s -1 -B "$addr_a"
wait_listening "$a" 5201 "iperf3 server" "$dir/iperf-server.log"
perf record -q -e probe_libc:pdmalloc -g -p "$traced" -o "$work/perf.data" -- sleep $((secs - 1)) >/dev/null 2>&1 &
recorder=$!
mbit=$(ip netns exec "$b" iperf3 -6 -c "$addr_a" -t "$secs" -J | node -e '
  let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () =>
    console.log((JSON.parse(s).end.sum_received.bits_per_second / 1e6).toFixed(1)));')
wait "$recorder" || true
echo "load: $mbit Mbit/s over $PLANETD_LINK:// at IfMTU $IFMTU; right after: receiver $(mem "$receiver") sender $(mem "$sender")"
sleep "${AFTER:-5}"
echo "+${AFTER:-5} s: receiver $(mem "$receiver") sender $(mem "$sender")"
echo "malloc in the $side's daemon, $((secs - 1)) s of the load, by caller:"
perf script -i "$work/perf.data" -F trace,ip,sym 2>/dev/null | DEPTH=$depth node -e '
  const depth = Number(process.env.DEPTH);
  const by = new Map();
  let total = 0, calls = 0, size = -1, frames = [];
  const done = () => {
    if (size < 0) return;
    const key = frames.slice(1, 1 + depth).join(" < ");
    const e = by.get(key) ?? { bytes: 0, calls: 0 };
    e.bytes += size; e.calls++; by.set(key, e);
    total += size; calls++;
  };
  const lines = require("node:readline").createInterface({ input: process.stdin });
  lines.on("line", (line) => {
    const m = /size=(\d+)/.exec(line);
    if (m) { done(); size = Number(m[1]); frames = []; }
    else if (line.trim()) frames.push(line.trim().replace(/^\S+\s+/, ""));
  });
  lines.on("close", () => {
    done();
    console.log(`total ${(total / 1048576).toFixed(1)} MiB in ${calls} calls`);
    for (const [key, e] of [...by].sort((x, y) => y[1].bytes - x[1].bytes).slice(0, 12)) {
      console.log(`${(e.bytes / 1048576).toFixed(1).padStart(8)} MiB ${String(e.calls).padStart(8)}x  ${key}`);
    }
  });'

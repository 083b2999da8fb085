#!/usr/bin/env bash
# Where a planetd pair's kernel time goes under one iperf3 stream: bench/iperf.sh runs once while
# `perf record -g` samples the two daemons and the two iperf3 processes of its namespaces; then each
# process's samples are split by what they were doing (user code, or the syscall or interrupt that
# entered the kernel: tun_chr_write_iter, tcp_sendmsg, ... with "(softirq)" when softirq work ran
# inside it), and the busiest kernel entries by their leaf symbols (copies, checksums, wakeups).
# Kernel symbols need root (and kptr_restrict 0); compare runs by their shares, not absolute counts.
#   sudo bench/kernel-split.sh                     (tcp://, IfMTU 65535, 8 s)
#   PLANETD_LINK=udp IFMTU=1420 sudo bench/kernel-split.sh
#   PLANETD_TUN_OFFLOAD=on sudo bench/kernel-split.sh   (any daemon environment passes through)
# Namespaces: PD_NETNS_TAG as in bench/iperf.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench/kernel-split.sh: must run as root" >&2; exit 1; }
command -v perf >/dev/null || { echo "bench/kernel-split.sh: perf is not installed" >&2; exit 1; }
export IFMTU=${IFMTU:-65535} IPERF_SECONDS=${IPERF_SECONDS:-8} PLANETD_LINK=${PLANETD_LINK:-tcp}
tag=${PD_NETNS_TAG:-b}
work=$(mktemp -d /tmp/pdksplit-XXXXXX)
trap 'rm -rf "$work"' EXIT

in_our_ns() { ip netns identify "$1" 2>/dev/null | grep -q "^pd${tag}"; }
bash bench/iperf.sh __one planetd >"$work/mbit" 2>"$work/log" &
run=$!
client=""
for _ in $(seq 1 600); do
  for p in $(pgrep -x iperf3 || true); do in_our_ns "$p" && grep -q -- "-c" "/proc/$p/cmdline" && client=$p; done
  [ -n "$client" ] && break
  sleep 0.05
done
[ -n "$client" ] || { echo "bench/kernel-split.sh: the iperf3 client never started" >&2; tail -n 5 "$work/log" >&2; exit 1; }
sleep 1 # past the connection's slow start
roles=""
for d in $(pgrep -f "bin/planetd run --config /tmp/pdbench" || true); do
  in_our_ns "$d" || continue
  if [ "$(readlink "/proc/$d/ns/net")" = "$(readlink "/proc/$client/ns/net")" ]; then roles+=" $d=sender-daemon"; else roles+=" $d=receiver-daemon"; fi
done
for p in $(pgrep -x iperf3 || true); do
  in_our_ns "$p" || continue
  if [ "$p" = "$client" ]; then roles+=" $p=iperf3-client"; else roles+=" $p=iperf3-server"; fi
done
pids=$(for r in $roles; do echo "${r%%=*}"; done | paste -sd,)
perf record -g -F 499 -p "$pids" -o "$work/perf.data" -- sleep $((IPERF_SECONDS - 3)) >/dev/null 2>&1
wait "$run" || { echo "bench/kernel-split.sh: bench/iperf.sh failed:" >&2; tail -n 5 "$work/log" >&2; exit 1; }
echo "planetd over ${PLANETD_LINK}://, IfMTU ${IFMTU}, $(cat "$work/mbit") Mbit/s, perf -F 499 over $((IPERF_SECONDS - 3)) s, $(nproc) CPUs ($(uname -r))"
perf script -i "$work/perf.data" -F comm,pid,ip,sym,dso 2>/dev/null | node bench/kernel-split.mjs $roles

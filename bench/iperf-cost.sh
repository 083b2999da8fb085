#!/usr/bin/env bash
# CPU per Gbit/s of each daemon of a planetd pair, the sender's and the receiver's apart, in interleaved
# rounds of bench/iperf.sh: for each round and kind, the daemons' CPU time (/proc/PID/stat, user +
# system, kernel work done in their context included) and the inner traffic delivered (Ip6InOctets in
# the receiving namespace) over 4 s mid-transfer. On the 2-CPU machines here the sending daemon is the
# busiest thread of a run (~0.8 of a core for tcp:// and udp:// alike), so throughput follows its cost
# per Gbit/s; bench/cpu-split.sh says what that cost is made of.
#   sudo bench/iperf-cost.sh                                   (3 rounds of tcp:// and udp://, IfMTU 1420)
#   ROUNDS=5 KINDS="udp udp:PLANETD_UDP_AEAD=evp" sudo bench/iperf-cost.sh   (an environment A/B, as in
#                                                              bench/iperf-rounds.sh: kind:VAR=value[,VAR=value])
# Prints one line per run; the figures are that window's, not iperf3's 8 s average (printed last).
# Needs root and what bench/iperf.sh needs. Namespaces: PD_NETNS_TAG as in bench/iperf.sh (default c).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench/iperf-cost.sh: must run as root" >&2; exit 1; }
export IFMTU=${IFMTU:-1420} IPERF_SECONDS=8 PD_NETNS_TAG=${PD_NETNS_TAG:-c}
work=$(mktemp -d /tmp/pdcost-XXXXXX)
trap 'rm -rf "$work"' EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
in_octets() { ip netns exec "$1" nstat -az Ip6InOctets | awk '$1 == "Ip6InOctets" {print $2}'; }

one() { # kind[:VAR=value,...]
  local kind=${1%%:*} assignments=()
  [[ "$1" == *:* ]] && IFS=, read -ra assignments <<<"${1#*:}"
  env "${assignments[@]}" PLANETD_LINK="$kind" bash bench/iperf.sh __one planetd >"$work/mbit" 2>"$work/log" &
  local run=$! client="" p
  # The iperf3 client in one of this run's namespaces (pd<tag>…b): the transfer has started.
  for _ in $(seq 1 1200); do
    for p in $(pgrep -f "iperf3 -6 -c" || true); do
      ip netns identify "$p" 2>/dev/null | grep -q "^pd${PD_NETNS_TAG}" && client=$p && break 2
    done
    sleep 0.05
  done
  [ -n "$client" ] || { wait "$run" || true; echo "$1: no transfer started" >&2; tail -n 5 "$work/log" >&2; return 1; }
  sleep 2
  local ns_b ns_a dir pa pb
  ns_b=$(ip netns identify "$client")
  ns_a=${ns_b%b}a
  # The daemons: the ones whose config lies in the newest bench/iperf.sh work directory.
  dir=$(ls -td /tmp/pdbench-*/planetd | head -1)
  pa=$(pgrep -f "planetd run --config $dir/a.conf" | tail -1)
  pb=$(pgrep -f "planetd run --config $dir/b.conf" | tail -1)
  local a1 b1 o1 a2 b2 o2
  a1=$(cpu_ticks "$pa") b1=$(cpu_ticks "$pb") o1=$(in_octets "$ns_a")
  sleep 4
  a2=$(cpu_ticks "$pa") b2=$(cpu_ticks "$pb") o2=$(in_octets "$ns_a")
  wait "$run" || { echo "$1: bench/iperf.sh failed" >&2; tail -n 5 "$work/log" >&2; return 1; }
  local hz
  hz=$(getconf CLK_TCK)
  node -e "
    const gbit = ($o2 - $o1) * 8 / 4 / 1e9;
    const recv = ($a2 - $a1) * 1000 / $hz / 4, send = ($b2 - $b1) * 1000 / $hz / 4;
    console.log('$1'.padEnd(36), 'Gbit/s', gbit.toFixed(2),
      '| receiver', recv.toFixed(0), 'CPU-ms/s =', (recv / gbit).toFixed(0), 'per Gbit/s',
      '| sender', send.toFixed(0), 'CPU-ms/s =', (send / gbit).toFixed(0), 'per Gbit/s',
      '| iperf3 $(cat "$work/mbit") Mbit/s');"
}

echo "CPU per Gbit/s of each daemon, 4 s mid-transfer, IfMTU ${IFMTU}, $(nproc) CPUs"
for r in $(seq 1 "${ROUNDS:-3}"); do
  for kind in ${KINDS:-tcp udp}; do one "$kind" || true; done
done

#!/usr/bin/env bash
# Idle ping RTT through an overlay pair (issue 11): planetd over tcp:// and udp://, Yggdrasil 0.4.7
# over TCP, each pair in two fresh namespaces joined by a veth, in interleaved rounds. Per round and
# pair, at 5 pings/s (every packet finds the daemons idle): the median of the first WARMUP pings after
# SETTLE s ("first": the JIT still tiering planetd's data path up), then the median of the next PINGS
# ("idle": the figure to compare), and the daemons' CPU time per ping over those (all threads'
# /proc/PID/task/*/schedstat, less their CPU in as long again right after). Prints the medians
# over rounds and ratios to Yggdrasil. Needs root, yggdrasil, iperf3 (iperf.sh's checks), ping.
# RTT swings with whatever else runs on the machine: compare only figures of the same run.
#
#   sudo bench/rtt.sh                          (3 rounds of tcp udp yggdrasil, 50 + 50 pings: ~5 min)
#   ROUNDS=5 PINGS=100 WARMUP=50 sudo bench/rtt.sh
#   KINDS="tcp yggdrasil raw" sudo bench/rtt.sh   (raw: the veth alone, IPv4)
#   KINDS="tcp tcp:PLANETD_INTERRUPT_BUDGET=0 yggdrasil" sudo bench/rtt.sh
#                                               (kind:VAR=value: that kind with one more environment
#                                                variable, an A/B in the same run; here V8's default tier-up;
#                                                kind:A=1,B=2 sets several)
#   SETTLE=5 INTERVAL=0.2 IFMTU=65535 PD_NETNS_TAG=b   (s before pinging, ping interval, TUN MTU, namespaces pd<tag>…)
set -euo pipefail
cd "$(dirname "$0")/.."
# bench/iperf.sh's helpers: config, daemon, start_in, wait_listening, cleanup, $work, pids, namespaces.
# shellcheck source=bench/iperf.sh
source bench/iperf.sh __one

rounds=${ROUNDS:-3}
pings=${PINGS:-50}
warmup=${WARMUP:-50}
interval=${INTERVAL:-0.2}
settle=${SETTLE:-5}
kinds=${KINDS:-tcp udp yggdrasil}

# Nanoseconds on CPU of every thread of the given processes.
cpu_ns() {
  local pid sum=0 t
  for pid in "$@"; do
    for t in /proc/"$pid"/task/*/schedstat; do
      sum=$((sum + $(cut -d' ' -f1 "$t" 2>/dev/null || echo 0)))
    done
  done
  echo "$sum"
}

median() { tr ' ' '\n' | { grep -v '^$' || true; } | sort -n | awk '{a[NR]=$1} END {if (NR == 0) print "nan"; else if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# One pair, one round: prints "<first median ms> <idle median ms> <daemon CPU us per ping>" on stdout.
measure_rtt() {
  local kind=${1%%:*} impl=planetd scheme=${1%%:*} target flag=-6
  local assign assigns=${1#*:}
  if [ "$1" != "$kind" ]; then
    # shellcheck disable=SC2163
    for assign in ${assigns//,/ }; do export "$assign"; done
  fi
  case "$kind" in yggdrasil) impl=yggdrasil scheme=tcp ;; tcp | tls | udp | raw) ;; *)
    echo "bench/rtt.sh: unknown kind $kind (tcp, tls, udp, yggdrasil, raw)" >&2
    return 2
    ;;
  esac
  if [ "$kind" = raw ]; then
    veth_pair
    target=10.77.0.1 flag=-4
  else
    pair_up "$impl" "$scheme"
    target=$addr_a
  fi
  # setsid + ip netns exec: the daemon is the pid start_in recorded (ip execs it).
  local t1 t2 t3 c1 c2 c3 first=nan rtt
  sleep "$settle"
  if [ "$warmup" -gt 0 ]; then
    ip netns exec "$b" ping "$flag" -i "$interval" -c "$warmup" "$target" >"$work/ping-first.log" 2>&1 || true
    first=$(grep -o 'time=[0-9.]*' "$work/ping-first.log" | cut -d= -f2 | median)
  fi
  t1=$(date +%s%N) c1=$(cpu_ns "${pids[@]}")
  ip netns exec "$b" ping "$flag" -i "$interval" -c "$pings" "$target" >"$work/ping.log" 2>&1 || true
  t2=$(date +%s%N) c2=$(cpu_ns "${pids[@]}")
  rtt=$(grep -o 'time=[0-9.]*' "$work/ping.log" | cut -d= -f2 | median)
  # CPU per ping: the pings' CPU less what the daemons spend in as long again without them, right
  # after (timers, keepalives; startup work is over by then, which a window before the pings was not).
  sleep "$(awk -v a="$t1" -v b="$t2" 'BEGIN { print (b - a) / 1e9 }')"
  t3=$(date +%s%N) c3=$(cpu_ns "${pids[@]}")
  awk -v f="$first" -v r="$rtt" -v c1="$c1" -v c2="$c2" -v c3="$c3" -v t1="$t1" -v t2="$t2" -v t3="$t3" \
    -v n="$pings" 'BEGIN {
      idle = (c3 - c2) / (t3 - t2); printf "%s %s %.0f\n", f, r, ((c2 - c1) - idle * (t2 - t1)) / n / 1000 }'
}

if [ "${1:-}" = __rtt ]; then
  measure_rtt "$2"
  exit 0
fi

declare -A firsts rtts cpus
for r in $(seq 1 "$rounds"); do
  for kind in $kinds; do
    if out=$(bash "$0" __rtt "$kind"); then
      read -r first rtt cpu <<<"$out"
      echo "round $r: $kind first ${first} ms, idle ${rtt} ms, daemons ${cpu} us CPU per ping" >&2
      firsts[$kind]+="$first " rtts[$kind]+="$rtt " cpus[$kind]+="$cpu "
    else
      echo "round $r: $kind failed" >&2
    fi
  done
done

echo "ping RTT at $(awk -v i="$interval" 'BEGIN { print 1 / i }') pings/s, ${settle} s after the pair is up: first $warmup pings, then $pings (idle); medians of $rounds interleaved rounds, IfMTU ${IFMTU:-65535}, $(nproc) CPUs ($(uname -r))"
printf '%-36s %9s %9s %13s  %s\n' kind "first ms" "idle ms" "us CPU/ping" "idle vs yggdrasil"
ygg=$(echo "${rtts[yggdrasil]:-}" | median)
for kind in $kinds; do
  first=$(echo "${firsts[$kind]:-}" | median)
  rtt=$(echo "${rtts[$kind]:-}" | median)
  cpu=$(echo "${cpus[$kind]:-}" | median)
  ratio=""
  if [ "$kind" != yggdrasil ] && [ "$kind" != raw ] && [ "$ygg" != nan ] && [ "$rtt" != nan ]; then
    ratio=$(awk -v a="$rtt" -v y="$ygg" 'BEGIN { printf "%.2fx", a / y }')
  fi
  [ "$kind" = raw ] && cpu=-
  printf '%-36s %9s %9s %13s  %s\n' "$kind" "$first" "$rtt" "$cpu" "$ratio"
done

#!/usr/bin/env bash
# Idle RSS (issue 11), the quick A/B: standalone planetd daemons (no peers) from one or more trees,
# each in a network namespace of its own with its TUN and the listeners in LISTEN, started side by
# side with a bare `node` process; VmRSS read SETTLE s after start, ROUNDS interleaved rounds,
# medians and the difference to the bare node's. Daemons start as bin/planetd's #! line starts them
# (MALLOC_ARENA_MAX=1 node --v8-pool-size=1). RSS barely moves with CPU load, and the spread here is
# ~0.2 MiB, so this tells in a few minutes whether a change moves idle RSS; bench/memory.sh measures
# the peered pairs the README's target is stated for. Needs root (namespaces, TUN).
#   sudo bench/idle-rss.sh                         (this tree, 3 rounds of 30 s: ~2 min)
#   sudo bench/idle-rss.sh /tmp/before .           (two trees, interleaved: a git archive of the
#                                                   commit before, with dist/ built and node_modules linked)
#   sudo bench/idle-rss.sh . '.|PLANETD_INTERRUPT_BUDGET=0' '.||--max-lazy'
#                                                  (a variant is DIR[|ENV=V,ENV=V[|node flag,node flag]])
#   ROUNDS=3 SETTLE=30 LISTEN="tcp://[::]:0"       (the defaults; LISTEN is space-separated URIs)
#   ATTRIB=1                                       (also where each daemon's pages sit against the bare
#                                                   node's, from bench/rss-attrib.mjs, in the last round)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3}
settle=${SETTLE:-30}
listen=${LISTEN:-tcp://[::]:0}
[ $# -gt 0 ] || set -- .
work=$(mktemp -d /tmp/pdrss.XXXXXX)
namespaces=()
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# One config for every daemon: a fresh key, LISTEN, no multicast, an admin socket per daemon.
bin/planetd genconf --json >"$work/genconf.json"
LISTEN=$listen node -e '
  const c = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  Object.assign(c, { Listen: process.env.LISTEN.split(" "), MulticastInterfaces: [], IfName: "pdrss0" });
  console.log(JSON.stringify(c));' "$work/genconf.json" >"$work/base.json"

start() { # index variant -> pid in $started
  local i=$1 variant=$2 dir envs flags ns
  IFS='|' read -r dir envs flags <<<"$variant"
  ns=pdrss$$x$i
  ip netns add "$ns"
  namespaces+=("$ns")
  ip netns exec "$ns" ip link set lo up
  if [ "$dir" = node ]; then
    ip netns exec "$ns" env MALLOC_ARENA_MAX=1 node --v8-pool-size=1 -e 'setInterval(() => {}, 1e9)' &
  else
    sed "s|\"AdminListen\":\"[^\"]*\"|\"AdminListen\":\"unix://$work/$i.sock\"|" "$work/base.json" >"$work/$i.json"
    # shellcheck disable=SC2086 # envs and flags are lists
    ip netns exec "$ns" env MALLOC_ARENA_MAX=1 ${envs//,/ } node --v8-pool-size=1 ${flags//,/ } \
      "$dir/bin/planetd" run --config "$work/$i.json" >"$work/$i.log" 2>&1 &
  fi
  started=$!
}

variants=(node "$@")
declare -A figures
for round in $(seq 1 "$rounds"); do
  round_pids=()
  for i in "${!variants[@]}"; do
    start "$i" "${variants[$i]}"
    round_pids+=("$started")
    pids+=("$started")
  done
  sleep "$settle"
  for i in "${!variants[@]}"; do
    pid=${round_pids[$i]}
    kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    [ "$kb" -gt 0 ] || { echo "bench/idle-rss.sh: ${variants[$i]} exited; its log:" >&2; tail -n 5 "$work/$i.log" >&2; exit 1; }
    figures[$i]="${figures[$i]:-} $(awk -v kb="$kb" 'BEGIN { printf "%.1f", kb / 1024 }')"
  done
  if [ "${ATTRIB:-0}" = 1 ] && [ "$round" = "$rounds" ]; then
    for i in "${!variants[@]}"; do
      [ "$i" = 0 ] && continue
      echo "== where ${variants[$i]}'s pages sit against the bare node's (MiB)"
      node bench/rss-attrib.mjs "${round_pids[0]}" "${round_pids[$i]}"
    done
  fi
  cleanup_round() {
    for p in "${round_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${round_pids[@]}"; do wait "$p" 2>/dev/null || true; done
    for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    namespaces=()
    pids=()
  }
  cleanup_round
  echo "round $round/$rounds done" >&2
done

median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
# shellcheck disable=SC2086 # the figures are a list
bare=$(median ${figures[0]})
echo "bench/idle-rss.sh $(date -u +%Y-%m-%d) ROUNDS=$rounds SETTLE=$settle LISTEN=\"$listen\", $(nproc) CPUs"
printf '| %-40s | %9s | %12s | %s |\n' variant "RSS MiB" "− bare node" rounds
printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..42})" -----------: --------------: --------
for i in "${!variants[@]}"; do
  # shellcheck disable=SC2086
  m=$(median ${figures[$i]})
  printf '| %-40s | %9s | %12s | %s |\n' "${variants[$i]}" "$m" "$(awk -v a="$m" -v b="$bare" 'BEGIN { printf "%+.1f", a - b }')" "${figures[$i]# }"
done

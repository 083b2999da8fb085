#!/usr/bin/env bash
# The benchmark matrix (issue 11): every overlay here on the same chain of network namespaces, in
# interleaved rounds, medians, one markdown table with ratios to Yggdrasil 0.4.7 at the same MTU.
# Per system and round: iperf3 one stream and four streams, idle ping RTT (5 pings/s, after
# IDLE_WARMUP pings at that rate that are not counted: planetd's JIT tiers its data path up within
# them, src/daemon/jit-tiering.ts; bench/rtt.sh shows both phases), RTT under the
# one-stream load, the daemons' CPU-s per GB (utime+stime from /proc/PID/stat, summed over every
# daemon on the path, during the one-stream run), RSS idle and LOAD_SETTLE s after the load (largest daemon).
# Needs root on Debian; installs iperf3, yggdrasil, wireguard-go, wireguard-tools and tinc with apt-get.
#
#   sudo bench/matrix.sh                          (3 rounds, 5 s per iperf3 run, 2 nodes: ~13 min)
#   ROUNDS=5 SECS=10 sudo bench/matrix.sh
#   ONLY="planetd-tcp,ygg" sudo bench/matrix.sh   (systems by prefix; "planetd-udp@1420" for one MTU)
#   NODES=3 sudo bench/matrix.sh                  (3-node chain: the middle node forwards)
#   OUT=/tmp/matrix.md                            (where the table goes; default bench/matrix-<date>.md)
#   IDLE_SETTLE=5 LOAD_SETTLE=5 IDLE_PINGS=20     (s before the idle figures, s after the load before
#                                                  "RSS after load", pings for the idle RTT)
#   IDLE_WARMUP=50                                (uncounted pings at 5/s before the idle RTT; 0: none)
# Systems: node (a bare `node` process, RSS only), raw (the veths alone), planetd-tcp, planetd-tls,
# planetd-udp and ygg at IfMTU 65535 and 1420, wg (wireguard-go) and tinc (1.0) at 1420.
set -euo pipefail
# bench/iperf.sh's helpers: config, daemon, start_in, wait_listening, cleanup, $work, pids, namespaces.
# shellcheck source=bench/iperf.sh
source "$(dirname "$0")/iperf.sh" __one

rounds=${ROUNDS:-3}
secs=${SECS:-5}
nodes=${NODES:-2}
only=${ONLY:-}
out=${OUT:-bench/matrix-$(date -u +%Y%m%d-%H%M).md}
idle_pings=${IDLE_PINGS:-20}
idle_warmup=${IDLE_WARMUP:-50}
case "$nodes" in 2 | 3) ;; *)
  echo "bench/matrix.sh: NODES must be 2 or 3" >&2
  exit 2
  ;;
esac

need() { # command package
  command -v "$1" >/dev/null && return 0
  echo "bench/matrix.sh: installing $2 ..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$2" >&2
}
need iperf3 iperf3
need yggdrasil yggdrasil
need wireguard-go wireguard-go
need wg wireguard-tools
need tincd tinc

all_systems="node raw planetd-tcp@65535 planetd-tls@65535 planetd-udp@65535 ygg@65535
  planetd-tcp@1420 planetd-tls@1420 planetd-udp@1420 ygg@1420 wg@1420 tinc@1420"
systems=()
for s in $all_systems; do
  if [ -z "$only" ]; then systems+=("$s"); continue; fi
  IFS=, read -ra wanted <<<"$only"
  for w in "${wanted[@]}"; do
    case "$s" in "$w" | "$w"@*) systems+=("$s") ;; esac
  done
done
[ ${#systems[@]} -gt 0 ] || { echo "bench/matrix.sh: ONLY=$only selects nothing from: $all_systems" >&2; exit 2; }

# chain: namespaces n[1..nodes] joined by veths; hop k is 10.77.k.0/24 (left .1, right .2).
chain_up() {
  local id k
  id=$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')
  ns=()
  for k in $(seq 1 "$nodes"); do
    ns[k]="pde${id}n$k"
    namespaces+=("${ns[k]}")
    ip netns add "${ns[k]}"
    ip -n "${ns[k]}" link set lo up
  done
  for k in $(seq 1 $((nodes - 1))); do
    ip link add "pde${id}h${k}l" netns "${ns[k]}" type veth peer name "pde${id}h${k}r" netns "${ns[k + 1]}"
    ip -n "${ns[k]}" addr add "10.77.$k.1/24" dev "pde${id}h${k}l"
    ip -n "${ns[k + 1]}" addr add "10.77.$k.2/24" dev "pde${id}h${k}r"
    ip -n "${ns[k]}" link set "pde${id}h${k}l" up
    ip -n "${ns[k + 1]}" link set "pde${id}h${k}r" up
  done
  tag=$id
  first=${ns[1]} last=${ns[nodes]}
  daemons=()
}

# The address the first node is reached at from the last, per hop k the left end's underlay address.
left_of() { echo "10.77.$1.1"; }

up_raw() {
  target=10.77.1.1
  [ "$nodes" = 3 ] || return 0
  ip netns exec "${ns[2]}" sysctl -qw net.ipv4.ip_forward=1
  ip -n "${ns[1]}" route add 10.77.2.0/24 via 10.77.1.2
  ip -n "${ns[3]}" route add 10.77.1.0/24 via 10.77.2.1
}

# planetd and Yggdrasil: node k listens on hop k's left end and dials hop k-1's left end.
up_overlay() { # impl scheme
  local impl=$1 scheme=$2 k listen peers
  mkdir -p "$work/$tag"
  for k in $(seq 1 "$nodes"); do
    listen='[]' peers='[]'
    [ "$k" -lt "$nodes" ] && listen="[\"$scheme://$(left_of "$k"):12345\"]"
    [ "$k" -gt 1 ] && peers="[\"$scheme://$(left_of $((k - 1))):12345\"]"
    config "$work/$tag/$k.conf" "$listen" "$peers" "$work/$tag/$k.sock"
  done
  target=$(yggdrasil -useconffile "$work/$tag/1.conf" -address)
  for k in $(seq 1 "$nodes"); do
    daemon "$impl" "${ns[k]}" "$work/$tag/$k.conf" "$work/$tag/$k.log"
    daemons+=("${pids[-1]}")
    # The next node dials only once this one listens: a refused first dial means a long backoff.
    if [ "$k" -lt "$nodes" ]; then
      local flag=""
      [ "$scheme" = udp ] && flag=udp
      wait_listening "${ns[k]}" 12345 "$impl node $k" "$work/$tag/$k.log" $flag
    fi
  done
}

# wireguard-go: 10.99.0.k on interface pde<tag>wk, the middle node routes between its two peers.
up_wg() {
  local k dev key
  mkdir -p "$work/$tag"
  for k in $(seq 1 "$nodes"); do
    (umask 077 && wg genkey >"$work/$tag/wg$k.key")
    wg pubkey <"$work/$tag/wg$k.key" >"$work/$tag/wg$k.pub"
  done
  for k in $(seq 1 "$nodes"); do
    dev="pde${tag}w$k"
    start_in "${ns[k]}" "$work/$tag/wg$k.log" wireguard-go -f "$dev"
    daemons+=("${pids[-1]}")
    local deadline=$((SECONDS + 10))
    until [ -S "/var/run/wireguard/$dev.sock" ]; do
      [ $SECONDS -lt $deadline ] || { echo "wireguard-go $dev did not start" >&2; cat "$work/$tag/wg$k.log" >&2; return 1; }
      sleep 0.1
    done
    ip -n "${ns[k]}" addr add "10.99.0.$k/24" dev "$dev"
    ip -n "${ns[k]}" link set "$dev" mtu 1420 up
    ip netns exec "${ns[k]}" wg set "$dev" listen-port 51820 private-key "$work/$tag/wg$k.key"
    # Toward the first node everything goes left, toward the last everything goes right.
    if [ "$k" -gt 1 ]; then
      local allowed=10.99.0.0/24
      [ "$k" -lt "$nodes" ] && allowed=10.99.0.1/32
      ip netns exec "${ns[k]}" wg set "$dev" peer "$(cat "$work/$tag/wg$((k - 1)).pub")" \
        allowed-ips "$allowed" endpoint "$(left_of $((k - 1))):51820"
    fi
    if [ "$k" -lt "$nodes" ]; then
      local allowed=10.99.0.0/24
      [ "$k" -gt 1 ] && allowed=10.99.0.$nodes/32
      ip netns exec "${ns[k]}" wg set "$dev" peer "$(cat "$work/$tag/wg$((k + 1)).pub")" allowed-ips "$allowed"
    fi
  done
  [ "$nodes" = 3 ] && ip netns exec "${ns[2]}" sysctl -qw net.ipv4.ip_forward=1
  target=10.99.0.1
}

# tinc 1.0 in router mode: 10.98.0.k/32 per node, node k connects to node k-1.
up_tinc() {
  local k dir
  for k in $(seq 1 "$nodes"); do
    dir="$work/$tag/tinc$k"
    mkdir -p "$dir/hosts"
    printf 'Name = n%s\nInterface = pde%st%s\n' "$k" "$tag" "$k" >"$dir/tinc.conf"
    [ "$k" -gt 1 ] && printf 'ConnectTo = n%s\n' $((k - 1)) >>"$dir/tinc.conf"
    printf '#!/bin/sh\nip addr add 10.98.0.%s/24 dev "$INTERFACE"\nip link set "$INTERFACE" mtu 1420 up\n' "$k" >"$dir/tinc-up"
    chmod +x "$dir/tinc-up"
    tincd -c "$dir" -K 2048 </dev/null >/dev/null 2>&1
    # The address node k+1 connects to (the last node is connected to by nobody).
    local host="$dir/hosts/n$k" addr
    addr=$(left_of "$k")
    [ "$k" = "$nodes" ] && addr=10.77.$((k - 1)).2
    { printf 'Address = %s\nSubnet = 10.98.0.%s/32\n' "$addr" "$k"; cat "$host"; } >"$host.new"
    mv "$host.new" "$host"
  done
  for k in $(seq 1 "$nodes"); do cp "$work/$tag"/tinc*/hosts/n* "$work/$tag/tinc$k/hosts/" 2>/dev/null || true; done
  for k in $(seq 1 "$nodes"); do
    start_in "${ns[k]}" "$work/$tag/tinc$k.log" tincd -c "$work/$tag/tinc$k" -D --pidfile="$work/$tag/tinc$k.pid"
    daemons+=("${pids[-1]}")
  done
  target=10.98.0.1
}

wait_reachable() {
  local deadline=$((SECONDS + 60))
  until ip netns exec "$last" ping -c1 -W1 "$target" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      echo "$1: $target not reachable from the last node after 60 s; logs in $work/$tag" >&2
      tail -n 5 "$work/$tag"/*.log >&2 2>/dev/null || true
      return 1
    fi
    sleep 0.3
  done
}

# Largest VmRSS of the daemons, MiB.
rss_mib() {
  local pid kb max=0
  for pid in "${daemons[@]}"; do
    kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
    [ "$kb" -gt "$max" ] && max=$kb
  done
  awk -v kb="$max" 'BEGIN { printf "%.1f", kb / 1024 }'
}

# utime+stime of every daemon, in clock ticks.
cpu_ticks() {
  local pid sum=0 t
  for pid in "${daemons[@]}"; do
    t=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat")
    sum=$((sum + t))
  done
  echo "$sum"
}

# Median of ping's time= values in a log.
ping_median() { grep -o 'time=[0-9.]*' "$1" | cut -d= -f2 | sort -n | awk '{a[NR]=$1} END {if (NR == 0) print "nan"; else if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

iperf_json() { # streams -> json on stdout
  timeout $((secs + 30)) ip netns exec "$last" iperf3 -c "$target" -t "$secs" -P "$1" -J
}
received() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const r=JSON.parse(s).end.sum_received;console.log(r.bytes, (r.bits_per_second/1e6).toFixed(1))})'; }

# One system, one round: prints one line of key=value figures on stdout.
measure_system() {
  local system=$1 kind=${1%@*} mtu=65535
  [ "$1" != "$kind" ] && mtu=${1#*@}
  ifmtu=$mtu # config() reads it
  chain_up
  if [ "$kind" = node ]; then
    start_in "$first" "$work/node.log" node -e 'setInterval(() => {}, 1e9)'
    daemons=("${pids[-1]}")
    sleep "${IDLE_SETTLE:-5}"
    echo "system=$system rss_idle=$(rss_mib)"
    return 0
  fi
  case "$kind" in
  raw) up_raw ;;
  planetd-*)
    node --input-type=module -e "import('./bin/ensure-built.mjs').then((m) => m.ensureBuilt())" >&2
    up_overlay planetd "${kind#planetd-}"
    ;;
  ygg) up_overlay yggdrasil tcp ;;
  wg) up_wg ;;
  tinc) up_tinc ;;
  esac
  wait_reachable "$system"
  sleep "${IDLE_SETTLE:-5}"
  local line="system=$system"
  [ ${#daemons[@]} -gt 0 ] && line+=" rss_idle=$(rss_mib)"
  if [ "$idle_warmup" -gt 0 ]; then
    ip netns exec "$last" ping -c "$idle_warmup" -i 0.2 "$target" >/dev/null 2>&1 || true
  fi
  ip netns exec "$last" ping -c "$idle_pings" -i 0.2 "$target" >"$work/ping-idle.log" 2>&1 || true
  line+=" rtt_idle=$(ping_median "$work/ping-idle.log")"

  start_in "$first" "$work/iperf-server.log" iperf3 -s
  wait_listening "$first" 5201 "iperf3 server" "$work/iperf-server.log"
  ip netns exec "$last" ping -i 0.2 -w "$secs" "$target" >"$work/ping-load.log" 2>&1 &
  local pinger=$! t0 t1 json bytes mbps
  t0=$(cpu_ticks)
  json=$(iperf_json 1) || { echo "$system: iperf3 failed: $(echo "$json" | grep -m1 error)" >&2; wait "$pinger" || true; return 1; }
  t1=$(cpu_ticks)
  wait "$pinger" || true
  read -r bytes mbps < <(echo "$json" | received)
  line+=" mbps1=$mbps rtt_load=$(ping_median "$work/ping-load.log")"
  if [ ${#daemons[@]} -gt 0 ]; then
    line+=" cpu_s_per_gb=$(awk -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v b="$bytes" 'BEGIN { printf "%.2f", (t / hz) / (b / 1e9) }')"
  fi
  json=$(iperf_json 4) || { echo "$system: iperf3 -P 4 failed: $(echo "$json" | grep -m1 error)" >&2; return 1; }
  read -r bytes mbps < <(echo "$json" | received)
  line+=" mbps4=$mbps"
  sleep "${LOAD_SETTLE:-5}"
  [ ${#daemons[@]} -gt 0 ] && line+=" rss_load=$(rss_mib)"
  echo "$line"
}

# Each measurement runs as its own process (its own namespaces, work dir and EXIT trap).
if [ -n "${MATRIX_SYSTEM:-}" ]; then
  measure_system "$MATRIX_SYSTEM"
  exit 0
fi

raw="$work/matrix.raw"
: >"$raw"
echo "bench/matrix.sh: ${#systems[@]} systems x $rounds rounds, $nodes nodes, iperf3 ${secs} s; raw lines in $raw" >&2
for r in $(seq 1 "$rounds"); do
  for s in "${systems[@]}"; do
    if line=$(MATRIX_SYSTEM=$s bash "$0"); then
      echo "round $r: $line" >&2
      echo "$line" >>"$raw"
    else
      echo "round $r: $s failed" >&2
    fi
  done
done
header="bench/matrix.sh $(date -u +%Y-%m-%d) ROUNDS=$rounds SECS=$secs NODES=$nodes IDLE_WARMUP=$idle_warmup${only:+ ONLY=$only}, $(nproc) CPUs, $(uname -r)"
node bench/matrix-table.mjs "$header" <"$raw" | tee "$out"
echo "table written to $out" >&2

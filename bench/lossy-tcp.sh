#!/usr/bin/env bash
# Bulk TCP through a lossy 3-node line A - B - C over tcp:// links: planetd, then Debian's Yggdrasil
# 0.4.7 in the same namespaces, rounds interleaved, medians and the ratio printed. Needs root,
# nft, python3, yggdrasil, node.
#
# Each hop is a veth. Loss: nftables drops LOSS % of the packets arriving on every veth (so each hop
# loses LOSS % in each direction). Delay: this kernel has no sch_netem, so every namespace routes
# its own packets toward its neighbours through a TUN device held by a small python forwarder that
# writes each packet back after DELAY_MS ± JITTER_MS (uniform; never before the previous packet, so
# no reordering), and the kernel forwards it out of the veth (policy routing on iif). One way per
# hop per direction, so a hop's RTT is about 2 × DELAY_MS.
#
# One transfer: MIB MiB of random data A → C through the overlay over one inner TCP connection,
# sha256-checked at C; the rate is bytes / (connect → close) in MB/s (10^6).
#
#   bench/lossy-tcp.sh                      (MIB=20 ROUNDS=3 LOSS=10 DELAY_MS=20 JITTER_MS=10)
#   MIB=50 ROUNDS=5 bench/lossy-tcp.sh
#   IMPLS="planetd" bench/lossy-tcp.sh      (planetd only; default "planetd yggdrasil")
#   PLANETD_TREES="before=/tmp/pd-before after=/tmp/pd-after" bench/lossy-tcp.sh
#                                           (several planetd checkouts interleaved in the same run;
#                                           each ratio is against yggdrasil)
#   IFMTU=1420 bench/lossy-tcp.sh           (every node's TUN MTU; default 65535)
#   TCP_CC=cubic bench/lossy-tcp.sh        (the namespaces' default congestion control; else the host's)
#   KEEP_WORK=1 SAMPLE_SS=1 bench/lossy-tcp.sh  (keep the logs; `ss -tin` of every namespace each second)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

mib=${MIB:-20}
rounds=${ROUNDS:-3}
loss=${LOSS:-10}
delay_ms=${DELAY_MS:-20}
jitter_ms=${JITTER_MS:-10}
ifmtu=${IFMTU:-65535}
impls=${IMPLS:-planetd yggdrasil}
trees=${PLANETD_TREES:-planetd=$repo}

[ "$(id -u)" -eq 0 ] || { echo "bench/lossy-tcp.sh: must run as root (namespaces, TUN, nft)" >&2; exit 1; }
for cmd in ip nft python3 yggdrasil node curl; do
  command -v "$cmd" >/dev/null || { echo "bench/lossy-tcp.sh: $cmd is not installed" >&2; exit 1; }
done

work=$(mktemp -d /tmp/pdlossy-XXXXXX)
pids=()
namespaces=()

killgroups() { # pids...
  for pid in "$@"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  sleep 0.5
  for pid in "$@"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
}
# The daemons of a round run in its subshell; their process groups are listed in round.pids.
end_round() {
  [ -s "$work/round.pids" ] || return 0
  # shellcheck disable=SC2046
  killgroups $(cat "$work/round.pids")
  : >"$work/round.pids"
}
cleanup() {
  end_round
  killgroups "${pids[@]}"
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
}
trap 'cleanup; [ -n "${KEEP_WORK:-}" ] || rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

# Start a command in a namespace as its own process group (so cleanup takes its children too).
start_in() { # ns log cmd...
  local ns=$1 log=$2
  shift 2
  setsid ip netns exec "$ns" "$@" >"$log" 2>&1 &
  last_pid=$!
}

cat >"$work/delay.py" <<'EOF'
# Holds every packet read from a TUN for delay ± jitter ms, then writes it back (FIFO).
import fcntl, os, random, select, struct, sys, time
from collections import deque
name, delay, jitter = sys.argv[1], float(sys.argv[2]) / 1000, float(sys.argv[3]) / 1000
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", name.encode(), 0x0001 | 0x1000))  # TUNSETIFF, TUN|NO_PI
os.set_blocking(fd, False)
queue, last = deque(), 0.0
print("ready", flush=True)
while True:
    timeout = max(0.0, queue[0][0] - time.monotonic()) if queue else None
    readable, _, _ = select.select([fd], [], [], timeout)
    if readable:
        while True:
            try:
                packet = os.read(fd, 65536)
            except BlockingIOError:
                break
            last = max(last, time.monotonic() + delay + random.uniform(-jitter, jitter))
            queue.append((last, packet))
    now = time.monotonic()
    while queue and queue[0][0] <= now:
        try:
            os.write(fd, queue.popleft()[1])
        except OSError:
            pass
EOF

# One TCP transfer: netns-tests/support/tcp-transfer.mjs (server prints bytes and sha256 when the
# client closes; client sends random data and prints bytes, sha256 and milliseconds).

# ---- the line: A (10.78.1.1) - (10.78.1.2) B (10.78.2.2) - (10.78.2.1) C ----
id=$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')
A="pdl${id}a" B="pdl${id}b" C="pdl${id}c"
namespaces=("$A" "$B" "$C")
for ns in "$A" "$B" "$C"; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 \
    net.ipv4.conf.default.rp_filter=0 net.ipv4.conf.all.accept_local=1 net.ipv4.conf.default.accept_local=1
  [ -z "${TCP_CC:-}" ] || ip netns exec "$ns" sysctl -qw net.ipv4.tcp_congestion_control="$TCP_CC"
done
default_cc=$(ip netns exec "$A" cat /proc/sys/net/ipv4/tcp_congestion_control)
ip link add "pdl${id}ab" netns "$A" type veth peer name "pdl${id}ba" netns "$B"
ip link add "pdl${id}bc" netns "$B" type veth peer name "pdl${id}cb" netns "$C"
ip -n "$A" addr add 10.78.1.1/24 dev "pdl${id}ab"
ip -n "$B" addr add 10.78.1.2/24 dev "pdl${id}ba"
ip -n "$B" addr add 10.78.2.2/24 dev "pdl${id}bc"
ip -n "$C" addr add 10.78.2.1/24 dev "pdl${id}cb"
for pair in "$A:pdl${id}ab" "$B:pdl${id}ba" "$B:pdl${id}bc" "$C:pdl${id}cb"; do
  ns=${pair%%:*} dev=${pair#*:}
  ip -n "$ns" link set "$dev" up
  ip netns exec "$ns" nft add table inet pdloss
  ip netns exec "$ns" nft add chain inet pdloss input '{ type filter hook input priority 0 ; }'
  if [ "$loss" -gt 0 ]; then
    ip netns exec "$ns" nft add rule inet pdloss input iifname "$dev" numgen random mod 100 '<' "$loss" drop
  fi
done

# delay_in <ns> <neighbour>:<src>:<dev>...: the neighbours' host routes lead into the delay TUN;
# what comes back out of it is forwarded by table 100 (the veth subnets).
delay_in() {
  local ns=$1
  shift
  ip -n "$ns" tuntap add dev pdly mode tun
  ip -n "$ns" link set pdly up
  ip netns exec "$ns" sysctl -qw net.ipv4.conf.pdly.rp_filter=0 net.ipv4.conf.pdly.accept_local=1
  start_in "$ns" "$work/delay-$ns.log" python3 "$work/delay.py" pdly "$delay_ms" "$jitter_ms"
  pids+=("$last_pid")
  ip -n "$ns" rule add iif pdly lookup 100
  for hop in "$@"; do
    IFS=: read -r neighbour src dev <<<"$hop"
    ip -n "$ns" route add "$neighbour/32" dev pdly src "$src"
    ip -n "$ns" route add "${neighbour%.*}.0/24" dev "$dev" table 100
  done
}
if [ "$delay_ms" != 0 ]; then
  delay_in "$A" "10.78.1.2:10.78.1.1:pdl${id}ab"
  delay_in "$B" "10.78.1.1:10.78.1.2:pdl${id}ba" "10.78.2.1:10.78.2.2:pdl${id}bc"
  delay_in "$C" "10.78.2.2:10.78.2.1:pdl${id}cb"
fi
rtt=$(ip netns exec "$A" ping -c 5 -i 0.2 -q 10.78.1.2 | sed -n 's|.*= [0-9.]*/\([0-9.]*\)/.*|\1|p')
echo "line ready: A-B RTT avg ${rtt:-?} ms (loss ${loss}% per direction per hop, ${delay_ms}±${jitter_ms} ms one way)" >&2

# config <file> <listen-json> <peers-json> <socket> <extra>: a fresh key, a TUN, no multicast.
config() {
  local key
  key=$(yggdrasil -genconf -json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).PrivateKey))')
  cat >"$1" <<EOF
{ "PrivateKey": "$key", "Listen": $2, "Peers": $3, "AdminListen": "unix://$4",
  "MulticastInterfaces": [], "IfName": "pdtun", "IfMTU": ${ifmtu}, "NodeInfo": {} $5 }
EOF
}

wait_listening() { # ns port what log
  local deadline=$((SECONDS + 30))
  until ip netns exec "$1" ss -Hltn "sport = :$2" | grep -q .; do
    if [ $SECONDS -ge $deadline ]; then
      echo "$3 is not listening on port $2 after 30 s; log tail:" >&2
      tail -n 15 "$4" >&2
      return 1
    fi
    sleep 0.1
  done
}

declare -A tree_of
for entry in $trees; do tree_of[${entry%%=*}]=${entry#*=}; done
variants=()
for impl in $impls; do
  if [ "$impl" = planetd ]; then
    for name in "${!tree_of[@]}"; do variants+=("planetd:$name"); done
  else
    variants+=("$impl")
  fi
done
for name in "${!tree_of[@]}"; do
  (cd "${tree_of[$name]}" && node --input-type=module -e "import('./bin/ensure-built.mjs').then((m) => m.ensureBuilt())") >&2
done

# round <variant> <n>: prints "<MB/s> <extra>" on stdout, or fails.
round() {
  local variant=$1 n=$2 dir="$work/$1-$2" impl=${1%%:*} tree=""
  [ "$impl" = planetd ] && tree=${tree_of[${1#*:}]}
  mkdir -p "$dir"
  local extra=""
  [ "$impl" = planetd ] && extra=', "Planetd": { "MetricsListen": "127.0.0.1:9109", "LogLevel": "info" }'
  config "$dir/b.conf" '["tcp://0.0.0.0:12345"]' '[]' "$dir/b.sock" "$extra"
  config "$dir/a.conf" '[]' '["tcp://10.78.1.2:12345"]' "$dir/a.sock" "$extra"
  config "$dir/c.conf" '[]' '["tcp://10.78.2.2:12345"]' "$dir/c.sock" "$extra"
  local addr_c
  addr_c=$(yggdrasil -useconffile "$dir/c.conf" -address)
  start_node() { # ns name
    if [ "$impl" = planetd ]; then
      start_in "$1" "$dir/$2.log" node "$tree/bin/planetd" run --config "$dir/$2.conf"
    else
      start_in "$1" "$dir/$2.log" yggdrasil -useconffile "$dir/$2.conf"
    fi
    echo "$last_pid" >>"$work/round.pids"
  }
  start_node "$B" b
  wait_listening "$B" 12345 "$variant B" "$dir/b.log" || return 1
  start_node "$A" a
  start_node "$C" c
  local deadline=$((SECONDS + 90))
  until ip netns exec "$A" ping -6 -c1 -W1 "$addr_c" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      echo "$variant: C not reachable from A after 90 s; log tails:" >&2
      tail -n 10 "$dir/a.log" "$dir/b.log" "$dir/c.log" >&2
      return 1
    fi
    sleep 0.5
  done
  start_in "$C" "$dir/server.log" node netns-tests/support/tcp-transfer.mjs server "$addr_c" 5001
  echo "$last_pid" >>"$work/round.pids"
  wait_listening "$C" 5001 "transfer server" "$dir/server.log" || return 1
  local sampler=""
  if [ -n "${SAMPLE_SS:-}" ]; then # ss -tin of every namespace each second, for diagnosis
    (while :; do for ns in "$A" "$B" "$C"; do echo "== $ns $(date +%s.%N)"; ip netns exec "$ns" ss -tin; done; sleep 1; done) >"$dir/ss.log" 2>&1 &
    sampler=$!
  fi
  local out
  if ! out=$(timeout $((120 + mib * 20)) ip netns exec "$A" node netns-tests/support/tcp-transfer.mjs client "$addr_c" 5001 "$mib"); then
    echo "$variant: transfer failed or timed out: $out" >&2
    return 1
  fi
  [ -z "$sampler" ] || kill "$sampler"
  local deadline2=$((SECONDS + 10))
  until grep -q sha "$dir/server.log" || [ $SECONDS -ge $deadline2 ]; do sleep 0.1; done
  local got
  got=$(grep sha "$dir/server.log" || true)
  local stats=""
  if [ "$impl" = planetd ]; then
    for ns in "$A" "$B" "$C"; do
      local cong
      cong=$(ip netns exec "$ns" curl -s http://127.0.0.1:9109/metrics |
        sed -n 's/^planetd_dropped_packets_total{reason="link_congested"} //p')
      stats+=" ${cong:-?}"
    done
    stats="congested-drops(A,B,C):$stats; link-downs: $(cat "$dir"/[abc].log | grep -c 'link down' || true)"
  else
    stats="link-downs: $(cat "$dir"/[abc].log | grep -ci 'disconnected' || true)"
  fi
  node -e '
    const c = JSON.parse(process.argv[1]), s = JSON.parse(process.argv[2] || "{}");
    if (s.sha !== c.sha || s.bytes !== c.bytes) { console.error("sha256 or size mismatch", c, s); process.exit(1); }
    console.log((c.bytes / 1e3 / c.ms).toFixed(3), process.argv[3]);
  ' "$out" "$got" "$stats"
}

declare -A results
for n in $(seq 1 "$rounds"); do
  order=("${variants[@]}")
  if [ $((n % 2)) -eq 0 ]; then # alternate who goes first
    order=()
    for ((i = ${#variants[@]} - 1; i >= 0; i--)); do order+=("${variants[$i]}"); done
  fi
  for v in "${order[@]}"; do
    if line=$(round "$v" "$n"); then
      echo "round $n $v: ${line%% *} MB/s (${line#* })" >&2
      results[$v]+="${line%% *} "
    else
      echo "round $n $v: failed" >&2
    fi
    end_round
  done
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {if (NR==0) print "none"; else if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
echo "lossy tcp:// line A-B-C: ${mib} MiB A->C, ${loss}% loss per direction per hop, ${delay_ms}±${jitter_ms} ms one way per hop, IfMTU ${ifmtu}, default congestion control ${default_cc}, ${rounds} interleaved rounds, $(nproc) CPUs ($(uname -r))"
declare -A med
for v in "${variants[@]}"; do
  # shellcheck disable=SC2086
  med[$v]=$(median ${results[$v]:-})
  printf '%-22s median %s MB/s  (rounds: %s)\n' "$v" "${med[$v]}" "${results[$v]:-none}"
done
if [ -n "${med[yggdrasil]:-}" ] && [ "${med[yggdrasil]}" != none ]; then
  for v in "${variants[@]}"; do
    [ "$v" = yggdrasil ] || [ "${med[$v]}" = none ] && continue
    echo "ratio $v/yggdrasil: $(node -e "console.log((${med[$v]} / ${med[yggdrasil]}).toFixed(3))")"
  done
fi

#!/usr/bin/env bash
# Single-stream TCP throughput through the overlay: a planetd pair, then a Debian Yggdrasil 0.4.7
# pair, each in two fresh network namespaces joined by a veth and peered over a TCP link, in the
# same run, so the ratio compares like with like on this machine. Needs root, iperf3, yggdrasil.
#
#   bench/iperf.sh [both|planetd|yggdrasil]    (default both; seconds per run: IPERF_SECONDS=10)
#   PLANETD_LINK=udp bench/iperf.sh            (the planetd pair over planetd's own udp:// link)
#   IFMTU=1420 bench/iperf.sh                  (both pairs' TUN MTU; default 65535)
#   PLANETD_UDP_SOCKET=dgram PLANETD_LINK=udp bench/iperf.sh   (udp:// on node:dgram, not the addon)
#   PD_NETNS_TAG=a bench/iperf.sh              (namespaces pda…; default pdb…)
#   IPERF_FLAGS="-C cubic" bench/iperf.sh      (extra iperf3 client flags: here the inner flow's congestion control)
# Each run also prints the namespaces' IP fragment counters (IpFragCreates, Ip6FragCreates, which must
# stay 0: udp:// never sends over the path MTU, GSO segments are not fragments) and UDP buffer drops.
set -euo pipefail
cd "$(dirname "$0")/.."

which=${1:-both}
seconds=${IPERF_SECONDS:-10}
ifmtu=${IFMTU:-65535}
planetd_link=${PLANETD_LINK:-tcp}
case "$planetd_link" in tcp | tls | udp) ;; *)
  echo "bench/iperf.sh: PLANETD_LINK must be tcp, tls or udp" >&2
  exit 2
  ;;
esac
case "$which" in both | planetd | yggdrasil | __one) ;; *)
  echo "usage: bench/iperf.sh [both|planetd|yggdrasil]" >&2
  exit 2
  ;;
esac
[ "$(id -u)" -eq 0 ] || { echo "bench/iperf.sh: must run as root (namespaces, TUN)" >&2; exit 1; }
for cmd in ip iperf3 yggdrasil ping node; do
  command -v "$cmd" >/dev/null || { echo "bench/iperf.sh: $cmd is not installed" >&2; exit 1; }
done

work=$(mktemp -d /tmp/pdbench-XXXXXX)
pids=()
namespaces=()

cleanup() {
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  sleep 0.5
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  pids=()
  namespaces=()
}
trap 'cleanup; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

# Start a command in a namespace as its own process group (so cleanup takes its children too).
start_in() { # ns log cmd...
  local ns=$1 log=$2
  shift 2
  setsid ip netns exec "$ns" "$@" >"$log" 2>&1 &
  pids+=($!)
}

# config <file> <listen-json> <peers-json> <socket>: a fresh key, a TUN, no multicast.
config() {
  local key
  key=$(yggdrasil -genconf -json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).PrivateKey))')
  cat >"$1" <<EOF
{ "PrivateKey": "$key", "Listen": $2, "Peers": $3, "AdminListen": "unix://$4",
  "MulticastInterfaces": [], "IfName": "pdtun", "IfMTU": ${ifmtu}, "NodeInfo": {} }
EOF
}

daemon() { # impl ns conf log
  if [ "$1" = planetd ]; then
    # The command of bin/planetd's first line (environment and node flags), as the install runs it.
    # PLANETD_NODE_FLAGS: e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile both daemons.
    local installed
    installed=$(sed -n '1s|^#!/usr/bin/env -S ||p' bin/planetd)
    # shellcheck disable=SC2086
    start_in "$2" "$4" env ${installed:-node} ${PLANETD_NODE_FLAGS:-} bin/planetd run --config "$3"
  else
    start_in "$2" "$4" yggdrasil -useconffile "$3"
  fi
}

wait_listening() { # ns port what log [udp]
  local deadline=$((SECONDS + 30)) flags=-Hltn
  [ "${5:-}" = udp ] && flags=-Hlun
  until ip netns exec "$1" ss "$flags" "sport = :$2" | grep -q .; do
    if [ $SECONDS -ge $deadline ]; then
      echo "$3 is not listening on port $2 after 30 s; log tail:" >&2
      tail -n 15 "$4" >&2
      return 1
    fi
    sleep 0.1
  done
}

# veth_pair: two fresh namespaces $a (10.77.0.1) and $b (10.77.0.2) joined by a veth, both up.
veth_pair() {
  local id tag=${PD_NETNS_TAG:-b}
  id=$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')
  a="pd${tag}${id}a" b="pd${tag}${id}b"
  namespaces+=("$a" "$b")
  ip netns add "$a"
  ip netns add "$b"
  ip link add "pd${tag}${id}va" netns "$a" type veth peer name "pd${tag}${id}vb" netns "$b"
  for ns in "$a" "$b"; do ip -n "$ns" link set lo up; done
  ip -n "$a" addr add 10.77.0.1/24 dev "pd${tag}${id}va"
  ip -n "$b" addr add 10.77.0.2/24 dev "pd${tag}${id}vb"
  ip -n "$a" link set "pd${tag}${id}va" up
  ip -n "$b" link set "pd${tag}${id}vb" up
}

# pair_up <impl> <scheme>: a veth_pair with a daemon in each namespace, b peered to a's listener;
# returns once b reaches a's overlay address $addr_a (non-zero after 60 s). Configs and logs in $dir.
pair_up() {
  local impl=$1 scheme=$2
  veth_pair
  dir="$work/$impl"
  mkdir -p "$dir"
  config "$dir/a.conf" "[\"$scheme://10.77.0.1:12345\"]" '[]' "$dir/a.sock"
  config "$dir/b.conf" '[]' "[\"$scheme://10.77.0.1:12345\"]" "$dir/b.sock"
  addr_a=$(yggdrasil -useconffile "$dir/a.conf" -address)
  if [ "$impl" = planetd ]; then
    # Build once up front so the daemons do not race to compile dist/.
    node --input-type=module -e "import('./bin/ensure-built.mjs').then((m) => m.ensureBuilt())" >&2
  fi
  daemon "$impl" "$a" "$dir/a.conf" "$dir/a.log"
  # B dials only once A listens: a refused first dial sends yggdrasil into a long redial backoff.
  wait_listening "$a" 12345 "$impl listener" "$dir/a.log" "$scheme"
  daemon "$impl" "$b" "$dir/b.conf" "$dir/b.log"

  local deadline=$((SECONDS + 60))
  until ip netns exec "$b" ping -6 -c1 -W1 "$addr_a" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      echo "$impl: $addr_a not reachable after 60 s; log tails:" >&2
      tail -n 15 "$dir/a.log" "$dir/b.log" >&2
      return 1
    fi
    sleep 0.5
  done
}

# measure <impl>: prints Mbit/s on stdout, progress on stderr; exits non-zero when the pair never works.
# Runs as its own process (`$0 __one <impl>`) so errexit and the EXIT trap cover every step.
measure() {
  local impl=$1 scheme=tcp
  [ "$impl" = planetd ] && scheme=$planetd_link
  pair_up "$impl" "$scheme"

  start_in "$a" "$dir/iperf-server.log" iperf3 -s -1 -B "$addr_a"
  wait_listening "$a" 5201 "iperf3 server" "$dir/iperf-server.log"
  local json
  if ! json=$(timeout $((seconds + 30)) ip netns exec "$b" iperf3 -6 -c "$addr_a" -t "$seconds" ${IPERF_FLAGS:-} -J); then
    echo "$impl: iperf3 failed: $(echo "$json" | tail -n 5)" >&2
    return 1
  fi
  local ns
  for ns in "$a" "$b"; do
    echo "$impl $ns: $(ip netns exec "$ns" nstat -asz IpFragCreates Ip6FragCreates UdpRcvbufErrors UdpSndbufErrors Udp6RcvbufErrors | awk 'NR > 1 {printf "%s=%s ", $1, $2}')" >&2
  done
  echo "$json" | node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
      const r = JSON.parse(s);
      console.error(`iperf3 sender retransmits: ${r.end.sum_sent.retransmits}`);
      console.log((r.end.sum_received.bits_per_second / 1e6).toFixed(1));
    });'
}

# bench/matrix.sh sources this file (`source bench/iperf.sh __one`) for the helpers above and stops here.
[ "${BASH_SOURCE[0]}" = "$0" ] || return 0

if [ "$which" = __one ]; then
  measure "$2"
  exit 0
fi

pd="" yg=""
status=0
if [ "$which" != yggdrasil ]; then
  echo "planetd pair: iperf3 -6 single stream, ${seconds} s over a ${planetd_link^^} link ..." >&2
  if out=$("$0" __one planetd); then pd=$out; else status=1; fi
fi
if [ "$which" != planetd ]; then
  echo "Yggdrasil 0.4.7 pair: iperf3 -6 single stream, ${seconds} s over a TCP link ..." >&2
  if out=$("$0" __one yggdrasil); then yg=$out; else status=1; fi
fi

echo "iperf3 single stream, ${seconds} s, two namespaces, planetd over ${planetd_link^^}, yggdrasil over TCP, $(nproc) CPUs ($(uname -r))"
[ "$which" = yggdrasil ] || echo "planetd:         ${pd:-failed} Mbit/s"
[ "$which" = planetd ] || echo "yggdrasil 0.4.7: ${yg:-failed} Mbit/s"
if [ -n "$pd" ] && [ -n "$yg" ]; then
  echo "ratio planetd/yggdrasil: $(node -e "console.log(($pd / $yg).toFixed(3))")"
fi
exit $status

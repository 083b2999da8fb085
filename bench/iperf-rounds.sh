#!/usr/bin/env bash
# Interleaved rounds of bench/iperf.sh's single measurements, medians and ratios: single runs on the
# 2-core machines here swing by 20 %, so only medians of interleaved rounds are compared.
#   sudo bench/iperf-rounds.sh                 (3 rounds of planetd tcp://, planetd udp://, yggdrasil)
#   ROUNDS=5 IFMTU=1420 IPERF_SECONDS=8 sudo bench/iperf-rounds.sh
#   KINDS="udp udp-dgram" sudo bench/iperf-rounds.sh   (udp-dgram: udp:// on node:dgram, PLANETD_UDP_SOCKET=dgram)
#   KINDS="tcp tcp-box" sudo bench/iperf-rounds.sh     (tcp-box, udp-box: sessions on NaCl box only,
#                                                      PLANETD_SESSION_CIPHER=box, not ChaCha20-Poly1305)
#   KINDS="tcp tcp:PLANETD_TUN_OFFLOAD=on" sudo bench/iperf-rounds.sh   (an A/B of any environment knob:
#                                                      kind:VAR=value[,VAR=value], reported as its own row)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3}
export IFMTU=${IFMTU:-65535} IPERF_SECONDS=${IPERF_SECONDS:-10}

kinds=${KINDS:-tcp udp yggdrasil}
declare -A runs=([tcp]="" [udp]="" [udp-dgram]="" [tcp-box]="" [udp-box]="" [yggdrasil]="")
variants=()
for kind in $kinds; do [[ "$kind" == *:* ]] && runs[$kind]="" && variants+=("$kind"); done
for r in $(seq 1 "$rounds"); do
  for kind in $kinds; do
    if [[ "$kind" == *:* ]]; then
      # kind:VAR=value,VAR=value: that link kind with those variables in the daemons' environment.
      IFS=, read -ra assignments <<<"${kind#*:}"
      v=$(env "${assignments[@]}" PLANETD_LINK="${kind%%:*}" bash bench/iperf.sh __one planetd) || v=""
    elif [ "$kind" = yggdrasil ]; then
      v=$(bash bench/iperf.sh __one yggdrasil) || v=""
    elif [ "$kind" = udp-dgram ]; then
      v=$(PLANETD_LINK=udp PLANETD_UDP_SOCKET=dgram bash bench/iperf.sh __one planetd) || v=""
    elif [ "$kind" = tcp-box ] || [ "$kind" = udp-box ]; then
      v=$(PLANETD_LINK=${kind%-box} PLANETD_SESSION_CIPHER=box bash bench/iperf.sh __one planetd) || v=""
    else
      v=$(PLANETD_LINK=$kind bash bench/iperf.sh __one planetd) || v=""
    fi
    echo "round $r: $kind ${v:-failed} Mbit/s" >&2
    [ -n "$v" ] && runs[$kind]+="$v "
  done
done

median() { tr ' ' '\n' | { grep -v '^$' || true; } | sort -n | awk '{a[NR]=$1} END {if (NR == 0) print "nan"; else if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
tcp=$(echo "${runs[tcp]}" | median)
udp=$(echo "${runs[udp]}" | median)
udpd=$(echo "${runs[udp-dgram]}" | median)
ygg=$(echo "${runs[yggdrasil]}" | median)
echo "iperf3 one stream, ${IPERF_SECONDS} s, IfMTU ${IFMTU}, medians of ${rounds} interleaved rounds, $(nproc) CPUs"
echo "planetd tcp://:    ${tcp} Mbit/s  (${runs[tcp]})"
echo "planetd udp://:    ${udp} Mbit/s  (${runs[udp]})"
[ -n "${runs[udp-dgram]}" ] && echo "udp:// on dgram:   ${udpd} Mbit/s  (${runs[udp-dgram]})"
for kind in tcp-box udp-box; do
  if [ -n "${runs[$kind]}" ]; then
    m=$(echo "${runs[$kind]}" | median)
    plain=$(echo "${runs[${kind%-box}]}" | median)
    echo "${kind%-box}:// sessions on box: ${m} Mbit/s  (${runs[$kind]}); ChaCha20-Poly1305 / box: $(node -e "console.log((${plain/nan/NaN} / ${m/nan/NaN}).toFixed(2))")"
  fi
done
for kind in "${variants[@]}"; do
  m=$(echo "${runs[$kind]}" | median)
  plain=$(echo "${runs[${kind%%:*}]}" | median)
  echo "${kind}: ${m} Mbit/s  (${runs[$kind]}); / ${kind%%:*}: $(node -e "console.log((${m/nan/NaN} / ${plain/nan/NaN}).toFixed(2))")"
done
echo "yggdrasil 0.4.7:   ${ygg} Mbit/s  (${runs[yggdrasil]})"
node -e "const [t,u,y]=[${tcp/nan/NaN},${udp/nan/NaN},${ygg/nan/NaN}]; console.log('ratios: tcp/yggdrasil ' + (t/y).toFixed(2) + ', udp/yggdrasil ' + (u/y).toFixed(2) + ', udp/tcp ' + (u/t).toFixed(2))"
if [ -n "${runs[udp-dgram]}" ]; then
  node -e "console.log('udp:// native socket / node:dgram: ' + (${udp/nan/NaN} / ${udpd/nan/NaN}).toFixed(2))"
fi

#!/usr/bin/env bash
# Memory (issue 11): a bare `node` process (the same binary) against planetd pairs, idle RSS and RSS
# after SECS of one stream plus SECS of four streams of iperf3 through them; medians of interleaved
# rounds from bench/matrix.sh, whose table carries the two targets as columns: "idle − bare node MiB"
# (target <= 10) and "RSS load/idle" (target <= 1.5). Needs root (namespaces, TUN).
#   sudo bench/memory.sh                          (3 rounds, 30 + 30 s of load, ~6 min)
#   ROUNDS=5 SECS=10 ONLY="node,planetd-udp" sudo bench/memory.sh
set -euo pipefail
export ONLY=${ONLY:-node,planetd-tcp@65535,planetd-tcp@1420,planetd-udp@1420}
export SECS=${SECS:-30} ROUNDS=${ROUNDS:-3}
export OUT=${OUT:-bench/memory-$(date -u +%Y%m%d-%H%M).md}
exec bash "$(dirname "$0")/matrix.sh"

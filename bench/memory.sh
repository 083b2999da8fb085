#!/usr/bin/env bash
# Memory (issue 11): a bare `node` process (the same binary, `node -e 'setInterval(() => {}, 1e9)'`)
# against planetd pairs started as the README's install runs them (bin/planetd run --config … from
# the checkout, with the environment and node flags of bin/planetd's #! line), idle RSS and RSS
# after SECS of one stream plus SECS of four streams of iperf3 through them; medians of interleaved
# rounds from bench/matrix.sh, whose table puts the bare node's idle RSS and planetd's side by side
# and carries the two targets as columns: "idle − bare node MiB" (target <= 10) and "RSS load/idle"
# (target <= 1.5). Needs root (namespaces, TUN).
#   sudo bench/memory.sh                          (3 rounds, 30 + 30 s of load, ~30 min)
#   ROUNDS=5 SECS=10 ONLY="node,planetd-udp" sudo bench/memory.sh
#   IDLE_SETTLE=60 LOAD_SETTLE=25                 (the defaults: s after the pair is up, s after the load)
# Idle is read IDLE_SETTLE s after the pair is up, not 5 s as in bench/matrix.sh: planetd's RSS is
# ~4 MiB higher until V8's memory reducer shrinks the young generation (8 s after start), and the
# JIT's compiler code (~3.7 MiB of node's text) is paged in once the idle timers tier up (at once
# with the data path's low interrupt budget, src/daemon/jit-tiering.ts; ~2 min without it). It then
# creeps up ~1 MiB over the next minutes as idle allocation touches both halves of the young
# generation. The bare node stays flat. RSS after load is read LOAD_SETTLE s after the load: the
# heap trim (src/daemon/heap-trim.ts) runs 15 s after a burst.
# For an A/B of a change, bench/idle-rss.sh is quicker and steadier (standalone daemons of two trees
# side by side with a bare node; ATTRIB=1 shows which pages the difference is made of).
set -euo pipefail
export ONLY=${ONLY:-node,planetd-tcp@65535,planetd-tcp@1420,planetd-udp@1420}
export SECS=${SECS:-30} ROUNDS=${ROUNDS:-3}
export IDLE_SETTLE=${IDLE_SETTLE:-60} LOAD_SETTLE=${LOAD_SETTLE:-25}
export OUT=${OUT:-bench/memory-$(date -u +%Y%m%d-%H%M).md}
exec bash "$(dirname "$0")/matrix.sh"

#!/bin/sh
# The image's entrypoint. No arguments: `planetd run` with the mounted /etc/planetd/planetd.conf if there
# is one, else with /var/lib/planetd/planetd.conf (the volume), which planetd generates on first start.
# Arguments starting with "-" go to `planetd run`; anything else runs as a command (sh, planetctl getPeers).
set -e
if [ "$#" -eq 0 ]; then
  if [ -f /etc/planetd/planetd.conf ]; then set -- --config /etc/planetd/planetd.conf; fi
  set -- planetd run "$@"
elif [ "${1#-}" != "$1" ]; then
  set -- planetd run "$@"
fi
exec "$@"

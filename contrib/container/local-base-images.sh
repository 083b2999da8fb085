#!/bin/sh
# Make the Dockerfile's two FROM images without a container registry (only Debian's apt mirror):
#   docker.io/library/node:20-bookworm       debootstrap minbase + g++, make, python3 + this machine's Node
#   docker.io/library/node:20-bookworm-slim  debootstrap minbase + this machine's Node
# committed into buildah's local storage under those names, so `buildah build --pull=never` finds them.
# The debootstrapped root filesystems are cached in $PLANETD_IMAGE_CACHE (default /var/cache/planetd-image),
# and an image is committed again only when its rootfs or this machine's Node changed.
# Needs root, debootstrap and buildah. Honours buildah's environment (CONTAINERS_STORAGE_CONF, STORAGE_DRIVER).
set -eu

cache=${PLANETD_IMAGE_CACHE:-/var/cache/planetd-image}
mirror=${PLANETD_DEBIAN_MIRROR:-http://deb.debian.org/debian}
node_bin=$(readlink -f "$(command -v node)")
prefix=$(dirname "$(dirname "$node_bin")")
node_version=$("$node_bin" --version)
case "$node_version" in
v20.*) ;;
*) echo "local-base-images: this machine's Node is $node_version; the images are named node:20" >&2; exit 1 ;;
esac
[ -f "$prefix/include/node/node_api.h" ] || {
  echo "local-base-images: no Node headers in $prefix/include/node (the build image needs them)" >&2
  exit 1
}
mkdir -p "$cache/debs"

# rootfs NAME [EXTRA PACKAGES]: debootstrap once into $cache/NAME, slimmed like Debian's -slim images.
rootfs() {
  dir="$cache/$1"
  [ -f "$dir.done" ] && return 0
  rm -rf "$dir" "$dir.tmp"
  echo "local-base-images: debootstrap --variant=minbase bookworm ($1)" >&2
  debootstrap --variant=minbase ${2:+--include="$2"} --cache-dir="$cache/debs" bookworm "$dir.tmp" "$mirror" >&2
  rm -rf "$dir.tmp"/var/cache/apt/archives/*.deb "$dir.tmp"/var/lib/apt/lists/* \
    "$dir.tmp"/usr/share/doc/* "$dir.tmp"/usr/share/man/* "$dir.tmp"/usr/share/info/* \
    "$dir.tmp"/usr/share/locale/*
  mv "$dir.tmp" "$dir"
  date -u +%Y-%m-%dT%H:%M:%SZ >"$dir.done"
}

# commit NAME IMAGE WITH_HEADERS: the rootfs plus Node (binary, npm, headers if asked) at this machine's paths.
commit() {
  stamp="$(cat "$cache/$1.done") $node_version $3"
  have=$(buildah inspect --type image --format '{{index .OCIv1.Config.Labels "planetd.base"}}' "$2" 2>/dev/null || true)
  if [ "$have" = "$stamp" ]; then
    echo "local-base-images: $2 is up to date ($stamp)" >&2
    return 0
  fi
  ctr=$(buildah from scratch)
  trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
  buildah copy --quiet "$ctr" "$cache/$1" / >/dev/null
  buildah copy --quiet "$ctr" "$node_bin" "$prefix/bin/node" >/dev/null
  if [ -d "$prefix/lib/node_modules/npm" ]; then
    buildah copy --quiet "$ctr" "$prefix/lib/node_modules/npm" "$prefix/lib/node_modules/npm" >/dev/null
    buildah run --isolation chroot "$ctr" -- ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$prefix/bin/npm"
    buildah run --isolation chroot "$ctr" -- ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$prefix/bin/npx"
  fi
  [ "$3" = headers ] && buildah copy --quiet "$ctr" "$prefix/include/node" "$prefix/include/node" >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env NODE_VERSION="${node_version#v}" --cmd node --label planetd.base="$stamp" "$ctr"
  buildah commit --quiet --rm "$ctr" "$2" >/dev/null
  trap - EXIT
  echo "local-base-images: committed $2 ($stamp)" >&2
}

rootfs bookworm-minbase
rootfs bookworm-build g++,make,python3
commit bookworm-build docker.io/library/node:20-bookworm headers
commit bookworm-minbase docker.io/library/node:20-bookworm-slim no-headers

#!/usr/bin/env bash
# Make a Debian 12 base image in the Docker engine at $DOCKER_HOST without
# an image registry: debootstrap a minimal bookworm (--variant=minbase) from
# the mirror this machine's apt uses, with apt pointed at this machine's
# sources, and `docker import` it. The root file system is kept as a tar in
# the cache directory, so debootstrap runs once per machine.
#
# Usage: tools/make-debian-base.sh [--include FILE]... [TAG]
#   --include FILE  also install the packages FILE lists, one a line
#                   (debootstrap --include): an engine whose builds have no
#                   network can still build docker/Dockerfile on the result,
#                   since its apt-get install then finds everything installed
#   TAG             default pht-test/debian:12
# Cache: $PHT_DEBIAN_CACHE, else ${PHT_BUILD_DIR:-build}/cache, one tar per
# package set. Needs root and debootstrap for the first run (apt-get install
# debootstrap), only the docker client afterwards. Prints TAG on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
die() { echo "make-debian-base: $*" >&2; exit 1; }
pkgs=()
while [ $# -gt 0 ]; do
    case $1 in
        --include) [ -r "${2:-}" ] || die "--include needs a readable file"
                   mapfile -t -O "${#pkgs[@]}" pkgs < <(grep -v '^[[:space:]]*\(#\|$\)' "$2"); shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) break ;;
    esac
done
tag=${1:-pht-test/debian:12}
cache=${PHT_DEBIAN_CACHE:-${PHT_BUILD_DIR:-build}/cache}
name=debian-12-minbase
if [ ${#pkgs[@]} -gt 0 ]; then
    include=$(printf '%s\n' "${pkgs[@]}" | LC_ALL=C sort -u | paste -sd, -)
    name=$name-$(printf '%s' "$include" | sha256sum | cut -c1-12)
fi
tarball=$cache/$name.tar

if docker image inspect "$tag" >/dev/null 2>&1; then echo "$tag"; exit 0; fi

if [ ! -s "$tarball" ]; then
    [ "$(id -u)" -eq 0 ] || die "needs root for debootstrap (or a cached $tarball)"
    command -v debootstrap >/dev/null || die "needs debootstrap: apt-get install debootstrap"
    mkdir -p "$cache"
    mirror=$(tools/debian-mirror.sh)
    root=$(mktemp -d "${TMPDIR:-/tmp}/pht-debian.XXXXXX")
    trap 'rm -rf --one-file-system "$root" "$tarball.tmp"' EXIT
    echo "make-debian-base: debootstrap bookworm (minbase${include:+ with $include}) from $mirror" >&2
    debootstrap --variant=minbase ${include:+--include="$include"} bookworm "$root" "$mirror" >"$root.log" 2>&1 ||
        { tail -n 20 "$root.log" >&2; rm -f "$root.log"; die "debootstrap failed"; }
    rm -f "$root.log"
    # apt in the image uses this machine's sources (bookworm, -updates, -security)
    rm -f "$root/etc/apt/sources.list"
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -e "$f" ] && grep -q debian "$f" && cp "$f" "$root/etc/apt/sources.list.d/"
    done
    [ -e /etc/apt/sources.list ] && cp /etc/apt/sources.list "$root/etc/apt/sources.list"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" --numeric-owner -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
fi
docker import --change 'CMD ["/bin/bash"]' "$tarball" "$tag" >/dev/null
echo "$tag"

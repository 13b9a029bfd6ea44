#!/usr/bin/env bash
# Install what libpht needs on Debian 12: build tools and libraries, both Lua
# engines, busted, and the real components the test suite drives.
# Usage: tools/install-deps.sh [--test]   (--test adds the test-only tools)
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

pkgs=(build-essential cmake pkg-config openssl libssl-dev libcjson-dev libarchive-dev
      libcurl4-openssl-dev liblua5.4-dev lua5.4 libluajit2-5.1-dev luajit2 lua-busted
      tar gzip zstd)
if [ "${1:-}" = "--test" ]; then
    pkgs+=(valgrind)
fi

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}" >&2
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "install-deps: all dependencies present" >&2

#!/usr/bin/env bash
# Install what libpht needs on Debian 12: build tools and libraries, both Lua
# engines, busted, and the real components the test suite drives.
# Usage: tools/install-deps.sh [--test] [--list]
#   --test  also install the test-only tools
#   --list  print the packages, one a line, and install nothing
# Idempotent and quiet: when everything is installed it only asks dpkg.
set -euo pipefail
test=0 list=0
for arg in "$@"; do
    case $arg in
        --test) test=1 ;;
        --list) list=1 ;;
        *) echo "install-deps: unknown option $arg (--test, --list)" >&2; exit 2 ;;
    esac
done
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

# LuaJIT is OpenResty's luajit2 branch (luajit2, libluajit2-5.1-dev), which
# conflicts with Debian's plain luajit; nginx's lua module accepts either.
# busybox-static: the base image tools/make-base-image.sh builds, on which
# the demo and the tests build their trains.
pkgs=(build-essential cmake pkg-config openssl libssl-dev libcjson-dev libarchive-dev
      libcurl4-openssl-dev liblua5.4-dev lua5.4 libluajit2-5.1-dev luajit2 lua-busted
      tar gzip zstd busybox-static)
if [ "$test" = 1 ]; then
    # valgrind: memcheck_* ctests. docker.io: dockerd, containerd, runc and
    # the client; docker-registry: a v2 registry; skopeo and umoci: image
    # oracles; nginx with the lua module: the gateway; luarocks: the
    # rockspec's `luarocks make`; curl, python3, file, xxd, util-linux
    # (setsid, umount) and procps: used by tools/services.sh and the specs.
    # time: GNU time, the peak-memory figure of the benchmarks;
    # apache2-utils: htpasswd's bcrypt for the basic-auth registry;
    # python3-cryptography: the JWT signatures of tools/token-service.py;
    # debootstrap: the Debian 12 base of spec/container_image_spec.lua
    # (tools/make-debian-base.sh).
    # clang, libclang-rt-14-dev (ASan, UBSan and libFuzzer runtimes, which
    # --no-install-recommends would skip) and llvm (llvm-symbolizer for the
    # reports): the sanitizer C tests and tools/fuzz.sh.
    pkgs+=(valgrind docker.io docker-registry skopeo umoci nginx libnginx-mod-http-lua
           luarocks curl python3 python3-cryptography apache2-utils file xxd util-linux
           procps coreutils time debootstrap clang libclang-rt-14-dev llvm)
fi
if [ "$list" = 1 ]; then
    printf '%s\n' "${pkgs[@]}"
    exit 0
fi

declare -A have=()
while read -r p status; do
    [ "$status" = "installed" ] && have[${p%%:*}]=1
done < <(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${pkgs[@]}" 2>/dev/null || true)
missing=()
for p in "${pkgs[@]}"; do
    [ -n "${have[$p]:-}" ] || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}" >&2
    # Packages with services (nginx, docker.io, docker-registry) would start
    # them from their postinst on a machine without systemd; the test suite
    # starts its own on loopback, so deny service starts while installing.
    policy=/usr/sbin/policy-rc.d made_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
        $SUDO chmod 755 "$policy"
        made_policy=1
    fi
    cleanup() { if [ "$made_policy" = 1 ]; then $SUDO rm -f "$policy"; fi; }
    trap cleanup EXIT
    log=$(mktemp)
    if ! { $SUDO apt-get update -qq &&
           $SUDO apt-get install -y -qq --no-install-recommends \
               -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
               "${missing[@]}"; } </dev/null >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        rm -f "$log"
        echo "install-deps: apt-get failed" >&2
        exit 1
    fi
    rm -f "$log"
fi
echo "install-deps: all dependencies present" >&2

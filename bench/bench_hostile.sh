#!/usr/bin/env bash
# Time and peak memory of opening images built to make the reader work
# (tools/make_hostile_image.c): `pht inspect` opens the image and indexes
# every layer, then fails on the missing train config (or the open fails on
# a cap); either way the line shows what the open cost. The last line
# extracts a 2000-file, 4000-byte-deep image with pht.open_image + extract.
#
# Usage: bench/bench_hostile.sh
# Environment:
#   PHT_BUILD_DIR  build tree with bin/pht and bin/make-hostile-image
#                  (default: build-release, else build)
#   TMPDIR         scratch space: about 20 MB, and 40 MB for the extraction
#
# Prints: shape, files, archive KiB, seconds (wall), peak RSS KiB (GNU time),
# and how the open ended.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${PHT_BUILD_DIR:-}
[ -n "$build" ] || { build=$PWD/build-release; [ -x "$build/bin/pht" ] || build=$PWD/build; }
pht=$build/bin/pht gen=$build/bin/make-hostile-image
for b in "$pht" "$gen"; do
    [ -x "$b" ] || { echo "bench_hostile: no $b; build first (see bench/README.md)" >&2; exit 1; }
done
[ -x /usr/bin/time ] || { echo "bench_hostile: needs GNU time (/usr/bin/time)" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/pht-bench-hostile.XXXXXX")
trap 'rm -rf "$work"' EXIT

printf '%-11s %7s %9s %8s %10s  %s\n' shape files "KiB" seconds "peak KiB" outcome
run() { # shape count
    local img=$work/$1-$2.tar
    "$gen" "$img" "$1" "$2"
    local out
    out=$( { /usr/bin/time -f 'TIME %e %M' "$pht" inspect "docker-archive:$img" >/dev/null; } 2>&1 || true)
    local t m why
    read -r _ t m <<<"$(grep '^TIME' <<<"$out")"
    if grep -q 'max_path_bytes' <<<"$out"; then why="path cap (max_path_bytes)"
    elif grep -q 'train_config.json' <<<"$out"; then why="opened"
    else why=$(grep -v '^TIME' <<<"$out" | head -1 | cut -c1-60); fi
    printf '%-11s %7s %9s %8s %10s  %s\n' "$1" "$2" "$(( $(stat -c %s "$img") / 1024 ))" "$t" "$m" "$why"
    rm -f "$img"
}
run dirs-only 100000
run deep-files 100
run deep-files 1000
run deep-dir 2000
run deep-files 100000
run deep-dir 100000

img=$work/deep-dir-2000.tar
"$gen" "$img" deep-dir 2000
lua=lua5.4
command -v "$lua" >/dev/null || lua=luajit
abi=$("$lua" -e 'print(jit and "5.1" or _VERSION:match("%d+%.%d+"))')
cat >"$work/extract.lua" <<'LUA'
local pht = require "pht"
local img = assert(pht.open_image(arg[1]))
assert(img:extract("/", arg[2]))
LUA
out=$( { LUA_CPATH="$build/lua/$abi/?.so" /usr/bin/time -f 'TIME %e %M' \
    "$lua" "$work/extract.lua" "docker-archive:$img" "$work/x"; } 2>&1)
read -r _ t m <<<"$(grep '^TIME' <<<"$out")"
printf '%-11s %7s %9s %8s %10s  %s\n' deep-dir 2000 "$(( $(stat -c %s "$img") / 1024 ))" "$t" "$m" \
    "opened and extracted ($(find "$work/x" -type f | wc -l) files)"

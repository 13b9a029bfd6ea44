#!/usr/bin/env bash
# A train over a three-station route, end to end, in a temporary directory:
#   keys for the creator, the builder and three stations; a train built on a
#   busybox base image; at each station pre-run, the run, post-run; finally
#   the creator decrypts the results and the demo prints them.
#
# Usage: tools/demo.sh [--keep] [--standin]
#   --keep     leave the working directory
#   --standin  use the stand-in run even when a Docker daemon answers
#
# The run step: when a Docker daemon answers (`docker info`, DOCKER_HOST
# honoured) the train really runs: docker load, docker create + start (its
# entrypoint writes the results), docker commit, docker save, as a station
# does. Without one it is a STAND-IN that executes the train's entrypoint on
# this host against an extracted /opt (tools/standin-run.lua) and writes the
# results into the image as a new layer.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
keep=0 standin=0
for arg in "$@"; do
    case $arg in
        --keep) keep=1 ;;
        --standin) standin=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "demo: unknown option $arg (see --help)" >&2; exit 2 ;;
    esac
done

build=${PHT_BUILD_DIR:-$root/build}
export PHT_BUILD_DIR=$build
tools/build.sh >/dev/null
pht=$build/bin/pht

work=$(mktemp -d "${TMPDIR:-/tmp}/pht-demo.XXXXXX")
if [ "$keep" = 0 ]; then trap 'rm -rf "$work"' EXIT; fi
cd "$work"
step() { printf '\n== %s\n' "$*"; }

step "keys: creator, builder, station_1..3"
mkdir -p keys
for who in creator builder station_1 station_2 station_3; do
    printf '%-10s fingerprint ' "$who"
    "$pht" keygen --out "keys/$who"
done

step "base image"
if [ -x "$root/tools/make-base-image.sh" ] && "$root/tools/make-base-image.sh" -o "$work/base.tar" \
        -t demo/busybox:latest >/dev/null 2>"$work/base.err"; then
    echo "busybox base image: docker-archive:$work/base.tar:demo/busybox:latest"
else
    cat "$work/base.err" >&2
    echo "demo: cannot build the base image (tools/make-base-image.sh; needs busybox-static)" >&2
    exit 1
fi

step "the train's files"
mkdir -p files
cat >files/entrypoint.sh <<'EOF'
#!/bin/sh
# Counts its visits and appends a line per station. /opt is $PHT_OPT when the
# demo's stand-in runs it on the host, else the container's /opt.
OPT=${PHT_OPT:-/opt}
mkdir -p "$OPT/pht_results/log"
n=$(cat "$OPT/pht_results/count.txt" 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" >"$OPT/pht_results/count.txt"
echo "visit $n: sum of 1..$((n * 100)) is $(seq 1 $((n * 100)) | awk '{s += $1} END {print s}')" \
    >>"$OPT/pht_results/log/visits.txt"
EOF
echo 'query: count the visits' >files/analysis.txt
echo '{"query": "demo"}' >files/query.json
ls -l files

image=docker-archive:$work/train.tar:demo/train:latest
step "build (central side): $image"
"$pht" build --files files \
    --station station_1=keys/station_1.pub.pem \
    --station station_2=keys/station_2.pub.pem \
    --station station_3=keys/station_3.pub.pem \
    --creator-id demo-creator --creator-key keys/creator.pem \
    --builder-key keys/builder.pem \
    --base "docker-archive:$work/base.tar:demo/busybox:latest" --output "$image" -q
"$pht" inspect "$image"

use_docker=0
if [ "$standin" = 0 ] && command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    use_docker=1
fi

run_train() { # $1 = image reference
    if [ "$use_docker" = 1 ]; then
        echo "RUN: docker load, docker create + start, docker commit, docker save"
        docker load -q -i "$work/train.tar" >/dev/null
        local cid
        cid=$(docker create --network none demo/train:latest)
        docker start -a "$cid"
        docker commit "$cid" demo/train:latest >/dev/null
        docker rm "$cid" >/dev/null
        docker save -o "$work/train.tar" demo/train:latest demo/train:base
        docker rmi demo/train:latest demo/train:base >/dev/null
    else
        echo "STAND-IN RUN (no Docker daemon, no container): executing the entrypoint on this host"
        LUA_CPATH="$build/lua/5.4/?.so;;" LUA_PATH="$root/lua/?.lua;;" \
            lua5.4 "$root/tools/standin-run.lua" "$1" "$work"
    fi
}

for s in 1 2 3; do
    station=station_$s
    step "$station: pre-run, run, post-run"
    STATION_ID=$station PRIVATE_KEY_PATH=keys/$station.pem "$pht" pre-run -q "$image"
    echo "pre-run: verified and decrypted"
    run_train "$image"
    STATION_ID=$station PRIVATE_KEY_PATH=keys/$station.pem "$pht" post-run -q "$image"
    echo "post-run: signed and encrypted"
done

step "inspect the train that came home"
"$pht" inspect "$image"

step "the creator decrypts the results"
"$pht" decrypt-results "$image" --key keys/creator.pem --out results -q
(cd results && find . -type f | sort | while read -r f; do
    printf -- '--- %s\n' "${f#./}"
    cat "$f"
done)
[ "$keep" = 1 ] && echo "kept: $work"
echo "demo: ok"

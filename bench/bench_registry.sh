#!/usr/bin/env bash
# What a station sends when it pushes a train back to the registry: a train
# on a BASE_MB base image (default 1024: one layer of random bytes, so
# nothing compresses) gets RESULTS_MB of random results (default 10), and
# `pht post-run` pushes it into the next station's repository of a registry
# that holds the base already. A counting TCP proxy between pht and the
# registry gives the bytes pht sent; the new layer's size comes from the
# pushed manifest. Prints one table (bench/README.md has the figures).
#
# Usage: bench/bench_registry.sh [BASE_MB [RESULTS_MB]]
# Environment:
#   PHT_BUILD_DIR      build tree with bin/pht (default: build-release, else build)
#   PHT_TEST_REGISTRY  127.0.0.1:PORT of a plain-HTTP docker-registry; start one with
#                      eval "$(tools/services.sh start-registry)"
#   TMPDIR             scratch space: about 4 x BASE_MB free
#
# Steps (each timed): the base image (busybox plus the random layer) into an
# OCI layout, pushed to REPO/base; `pht build` of a three-stop train on it
# into REPO/station_1/train; `pht pre-run` s1 from there into a local OCI
# layout (pulls the base once into the station's cache dir); a stand-in run
# adding the results; `pht post-run` into REPO/station_2/train through the
# proxy. The figure that counts: sent bytes / new layer bytes (<= 1.2).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
if [ -z "${PHT_BUILD_DIR:-}" ]; then
    PHT_BUILD_DIR=$root/build-release
    [ -x "$PHT_BUILD_DIR/bin/pht" ] || PHT_BUILD_DIR=$root/build
fi
pht=$PHT_BUILD_DIR/bin/pht
[ -x "$pht" ] || { echo "bench_registry: no $pht; build first (see bench/README.md)" >&2; exit 1; }
reg=${PHT_TEST_REGISTRY:-}
[ -n "$reg" ] || { echo "bench_registry: set PHT_TEST_REGISTRY (tools/services.sh start-registry)" >&2; exit 1; }
curl -fsS "http://$reg/v2/" >/dev/null || { echo "bench_registry: no registry at http://$reg" >&2; exit 1; }
base_mb=${1:-1024}
results_mb=${2:-10}

work=$(mktemp -d "${TMPDIR:-/tmp}/pht-bench-registry.XXXXXX")
proxy_pid=""
cleanup() {
    if [ -n "$proxy_pid" ] && grep -q count-proxy "/proc/$proxy_pid/cmdline" 2>/dev/null; then
        kill "$proxy_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT; [ -n "${BENCH_KEEP:-}" ] && trap - EXIT
export PHT_CACHE_DIR=$work/cache # the station's cache dir, fresh
repo=pht-bench-$$
reg_opts=(--tls-verify=false)

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
step() { # $1 = label; rest = command; prints "label seconds" into $work/times
    local t0 t1
    t0=$(now)
    "${@:2}" >"$work/out" 2>&1 || { cat "$work/out" >&2; exit 1; }
    t1=$(now)
    printf '| %s | %s s |\n' "$1" "$(secs "$t0" "$t1")" >>"$work/times"
}

# A TCP proxy in front of the registry counting the bytes the client sends.
cat >"$work/count-proxy.py" <<'EOF'
import socket, sys, threading
up_host, up_port = sys.argv[1].rsplit(":", 1)
total = [0]
lock = threading.Lock()
lst = socket.socket()
lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lst.bind(("127.0.0.1", 0))
lst.listen(16)
open(sys.argv[2], "w").write(str(lst.getsockname()[1]))
def pump(src, dst, count):
    try:
        while True:
            d = src.recv(65536)
            if not d:
                break
            if count:
                with lock:
                    total[0] += len(d)
                    open(sys.argv[3], "w").write(str(total[0]))
            dst.sendall(d)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
def handle(c):
    u = socket.create_connection((up_host, int(up_port)))
    threading.Thread(target=pump, args=(c, u, True), daemon=True).start()
    threading.Thread(target=pump, args=(u, c, False), daemon=True).start()
while True:
    c, _ = lst.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
EOF
python3 "$work/count-proxy.py" "$reg" "$work/port" "$work/sent" </dev/null >/dev/null 2>&1 &
proxy_pid=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.05; done
proxy=127.0.0.1:$(cat "$work/port")
# every step talks to the registry through the proxy (one registry name, as
# a station has it); only post-run's bytes are counted
reg_direct=$reg
reg=$proxy

# The base: busybox plus one layer of random bytes, as an OCI layout, pushed.
busybox_oci=$PHT_BUILD_DIR/test-images/busybox-oci
[ -e "$busybox_oci/index.json" ] ||
    tools/make-base-image.sh -o "$PHT_BUILD_DIR/test-images/busybox.tar" --oci "$busybox_oci" >/dev/null
mkdir -p "$work/rootfs/data"
head -c "$((base_mb << 20))" /dev/urandom >"$work/rootfs/data/base.bin"
cat >"$work/make-base.lua" <<EOF
package.cpath = "$PHT_BUILD_DIR/lua/5.4/?.so;" .. package.cpath
local pht = require "pht"
local img = assert(pht.open_image("oci:$busybox_oci:latest", { tls_verify = false }))
local w = assert(img:writer())
assert(w:add_dir("/data"))
assert(w:add_file("/data/base.bin", "$work/rootfs/data/base.bin"))
assert(w:commit("docker://$reg/$repo/base:latest", {}))
EOF
rm_base() { rm -f "$work/rootfs/data/base.bin"; }
step "base image ($base_mb MiB, gzip) pushed by pht" lua5.4 "$work/make-base.lua"
rm_base

# The train: built on the base in the registry, into station 1's repository.
for who in creator s1 s2 s3; do "$pht" keygen --out "$work/$who" >/dev/null; done
mkdir -p "$work/files"
printf '#!/bin/sh\necho run\n' >"$work/files/entrypoint.sh"
step "pht build into station_1/train" "$pht" build -q --files "$work/files" \
    --station "s1=$work/s1.pub.pem" --station "s2=$work/s2.pub.pem" --station "s3=$work/s3.pub.pem" \
    --creator-id 7 --creator-key "$work/creator.pem" --base "docker://$reg/$repo/base:latest" \
    --output "docker://$reg/$repo/station_1/train:latest" "${reg_opts[@]}"
step "pht pre-run s1: pull into a local layout" "$pht" pre-run -q \
    "docker://$reg/$repo/station_1/train:latest" --output "oci:$work/work:train" \
    --station s1 --key "$work/s1.pem" "${reg_opts[@]}"

# The stand-in run: RESULTS_MB of random results.
head -c "$((results_mb << 20))" /dev/urandom >"$work/results.bin"
cat >"$work/run.lua" <<EOF
package.cpath = "$PHT_BUILD_DIR/lua/5.4/?.so;" .. package.cpath
local pht = require "pht"
local img = assert(pht.open_image("oci:$work/work:train"))
local w = assert(img:writer())
assert(w:add_dir("/opt/pht_results", { opaque = true }))
assert(w:add_file("/opt/pht_results/results.bin", "$work/results.bin"))
assert(w:commit("oci:$work/work:train"))
EOF
step "stand-in run: $results_mb MiB of results" lua5.4 "$work/run.lua"

sleep 0.2
sent0=$(cat "$work/sent" 2>/dev/null || echo 0) # the proxy's running total so far
step "pht post-run s1: push into station_2/train" "$pht" post-run -q "oci:$work/work:train" \
    --output "docker://$reg/$repo/station_2/train:latest" --station s1 --key "$work/s1.pem" \
    "${reg_opts[@]}"
sleep 0.2
sent=$(( $(cat "$work/sent") - sent0 ))
new=$(curl -fsS -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$reg_direct/v2/$repo/station_2/train/manifests/latest" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][-1]["size"])')
base=$(curl -fsS -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$reg_direct/v2/$repo/station_2/train/manifests/latest" |
    python3 -c 'import json,sys; m=json.load(sys.stdin); print(sum(l["size"] for l in m["layers"][:-1]))')

echo "## bench_registry: post-run push of a train on a $base_mb MiB base with $results_mb MiB of results"
echo
echo "| step | time |"
echo "| --- | --- |"
cat "$work/times"
echo
echo "| what | bytes |"
echo "| --- | --- |"
echo "| layers below the new one (mounted, not sent) | $base |"
echo "| the new layer (gzip) | $new |"
echo "| sent by pht to the registry during post-run | $sent |"
awk -v s="$sent" -v n="$new" 'BEGIN { printf "| sent / new layer | %.3f |\n", s / n }'
awk -v s="$sent" -v n="$new" 'BEGIN { exit !(s <= 1.2 * n) }' ||
    { echo "bench_registry: sent more than 1.2 x the new layer" >&2; exit 1; }

#!/usr/bin/env bash
# What the master-image check costs: pre-run on a train built on a master of
# BIG_MB outside /opt (FILES files, as an interpreter's tree has), with and
# without --master, on docker-archive and oci (and docker-daemon when
# DOCKER_HOST answers). The step's own wall time comes from a station script
# that reads /proc/uptime (10 ms steps) before and after check_master, and
# its CPU time from the workflow (os.clock); pre-run's from the wall clock.
# One warm-up run, then three, medians. Target: the check costs at most 10%
# of pre-run on the same train.
#
# Usage: bench/bench_master.sh [BIG_MB [FILES]]     (default: 1024 20000)
# Environment:
#   PHT_BUILD_DIR  build tree with bin/pht (default: build-release, else build)
#   TMPDIR         scratch space: about 5 x BIG_MB free
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
if [ -z "${PHT_BUILD_DIR:-}" ]; then
    PHT_BUILD_DIR=$root/build-release
    [ -x "$PHT_BUILD_DIR/bin/pht" ] || PHT_BUILD_DIR=$root/build
fi
pht=$PHT_BUILD_DIR/bin/pht
[ -x "$pht" ] || { echo "bench_master: no $pht; build first (see bench/README.md)" >&2; exit 1; }
command -v skopeo >/dev/null || { echo "bench_master: needs skopeo (tools/install-deps.sh --test)" >&2; exit 1; }
big_mb=${1:-1024}
nfiles=${2:-20000}

work=$(mktemp -d "${TMPDIR:-/tmp}/pht-bench-master.XXXXXX")
export PHT_CACHE_DIR=$work/layer-cache
trap 'rm -rf "$work"' EXIT

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# The master: the busybox base plus one layer of big_mb in nfiles files
# under /usr/lib/big, written with tar and sha256sum as docker save lays it out.
tools/make-base-image.sh -o "$work/busybox.tar" -t pht-bench/busybox:latest >/dev/null
m=$work/master
mkdir -p "$m/base" "$m/tree/usr/lib/big"
tar -xf "$work/busybox.tar" -C "$m/base"
base_layer=$(sed -E 's/.*"Layers":\["([^"]+)".*/\1/' "$m/base/manifest.json")
per=$(( big_mb * 1000000 / nfiles ))
head -c "${big_mb}000000" /dev/urandom | (cd "$m/tree/usr/lib/big" && split -b "$per" -a 5 -d - f)
tar -C "$m/tree" --sort=name --mtime=@0 --owner=0 --group=0 -cf "$m/big.tar" usr
rm -rf "$m/tree"
d1=$(sha256sum "$m/base/$base_layer" | cut -d' ' -f1)
d2=$(sha256sum "$m/big.tar" | cut -d' ' -f1)
mkdir -p "$m/out/$d1" "$m/out/$d2"
mv "$m/base/$base_layer" "$m/out/$d1/layer.tar"
mv "$m/big.tar" "$m/out/$d2/layer.tar"
printf '{"architecture":"amd64","os":"linux","created":"1970-01-01T00:00:00Z","config":{"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s","sha256:%s"]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"busybox"},{"created":"1970-01-01T00:00:00Z","created_by":"big"}]}' \
    "$d1" "$d2" >"$m/out/config.json"
cfg=$(sha256sum "$m/out/config.json" | cut -d' ' -f1)
mv "$m/out/config.json" "$m/out/$cfg.json"
printf '[{"Config":"%s.json","RepoTags":["pht-bench/master:latest"],"Layers":["%s/layer.tar","%s/layer.tar"]}]' \
    "$cfg" "$d1" "$d2" >"$m/out/manifest.json"
tar -C "$m/out" -cf "$work/master.tar" .
rm -rf "$m" "$work/busybox.tar"
master=docker-archive:$work/master.tar:pht-bench/master:latest
skopeo copy -q "$master" "oci:$work/master-oci:latest"

for who in creator s1; do "$pht" keygen --out "$work/$who" >/dev/null; done
mkdir -p "$work/files"
printf '#!/bin/sh\necho ran > /opt/pht_results/out.txt\n' >"$work/files/entrypoint.sh"
head -c 1000000 /dev/urandom >"$work/files/model.bin"
cat >"$work/steps.lua" <<'EOF2'
-- Print check_master's wall and CPU seconds on stderr, for bench_master.sh.
local function uptime()
  local f = assert(io.open("/proc/uptime"))
  local t = tonumber(f:read("*l"):match("^(%S+)"))
  f:close()
  return t
end
return function(wf)
  local t0
  wf:before(function(_, step) if step.name == "check_master" then t0 = uptime() end end)
  wf:after(function(_, step, outcome)
    if step.name == "check_master" then
      io.stderr:write(string.format("STEP check_master %.2f %.4f %s\n", uptime() - t0, outcome.seconds or 0,
        outcome.status))
    end
  end)
end
EOF2

build() { # $1 = base ref, $2 = output ref
    "$pht" build -q --files "$work/files" --station "s1=$work/s1.pub.pem" \
        --creator-id 7 --creator-key "$work/creator.pem" --base "$1" --output "$2"
}
build "$master" "docker-archive:$work/train.tar:pht-bench/train:latest"
build "oci:$work/master-oci:latest" "oci:$work/train-oci:latest"

daemon=
if [ -n "${DOCKER_HOST:-}" ] && docker info >/dev/null 2>&1; then
    daemon=1 repo=pht-bench/master-$$
    docker load -q -i "$work/master.tar" >/dev/null
    docker tag pht-bench/master:latest "$repo-master:latest"
    docker rmi pht-bench/master:latest >/dev/null
    build "docker-daemon:$repo-master:latest" "$repo-train:latest"
    docker tag "$repo-train:latest" "$repo-train:orig"
    trap 'for t in $(docker images --format "{{.Repository}}:{{.Tag}}" | grep "^$repo" || true); do
              docker rmi "$t" >/dev/null 2>&1 || true; done; rm -rf "$work"' EXIT
fi

# One pre-run on a fresh copy: prints "wall check_wall check_cpu".
run() { # $1 = transport, $2.. = extra options
    local t=$1 ref t0 t1; shift
    case $t in
    docker-archive) cp "$work/train.tar" "$work/in.tar"; ref=docker-archive:$work/in.tar:pht-bench/train:latest ;;
    oci) rm -rf "$work/in-oci"; cp -a "$work/train-oci" "$work/in-oci"; ref=oci:$work/in-oci:latest ;;
    docker-daemon) docker rmi "$repo-train:latest" >/dev/null 2>&1 || true
        docker tag "$repo-train:orig" "$repo-train:latest"; ref=docker-daemon:$repo-train:latest ;;
    esac
    sync
    t0=$(now)
    "$pht" pre-run "$ref" --station s1 --key "$work/s1.pem" --tmpdir "$work" -q \
        --script "$work/steps.lua" "$@" 2>"$work/err" || { cat "$work/err" >&2; return 1; }
    t1=$(now)
    local c
    c=$(awk '$1 == "STEP" && $2 == "check_master" && $5 == "ok" { print $3, $4 }' "$work/err")
    echo "$(secs "$t0" "$t1") ${c:-- -}"
    rm -rf "$work/in.tar" "$work/in-oci"
}

echo "bench_master: $("$pht" --version), pht from $PHT_BUILD_DIR"
echo "bench_master: master ${big_mb} MB outside /opt in ${nfiles} files, archive $(( $(stat -c %s "$work/master.tar") / 1000000 )) MB"
row() { printf '| %-14s | %-14s | %8s | %18s | %16s | %7s |\n' "$@"; }
row transport pre-run seconds "check_master wall" "check_master CPU" share
row --- --- ---: ---: ---: ---:
for t in docker-archive oci ${daemon:+docker-daemon}; do
    case $t in
    docker-archive) mref=$master ;;
    oci) mref=oci:$work/master-oci:latest ;;
    docker-daemon) mref=docker-daemon:$repo-master:latest ;;
    esac
    run "$t" >/dev/null # warm the page cache
    for mode in plain master; do
        : >"$work/walls"; : >"$work/cw"; : >"$work/cc"
        for _ in 1 2 3; do
            if [ "$mode" = master ]; then r=$(run "$t" --master "$mref"); else r=$(run "$t"); fi
            read -r a b c <<<"$r"
            echo "$a" >>"$work/walls"; echo "$b" >>"$work/cw"; echo "$c" >>"$work/cc"
        done
        w=$(median <"$work/walls")
        if [ "$mode" = master ]; then
            cw=$(median <"$work/cw"); cc=$(median <"$work/cc")
            share=$(awk -v c="$cw" -v w="$w" 'BEGIN { printf "%.1f%%", 100 * c / w }')
            row "$t" "--master" "$w" "$cw" "$cc" "$share"
        else
            row "$t" "without" "$w" - - -
        fi
    done
done

#!/usr/bin/env bash
# What a station's steps cost against what their /opt costs: time
# `pht post-run --rebase` and `pht pre-run` on a train whose base image holds
# BIG_MB of data outside /opt and on the same train on the small busybox base,
# each with RESULTS_MB of results, on the three transports (docker-daemon,
# docker-archive, oci), beside the primitives that bound each step on the
# same machine in the same run:
#   - create + GET /containers/{id}/archive?path=/opt + rm  (reading /opt)
#   - docker load of an image holding one RESULTS_MB layer  (writing a layer)
#   - cp of the input docker-archive                        (rewriting an archive)
#
# Usage: bench/bench_opt.sh [BIG_MB [RESULTS_MB]]     (default: 1024 10)
# Environment:
#   PHT_BUILD_DIR  build tree with bin/pht (default: build-release, else build)
#   DOCKER_HOST    the daemon (start one with: eval "$(tools/services.sh start-docker)");
#                  the figures mean something on overlay2, the driver stations run
#   TMPDIR         scratch space: about 6 x BIG_MB free
#
# The layer-index cache (doc/images.md) starts empty in the scratch space:
# the oci rows first time `pht inspect` on the layout, the first open of its
# base on this "station" (cold), then the steps, which find the base's
# headers in the cache as any later train on the same base would.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
if [ -z "${PHT_BUILD_DIR:-}" ]; then
    PHT_BUILD_DIR=$root/build-release
    [ -x "$PHT_BUILD_DIR/bin/pht" ] || PHT_BUILD_DIR=$root/build
fi
pht=$PHT_BUILD_DIR/bin/pht
[ -x "$pht" ] || { echo "bench_opt: no $pht; build first (see bench/README.md)" >&2; exit 1; }
export DOCKER_HOST=${DOCKER_HOST:-unix:///var/run/docker.sock}
sock=${DOCKER_HOST#unix://}
docker info --format '{{.ServerVersion}}' >/dev/null || { echo "bench_opt: no daemon at $DOCKER_HOST" >&2; exit 1; }
command -v skopeo >/dev/null || { echo "bench_opt: needs skopeo (tools/install-deps.sh --test)" >&2; exit 1; }
big_mb=${1:-1024}
res_mb=${2:-10}

work=$(mktemp -d "${TMPDIR:-/tmp}/pht-bench-opt.XXXXXX")
export PHT_CACHE_DIR=$work/layer-cache
repo=pht-bench/opt-$$ cname=pht-bench-opt-$$
cleanup() {
    docker rm -f "$cname" >/dev/null 2>&1 || true
    local t
    for t in $(docker images --format '{{.Repository}}:{{.Tag}}' | grep "^$repo" || true); do
        docker rmi "$t" >/dev/null 2>&1 || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
id_of() { docker image inspect --format '{{.Id}}' "$1"; }

# Run a pht command; prints "seconds peak_rss_MB". Fails loudly when it does.
timed() {
    local t0 t1
    t0=$(now)
    if ! /usr/bin/time -f %M -o "$work/rss" "$@" >"$work/out" 2>&1; then
        cat "$work/out" >&2; return 1
    fi
    t1=$(now)
    echo "$(secs "$t0" "$t1") $(($(tail -n 1 "$work/rss") / 1024))"
}

# The primitives -----------------------------------------------------------
# Reading /opt from the engine: a created (never started) container, its
# /opt as a tar stream, the container removed.
prim_opt_read() { # $1 = image
    local t0 c
    t0=$(now)
    c=$(curl -fsS --unix-socket "$sock" -H 'Content-Type: application/json' \
        -d "{\"Image\":\"$1\",\"Cmd\":[\"true\"],\"NetworkDisabled\":true}" \
        "http://localhost/v1.41/containers/create" | sed -E 's/.*"Id":"([0-9a-f]+)".*/\1/')
    curl -fsS --unix-socket "$sock" -o /dev/null "http://localhost/v1.41/containers/$c/archive?path=/opt"
    curl -fsS --unix-socket "$sock" -X DELETE -o /dev/null "http://localhost/v1.41/containers/$c"
    secs "$t0" "$(now)"
}

# Writing one layer into the engine: docker load of an image whose only
# layer holds RESULTS_MB of random bytes, then removing it again.
prim_layer_load() {
    local d=$work/layer-image t0 diff cfg
    rm -rf "$d"; mkdir -p "$d/l/opt"
    head -c "${res_mb}000000" /dev/urandom >"$d/l/opt/data.bin"
    tar -C "$d/l" -cf "$d/layer.tar" opt
    diff=$(sha256sum "$d/layer.tar" | cut -d' ' -f1)
    printf '{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
        "$diff" >"$d/config.json"
    cfg=$(sha256sum "$d/config.json" | cut -d' ' -f1)
    mv "$d/config.json" "$d/$cfg.json"
    printf '[{"Config":"%s.json","RepoTags":["%s-layer:latest"],"Layers":["layer.tar"]}]' \
        "$cfg" "$repo" >"$d/manifest.json"
    tar -C "$d" -cf "$work/layer-image.tar" manifest.json "$cfg.json" layer.tar
    t0=$(now)
    docker load -q -i "$work/layer-image.tar" >/dev/null
    secs "$t0" "$(now)"
    docker rmi "$repo-layer:latest" >/dev/null
    rm -rf "$d" "$work/layer-image.tar"
}

echo "bench_opt: $("$pht" --version), daemon $(docker info --format '{{.ServerVersion}} ({{.Driver}})'), pht from $PHT_BUILD_DIR"
echo "bench_opt: base outside /opt ${big_mb} MB, results ${res_mb} MB"
tools/make-base-image.sh -o "$work/busybox.tar" -t "$repo-small:latest" >/dev/null
docker load -q -i "$work/busybox.tar" >/dev/null
rm -f "$work/busybox.tar"
docker run --name "$cname" --network none "$repo-small:latest" \
    /bin/sh -c "mkdir -p /srv/big && head -c ${big_mb}000000 /dev/urandom > /srv/big/data.bin" 
docker commit "$cname" "$repo-big:latest" >/dev/null
docker rm "$cname" >/dev/null
for who in creator s1 s2 s3; do "$pht" keygen --out "$work/$who" >/dev/null; done
mkdir -p "$work/files"
cat >"$work/files/entrypoint.sh" <<EOF
#!/bin/sh
set -e
mkdir -p /opt/pht_results
head -c ${res_mb}000000 /dev/urandom > /opt/pht_results/data.bin
echo "visit done" > /opt/pht_results/note.txt
EOF

row() { printf '| %-7s | %-16s | %-22s | %8s | %8s |\n' "$@"; }
declare -A T
rows=()
for base in small big; do
    train=$repo-$base-train
    "$pht" build -q --files "$work/files" \
        --station "s1=$work/s1.pub.pem" --station "s2=$work/s2.pub.pem" --station "s3=$work/s3.pub.pem" \
        --creator-id 7 --creator-key "$work/creator.pem" \
        --base "$repo-$base:latest" --output "$train:latest"
    "$pht" pre-run -q "$train:latest" --station s1 --key "$work/s1.pem" --tmpdir "$work"
    docker run --name "$cname" --network none "$train:latest" /bin/sh /opt/pht_train/entrypoint.sh
    docker commit "$cname" "$train:latest" >/dev/null
    docker rm "$cname" >/dev/null
    # The same run image on the two daemonless transports.
    docker save -o "$work/ran.tar" "$train:latest" "$train:base"
    rm -rf "$work/ran-oci"
    for tag in latest base; do
        skopeo copy -q "docker-archive:$work/ran.tar:$train:$tag" "oci:$work/ran-oci:$tag"
    done
    T[$base,opt]=$(prim_opt_read "$train:latest")
    t0=$(now); cp "$work/ran.tar" "$work/in.tar"; T[$base,cp]=$(secs "$t0" "$(now)")
    T[$base,load]=$(prim_layer_load)
    size_mb=$(( $(stat -c %s "$work/ran.tar") / 1000000 ))

    read -r s m < <(timed "$pht" post-run "docker-archive:$work/in.tar:$train:latest" \
        --station s1 --key "$work/s1.pem" --rebase --tmpdir "$work" -q)
    rows+=("$(row "$base" docker-archive "post-run --rebase" "$s" "$m MB")")
    read -r s m < <(timed "$pht" pre-run "docker-archive:$work/in.tar:$train:latest" \
        --station s2 --key "$work/s2.pem" --tmpdir "$work" -q)
    rows+=("$(row "$base" docker-archive "pre-run" "$s" "$m MB")")
    rm -f "$work/in.tar"

    rm -rf "$work/in-oci"; cp -a "$work/ran-oci" "$work/in-oci"
    # inspect exits 1 here: the run image still holds pre-run's layer
    read -r s m < <(timed sh -c '"$0" inspect "$@" >/dev/null; [ $? -le 1 ]' "$pht" \
        "oci:$work/in-oci:latest" --tmpdir "$work")
    rows+=("$(row "$base" oci "inspect, cold cache" "$s" "$m MB")")
    read -r s m < <(timed "$pht" post-run "oci:$work/in-oci:latest" \
        --station s1 --key "$work/s1.pem" --rebase --tmpdir "$work" -q)
    rows+=("$(row "$base" oci "post-run --rebase" "$s" "$m MB")")
    read -r s m < <(timed "$pht" pre-run "oci:$work/in-oci:latest" \
        --station s2 --key "$work/s2.pem" --tmpdir "$work" -q)
    rows+=("$(row "$base" oci "pre-run" "$s" "$m MB")")
    rm -rf "$work/in-oci" "$work/ran-oci" "$work/ran.tar"

    read -r s m < <(timed "$pht" post-run "$train:latest" \
        --station s1 --key "$work/s1.pem" --rebase --tmpdir "$work" -q)
    rows+=("$(row "$base" docker-daemon "post-run --rebase" "$s" "$m MB")")
    read -r s m < <(timed "$pht" pre-run "$train:latest" \
        --station s2 --key "$work/s2.pem" --tmpdir "$work" -q)
    rows+=("$(row "$base" docker-daemon "pre-run" "$s" "$m MB")")
    T[$base,size]=$size_mb
done

echo
row "base" "transport" "step" "seconds" "peak RSS"
row "---" "---" "---" "---:" "---:"
printf '%s\n' "${rows[@]}"
echo
echo "primitives (seconds), same machine, same run:"
for base in small big; do
    echo "  $base base (archive ${T[$base,size]} MB): create + archive of /opt + rm ${T[$base,opt]}," \
        "docker load of a ${res_mb} MB layer ${T[$base,load]}, cp of the archive ${T[$base,cp]}"
done

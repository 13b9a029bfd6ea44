#!/usr/bin/env bash
# Time `pht pre-run` and `pht post-run --rebase` on trains kept in a Docker
# daemon (docker-daemon: references) whose results are SIZE MB of random
# bytes, beside `docker save` + `docker load` of the same images, and the
# Engine API's own GET /images/{id}/get for scale. Prints one table per size.
#
# Usage: bench/bench_daemon.sh [SIZE_MB ...]        (default: 100 1000)
# Environment:
#   PHT_BUILD_DIR  build tree with bin/pht (default: build-release, else build)
#   DOCKER_HOST    the daemon (default: unix:///var/run/docker.sock); start one
#                  with: eval "$(tools/services.sh start-docker)"
#   TMPDIR         scratch space: about 4 x SIZE free, plus the daemon's own
#
# For each size: build a three-stop train on the busybox base image straight
# into the daemon (REPO:latest, REPO:base), then
#   pre-run s1     (no results yet)
#   docker run     (the entrypoint writes SIZE MB to /opt/pht_results) + commit
#   post-run s1    --rebase: reads SIZE MB of plaintext, writes it encrypted
#   pre-run s2     reads SIZE MB encrypted, writes it decrypted
# and `docker save` / `docker load` of the image each pht command read (the
# load both while the daemon has the image and after docker rmi), and the
# reference's way of writing post-run's /opt (container + docker cp + commit).
# "open s" and "write s" are pht's open_image and write_image steps (save +
# index, and new layer + load). Peak memory of each pht run comes from GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
if [ -z "${PHT_BUILD_DIR:-}" ]; then
    PHT_BUILD_DIR=$root/build-release
    [ -x "$PHT_BUILD_DIR/bin/pht" ] || PHT_BUILD_DIR=$root/build
fi
pht=$PHT_BUILD_DIR/bin/pht
[ -x "$pht" ] || { echo "bench_daemon: no $pht; build first (see bench/README.md)" >&2; exit 1; }
export DOCKER_HOST=${DOCKER_HOST:-unix:///var/run/docker.sock}
sock=${DOCKER_HOST#unix://}
docker info --format '{{.ServerVersion}}' >/dev/null || { echo "bench_daemon: no daemon at $DOCKER_HOST" >&2; exit 1; }
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100 1000)

work=$(mktemp -d "${TMPDIR:-/tmp}/pht-bench-daemon.XXXXXX")
repo=pht-bench/daemon-$$
cleanup() {
    docker rm -f "pht-bench-daemon-$$" >/dev/null 2>&1 || true
    docker rmi "$repo:latest" "$repo:base" "$repo-busybox:latest" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# Run pht with -v; prints "wall open_image write_image" seconds, the two
# steps timed from its progress lines. GNU time's peak RSS (KiB) goes to $work/rss.
timed() {
    local t0 t1
    t0=$(now)
    /usr/bin/time -f %M -o "$work/rss" "$@" -v 2>&1 >/dev/null \
        | while IFS= read -r line; do echo "$(now) $line"; done >"$work/out"
    t1=$(now)
    grep -q ": write_image: ok" "$work/out" || { cat "$work/out" >&2; return 1; }
    awk -v t0="$t0" -v t1="$t1" '
        / open_image$/ { o0 = $1 } / open_image: ok$/ { o1 = $1 }
        / write_image$/ { w0 = $1 } / write_image: ok$/ { w1 = $1 }
        END { printf "%.2f %.2f %.2f\n", t1 - t0, o1 - o0, w1 - w0 }' "$work/out"
}

id_of() { docker image inspect --format '{{.Id}}' "$1"; }

# docker save and docker load of the image a tag names: the load once while
# the daemon has the image (nothing to import) and once after docker rmi
# (every layer the daemon lacks is imported, as a fresh station would);
# prints "save load_present load_fresh api_save opt_read". The tag names the same
# image afterwards.
save_load() { # $1 = tag
    local t0 t1 t2 t3 t4 t5 id
    id=$(id_of "$1")
    t0=$(now); docker save -o "$work/saved.tar" "$1"; t1=$(now)
    docker load -q -i "$work/saved.tar" >/dev/null; t2=$(now)
    docker rmi "$1" >/dev/null
    t3=$(now); docker load -q -i "$work/saved.tar" >/dev/null; t4=$(now)
    rm -f "$work/saved.tar"
    [ "$(id_of "$1")" = "$id" ] || { echo "bench_daemon: docker load changed $1" >&2; exit 1; }
    curl -fsS --unix-socket "$sock" -o /dev/null "http://localhost/v1.41/images/$id/get"; t5=$(now)
    # the read of /opt alone, as libpht's open makes it: the archive of a never started container
    local c t6 t7
    c=$(docker create --network none "$1" true)
    t6=$(now)
    curl -fsS --unix-socket "$sock" -o /dev/null "http://localhost/v1.41/containers/$c/archive?path=/opt"
    t7=$(now)
    docker rm "$c" >/dev/null
    echo "$(secs "$t0" "$t1") $(secs "$t1" "$t2") $(secs "$t3" "$t4") $(secs "$t4" "$t5") $(secs "$t6" "$t7")"
}

# What the reference's way of writing costs for the same bytes: a container
# from REPO:base, the sealed /opt copied in (PUT /containers/{id}/archive),
# docker commit, docker rm. Prints the seconds.
container_write() { # $1 = image, $2 = directory holding opt/
    local t0 c
    t0=$(now)
    c=$(docker create --network none "$1" true)
    docker cp "$2/opt" "$c:/"
    docker commit "$c" "$repo:container-write" >/dev/null
    docker rm "$c" >/dev/null
    secs "$t0" "$(now)"
    docker rmi "$repo:container-write" >/dev/null
}

image_mb() { docker image inspect --format '{{.Size}}' "$1" | awk '{ printf "%.0f", $1 / 1e6 }'; }

echo "bench_daemon: $("$pht" --version), daemon $(docker info --format '{{.ServerVersion}} ({{.Driver}})'), pht from $PHT_BUILD_DIR"
tools/make-base-image.sh -o "$work/busybox.tar" -t "$repo-busybox:latest" >/dev/null
docker load -q -i "$work/busybox.tar" >/dev/null
for who in creator s1 s2 s3; do "$pht" keygen --out "$work/$who" >/dev/null; done

for mb in "${sizes[@]}"; do
    mkdir -p "$work/files"
    cat >"$work/files/entrypoint.sh" <<EOF
#!/bin/sh
set -e
mkdir -p /opt/pht_results
head -c ${mb}000000 /dev/urandom > /opt/pht_results/data.bin
echo "visit done" > /opt/pht_results/note.txt
EOF
    "$pht" build -q --files "$work/files" \
        --station "s1=$work/s1.pub.pem" --station "s2=$work/s2.pub.pem" --station "s3=$work/s3.pub.pem" \
        --creator-id 7 --creator-key "$work/creator.pem" \
        --base "$repo-busybox:latest" --output "$repo:latest"
    ref=$repo:latest # a bare name: the daemon's image

    train=$(id_of "$repo:latest")
    read -r t_pre1 o_pre1 w_pre1 < <(timed "$pht" pre-run "$ref" --station s1 --key "$work/s1.pem" --tmpdir "$work")
    rss_pre1=$(cat "$work/rss")

    t0=$(now)
    docker run --name "pht-bench-daemon-$$" --network none "$repo:latest" /bin/sh /opt/pht_train/entrypoint.sh
    docker commit "pht-bench-daemon-$$" "$repo:latest" >/dev/null
    docker rm "pht-bench-daemon-$$" >/dev/null
    t_run=$(secs "$t0" "$(now)")
    read -r s_ran lp_ran lf_ran a_ran r_ran < <(save_load "$repo:latest")
    ran=$(id_of "$repo:latest")
    ran_mb=$(image_mb "$ran")

    read -r t_post1 o_post1 w_post1 < <(timed "$pht" post-run "$ref" --station s1 --key "$work/s1.pem" \
        --rebase --tmpdir "$work")
    rss_post1=$(cat "$work/rss")
    sealed_mb=$(image_mb "$repo:latest")
    # the reference's write path for the same /opt, from the sealed image's files
    mkdir -p "$work/sealed"
    cid=$(docker create --network none "$repo:latest" true)
    docker cp "$cid:/opt" "$work/sealed/"
    docker rm "$cid" >/dev/null
    t_cw=$(container_write "$repo:base" "$work/sealed")
    rm -rf "$work/sealed"
    read -r s_sealed lp_sealed lf_sealed a_sealed r_sealed < <(save_load "$repo:latest")
    sealed=$(id_of "$repo:latest")

    read -r t_pre2 o_pre2 w_pre2 < <(timed "$pht" pre-run "$ref" --station s2 --key "$work/s2.pem" --tmpdir "$work")
    rss_pre2=$(cat "$work/rss")

    echo
    echo "results: $mb MB (image after the run: $ran_mb MB, after post-run: $sealed_mb MB; docker run + commit: ${t_run} s)"
    row() { printf '| %-36s | %6s | %8s | %8s | %8s | %6s | %9s | %8s | %8s | %8s | %6s |\n' "$@"; }
    # against: the load of the new layer plus the read of /opt, what the command must move
    ratio() { awk -v p="$1" -v l="$2" -v r="$3" 'BEGIN { printf "%.2f", p / (l + r) }'; }
    row "pht command (the image it reads)" "pht s" "open s" "write s" "peak RSS" "save s" "load s (has)" "load s (new)" "API save" "/opt read" "ratio"
    row "---" "---:" "---:" "---:" "---:" "---:" "---:" "---:" "---:" "---:" "---:"
    row "pre-run s1 (built train)" "$t_pre1" "$o_pre1" "$w_pre1" "$((rss_pre1 / 1024)) MB" "-" "-" "-" "-" "-" "-"
    row "post-run s1 --rebase (after the run)" "$t_post1" "$o_post1" "$w_post1" "$((rss_post1 / 1024)) MB" "$s_ran" "$lp_ran" "$lf_ran" "$a_ran" "$r_ran" "$(ratio "$t_post1" "$lf_ran" "$r_ran")"
    row "pre-run s2 (sealed by s1)" "$t_pre2" "$o_pre2" "$w_pre2" "$((rss_pre2 / 1024)) MB" "$s_sealed" "$lp_sealed" "$lf_sealed" "$a_sealed" "$r_sealed" "$(ratio "$t_pre2" "$lf_sealed" "$r_sealed")"
    echo "container path for post-run's write (create from REPO:base + docker cp /opt + commit + rm): ${t_cw} s"

    # leave nothing of this size behind
    docker rmi "$repo:latest" "$repo:base" >/dev/null
    for id in "$train" "$ran" "$sealed"; do
        if docker image inspect "$id" >/dev/null 2>&1; then echo "bench_daemon: image $id was left behind" >&2; fi
    done
done
docker rmi "$repo-busybox:latest" >/dev/null
left=$(docker images -q -f dangling=true | wc -l)
echo
echo "dangling images in the daemon now: $left; containers: $(docker ps -aq | wc -l)"

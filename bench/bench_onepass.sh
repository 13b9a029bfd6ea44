#!/usr/bin/env bash
# One pass per byte: time `pht post-run` and `pht pre-run` on trains holding
# RESULTS_MB of results, as several files, one large file and many small
# files, on the daemonless transports (docker-archive, oci), with the bytes
# each run wrote to the file system (GNU time's outputs x 512, which Linux
# counts as /proc/PID/io write_bytes does), beside the primitives that bound
# them on the same machine in the same run: `openssl speed -evp aes-256-cbc`
# and `-evp sha512`, and `cp -r` of the results.
#
# The trains are the reference's stage 0 (spec/fixtures/reference-v2), made
# ready by pre-run for station_1; "the run" adds the results as a layer with
# the image writer (what `docker commit` of the container's /opt would add),
# so no daemon is needed. Post-run is station_1's, pre-run station_2's on
# post-run's output: both move every results byte.
#
# Usage: bench/bench_onepass.sh [RESULTS_MB [SMALL_FILES [SEVERAL_FILES]]]
#        (default: 1024 10000 8)
# Environment:
#   PHT_BUILD_DIR  build tree with bin/pht and lua/5.4/pht.so
#                  (default: build-release, else build)
#   TMPDIR         scratch space: about 8 x RESULTS_MB free
#   CASES          which cases to run (default: "several large small")
#   TRANSPORTS     default: "docker-archive oci"
#   REPEAT         runs of each post-run and pre-run, each on a fresh copy of
#                  its input (default 1); a row is the run of median seconds,
#                  every run's seconds are listed under the table
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
if [ -z "${PHT_BUILD_DIR:-}" ]; then
    PHT_BUILD_DIR=$root/build-release
    [ -x "$PHT_BUILD_DIR/bin/pht" ] || PHT_BUILD_DIR=$root/build
fi
pht=$PHT_BUILD_DIR/bin/pht
[ -x "$pht" ] || { echo "bench_onepass: no $pht; build first (see bench/README.md)" >&2; exit 1; }
[ -f "$PHT_BUILD_DIR/lua/5.4/pht.so" ] || { echo "bench_onepass: no Lua 5.4 module in $PHT_BUILD_DIR" >&2; exit 1; }
command -v skopeo >/dev/null || { echo "bench_onepass: needs skopeo (tools/install-deps.sh --test)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench_onepass: needs GNU time (/usr/bin/time)" >&2; exit 1; }
res_mb=${1:-1024}
n_small=${2:-10000}
n_several=${3:-8}
cases=${CASES:-several large small}
transports=${TRANSPORTS:-docker-archive oci}
repeat=${REPEAT:-1}
case $repeat in '' | *[!0-9]* | 0) echo "bench_onepass: REPEAT must be a positive integer" >&2; exit 2 ;; esac
vectors=$root/spec/fixtures/reference-v2
tag=pht-bench/ref-0:latest
bytes=$((res_mb * 1024 * 1024))

work=$(mktemp -d "${TMPDIR:-/tmp}/pht-bench-onepass.XXXXXX")
export PHT_CACHE_DIR=$work/layer-cache
trap 'rm -rf "$work"' EXIT

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", (s > 0 ? b / 1e6 / s : 0) }'; }

# Run a command under GNU time; prints "seconds peak_rss_MB written_MB
# cpu_seconds" (user + system, both threads).
timed() {
    if ! /usr/bin/time -f "%e %M %O %U %S" -o "$work/time" "$@" >"$work/out" 2>&1; then
        cat "$work/out" >&2
        return 1
    fi
    read -r s k o u y <"$work/time"
    echo "$s $((k / 1024)) $((o * 512 / 1000000)) $(awk -v u="$u" -v y="$y" 'BEGIN { printf "%.2f", u + y }')"
}
ratio() { awk -v o="$1" -v b="$2" 'BEGIN { printf "%.2f", o * 1e6 / b }'; }

# "The run": add every file under $2 as /opt/pht_results/... of the image
# $1 (a new layer, as docker commit would), with the image writer.
add_results() {
    LUA_CPATH="$PHT_BUILD_DIR/lua/5.4/?.so;;" LUA_PATH="$root/lua/?.lua;;" lua5.4 - "$1" "$2" <<'EOF'
local pht = require "pht"
local ref, dir = arg[1], arg[2]
local img = assert(pht.open_image(ref))
local w = assert(img:writer())
assert(w:add_dir("/opt/pht_results", { mode = tonumber("755", 8) }))
local p = assert(io.popen("cd '" .. dir .. "' && find . -type f | sort"))
for name in p:lines() do
  name = name:sub(3)
  assert(w:add_file("/opt/pht_results/" .. name, dir .. "/" .. name))
end
p:close()
assert(w:commit(ref, { history = "bench run" }))
img:close()
EOF
}

# The results of each case, from one random stream.
echo "bench_onepass: $("$pht" --version), pht from $PHT_BUILD_DIR, $(nproc) CPUs"
echo "bench_onepass: results ${res_mb} MiB ($bytes bytes): several = $n_several files," \
    "large = 1 file, small = $n_small files"
head -c "$bytes" /dev/urandom >"$work/stream"
for c in $cases; do
    mkdir -p "$work/res-$c"
    case $c in
    large) ln "$work/stream" "$work/res-$c/data.bin" ;;
    several) split -n "$n_several" -a 4 -d "$work/stream" "$work/res-$c/part-" ;;
    small) mkdir -p "$work/res-$c/d"
        split -b $(((bytes + n_small - 1) / n_small)) -a 6 -d "$work/stream" "$work/res-$c/d/f-" ;;
    *) echo "bench_onepass: unknown case $c" >&2; exit 2 ;;
    esac
done

row() { printf '| %-7s | %-14s | %-8s | %7s | %6s | %7s | %8s | %6s | %8s |\n' "$@"; }
rows=() spread=()
# Each row goes to stderr as soon as it is measured, the table to stdout at the end.
add_row() { rows+=("$1"); echo "$1" >&2; }
# The median by seconds of "s m o u" lines (one a run), and every run's seconds.
median() { printf '%s\n' "$@" | sort -n -k1,1 | sed -n "$(((${#@} + 1) / 2))p"; }
seconds_of() { printf '%s\n' "$@" | cut -d' ' -f1 | tr '\n' ' ' | sed 's/ $//'; }
for c in $cases; do
    # The train as the run left it: stage 0, pre-run for station_1, the results.
    cp "$vectors/stage0-built.tar" "$work/ran.tar"
    "$pht" pre-run -q "docker-archive:$work/ran.tar" --station station_1 --key "$vectors/keys/station_1.pem" \
        --tmpdir "$work"
    add_results "docker-archive:$work/ran.tar:$tag" "$work/res-$c"
    for t in $transports; do
        post=() pre=()
        for ((r = 1; r <= repeat; r++)); do
            case $t in
            docker-archive)
                cp "$work/ran.tar" "$work/in.tar"
                ref="docker-archive:$work/in.tar:$tag" ;;
            oci)
                rm -rf "$work/in-oci"
                skopeo copy -q "docker-archive:$work/ran.tar:$tag" "oci:$work/in-oci:latest"
                ref="oci:$work/in-oci:latest" ;;
            *) echo "bench_onepass: unknown transport $t" >&2; exit 2 ;;
            esac
            sync
            post+=("$(timed "$pht" post-run -q "$ref" --station station_1 \
                --key "$vectors/keys/station_1.pem" --tmpdir "$work")")
            sync
            pre+=("$(timed "$pht" pre-run -q "$ref" --station station_2 \
                --key "$vectors/keys/station_2.pem" --tmpdir "$work")")
            [ "$repeat" -gt 1 ] && echo "bench_onepass: $c $t run $r: post-run ${post[-1]%% *} s, pre-run ${pre[-1]%% *} s" >&2
            rm -rf "$work/in.tar" "$work/in-oci"
        done
        read -r s m o u <<<"$(median "${post[@]}")"
        add_row "$(row "$c" "$t" post-run "$s" "$(mbps "$bytes" "$s")" "$u" "$o" "$(ratio "$o" "$bytes")" "$m")"
        read -r s m o u <<<"$(median "${pre[@]}")"
        add_row "$(row "$c" "$t" pre-run "$s" "$(mbps "$bytes" "$s")" "$u" "$o" "$(ratio "$o" "$bytes")" "$m")"
        spread+=("$c $t post-run: $(seconds_of "${post[@]}") s; pre-run: $(seconds_of "${pre[@]}") s")
    done
    # The primitive: cp of the same results.
    sync
    read -r s m o u < <(timed cp -r "$work/res-$c" "$work/cp-$c")
    add_row "$(row "$c" "(cp -r)" "" "$s" "$(mbps "$bytes" "$s")" "$u" "$o" "$(ratio "$o" "$bytes")" "$m")"
    rm -rf "$work/cp-$c" "$work/ran.tar"
done

echo
row case transport step seconds "MB/s" "CPU s" "written" "x res" "peak RSS"
row --- --- --- ---: ---: ---: ---: ---: ---:
printf '%s\n' "${rows[@]}"
echo "(MB = 10^6 bytes; MB/s of results over wall time; CPU s: user + system of all threads;"
echo " written: MB the process wrote, x res: that over the results; peak RSS in MB)"
if [ "$repeat" -gt 1 ]; then
    echo "each row: the median of $repeat runs by seconds; every run's seconds:"
    printf '  %s\n' "${spread[@]}"
fi
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
# OpenSSL's own speed on 1 MiB blocks, one core.
for alg in aes-256-cbc sha512; do
    v=$(openssl speed -seconds 2 -bytes 1048576 -evp "$alg" 2>/dev/null | awk 'END { print $NF }')
    echo "openssl speed -evp $alg (1 MiB blocks): $(awk -v v="${v%k}" 'BEGIN { printf "%.0f", v / 1000 }') MB/s"
done

#!/usr/bin/env bash
# Bounded load run of the OpenResty station gateway (examples/openresty/):
# ROUNDS bursts of REQUESTS concurrent POST /trains/verify with the
# reference trains, sent by one curl with --parallel (at most CONCURRENCY
# transfers at once). Every answer must be 200 with "verified":true. Prints
# the nginx workers' resident memory (sum of VmRSS over the workers) at start,
# once their thread pools are warm, at the peak of each burst and after each
# burst, and fails when the memory after the last burst is more than 10% over
# the serving start size (after a short warm-up; see below).
#
#   bench/gateway_load.sh [--requests 200] [--concurrency 200] [--rounds 3]
#                         [--workers 2] [--threads 2] [--max-jobs 2] [--no-trim]
#
# Needs nginx, libnginx-mod-http-lua, curl and a build with the LuaJIT
# module ($PHT_BUILD_DIR, default build/). Not a test: see bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${PHT_BUILD_DIR:-$root/build}
case $build in /*) ;; *) build=$root/$build ;; esac

requests=200 concurrency=200 rounds=3 workers=2 threads=2 max_jobs=2 trim=true
while [ $# -gt 0 ]; do
    case $1 in
        --requests) requests=$2 ;;
        --concurrency) concurrency=$2 ;;
        --rounds) rounds=$2 ;;
        --workers) workers=$2 ;;
        --threads) threads=$2 ;;
        --max-jobs) max_jobs=$2 ;;
        --no-trim) trim=false; shift; continue ;;
        *) echo "usage: $0 [--requests N] [--concurrency N] [--rounds N] [--workers N] [--threads N] [--max-jobs N] [--no-trim]" >&2; exit 2 ;;
    esac
    shift 2
done

[ -e "$build/lua/5.1/pht.so" ] || { echo "no LuaJIT module at $build/lua/5.1/pht.so" >&2; exit 1; }
lua=$(command -v luajit || command -v lua5.4) || { echo "no Lua interpreter" >&2; exit 1; }

prefix=$(mktemp -d "${TMPDIR:-/tmp}/pht-gw-load.XXXXXX")
chmod 0755 "$prefix" # the workers (nobody when started as root) look inside
pid=""
sampler=""
cleanup() {
    [ -n "$sampler" ] && kill "$sampler" 2>/dev/null || true
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    if [ -n "${PHT_KEEP:-}" ]; then echo "kept $prefix" >&2; else rm -rf "$prefix"; fi
}
trap cleanup EXIT

vectors=$root/spec/fixtures/reference-v2
mkdir -p -m 0700 "$prefix/tmp"
user_args=()
if [ "$(id -u)" = 0 ]; then
    chown nobody "$prefix/tmp"
    user_args=(--user "nobody nogroup")
fi
cat >"$prefix/gateway.conf.lua" <<EOF
return {
  stations = {
    { id = "station_1", private_key = "$vectors/keys/station_1.pem" },
    { id = "station_2", private_key = "$vectors/keys/station_2.pem" },
    { id = "station_3", private_key = "$vectors/keys/station_3.pem" },
  },
  tmpdir = "$prefix/tmp",
  max_jobs = $max_jobs,
  queue_timeout = 300,
  job_time_limit = 300,
  trim_memory = $trim,
}
EOF

# A free port on 127.0.0.1, then the gateway.
for _ in 1 2 3 4 5; do
    port=$((20000 + (RANDOM * 32768 + RANDOM) % 30000))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue
    "$lua" examples/openresty/render.lua --prefix "$prefix" --config "$prefix/gateway.conf.lua" \
        --listen "127.0.0.1:$port" --build "$build" --workers "$workers" --threads "$threads" \
        --max-body 64m "${user_args[@]}" >/dev/null
    if nginx -p "$prefix" -c conf/nginx.conf 2>"$prefix/start.err"; then break; fi
    grep -q "Address already in use" "$prefix/start.err" || { cat "$prefix/start.err" >&2; exit 1; }
done
url=http://127.0.0.1:$port
for _ in $(seq 100); do
    pid=$(cat "$prefix/logs/nginx.pid" 2>/dev/null || true)
    [ -n "$pid" ] && curl -fsS -o /dev/null --max-time 1 "$url/health" && break
    sleep 0.1
done
curl -fsS -o /dev/null "$url/health" || { tail "$prefix/logs/error.log" >&2; exit 1; }

worker_pids() { ps -o pid= --ppid "$pid"; }
rss_kib() { # sum of VmRSS over the workers
    local total=0 p v
    for p in $(worker_pids); do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# Request i verifies stage i mod 3 for the station whose turn it is.
stage=(stage0-built.tar stage1-station_1-post.tar stage2-station_2-post.tar)
config=$prefix/curl.conf
: >"$config"
mkdir -p "$prefix/out"
for i in $(seq 0 $((requests - 1))); do
    s=$((i % 3))
    {
        # "next" starts a new transfer: data-binary and the rest apply per transfer.
        [ "$i" -gt 0 ] && echo "next"
        echo "url = \"$url/trains/verify?station=station_$((s + 1))\""
        echo "data-binary = \"@$vectors/${stage[$s]}\""
        echo "header = \"Content-Type: application/x-tar\""
        echo "output = \"$prefix/out/$i.json\""
        echo "write-out = \"%{http_code}\\n\""
        echo "max-time = 600"
        echo "silent"
        echo "show-error"
    } >>"$config"
done

echo "gateway: $url, $workers worker(s), thread_pool threads=$threads, max_jobs=$max_jobs per worker, trim_memory=$trim"
echo "load: $rounds round(s) of $requests requests, at most $concurrency at once (curl --parallel)"
echo "build: $build"
# The gateway warms its thread-pool VMs at worker start (they load pht and
# the workflow scripts); /health says "warm" once a worker is done. The start
# size is measured then, before any verification request.
for _ in $(seq 200); do
    n=0
    for _ in $(seq $((workers * 4))); do
        curl -fsS --max-time 2 "$url/health" | grep -q '"warm":true' && n=$((n + 1))
    done
    [ "$n" -eq $((workers * 4)) ] && break
    sleep 0.1
done
sleep 1
cold=$(rss_kib)
echo "workers' RSS at start (thread pool warm, no request served): $cold KiB"

# Then a few requests per worker: they touch what a worker keeps for as long
# as it runs once it has served at all (connection and request structures,
# the request VM's heap, malloc's free lists). The load is measured against
# this serving size; the figure against the cold start is printed beside it.
warm_n=$((workers * 20))
for i in $(seq "$warm_n"); do
    curl -fsS -o /dev/null --data-binary "@$vectors/${stage[1]}" "$url/trains/verify?station=station_2" &
done
wait
sleep 1
start=$(rss_kib)
echo "workers' RSS after $warm_n warm-up requests: $start KiB"

errors=0
for r in $(seq "$rounds"); do
    rm -f "$prefix/out/"*.json
    # Sample the workers' memory, and the time GET /health takes while the
    # verifications run: the event loop must keep answering.
    (while :; do
        rss_kib >>"$prefix/rss.$r"
        curl -s -o /dev/null -w '%{time_total}\n' --max-time 30 "$url/health" >>"$prefix/health.$r" || echo 30 >>"$prefix/health.$r"
        sleep 0.05
    done) &
    sampler=$!
    t0=$(date +%s.%N)
    curl --parallel --parallel-immediate --parallel-max "$concurrency" \
        -K "$config" >"$prefix/codes.$r" 2>"$prefix/curl.err.$r" || true
    t1=$(date +%s.%N)
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    sampler=""
    ok200=$(grep -c '^200$' "$prefix/codes.$r" || true)
    verified=$(cat "$prefix/out/"*.json 2>/dev/null | grep -c '"verified":true' || true)
    bad=$((requests - ok200))
    [ "$verified" -lt "$requests" ] && bad=$((bad > requests - verified ? bad : requests - verified))
    errors=$((errors + bad))
    peak=$(sort -n "$prefix/rss.$r" | tail -1)
    health_n=$(wc -l <"$prefix/health.$r")
    health_max=$(sort -g "$prefix/health.$r" | tail -1)
    health_med=$(sort -g "$prefix/health.$r" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    sleep 1 # every answer is in, so every job has finished
    after=$(rss_kib)
    secs=$(echo "$t1 - $t0" | bc -l)
    printf 'round %d: %d requests in %.2f s (%.1f req/s), %d x 200, %d verified, %d errors; RSS peak %d KiB, after %d KiB; GET /health during the round: %d answers, median %.1f ms, max %.1f ms\n' \
        "$r" "$requests" "$secs" "$(echo "$requests / $secs" | bc -l)" "$ok200" "$verified" "$bad" "$peak" "$after" \
        "$health_n" "$(echo "$health_med * 1000" | bc -l)" "$(echo "$health_max * 1000" | bc -l)"
    if [ "$bad" -gt 0 ]; then
        sort "$prefix/codes.$r" | uniq -c >&2
        head -c 2000 "$prefix/curl.err.$r" >&2 || true
        tail -5 "$prefix/logs/error.log" >&2
    fi
done

limit=$((start + start / 10))
pct=$(echo "100 * ($after - $start) / $start" | bc -l)
printf 'RSS after the last round: %d KiB, %+.1f%% against the serving start %d KiB (limit +10%%: %d KiB); %+.1f%% against the cold start %d KiB\n' \
    "$after" "$pct" "$start" "$limit" "$(echo "100 * ($after - $cold) / $cold" | bc -l)" "$cold"
echo "errors: $errors"
[ "$errors" -eq 0 ] && [ "$after" -le "$limit" ]

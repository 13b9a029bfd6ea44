#!/usr/bin/env bash
# Build libpht's libFuzzer targets (fuzz/, CMake PHT_FUZZ=ON: clang,
# -fsanitize=fuzzer,address,undefined) and run each for SECONDS (default 60)
# on its committed corpus, fuzz/corpus/TARGET. New inputs go to a scratch
# corpus (the committed one is only read); a crash, leak, sanitizer report
# or timeout is copied to fuzz/findings/ and fails the run.
#
# Usage: tools/fuzz.sh [SECONDS] [TARGET...]
# Environment:
#   PHT_FUZZ_BUILD_DIR  build tree (default build-fuzz)
#   PHT_FUZZ_JOBS       targets run at once (default 1)
#   PHT_FUZZ_KEEP=DIR   keep each target's grown corpus under DIR/TARGET
# Prints one line per target: execs, coverage (cov: edges, ft: features),
# corpus size, and the outcome; the last line is "fuzz: N targets, N findings".
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
secs=${1:-60}
[ $# -gt 0 ] && shift
build=${PHT_FUZZ_BUILD_DIR:-build-fuzz}
command -v clang >/dev/null || { echo "fuzz: needs clang (tools/install-deps.sh --test)" >&2; exit 1; }
CC=clang cmake -S . -B "$build" -DPHT_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPHT_WERROR=ON \
    -DPHT_WITH_LUA54=OFF -DPHT_WITH_LUAJIT=OFF -DPHT_BUILD_CLI=OFF -DPHT_BUILD_TESTS=OFF \
    -DPHT_BUILD_SHARED=OFF >/dev/null || exit 1
cmake --build "$build" -j"$(nproc)" >/dev/null || { cmake --build "$build" 2>&1 | tail -20; exit 1; }

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for f in fuzz/fuzz_*.c; do targets+=("$(basename "$f" .c)"); done
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/pht-fuzz-run.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p fuzz/findings
findings=0

run_one() { # target
    local t=$1 log=$work/$1.log grown=$work/$1.corpus
    mkdir -p "$grown" "$work/$1.art"
    # -rss_limit_mb: the index caps (fuzz_common.h) keep an input far below it.
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        "$build/fuzz/$t" -max_total_time="$secs" -timeout=30 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 -artifact_prefix="$work/$1.art/" "$grown" "fuzz/corpus/$t" \
        >"$log" 2>&1
    local rc=$?
    local stats execs cov ft units
    stats=$(grep -E '^#[0-9]+' "$log" | tail -1)
    execs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
    cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$stats")
    ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$stats")
    units=$(sed -nE 's/.* corp: ([0-9]+)\/.*/\1/p' <<<"$stats")
    local outcome=ok
    # slow-unit-* files are reports, not findings; crash-, leak-, timeout-, oom- ones are.
    if [ "$rc" -ne 0 ] || ls "$work/$1.art/"{crash,leak,timeout,oom}-* >/dev/null 2>&1; then
        outcome="FINDING (exit $rc; $(ls "$work/$1.art" | tr '\n' ' ')); log: fuzz/findings/$t.log"
        cp "$log" "fuzz/findings/$t.log"
        cp "$work/$1.art/"* fuzz/findings/ 2>/dev/null
    fi
    if [ -n "${PHT_FUZZ_KEEP:-}" ]; then mkdir -p "$PHT_FUZZ_KEEP/$t"; cp -n "$grown"/* "$PHT_FUZZ_KEEP/$t/" 2>/dev/null; fi
    printf '%-20s %5ss %10s execs  cov %6s  ft %6s  corpus %5s  %s\n' "$t" "$secs" "${execs:-?}" \
        "${cov:-?}" "${ft:-?}" "${units:-?}" "$outcome"
    [ "$outcome" = ok ]
}

jobs=${PHT_FUZZ_JOBS:-1}
for t in "${targets[@]}"; do
    [ -x "$build/fuzz/$t" ] || { echo "fuzz: no target $t" >&2; findings=$((findings + 1)); continue; }
    if [ "$jobs" -gt 1 ]; then
        run_one "$t" >"$work/$t.line" &
        while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
    else
        run_one "$t" || findings=$((findings + 1))
    fi
done
if [ "$jobs" -gt 1 ]; then
    wait
    for t in "${targets[@]}"; do
        [ -f "$work/$t.line" ] && cat "$work/$t.line"
        grep -q FINDING "$work/$t.line" 2>/dev/null && findings=$((findings + 1))
    done
fi
rmdir fuzz/findings 2>/dev/null
echo "fuzz: ${#targets[@]} targets, $findings findings"
[ "$findings" -eq 0 ]

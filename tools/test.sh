#!/usr/bin/env bash
# Build libpht and run every test: the C unit tests under ctest (each also
# under valgrind memcheck, as memcheck_*), then the busted specs on Lua 5.4 and on LuaJIT.
# The last line is a total over all runners: "tests: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${PHT_BUILD_DIR:-$root/build}
export PHT_BUILD_DIR=$build PHT_SOURCE_DIR=$root

tools/build.sh || { echo "tests: 0 passed, 1 failed"; exit 1; }

passed=0 failed=0
count_ctest() { # parse "N% tests passed, F tests failed out of T"
    local line=$1 f t
    f=$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/' <<<"$line")
    t=$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\2/' <<<"$line")
    passed=$((passed + t - f)); failed=$((failed + f))
}

echo "== ctest"
(cd "$build" && ctest --output-on-failure -j2) | tee "$build/ctest.log"
line=$(grep -E 'tests failed out of' "$build/ctest.log" | tail -1)
[ -n "$line" ] && count_ctest "$line" || failed=$((failed + 1))

run_busted() { # $1 = interpreter
    local lua=$1 log="$build/busted-$1.log"
    command -v "$lua" >/dev/null || { echo "$lua not installed"; failed=$((failed + 1)); return; }
    echo "== busted on $lua"
    "$lua" /usr/bin/busted -o utfTerminal 2>&1 | tee "$log"
    local line s f e
    line=$(sed -E 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '[0-9]+ success(es)? / [0-9]+ failures? / [0-9]+ errors?' | tail -1)
    if [ -z "$line" ]; then failed=$((failed + 1)); return; fi
    s=$(sed -E 's/^[^0-9]*([0-9]+) success.*/\1/' <<<"$line")
    f=$(sed -E 's/.* ([0-9]+) failures?.*/\1/' <<<"$line")
    e=$(sed -E 's/.* ([0-9]+) errors?.*/\1/' <<<"$line")
    passed=$((passed + s)); failed=$((failed + f + e))
}
run_busted lua5.4
run_busted luajit

echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

#!/usr/bin/env bash
# Build libpht and run every test: the C unit tests under ctest (each also
# under valgrind memcheck, as memcheck_*), then the busted specs on Lua 5.4 and on LuaJIT,
# then the C tests again built with clang's ASan and UBSan (build-asan/), and
# every libFuzzer target for a short time on its committed corpus (tools/fuzz.sh).
# PHT_TEST_SANITIZE=0 skips the sanitizer build; PHT_TEST_FUZZ_SECONDS (default
# 60 a target; 0 skips) sets the fuzzing time.
# Before the tests it starts the services they drive (tools/services.sh: a
# Docker engine, four registries; tools/make-base-image.sh: the base image) and
# exports their addresses; it stops them on exit, whatever the tests did.
# See doc/testing.md for the variables.
# The last line is a total over all runners: "tests: N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
root=$PWD
build=${PHT_BUILD_DIR:-$root/build}
export PHT_BUILD_DIR=$build PHT_SOURCE_DIR=$root

tools/build.sh || { echo "tests: 0 passed, 1 failed"; exit 1; }

# --- services ------------------------------------------------------------
# Each run gets its own state directory, so runs side by side do not share
# (or stop) each other's daemons. Services named in PHT_TEST_REQUIRE must be
# up, or spec/infra_spec.lua fails; set it empty where dockerd cannot work.
export PHT_TEST_REQUIRE=${PHT_TEST_REQUIRE-docker,registry,registry-tls,registry-basic,registry-token,base-image}
svc_made=0
if [ -z "${PHT_SERVICES_DIR:-}" ]; then
    PHT_SERVICES_DIR=$(mktemp -d /tmp/pht-svc.XXXXXX) || { echo "tests: 0 passed, 1 failed"; exit 1; }
    svc_made=1
fi
export PHT_SERVICES_DIR
# The layer-index cache of the stock workflows' opens stays in the run's state.
export PHT_CACHE_DIR=$PHT_SERVICES_DIR/layer-cache
mkdir -p "$PHT_SERVICES_DIR"
# What was already up in a given state directory is not this run's to stop.
# Registries: plain HTTP, TLS, TLS with basic auth, TLS with token auth.
registries="registry registry-tls registry-basic registry-token"
docker_ours=1 registries_ours=""
[ -e "$PHT_SERVICES_DIR/docker.env" ] && docker_ours=0
for r in $registries; do
    [ -e "$PHT_SERVICES_DIR/$r.env" ] || registries_ours="$r $registries_ours"
done
base_loaded=""

stop_services() {
    if [ -n "$base_loaded" ]; then # loaded into a daemon that outlives us
        docker rmi "$base_loaded" >/dev/null 2>&1 || true
    fi
    for r in $registries_ours; do tools/services.sh "stop-$r"; done
    [ "$docker_ours" = 1 ] && tools/services.sh stop-docker
    if [ "$svc_made" = 1 ]; then rm -rf "$PHT_SERVICES_DIR"; fi
    return 0
}
trap stop_services EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

echo "== services"
err="$PHT_SERVICES_DIR/start.err"
if out=$(tools/services.sh start-docker 2>"$err"); then
    eval "$out"
    export PHT_TEST_DOCKER_HOST=$DOCKER_HOST
    echo "docker: $DOCKER_HOST (storage driver $(docker info --format '{{.Driver}}' 2>/dev/null || echo unknown))"
else
    cat "$err" >&2
    export PHT_TEST_DOCKER_ERROR="dockerd did not start here: $(tail -n 1 "$err")"
    echo "docker: unavailable ($PHT_TEST_DOCKER_ERROR)"
fi
for r in $registries; do
    var=PHT_TEST_$(echo "$r" | tr 'a-z-' 'A-Z_') # PHT_TEST_REGISTRY_TLS, ...
    # A start that fails gets one more try (a port lost to another process, a
    # slow machine); the first failure's reason is shown either way.
    ok=0
    for attempt in 1 2; do
        if out=$(tools/services.sh "start-$r" 2>"$err"); then
            ok=1
            break
        fi
        [ "$attempt" = 1 ] && { echo "$r: first start failed, trying again:"; cat "$err"; } >&2
    done
    if [ "$ok" = 1 ]; then
        eval "$out"
        echo "$r: ${!var}"
    else
        cat "$err" >&2
        export "${var}_ERROR=docker-registry ($r) did not start: $(tail -n 1 "$err")"
        echo "$r: unavailable ($(tail -n 1 "$err"))"
    fi
done
images="$build/test-images"
export PHT_TEST_BASE_TAG=pht-test/busybox:latest
if tools/make-base-image.sh -o "$images/busybox.tar" -t "$PHT_TEST_BASE_TAG" \
        --oci "$images/busybox-oci" >/dev/null 2>"$err"; then
    export PHT_TEST_BASE_IMAGE="$images/busybox.tar" PHT_TEST_BASE_IMAGE_OCI="$images/busybox-oci"
    echo "base image: $PHT_TEST_BASE_IMAGE ($PHT_TEST_BASE_TAG), OCI layout $PHT_TEST_BASE_IMAGE_OCI"
    if [ -n "${PHT_TEST_DOCKER_HOST:-}" ]; then
        had_image=0
        docker image inspect "$PHT_TEST_BASE_TAG" >/dev/null 2>&1 && had_image=1
        if docker load --quiet --input "$PHT_TEST_BASE_IMAGE" >/dev/null 2>"$err"; then
            # A daemon this run did not start keeps its images: unload ours.
            if [ "$had_image" = 0 ] && ! grep -qx 'DOCKER_OWNED=1' "$PHT_SERVICES_DIR/docker.env"; then
                base_loaded=$PHT_TEST_BASE_TAG
            fi
        else
            cat "$err" >&2
        fi
    fi
else
    cat "$err" >&2
    export PHT_TEST_BASE_IMAGE_ERROR="tools/make-base-image.sh failed: $(tail -n 1 "$err")"
    echo "base image: unavailable ($PHT_TEST_BASE_IMAGE_ERROR)"
fi

# --- tests -----------------------------------------------------------------
passed=0 failed=0 skipped=0
leftovers() { # containers and dangling images in the daemon, as "C D"
    echo "$(docker ps -a -q | wc -l) $(docker images -q -f dangling=true | wc -l)"
}
[ -n "${PHT_TEST_DOCKER_HOST:-}" ] && before=$(leftovers)
# Mount points under the build tree (a spec's tmpfs for a full disk), one a
# line; a spec that leaves one mounted fails the run below.
build_abs=$(cd "$build" && pwd -P)
mounts_under_build() {
    awk -v b="$build_abs/" 'index($5, b) == 1 { print $5 }' /proc/self/mountinfo | LC_ALL=C sort
}
mounts_before=$(mounts_under_build)
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
    local line s f e p
    line=$(sed -E 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '[0-9]+ success(es)? / [0-9]+ failures? / [0-9]+ errors?' | tail -1)
    if [ -z "$line" ]; then failed=$((failed + 1)); return; fi
    s=$(sed -E 's/^[^0-9]*([0-9]+) success.*/\1/' <<<"$line")
    f=$(sed -E 's/.* ([0-9]+) failures?.*/\1/' <<<"$line")
    e=$(sed -E 's/.* ([0-9]+) errors?.*/\1/' <<<"$line")
    p=$(sed -nE 's/.* ([0-9]+) pending.*/\1/p' <<<"$line")
    passed=$((passed + s)); failed=$((failed + f + e)); skipped=$((skipped + ${p:-0}))
}
rm -rf "$build/spec-tmp"  # scratch of earlier runs
run_busted lua5.4
run_busted luajit

# The C tests built with ASan and UBSan (no recovery: a report fails its
# test), against the same dockerd and registries.
if [ "${PHT_TEST_SANITIZE:-1}" != 0 ]; then
    echo "== ctest under ASan and UBSan (clang)"
    asan=${PHT_ASAN_BUILD_DIR:-$root/build-asan}
    if CC=clang cmake -S "$root" -B "$asan" -DPHT_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
            -DPHT_WERROR=ON -DPHT_WITH_LUA54=OFF -DPHT_WITH_LUAJIT=OFF -DPHT_BUILD_CLI=OFF \
            >"$build/asan-cmake.log" 2>&1 &&
        cmake --build "$asan" -j"$(nproc)" >"$build/asan-build.log" 2>&1; then
        (cd "$asan" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
            UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j2) |
            tee "$build/ctest-asan.log"
        line=$(grep -E 'tests failed out of' "$build/ctest-asan.log" | tail -1)
        [ -n "$line" ] && count_ctest "$line" || failed=$((failed + 1))
    else
        tail -n 30 "$build/asan-cmake.log" "$build/asan-build.log"
        echo "the ASan/UBSan build failed"; failed=$((failed + 1))
    fi
fi

# Each fuzz target on its corpus (regression inputs included); a finding
# fails the run. One passed test per target that ran clean.
fuzz_secs=${PHT_TEST_FUZZ_SECONDS:-60}
if [ "$fuzz_secs" != 0 ]; then
    echo "== fuzz targets, ${fuzz_secs} s each"
    PHT_FUZZ_JOBS=${PHT_FUZZ_JOBS:-2} tools/fuzz.sh "$fuzz_secs" | tee "$build/fuzz.log"
    ok=$(grep -cE '^fuzz_[a-z_]+ .* ok$' "$build/fuzz.log")
    bad=$(grep -cE '^fuzz_[a-z_]+ .*FINDING' "$build/fuzz.log")
    if ! grep -qE '^fuzz: [0-9]+ targets, 0 findings' "$build/fuzz.log"; then
        bad=$((bad > 0 ? bad : 1))
    fi
    passed=$((passed + ok)); failed=$((failed + bad))
fi

# The suite must leave nothing in the daemon: no container, no dangling image
# beyond what was there before it ran (none, on the daemon a run starts).
if [ -n "${PHT_TEST_DOCKER_HOST:-}" ]; then
    echo "== leftovers in the Docker daemon"
    after=$(leftovers)
    echo "containers and dangling images: before the suite $before, after it $after"
    if [ "$after" = "$before" ]; then
        passed=$((passed + 1))
    else
        docker ps -a; docker images -f dangling=true
        echo "the suite left containers or dangling images behind"; failed=$((failed + 1))
    fi
fi

# Nor a mount under the build tree: unmount what the suite left, and fail.
echo "== leftover mounts under $build_abs"
left_mounts=$(LC_ALL=C comm -13 <(echo "$mounts_before") <(mounts_under_build) | sed '/^$/d')
if [ -z "$left_mounts" ]; then
    echo "none"
    passed=$((passed + 1))
else
    echo "$left_mounts"
    echo "the suite left mounts behind (a spec did not unmount its tmpfs, or a handle kept it busy)"
    failed=$((failed + 1))
    LC_ALL=C sort -r <<<"$left_mounts" | while read -r m; do umount "$m" || umount -l "$m"; done
fi

echo "tests: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]

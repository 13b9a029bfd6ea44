#!/usr/bin/env bash
# Configure and build libpht into ${PHT_BUILD_DIR:-build}.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${PHT_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=${PHT_BUILD_TYPE:-RelWithDebInfo} -DPHT_WERROR=ON >/dev/null
cmake --build "$build" -j"$(nproc)"

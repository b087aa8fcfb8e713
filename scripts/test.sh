#!/usr/bin/env bash
# Installs what is missing, builds everything (library, programs, tests, benchmarks) and runs the
# whole test suite. This is what CI runs (.ci/run).
#   BUILD_DIR=build  JOBS=<cores>  scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
build_dir=${BUILD_DIR:-build}
jobs=${JOBS:-$(nproc)}
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DMINILLM_BUILD_BENCH=ON
cmake --build "$build_dir" -j"$jobs"
ctest --test-dir "$build_dir" -j"$jobs" --output-on-failure

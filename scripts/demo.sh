#!/usr/bin/env bash
# The main job, end to end. Until the training programs land this builds the library and its
# programs and shows the MiniMind2-Small preset: its config and exact parameter count per module.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
build_dir=${BUILD_DIR:-build}
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DMINILLM_BUILD_TESTS=OFF
cmake --build "$build_dir" -j"$(nproc)" --target minillm-info
"$build_dir/examples/minillm-info" --preset "${PRESET:-minimind2_small}"

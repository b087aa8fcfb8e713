#!/usr/bin/env bash
# Builds the library, programs, tests and benchmarks against the LibTorch inside an installed
# PyTorch 2.x (with CUDA where present) and runs the whole test suite. Header-only dependencies and
# Google Benchmark come from the system or from .deps/ (scripts/fetch-header-deps.sh).
#   scripts/gpu-test.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build-torch2}
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "device",
  torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")'
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DMINILLM_BUILD_TESTS=ON -DMINILLM_BUILD_BENCH=ON \
  -DCMAKE_PREFIX_PATH="$torch_prefix;$PWD/.deps/usr" -DCMAKE_CXX_FLAGS="-Wno-interference-size"
cmake --build "$build_dir" -j"$(nproc)"
export LD_LIBRARY_PATH="$PWD/.deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"  # Google Benchmark
# ctest runs one test process per core; two threads each keeps them from oversubscribing the CPU.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
ctest --test-dir "$build_dir" -j"$(nproc)" --output-on-failure

#!/usr/bin/env bash
# On the GPU machine, after scripts/gpu-test.sh built build-torch2: runs the attention and FFN
# benchmarks on CUDA (bf16 autocast) and writes their Google Benchmark JSON to ${OUT:-out}/, for
# scripts/bench-charts.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-out}
build_dir=${1:-build-torch2}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/.deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
for name in attention ffn; do
  MINILLM_BENCH_DEVICE=cuda "$build_dir/bench/minillm_bench_$name" --benchmark_min_time=0.2 \
    --benchmark_out="$out/$name-cuda.json" --benchmark_out_format=json | tail -n +4
done

#!/usr/bin/env bash
# On a machine with PyTorch + CUDA + transformers: builds minillm's benchmarks against PyTorch's
# LibTorch, then measures, in one run, minillm and HF transformers' LlamaForCausalLM (eager and
# torch.compile) at the same dims: training tokens/s, peak memory, MFU, batch-1 decode tokens/s.
# Prints one table (also written to $OUT/gpu-bench/table.md with the raw rows beside it).
#   scripts/gpu-bench.sh            (header-only deps from the system or .deps/: fetch-header-deps.sh)
#   STEPS=20 SKIP_HF=1 scripts/gpu-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-out}/gpu-bench
mkdir -p "$out"
build_dir=${BUILD_DIR:-build-torch2}
steps=${STEPS:-20}
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
export LD_LIBRARY_PATH="$PWD/.deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DMINILLM_BUILD_TESTS=OFF -DMINILLM_BUILD_BENCH=ON \
  -DCMAKE_PREFIX_PATH="$torch_prefix;$PWD/.deps/usr" -DCMAKE_CXX_FLAGS="-Wno-interference-size" >/dev/null
cmake --build "$build_dir" -j"$(nproc)" --target minillm_bench_model minillm_bench_attention minillm_bench_ffn >/dev/null

rows="$out/rows.jsonl"
: >"$rows"
{
  echo "# $(date -u +%F) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
  python3 -c 'import torch, transformers; print("# torch", torch.__version__, "transformers", transformers.__version__)'
} | tee "$out/table.md"
bench="$build_dir/bench/minillm_bench_model --device cuda --precision bf16 --steps $steps"
for graph in --cuda-graph --no-cuda-graph; do
  $bench $graph --preset minimind2_small | tee -a "$rows"
  $bench $graph --preset minimind2 | tee -a "$rows"
done
$bench --preset minimind2_small --moe --what train | tee -a "$rows"
if [ -z "${SKIP_HF:-}" ]; then
  for model in minimind2_small minimind2; do
    python3 scripts/gpu/hf_bench.py --model "$model" --what train --steps "$steps" | tee -a "$rows"
    python3 scripts/gpu/hf_bench.py --model "$model" --what train --steps "$steps" --compile | tee -a "$rows"
    python3 scripts/gpu/hf_bench.py --model "$model" --what decode | tee -a "$rows"
    python3 scripts/gpu/hf_bench.py --model "$model" --what decode --cache static | tee -a "$rows"
  done
fi
python3 scripts/gpu/bench_table.py "$rows" | tee -a "$out/table.md"

#!/usr/bin/env bash
# On the GPU machine (PyTorch + CUDA + transformers): DeepSeek-V3 checks and figures.
#  1. minillm trains small deepseek_v3 and mini_deepseekv3 models, saves them; transformers loads the
#     first, Mini-LLM's own code (from .gpu/mini_llm, carried, not in the repository) the second:
#     same logits.
#  2. mini_deepseekv3 at Mini-LLM's defaults: training tokens/s and peak memory at batch 16 x 512,
#     bf16; batch-1 decode tokens/s (plain and through the CUDA graph).
# Outputs go to ${OUT:-out}/deepseek.
set -uo pipefail  # every step runs; each one's result is in its output
cd "$(dirname "$0")/../.."
out=${OUT:-out}/deepseek
mkdir -p "$out"
build_dir=${BUILD_DIR:-build-torch2}

torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
export LD_LIBRARY_PATH="$PWD/.deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DMINILLM_BUILD_TESTS=ON -DMINILLM_BUILD_BENCH=ON \
  -DCMAKE_PREFIX_PATH="$torch_prefix;$PWD/.deps/usr" -DCMAKE_CXX_FLAGS="-Wno-interference-size" >/dev/null
cmake --build "$build_dir" -j"$(nproc)" --target minillm_train_and_export minillm_bench_model >/dev/null

work=$(mktemp -d)  # the saved models stay on the machine
"$build_dir/tests/minillm_train_and_export" "$work" | tee "$out/roundtrip.txt"
PYTHONPATH=.gpu/mini_llm python3 scripts/gpu/check_hf_roundtrip.py "$work/deepseek_v3" "$work/mini_deepseekv3" | tee -a "$out/roundtrip.txt"

# Training at Mini-LLM's vocabulary; decoding with the bundled 6400-token tokenizer (the head is
# then 6400 wide instead of 32004).
bench="$build_dir/bench/minillm_bench_model --device cuda --precision bf16 --preset mini_deepseekv3"
{
  echo "# $(date -u +%F) $(nvidia-smi --query-gpu=name --format=csv,noheader)"
  $bench --vocab 32004 --what train --batch 16 --seq 512 --steps ${STEPS:-20}
  $bench --vocab 32004 --what train --batch 16 --seq 512 --steps ${STEPS:-20} --no-cuda-graph
  $bench --vocab 6400 --what decode --no-cuda-graph
  $bench --vocab 6400 --what decode --cuda-graph
} 2>&1 | tee "$out/bench.jsonl"


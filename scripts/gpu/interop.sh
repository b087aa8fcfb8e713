#!/usr/bin/env bash
# On the GPU machine (PyTorch + transformers): build the export tool against its LibTorch, train and
# save four small models with minillm, load them with transformers and compare logits; then make
# the transformers-generated parity fixtures. Outputs go to ${OUT:-out}.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-out}
mkdir -p "$out"
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
cmake -S . -B build-torch2 -DCMAKE_BUILD_TYPE=Release -DMINILLM_BUILD_BENCH=OFF \
  -DCMAKE_PREFIX_PATH="$torch_prefix;$PWD/.deps/usr" -DCMAKE_CXX_FLAGS="-Wno-interference-size" >/dev/null
cmake --build build-torch2 -j"$(nproc)" --target minillm_train_and_export
build-torch2/tests/minillm_train_and_export "$out/roundtrip"
# mini_deepseekv3 is in Mini-LLM's layout, loaded with Mini-LLM's code from .gpu/mini_llm (see check_hf_roundtrip.py).
PYTHONPATH=.gpu/mini_llm python3 scripts/gpu/check_hf_roundtrip.py "$out"/roundtrip/* | tee "$out/roundtrip.txt"
python3 scripts/gpu/make_fixtures.py "$out/fixtures"

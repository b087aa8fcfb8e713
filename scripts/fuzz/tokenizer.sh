#!/usr/bin/env bash
# scripts/fuzz.sh [seconds] tokenizer: fuzzes tests/fuzz/tokenizer_json_fuzz.cpp (tokenizer.json
# loading, encode, decode). Seeds: a 256-byte vocabulary with a few merges under each pipeline of
# tests/data/tokenizer/pipelines (real and kindred normalizers, pre-tokenizers, post-processors,
# added-token options), each followed by an edge-case text. Needs clang-14 (scripts/fuzz.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-600}
out=build-fuzz/tokenizer
mkdir -p "$out/corpus" "$out/seeds"
python3 - "$out/seeds" <<'PY'
import glob, json, os, sys
def byte_level():  # GPT-2's bytes_to_unicode
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}
sym = byte_level()
vocab = {sym[b]: i for i, b in enumerate(sorted(sym, key=lambda b: sym[b]))}
merges = []
for a, b in [("h", "e"), ("l", "l"), ("he", "ll"), ("Ġ", "w"), ("o", "r"), ("1", "2")]:
    merges.append([a, b]); vocab[a + b] = len(vocab)
added = [{"id": len(vocab), "content": "<|end|>", "special": True, "normalized": False, "lstrip": False, "rstrip": False, "single_word": False}]
texts = [json.loads(l)["text"] for l in open("tests/data/tokenizer/edge_cases.jsonl")]
specs = [{}] + [json.load(open(p)) for p in sorted(glob.glob("tests/data/tokenizer/pipelines/*.json"))]
for i, spec in enumerate(specs):
    tok = {"added_tokens": list(added), "normalizer": None,
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
           "post_processor": None, "decoder": {"type": "ByteLevel"},
           "model": {"type": "BPE", "vocab": dict(vocab), "merges": merges}}
    for key, value in spec.items():
        if key == "added_tokens":
            for k, t in enumerate(value):
                tok[key].append(dict(t, id=len(vocab) + 1 + k))
        elif key == "model": tok[key].update(value)
        else: tok[key] = value
    text = texts[(7 * i) % len(texts)] + "<|end|>" + texts[(7 * i + 3) % len(texts)]
    data = json.dumps(tok, ensure_ascii=False).encode() + b"\0" + text.encode()
    open(os.path.join(sys.argv[1], f"seed{i}"), "wb").write(data)
PY
# Field names and types the mutator should try.
python3 - "$out/tokenizer.dict" <<'PY'
import sys
words = ["type", "Sequence", "Split", "ByteLevel", "Digits", "NFC", "NFD", "NFKC", "NFKD", "Lowercase", "Replace",
         "Prepend", "Strip", "TemplateProcessing", "RobertaProcessing", "BertProcessing", "SpecialToken", "special_tokens",
         "pattern", "Regex", "String", "behavior", "Isolated", "Removed", "MergedWithPrevious", "MergedWithNext",
         "Contiguous", "invert", "add_prefix_space", "use_regex", "individual_digits", "normalizers", "pretokenizers",
         "processors", "added_tokens", "lstrip", "rstrip", "single_word", "normalized", "special", "ignore_merges",
         "vocab", "merges", "model", "content", "prepend", "ids", "single", "\\\\p{L}", "\\\\s+(?!\\\\S)", "(?i:"]
with open(sys.argv[1], "w") as f:
    for i, w in enumerate(words):
        f.write(f'w{i}="\\"{w}\\""\n')
PY
clang++-14 -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -Iinclude tests/fuzz/tokenizer_json_fuzz.cpp -lonig -o "$out/tokenizer_json_fuzz"
"$out/tokenizer_json_fuzz" -max_total_time="$seconds" -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
  -dict="$out/tokenizer.dict" -print_final_stats=1 -artifact_prefix="$out/" \
  "$out/corpus" "$out/seeds" 2>&1 | tee "$out/fuzz.log" | grep -E "^#[0-9]+.*(pulse|DONE)|stat::|ERROR|SUMMARY" || true
echo "corpus: $(ls "$out/corpus" | wc -l) inputs"

#!/usr/bin/env bash
# Fuzzes one parser with libFuzzer + AddressSanitizer + UBSan (clang 14, one core):
#   scripts/fuzz.sh [MODE] [SECONDS]      MODE defaults to safetensors, SECONDS to 600
# MODE:
#   safetensors     the safetensors header parser           tests/fuzz/safetensors_header_fuzz.cpp
#   tokenizer       tokenizer.json loading, encode, decode  tests/fuzz/tokenizer_json_fuzz.cpp
#   chat-template   the Jinja chat-template engine          tests/fuzz/chat_template_fuzz.cpp
#   config          config.json parsing and validation      tests/fuzz/config_fuzz.cpp
#   all             each mode above for SECONDS
# Each mode writes small valid seeds, then keeps its corpus, log and crash inputs under
# build-fuzz/MODE. Prints the run time, executions and corpus size.
set -euo pipefail
cd "$(dirname "$0")/.."
modes=(safetensors tokenizer chat-template config)
mode=safetensors
case "${1:-}" in
  "" | [0-9]*) ;;
  all) mode=all; shift ;;
  *) mode=$1; shift
     [[ " ${modes[*]} " == *" $mode "* ]] || { echo "fuzz: unknown mode '$mode' (modes: ${modes[*]} all)" >&2; exit 2; } ;;
esac
seconds=${1:-600}
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "fuzz: SECONDS must be a whole number, got '$seconds'" >&2; exit 2; }
if ! command -v clang++-14 >/dev/null || [ ! -e /usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a ]; then
  echo "fuzz: installing clang-14 and libclang-rt-14-dev"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends clang-14 libclang-rt-14-dev
fi

# Seeds for each mode, written to $1.
seeds_safetensors() {  # small valid files (the fixtures are larger than -max_len)
  python3 - "$1" <<'PY'
import json, struct, sys, os
def write(name, tensors, meta=None):
    header, data = {}, b""
    if meta: header["__metadata__"] = meta
    for key, (dtype, shape, raw) in tensors.items():
        header[key] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    open(os.path.join(sys.argv[1], name), "wb").write(struct.pack("<Q", len(text)) + text + data)
write("one.safetensors", {"w": ("F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4))}, {"format": "pt"})
write("many.safetensors", {"a": ("BF16", [3], b"\0" * 6), "b": ("I64", [1], b"\1" * 8), "c": ("BOOL", [0], b""),
                           "d": ("U8", [2, 1], b"xy")})
PY
}
# An input is a tokenizer.json, a NUL byte and a text: a 256-byte vocabulary with a few merges under
# each pipeline of tests/data/tokenizer/pipelines, each followed by an edge-case text.
seeds_tokenizer() {
  python3 - "$1" <<'PY'
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
}
seeds_chat_template() {  # the built-in templates, MiniMind's, and one using every feature
  python3 - "$1" <<'PY'
import json, re, sys, os
cfg = json.load(open("tests/data/tokenizer/minimind/tokenizer_config.json", encoding="utf-8"))
open(os.path.join(sys.argv[1], "minimind.jinja"), "w", encoding="utf-8").write(cfg["chat_template"])
src = open("include/minillm/tokenizer/jinja_templates.hpp", encoding="utf-8").read()
for i, t in enumerate(re.findall(r'R"jinja\((.*?)\)jinja"', src, re.S)):
    open(os.path.join(sys.argv[1], f"builtin{i}.jinja"), "w", encoding="utf-8").write(t)
open(os.path.join(sys.argv[1], "features.jinja"), "w").write(
    "{% macro m(a, b=2) %}{{ a ~ b }}{% endmacro %}{% call m(1) %}x{% endcall %}{% set ns = namespace(k=0) %}"
    "{% for k, v in {'a': [1, 2.5, none]}.items() if k is string %}{{ loop.index }}{{ v[::-1]|tojson(indent=2) }}"
    "{% set ns.k = ns.k + 1 %}{% break %}{% endfor %}{{ 'a b'.split()|join('-')|upper|replace('A', 'z') }}"
    "{%- filter trim %} x {% endfilter -%}{{ messages|selectattr('role', 'equalto', 'user')|map(attribute='content')|list }}"
    "{# c #}{% raw %}{{ r }}{% endraw %}{% generation %}g{% endgeneration %}{{ 7 // 2 ** 2 % 3 if true else raise_exception('no') }}")
PY
}
seeds_config() {  # the config.json files of the HF fixtures
  for f in tests/data/hf/*/config.json; do cp "$f" "$1/$(basename "$(dirname "$f")").json"; done
}
# The tokenizer dictionary: tokenizer.json field and type names the mutator should try.
dict_tokenizer() {
  python3 - "$1" <<'PY'
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
}

# fuzz MODE: build the target and run it for $seconds.
fuzz() {
  local mode=$1 out=build-fuzz/$1 source libs=() flags=()
  mkdir -p "$out/corpus" "$out/seeds"
  case "$mode" in
    safetensors)   source=safetensors_header_fuzz; seeds_safetensors "$out/seeds"; flags=(-max_len=4096) ;;
    tokenizer)     source=tokenizer_json_fuzz; seeds_tokenizer "$out/seeds"; dict_tokenizer "$out/tokenizer.dict"; libs=(-lonig)
                   flags=(-max_len=16384 -timeout=10 -rss_limit_mb=2048 -dict="$out/tokenizer.dict") ;;
    chat-template) source=chat_template_fuzz; seeds_chat_template "$out/seeds"
                   flags=(-max_len=8192 -timeout=10 -rss_limit_mb=2048 -dict=tests/fuzz/jinja.dict) ;;
    config)        source=config_fuzz; seeds_config "$out/seeds"; flags=(-max_len=4096 -dict=tests/fuzz/config.dict) ;;
  esac
  clang++-14 -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -Iinclude "tests/fuzz/$source.cpp" "${libs[@]}" -o "$out/$source"
  echo "fuzz: $mode for $seconds s"
  "$out/$source" -max_total_time="$seconds" "${flags[@]}" -print_final_stats=1 -artifact_prefix="$out/" \
    "$out/corpus" "$out/seeds" 2>&1 | tee "$out/fuzz.log" | grep -E "^#[0-9]+.*(pulse|DONE)|stat::|ERROR|SUMMARY" || true
  echo "$mode corpus: $(ls "$out/corpus" | wc -l) inputs"
}

if [ "$mode" = all ]; then
  for m in "${modes[@]}"; do fuzz "$m"; done
else
  fuzz "$mode"
fi

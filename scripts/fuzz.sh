#!/usr/bin/env bash
# Fuzzes the safetensors header parser with libFuzzer + AddressSanitizer + UBSan.
#   scripts/fuzz.sh [seconds=600]
#   scripts/fuzz.sh chat-template [seconds=600]   the Jinja chat-template parser and renderer
# Seeds: the checkpoints under tests/data. Prints the run time, executions and corpus size.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=safetensors
case "${1:-}" in
  chat-template) mode=$1; shift ;;
esac
seconds=${1:-600}
if ! command -v clang++-14 >/dev/null || [ ! -e /usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a ]; then
  echo "fuzz: installing clang-14 and libclang-rt-14-dev"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends clang-14 libclang-rt-14-dev
fi
if [ "$mode" = chat-template ]; then
  # Seeds: the built-in templates and MiniMind's (libFuzzer mutates from real chat templates).
  out=build-fuzz/chat-template
  mkdir -p "$out/corpus" "$out/seeds"
  python3 - "$out/seeds" <<'PY'
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
  clang++-14 -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -Iinclude tests/fuzz/chat_template_fuzz.cpp -o "$out/chat_template_fuzz"
  "$out/chat_template_fuzz" -max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -dict=tests/fuzz/jinja.dict "$out/corpus" "$out/seeds" 2>&1 | tee "$out/fuzz.log" | grep -E "^#[0-9]+.*(pulse|DONE)|stat::|ERROR|SUMMARY" || true
  echo "corpus: $(ls "$out/corpus" | wc -l) inputs"
  exit 0
fi

out=build-fuzz
mkdir -p "$out/corpus" "$out/seeds"
# Small valid files as seeds (the fixtures are larger than -max_len).
python3 - "$out/seeds" <<'PY'
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
clang++-14 -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -Iinclude tests/fuzz/safetensors_header_fuzz.cpp -o "$out/safetensors_header_fuzz"
"$out/safetensors_header_fuzz" -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 \
  "$out/corpus" "$out/seeds" 2>&1 | tee "$out/fuzz.log" | grep -E "^#[0-9]+.*(pulse|DONE)|stat::|ERROR|SUMMARY" || true
echo "corpus: $(ls "$out/corpus" | wc -l) inputs"

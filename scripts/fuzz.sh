#!/usr/bin/env bash
# Fuzzes the safetensors header parser and config.json parsing (ModelConfig from JSON + validate)
# with libFuzzer + AddressSanitizer + UBSan, each target for the given time.
#   scripts/fuzz.sh [seconds=600] [targets="safetensors_header config"]
# Seeds: small valid safetensors files; the config.json files under tests/data. Prints the run
# time, executions and corpus size per target.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
targets=${2:-safetensors_header config}
if ! command -v clang++-14 >/dev/null || [ ! -e /usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a ]; then
  echo "fuzz: installing clang-14 and libclang-rt-14-dev"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends clang-14 libclang-rt-14-dev
fi
out=build-fuzz
mkdir -p "$out/safetensors_header/corpus" "$out/safetensors_header/seeds" "$out/config/corpus" "$out/config/seeds"
for f in tests/data/hf/*/config.json; do cp "$f" "$out/config/seeds/$(basename "$(dirname "$f")").json"; done
# Small valid files as seeds (the fixtures are larger than -max_len).
python3 - "$out/safetensors_header/seeds" <<'PY'
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
for target in $targets; do
  dir="$out/$target"
  dict=()
  [ -e "tests/fuzz/$target.dict" ] && dict=(-dict="tests/fuzz/$target.dict")
  clang++-14 -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -Iinclude "tests/fuzz/${target}_fuzz.cpp" -o "$dir/fuzz"
  echo "fuzz: $target for $seconds s"
  "$dir/fuzz" -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 "${dict[@]}" \
    "$dir/corpus" "$dir/seeds" 2>&1 | tee "$dir/fuzz.log" | grep -E "^#[0-9]+.*(pulse|DONE)|stat::|ERROR|SUMMARY" || true
  echo "$target corpus: $(ls "$dir/corpus" | wc -l) inputs"
done

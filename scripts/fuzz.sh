#!/usr/bin/env bash
# Fuzzes with libFuzzer + AddressSanitizer + UBSan:
#   scripts/fuzz.sh [seconds=600]              the safetensors header parser
#   scripts/fuzz.sh [seconds=600] tokenizer    tokenizer.json loading + encode/decode
# Seeds: small valid inputs. Prints the run time, executions and corpus size.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
if ! command -v clang++-14 >/dev/null || [ ! -e /usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a ]; then
  echo "fuzz: installing clang-14 and libclang-rt-14-dev"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends clang-14 libclang-rt-14-dev
fi
if [ "${2:-}" = tokenizer ]; then
  exec scripts/fuzz/tokenizer.sh "$seconds"
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

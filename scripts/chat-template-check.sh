#!/usr/bin/env bash
# Renders tests/data/chat/jinja_conversations.json through the chat templates of Qwen3, Llama-3,
# DeepSeek-V3 and MiniMind, and the feature cases of tests/data/chat/jinja_features.json, with
# Jinja2 itself (Debian's python3-jinja2, configured as transformers does) and compares with
# tests/data/chat/jinja_expected.json and jinja_features_expected.json, which the C++ engine's tests
# check against. --update rewrites those files.
#   scripts/chat-template-check.sh [--update]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! /usr/bin/python3 -c "import jinja2" 2>/dev/null; then
  echo "chat-template-check: installing python3-jinja2"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-jinja2
fi
dir=${BUILD_DIR:-build}/chat_templates
scripts/chat/fetch-templates.sh "$dir"
out=$(mktemp)
/usr/bin/python3 scripts/chat/jinja_reference.py tests/data/chat/jinja_conversations.json \
  "qwen3=$dir/qwen3/tokenizer_config.json" "llama3=$dir/llama3/tokenizer_config.json" \
  "deepseek_v3=$dir/deepseek_v3/tokenizer_config.json" "minimind=tests/data/tokenizer/minimind/tokenizer_config.json" > "$out"
echo "chat-template-check: $(grep -c '"template"' "$out") renderings by Jinja2 $(/usr/bin/python3 -c 'import jinja2; print(jinja2.__version__)')," \
     "$(grep -c '"error"' "$out") of them refused by the template"
features=$(mktemp)
/usr/bin/python3 scripts/chat/jinja_reference.py --features tests/data/chat/jinja_features.json > "$features"
if [ "${1:-}" = "--update" ]; then
  mv "$features" tests/data/chat/jinja_features_expected.json
  echo "chat-template-check: wrote tests/data/chat/jinja_features_expected.json"
elif cmp -s "$features" tests/data/chat/jinja_features_expected.json; then
  echo "chat-template-check: Jinja2 renders the feature cases exactly as tests/data/chat/jinja_features_expected.json"
  rm -f "$features"
else
  echo "chat-template-check: Jinja2's feature renderings differ from tests/data/chat/jinja_features_expected.json ($features)" >&2
  exit 1
fi
if [ "${1:-}" = "--update" ]; then
  mv "$out" tests/data/chat/jinja_expected.json
  echo "chat-template-check: wrote tests/data/chat/jinja_expected.json"
elif cmp -s "$out" tests/data/chat/jinja_expected.json; then
  echo "chat-template-check: Jinja2 renders exactly tests/data/chat/jinja_expected.json"
  rm -f "$out"
else
  diff <(head -c 2000 tests/data/chat/jinja_expected.json) <(head -c 2000 "$out") || true
  echo "chat-template-check: Jinja2's renderings differ from tests/data/chat/jinja_expected.json ($out)" >&2
  exit 1
fi

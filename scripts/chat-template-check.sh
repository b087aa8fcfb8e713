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

# compare RENDERED EXPECTED WHAT: with --update the rendering replaces EXPECTED, else they must match.
compare() {
  if [ "$mode" = "--update" ]; then
    mv "$1" "$2"
    echo "chat-template-check: wrote $2"
  elif cmp -s "$1" "$2"; then
    echo "chat-template-check: Jinja2 renders $3 exactly as $2"
    rm -f "$1"
  else
    diff <(head -c 2000 "$2") <(head -c 2000 "$1") || true
    echo "chat-template-check: Jinja2's renderings of $3 differ from $2 ($1)" >&2
    return 1
  fi
}
mode=${1:-}
compare "$features" tests/data/chat/jinja_features_expected.json "the feature cases"
compare "$out" tests/data/chat/jinja_expected.json "the conversations"

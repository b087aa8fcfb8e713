#!/usr/bin/env bash
# Qwen3-Next through the programs: minillm-pretrain trains qwen3_next_tiny (hybrid linear / full
# attention, gated shared expert), minillm-sft continues it on packed rows (the linear layers'
# state restarts at each conversation), minillm-eval --objective reports the aux term, minillm-chat
# answers, and minillm-serve answers a chat completion over HTTP on loopback.
#   tests/qwen3_next_cli.sh TOOLS_DIR DATA_DIR WORK_DIR
set -euo pipefail
tools=$1 data=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
tok="$data/tokenizer/minimind"
fail() { echo "FAIL: $*" >&2; exit 1; }

"$tools/minillm-tokenizer" shard --tokenizer "$tok" --input "$data/text/poems.jsonl" --output "$work/poems.bin" >/dev/null
"$tools/minillm-pretrain" --preset qwen3_next_tiny --tokenizer "$tok" --data "$work/poems.bin" --out "$work/pre" \
  --batch-size 2 --seq-len 80 --steps 3 --eval-interval 0 --log-interval 1 >"$work/pre.log" 2>&1 || fail "pretrain: $(cat "$work/pre.log")"
grep -q '"aux_loss":' "$work/pre/metrics.jsonl" || fail "metrics.jsonl lacks the aux loss"
pre="$work/pre/checkpoint-00000003"
grep -q '"model_type": "qwen3_next"' "$pre/config.json" || fail "not saved as qwen3_next: $(cat "$pre/config.json")"

out=$("$tools/minillm-eval" --model "$pre" --ids "5 300 17 42 9 88" --objective)
echo "$out" | grep -Eq '"aux_loss":[0-9.e-]+,"lm_loss":[0-9.e-]+,"loss":' || fail "unexpected --objective output: $out"

"$tools/minillm-sft" --init "$pre" --tokenizer "$tok" --data "$data/text/sft.jsonl" --out "$work/sft" --pack \
  --batch-size 2 --seq-len 160 --steps 2 --eval-interval 0 --log-interval 1 >"$work/sft.log" 2>&1 || fail "sft: $(cat "$work/sft.log")"
sft="$work/sft/checkpoint-00000002"

out=$("$tools/minillm-chat" --model "$sft" --prompt "hello" --max-new-tokens 8 --temperature 0 2>&1) || fail "chat: $out"
echo "$out" | grep -q 'tokens/s' || fail "chat did not generate: $out"

"$tools/minillm-serve" --model "$sft" --port 0 --max-new-tokens 8 --threads 1 >"$work/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q 'http://' "$work/server.log" && break; sleep 0.1; done
base=$(grep -o 'http://[0-9.:]*' "$work/server.log" | head -1)
[ -n "$base" ] || fail "server did not start: $(cat "$work/server.log")"
body=$(curl -s -X POST "$base/v1/chat/completions" -H 'Content-Type: application/json' \
  --data-binary '{"messages":[{"role":"user","content":"hello"}],"max_tokens":8,"temperature":0}')
echo "$body" | grep -q '"finish_reason"' || fail "serve: $body"
echo "qwen3_next CLI: pretrain, objective, packed sft, chat, serve: ok"

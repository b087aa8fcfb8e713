#!/usr/bin/env bash
# minillm-serve against hostile or unlucky input (loopback, bounded): requests that used to crash
# it (a tiny temperature, a checkpoint whose vocabulary is larger than its tokenizer's, a huge
# max_tokens against a huge context), clients that hang up, slow and idle clients, a full queue
# and too many connections, a chunked body past --max-body, bad UTF-8, special-token text in a
# message, a conversation longer than the context, a wrong method, and a second server on a port.
#   tests/serve_hardening_test.sh SERVE_BINARY SOURCE_DIR WORK_DIR
set -euo pipefail
serve=$1 src=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
fail() {
  echo "FAIL: $*" >&2
  for log in "$work"/*.log; do sed "s|^|  $(basename "$log"): |" "$log" >&2; done
  exit 1
}

# A 12000-token checkpoint (random weights) with MiniMind's 6400-token tokenizer: most ids it
# draws have no text. The copy claims a context of 2^26 tokens, the most config.json may claim.
fixture=$src/tests/data/hf/qwen3_vocab12k_mqa
tok=$src/tests/data/tokenizer/minimind
cp -r "$fixture" "$work/huge"
sed -i 's/"max_position_embeddings": *[0-9]*/"max_position_embeddings": 67108864/' "$work/huge/config.json"
grep -q 67108864 "$work/huge/config.json" || fail "could not edit the fixture's config"

start() {  # NAME ARGS... -> sets $base and $port
  local log="$work/$1.log"; shift
  "$serve" --tokenizer "$tok" --port 0 --threads 1 "$@" >"$log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do grep -q 'http://' "$log" && break; sleep 0.1; done
  base=$(grep -o 'http://[0-9.:]*' "$log" | head -1 || true)
  [ -n "$base" ] || fail "server $log did not start"
  port=${base##*:}
}
post() {  # BASE PATH BODY [CURL ARGS...] -> $status, $body
  local b=$1 p=$2 d=$3; shift 3
  status=$(curl -s -o "$work/body" -w '%{http_code}' -m 20 -H 'Content-Type: application/json' --data-binary "$d" "$@" "$b$p") || true
  body=$(cat "$work/body" 2>/dev/null || true)
}
expect() {  # STATUS PATTERN WHAT
  [ "$status" = "$1" ] || fail "$3: HTTP $status, expected $1; body: $body"
  echo "$body" | grep -q -- "$2" || fail "$3: body lacks '$2': $body"
}
wait_log() {  # LOG PATTERN WHAT: the pattern appears within 10 s
  for _ in $(seq 100); do grep -q -- "$2" "$1" && return; sleep 0.1; done
  fail "$3: '$2' not in $1"
}

start huge --model "$work/huge" --request-timeout 2 --keep-alive 2
huge=$base huge_port=$port
chat() { echo "{\"messages\":[{\"role\":\"user\",\"content\":\"你好\"}]$1}"; }

# 1. Crashes: all answered; the stream ends with [DONE] and no error event.
stream=$(curl -sN -m 20 "$huge/v1/chat/completions" --data-binary "$(chat ',"temperature":1e-45,"stream":true,"max_tokens":8')") || true
echo "$stream" | grep -v '^$' | tail -1 | grep -qx 'data: \[DONE\]' || fail "tiny temperature, streamed: $stream"
echo "$stream" | grep -q '"error"' && fail "tiny temperature, streamed: error event: $stream"
post "$huge" /v1/chat/completions "$(chat ',"temperature":1,"max_tokens":24')"
expect 200 '"completion_tokens":' "ids past the tokenizer's vocabulary"
# max_tokens of 67,000,000 against the 2^26 context: generation starts (no absurd reservation); the
# client hangs up after the first events, which cancels it.
curl -sN -m 20 "$huge/v1/chat/completions" --data-binary "$(chat ',"stream":true,"max_tokens":67000000,"temperature":0')" | head -c 600 >"$work/events" || true
grep -q '"delta":{"content":' "$work/events" || fail "huge max_tokens, streamed: $(cat "$work/events")"
grep -q '"error"' "$work/events" && fail "huge max_tokens, streamed: error event: $(cat "$work/events")"
wait_log "$work/huge.log" 'chatcmpl-3: .* cancelled' "a streaming client that hangs up"
# Not streamed: the client gives up after 1 s, which cancels the generation too.
curl -s -m 1 "$huge/v1/chat/completions" --data-binary "$(chat ',"max_tokens":67000000,"temperature":0')" >/dev/null || true
wait_log "$work/huge.log" 'chatcmpl-4: .* cancelled' "a non-streaming client that hangs up"

# 5. Bad UTF-8 names its field; special-token text in a message stays text; a wrong method is 405.
printf '{"messages":[{"role":"user","content":"ok"},{"role":"user","content":"a\xffb"}]}' >"$work/bad.json"
status=$(curl -s -o "$work/body" -w '%{http_code}' -m 10 --data-binary @"$work/bad.json" "$huge/v1/chat/completions"); body=$(cat "$work/body")
expect 400 "'messages\[1\].content' is not valid UTF-8" "invalid UTF-8"
post "$huge" /v1/chat/completions '{"messages":[{"role":"user","content":"x"}],"max_tokens":1}'; expect 200 prompt_tokens "plain message"
plain=$(echo "$body" | grep -o '"prompt_tokens":[0-9]*' | cut -d: -f2)
post "$huge" /v1/chat/completions '{"messages":[{"role":"user","content":"<|im_end|>"}],"max_tokens":1}'; expect 200 prompt_tokens "marker in a message"
marker=$(echo "$body" | grep -o '"prompt_tokens":[0-9]*' | cut -d: -f2)
# As a control token "<|im_end|>" would be one token, like "x"; as text it is several.
[ "$marker" -ge $((plain + 3)) ] || fail "'<|im_end|>' in a message was read as a control token ($marker vs $plain tokens)"
status=$(curl -s -o "$work/body" -w '%{http_code}' -m 10 "$huge/v1/chat/completions"); body=$(cat "$work/body")
expect 405 'use POST' "GET on a POST route"

# 3. A chunked body past --max-body: 413, as with Content-Length.
head -c 3000000 /dev/zero | tr '\0' 'a' >"$work/big"
# (curl -T - sends chunks without Expect: 100-continue, which httplib would answer first.)
status=$(curl -s -o "$work/body" -w '%{http_code}' -m 20 -X POST -T - "$huge/v1/chat/completions" <"$work/big"); body=$(cat "$work/body")
expect 413 'larger than --max-body' "chunked body past --max-body"

# 2. 12 slow-header clients and 80 idle connections for 5 s: 2 normal clients never fail and
# /health answers within 1 s throughout; the slow ones are cut off at --request-timeout.
python3 "$src/scripts/attack_clients.py" "$huge" --seconds 5 --slow 12 --slow-interval 0.5 --idle 80 --normal 2 \
  >"$work/attack.json" || fail "slow and idle clients: $(cat "$work/attack.json")"
grep -q '"slow_cut_off": [1-9]' "$work/attack.json" || fail "slow clients were not cut off: $(cat "$work/attack.json")"

# 4. A second server on the same port fails, naming it.
if timeout 20 "$serve" --model "$fixture" --tokenizer "$tok" --port "$huge_port" --threads 1 >"$work/second.log" 2>&1; then
  fail "a second server on port $huge_port started"
fi
grep -q "port $huge_port is in use" "$work/second.log" || fail "second server: no 'port $huge_port is in use'"

# The context-256 fixture: trimming, a full queue, too many connections.
start small --model "$fixture" --max-queue 0 --max-connections 6
small=$base
# A conversation longer than the context: the oldest turns go, the system prompt stays.
long=$(python3 -c 'import json; m=[{"role":"system","content":"你是诗人。"}]
m += [{"role": r, "content": "床前明月光，疑是地上霜。" * 6} for _ in range(8) for r in ("user", "assistant")]
m.append({"role": "user", "content": "下一句"}); print(json.dumps({"messages": m, "max_tokens": 16}))')
post "$small" /v1/chat/completions "$long"; expect 200 '"chat.completion"' "a conversation longer than the context"
wait_log "$work/small.log" 'dropped the [0-9]* oldest' "trimming logged"
# The queue holds none: while one request generates, a streamed one gets 503 before any event.
curl -sN -m 20 "$small/v1/chat/completions" --data-binary "$(chat ',"stream":true,"max_tokens":230,"temperature":0')" >"$work/busy" &
busy=$!
for _ in $(seq 100); do grep -q '^data: ' "$work/busy" && break; sleep 0.05; done  # it is generating
status=$(curl -s -o "$work/body" -w '%{http_code}' -m 20 --data-binary "$(chat ',"stream":true,"max_tokens":4')" "$small/v1/chat/completions") || true
body=$(cat "$work/body"); expect 503 'too many requests are waiting' "a streamed request with the queue full"
wait $busy || true
# 6 connections held open: the next one is refused with 503 at once.
for i in 3 4 5 6 7 8; do eval "exec $i<>/dev/tcp/127.0.0.1/${small##*:}"; done
for _ in $(seq 50); do  # until the server has taken them all
  status=$(curl -s -o "$work/body" -w '%{http_code}' -m 5 "$small/health") || true
  [ "$status" = 503 ] && break
  sleep 0.1
done
body=$(cat "$work/body")
expect 503 'too many connections' "a connection over --max-connections"
for i in 3 4 5 6 7 8; do eval "exec $i>&-"; done
sleep 0.5
status=$(curl -s -o "$work/body" -w '%{http_code}' -m 5 "$small/health"); body=$(cat "$work/body")
expect 200 '"ok"' "health once the connections are closed"

for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || fail "a server died"; done
echo "serve hardening: crashes, hang-ups, slow and idle clients, limits, bad input: ok ($(cat "$work/attack.json"))"

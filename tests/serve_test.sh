#!/usr/bin/env bash
# minillm-serve against real clients: curl for every route and every kind of bad request, the
# official openai npm client (streamed and not), 8 concurrent requests, a client that disconnects
# mid-stream; the server must stay up and keep answering throughout.
#   tests/serve_test.sh SERVE_BINARY CHECKPOINT_DIR NPM_DIR WORK_DIR
set -euo pipefail
serve=$1 model=$2 npm_dir=$3 work=$4
rm -rf "$work" && mkdir -p "$work"
fail() { echo "FAIL: $*" >&2; [ -f "$work/server.log" ] && sed 's/^/  server: /' "$work/server.log" >&2; exit 1; }

key=test-key-123
"$serve" --model "$model" --port 0 --api-key "$key" --max-body 100000 --max-new-tokens 16 --threads 1 >"$work/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q 'http://' "$work/server.log" && break; sleep 0.1; done
base=$(grep -o 'http://[0-9.:]*' "$work/server.log" | head -1)
[ -n "$base" ] || fail "server did not start"
auth=(-H "Authorization: Bearer $key")

# request METHOD PATH [BODY] -> sets $status and $body
request() {
  local args=(-s -o "$work/body" -w '%{http_code}' -X "$1" "${auth[@]}" "$base$2")
  [ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
  status=$(curl "${args[@]}") || true
  body=$(cat "$work/body")
}
expect() {  # STATUS PATTERN WHAT
  [ "$status" = "$1" ] || fail "$3: HTTP $status, expected $1; body: $body"
  echo "$body" | grep -q -- "$2" || fail "$3: body lacks '$2': $body"
}

request GET /health;                 expect 200 '"status":"ok"' "health"
request GET /v1/models;              expect 200 '"object":"list"' "models"
chat='{"messages":[{"role":"user","content":"背诵《静夜思》。"}],"max_tokens":8,"temperature":0}'
request POST /v1/chat/completions "$chat"; expect 200 '"chat.completion"' "chat completion"
echo "$body" | grep -q '"completion_tokens":' || fail "no usage: $body"
request POST /v1/completions '{"prompt":"床前明月光","max_tokens":4}'; expect 200 '"text_completion"' "completion"

stream=$(curl -sN "${auth[@]}" -H 'Content-Type: application/json' "$base/v1/chat/completions" \
  --data-binary '{"messages":[{"role":"user","content":"你好"}],"max_tokens":6,"stream":true}')
echo "$stream" | head -1 | grep -q '^data: {.*"chat.completion.chunk"' || fail "stream does not start with a chunk: $stream"
[ "$(echo "$stream" | grep -c '^data: ')" -ge 3 ] || fail "too few SSE events: $stream"
echo "$stream" | grep -v '^$' | tail -1 | grep -qx 'data: \[DONE\]' || fail "stream does not end with [DONE]: $stream"

# Every kind of bad request: status and OpenAI-style error body.
status=$(curl -s -o "$work/body" -w '%{http_code}' "$base/v1/models"); body=$(cat "$work/body")
expect 401 '"invalid_request_error"' "missing API key"
request POST /v1/chat/completions '{"messages": [}';                           expect 400 'not valid JSON' "malformed JSON"
request POST /v1/chat/completions '[1,2]';                                     expect 400 'must be a JSON object' "non-object body"
request POST /v1/chat/completions '{"max_tokens":4}';                          expect 400 '"param":"messages"' "missing messages"
request POST /v1/chat/completions '{"messages":"hi"}';                         expect 400 'non-empty array' "messages not an array"
request POST /v1/chat/completions '{"messages":[]}';                           expect 400 'non-empty array' "empty messages"
request POST /v1/chat/completions '{"messages":[{"role":"user","content":5}]}';  expect 400 'content' "content not a string"
request POST /v1/chat/completions '{"messages":[{"role":"wizard","content":"x"}]}'; expect 400 'unknown role' "unknown role"
request POST /v1/chat/completions '{"messages":[{"role":"user","content":"x"}],"max_tokens":0}';      expect 400 '"param":"max_tokens"' "max_tokens 0"
request POST /v1/chat/completions '{"messages":[{"role":"user","content":"x"}],"max_tokens":100000}'; expect 400 '"param":"max_tokens"' "max_tokens too large"
request POST /v1/chat/completions '{"messages":[{"role":"user","content":"x"}],"max_tokens":"5"}';    expect 400 'must be an integer' "max_tokens a string"
request POST /v1/chat/completions '{"messages":[{"role":"user","content":"x"}],"temperature":3}';     expect 400 '"param":"temperature"' "temperature 3"
request POST /v1/chat/completions '{"messages":[{"role":"user","content":"x"}],"top_p":0}';           expect 400 '"param":"top_p"' "top_p 0"
request POST /v1/chat/completions '{"messages":[{"role":"user","content":"x"}],"top_p":1.5}';         expect 400 '"param":"top_p"' "top_p 1.5"
request POST /v1/chat/completions '{"messages":[{"role":"user","content":"x"}],"stream":"yes"}';      expect 400 '"param":"stream"' "stream not a boolean"
request POST /v1/completions '{"prompt":""}';                                  expect 400 '"param":"prompt"' "empty prompt"
head -c 200000 /dev/zero | tr '\0' 'a' > "$work/big"
status=$(curl -s -o "$work/body" -w '%{http_code}' "${auth[@]}" -H 'Content-Type: application/json' --data-binary @"$work/big" "$base/v1/chat/completions"); body=$(cat "$work/body")
expect 413 'larger than --max-body' "oversized body"
request GET /v1/nothing;                                                       expect 404 '"error"' "unknown route"
request POST /v1/chat/completions "$chat";                                     expect 200 '"chat.completion"' "a good request after the bad ones"

# A client that hangs up mid-stream stops its generation; the server keeps serving.
curl -sN "${auth[@]}" -H 'Content-Type: application/json' "$base/v1/chat/completions" \
  --data-binary '{"messages":[{"role":"user","content":"你好"}],"max_tokens":200,"stream":true}' | head -c 200 >/dev/null || true
for _ in $(seq 50); do grep -q 'cancelled' "$work/server.log" && break; sleep 0.1; done
grep -q 'cancelled' "$work/server.log" || fail "the disconnected stream was not cancelled"

# 8 concurrent requests, all answered.
clients=()
for i in $(seq 8); do
  curl -s -o "$work/c$i" -w '%{http_code}' "${auth[@]}" -H 'Content-Type: application/json' "$base/v1/chat/completions" \
    --data-binary '{"messages":[{"role":"user","content":"你好"}],"max_tokens":8}' > "$work/s$i" &
  clients+=($!)
done
wait "${clients[@]}" || true
for i in $(seq 8); do [ "$(cat "$work/s$i")" = 200 ] || fail "concurrent request $i: HTTP $(cat "$work/s$i")"; done

# The official openai client.
[ -d "$npm_dir/node_modules/openai" ] || fail "the openai npm package is not in $npm_dir (scripts/test.sh installs it)"
cp "$(dirname "$0")/openai_client.mjs" "$npm_dir/"
node "$npm_dir/openai_client.mjs" "$base/v1" "$key" || fail "openai client"

kill -0 $pid 2>/dev/null || fail "the server died"
kill $pid && wait $pid 2>/dev/null || true
echo "serve: every route, every bad request, disconnect, 8 concurrent requests and the openai client: ok"

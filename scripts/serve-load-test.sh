#!/usr/bin/env bash
# Load test for minillm-serve on loopback: CLIENTS concurrent curl loops for SECONDS, each asking
# for a short chat completion. Reports requests, failures, throughput, latency and the server's
# memory (RSS) at the start and end.
#   scripts/serve-load-test.sh CHECKPOINT_DIR [CLIENTS=8] [SECONDS=60] [MAX_TOKENS=16]
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?usage: $0 CHECKPOINT_DIR [CLIENTS] [SECONDS] [MAX_TOKENS]}
clients=${2:-8} seconds=${3:-60} max_tokens=${4:-16}
serve=${BUILD_DIR:-build}/examples/minillm-serve
work=$(mktemp -d)
"$serve" --model "$model" --port 0 >"$work/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do grep -q 'http://' "$work/server.log" && break; sleep 0.1; done
base=$(grep -o 'http://[0-9.:]*' "$work/server.log" | head -1)
rss() { awk '/VmRSS/ {print $2}' /proc/$pid/status; }
rss_start=$(rss)
end=$(( $(date +%s) + seconds ))
loop() {
  local i=0
  while [ "$(date +%s)" -lt "$end" ]; do
    curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -H 'Content-Type: application/json' "$base/v1/chat/completions" \
      --data-binary "{\"messages\":[{\"role\":\"user\",\"content\":\"背诵第$1首诗，第$i次。\"}],\"max_tokens\":$max_tokens,\"temperature\":0.8}" \
      >> "$work/client$1.log" || echo "000 0" >> "$work/client$1.log"
    i=$((i + 1))
  done
}
for c in $(seq "$clients"); do loop "$c" & done
samples=()
while [ "$(date +%s)" -lt "$end" ]; do samples+=("$(rss)"); sleep 5; done
wait $(jobs -p | grep -vx "$pid") 2>/dev/null || true
rss_end=$(rss)
kill -0 $pid || { echo "the server died"; exit 1; }
echo "server RSS every 5 s (MB): $(printf '%s\n' "${samples[@]}" | awk '{printf "%.0f ", $1 / 1024}')"
cat "$work"/client*.log | sort -k2 -n | awk -v s="$seconds" -v c="$clients" -v r0="$rss_start" -v r1="$rss_end" -v mx="$(printf '%s\n' "${samples[@]}" | sort -n | tail -1)" '
  { n++; if ($1 != 200) bad++; t[n] = $2 }
  END {
    printf "clients %d, %d s: %d requests, %d failed, %.2f requests/s; latency p50 %.2f s, p95 %.2f s, max %.2f s\n",
           c, s, n, bad, n / s, t[int(n * 0.5) + 1], t[int(n * 0.95) + 1], t[n]
    printf "server RSS: %.1f MB at start, %.1f MB at the end, %.1f MB at most\n", r0 / 1024, r1 / 1024, mx / 1024
    exit bad > 0
  }'

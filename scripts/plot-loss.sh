#!/usr/bin/env bash
# Renders the loss curves of training runs to a PNG with gnuplot: training loss per step and, where
# the run validated, validation loss.
#   scripts/plot-loss.sh OUTPUT.png RUN_DIR [RUN_DIR...]      (each RUN_DIR holds a metrics.jsonl)
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 OUTPUT.png RUN_DIR [RUN_DIR...]" >&2
  exit 2
fi
png=$1
shift
for tool in gnuplot node; do
  command -v "$tool" >/dev/null || { echo "plot-loss: $tool not found (scripts/setup.sh installs it)" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
plots=()
for run in "$@"; do
  [ -f "$run/metrics.jsonl" ] || { echo "plot-loss: $run/metrics.jsonl not found" >&2; exit 1; }
  name=$(basename "$run")
  # Columns: step, loss, val_loss ("NaN" where the step did not validate).
  node -e '
    const lines = require("fs").readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean);
    for (const l of lines) { const m = JSON.parse(l); console.log(m.step, m.loss, m.val_loss ?? "NaN"); }
  ' "$run/metrics.jsonl" > "$work/$name.dat"
  plots+=("'$work/$name.dat' using 1:2 with lines title '$name train'")
  plots+=("'$work/$name.dat' using 1:3 with linespoints pointtype 7 title '$name validation'")
done
joined=$(printf '%s, ' "${plots[@]}")
gnuplot <<GNUPLOT
set terminal png size 1000,600 noenhanced
set output '$png.tmp'
set xlabel 'step'
set ylabel 'loss (nats/token)'
set grid
set key top right
set datafile missing 'NaN'
plot ${joined%, }
GNUPLOT
mv "$png.tmp" "$png"
echo "plot-loss: wrote $png"

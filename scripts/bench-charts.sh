#!/usr/bin/env bash
# Renders Google Benchmark JSON output (minillm_bench_attention / minillm_bench_ffn) to PNG bar
# charts with gnuplot: one cluster per batch x seq, one bar per variant, thousands of tokens/s
# (higher is better, log scale). Each INPUT.json becomes OUT_DIR/INPUT.png.
#   MINILLM_BENCH_DEVICE=cuda build/bench/minillm_bench_ffn --benchmark_out=ffn-cuda.json --benchmark_out_format=json
#   scripts/bench-charts.sh docs/charts ffn-cuda.json [more.json...]
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 OUT_DIR INPUT.json [INPUT.json...]" >&2
  exit 2
fi
out_dir=$1
shift
for tool in gnuplot node; do
  command -v "$tool" >/dev/null || { echo "bench-charts: $tool not found (scripts/setup.sh installs it)" >&2; exit 1; }
done
mkdir -p "$out_dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for input in "$@"; do
  [ -f "$input" ] || { echo "bench-charts: $input not found" >&2; exit 1; }
  name=$(basename "$input" .json)
  # A table: header "size" + one column per variant label; one row per batch x seq.
  node -e '
    const doc = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const ctx = doc.context || {};
    const rows = new Map(), labels = [];
    for (const b of doc.benchmarks || []) {
      if (b.run_type === "aggregate" || b.error_occurred) continue;
      const m = /batch:(\d+)\/seq:(\d+)/.exec(b.name);
      if (!m || !b.items_per_second || !b.label) continue;
      const size = `${m[1]}x${m[2]}`;
      if (!labels.includes(b.label)) labels.push(b.label);
      if (!rows.has(size)) rows.set(size, {});
      rows.get(size)[b.label] = b.items_per_second / 1e3;
    }
    if (!labels.length) { console.error(`${process.argv[1]}: no benchmarks with batch/seq, label and items_per_second`); process.exit(1); }
    console.log(["size", ...labels.map(l => JSON.stringify(l))].join("\t"));
    for (const [size, v] of rows) console.log([size, ...labels.map(l => v[l] ?? "NaN")].join("\t"));
    require("fs").writeFileSync(process.argv[2], `${ctx.device || "cpu"}, ${ctx.precision || "fp32"}, ${ctx.host_name || ""}, ${(ctx.date || "").slice(0, 10)}`);
  ' "$input" "$work/$name.title" > "$work/$name.dat"
  columns=$(head -1 "$work/$name.dat" | awk -F'\t' '{print NF}')
  gnuplot <<GNUPLOT
set terminal pngcairo size 1200,600 font "sans,10"
set output "$out_dir/$name.png"
set title "$name: thousand tokens/s, forward + backward ($(cat "$work/$name.title"))"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key outside right top
set grid ytics
set logscale y  # sizes differ by orders of magnitude
array colors[12] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#e7ba52"]
set xlabel "batch x sequence"
plot for [i=2:$columns] "$work/$name.dat" using i:xtic(1) title columnheader(i) linecolor rgb colors[(i - 2) % 12 + 1]
GNUPLOT
  echo "bench-charts: $out_dir/$name.png"
done

"""Prints the rows of minillm_bench_model and hf_bench.py (JSON lines) as two markdown tables:
training (tokens/s, step, peak memory, MFU) and batch-1 decode (tokens/s).

  python3 scripts/gpu/bench_table.py rows.jsonl
"""
import json
import sys


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip().startswith("{")]
    for r in rows:  # minillm's rows say whether the steps were CUDA graphs
        if r.get("cuda_graph"):
            r["impl"] += " (CUDA graph)"
    print("| model | implementation | batch x seq | tokens/s | step ms | peak GiB | MFU |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if r["what"] == "train":
            print(f"| {r['model']} | {r['impl']} | {r['batch']} x {r['seq']} | {r['tokens_per_s'] / 1e6:.3f}M | "
                  f"{r['step_ms']:.1f} | {r['peak_gib']:.2f} | {100 * r['mfu']:.1f}% |")
    print()
    print("| model | implementation | prompt + new tokens | decode tokens/s |")
    print("|---|---|---|---|")
    for r in rows:
        if r["what"] == "decode":
            print(f"| {r['model']} | {r['impl']} | {r['prompt']} + {r['new_tokens']} | {r['tokens_per_s']:.0f} |")


if __name__ == "__main__":
    main()

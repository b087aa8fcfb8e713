"""HF transformers' LlamaForCausalLM at a minillm preset's dims, measured the way
minillm_bench_model measures minillm (same JSON keys): training tokens/s, step time, peak memory and
MFU (bf16 autocast over fp32 weights, AdamW, clipping at 1.0), and batch-1 greedy decode tokens/s
(bf16 weights; HF's dynamic cache, or its static cache).

  python3 scripts/gpu/hf_bench.py --model minimind2_small --what train --compile
"""
import argparse
import json
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

# hidden, layers, heads, kv heads, ffn: MiniMind2's shapes (vocab 6400, rope theta 1e6, eps 1e-5).
DIMS = {"minimind2_small": (512, 8, 8, 2, 1408), "minimind2": (768, 16, 8, 2, 2048)}
PEAK_TFLOPS = 989.4  # H100/H200 SXM dense bf16, the datasheet figure minillm_bench_model uses too


def make_config(name, vocab, context):
    hidden, layers, heads, kv, ffn = DIMS[name]
    return LlamaConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                       num_key_value_heads=kv, intermediate_size=ffn, max_position_embeddings=context,
                       rope_theta=1e6, rms_norm_eps=1e-5, tie_word_embeddings=True, hidden_act="silu")


def flops_per_token(model, cfg, seq):
    matmul = sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2 and "embed_tokens" not in n)
    if cfg.tie_word_embeddings:
        matmul += cfg.vocab_size * cfg.hidden_size
    return 6 * matmul + 12 * cfg.num_hidden_layers * cfg.num_attention_heads * (cfg.hidden_size // cfg.num_attention_heads) * seq


def train(args, impl):
    torch.manual_seed(0)
    cfg = make_config(args.model, args.vocab, max(args.seq, 512))
    model = LlamaForCausalLM(cfg).cuda().train()
    fpt = flops_per_token(model, cfg, args.seq)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.01)
    step_model = torch.compile(model) if args.compile else model
    ids = torch.randint(0, args.vocab, (args.batch, args.seq), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = step_model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    torch.cuda.synchronize()
    step_s = (time.perf_counter() - start) / args.steps
    tps = args.batch * args.seq / step_s
    return {"impl": impl, "model": args.model, "device": "cuda", "precision": "bf16", "what": "train",
            "batch": args.batch, "seq": args.seq, "tokens_per_s": tps, "step_ms": step_s * 1e3,
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30, "mfu": tps * fpt / (PEAK_TFLOPS * 1e12)}


def decode(args, impl, cache):
    torch.manual_seed(0)
    cfg = make_config(args.model, args.vocab, args.prompt + args.new_tokens + 8)
    model = LlamaForCausalLM(cfg).cuda().to(torch.bfloat16).eval()
    prompt = torch.tensor([[(i * 37 + 11) % args.vocab for i in range(args.prompt)]], device="cuda")
    kwargs = dict(do_sample=False, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                  pad_token_id=0, eos_token_id=None)
    if cache == "static":
        kwargs["cache_implementation"] = "static"
    with torch.no_grad():
        for _ in range(2):  # warm-up (the static cache compiles its step on first use)
            model.generate(prompt, **kwargs)
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = model.generate(prompt, **kwargs)
        torch.cuda.synchronize()
    new = out.shape[1] - args.prompt
    return {"impl": impl, "model": args.model, "device": "cuda", "precision": "bf16", "what": "decode",
            "prompt": args.prompt, "new_tokens": new, "tokens_per_s": new / (time.perf_counter() - start)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(DIMS), default="minimind2_small")
    p.add_argument("--what", choices=["train", "decode"], required=True)
    p.add_argument("--compile", action="store_true", help="train through torch.compile")
    p.add_argument("--cache", choices=["dynamic", "static"], default="dynamic", help="decode cache")
    p.add_argument("--vocab", type=int, default=6400)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--prompt", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=256)
    args = p.parse_args()
    if args.what == "train":
        row = train(args, "hf-llama-compiled" if args.compile else "hf-llama-eager")
    else:
        row = decode(args, f"hf-llama-{args.cache}-cache", args.cache)
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

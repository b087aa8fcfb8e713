"""Loads checkpoints written by minillm's save_pretrained with their reference implementation and
compares logits (and, where minillm wrote one, the training-mode loss with the MoE aux loss):
transformers' AutoModelForCausalLM, or for Mini-LLM's layouts (model_type mini_deepseekv3,
mini_qwen3_next, mini_llama3) Mini-LLM's own model code, imported from PYTHONPATH (the mini_models folder of a
WKQ9411/Mini-LLM checkout; scripts/gpu/deepseek.sh puts .gpu/mini_llm there).

Usage: [PYTHONPATH=.gpu/mini_llm] python3 scripts/gpu/check_hf_roundtrip.py DIR...   (each made by minillm_train_and_export)
Prints one line per checkpoint; exits non-zero if any max |diff| exceeds 1e-4.
"""
import json
import sys

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM

worst = 0.0
for d in sys.argv[1:]:
    meta = json.load(open(f"{d}/minillm_ids.json"))
    shape = meta["shape"]
    ids = torch.tensor(meta["input_ids"]).view(shape[0], shape[1])
    ours = np.fromfile(f"{d}/minillm_logits.f32", dtype="<f4").reshape(shape)
    cfg = json.load(open(f"{d}/config.json"))
    mini_llm = {"mini_deepseekv3": "MiniDeepSeekV3ForCausalLM", "mini_qwen3_next": "MiniQwen3NextForCausalLM",
                "mini_llama3": "MiniLlama3ForCausalLM"}
    if cfg.get("model_type") in mini_llm:
        import mini_models  # Mini-LLM's code, not transformers'
        model = getattr(mini_models, mini_llm[cfg["model_type"]]).from_pretrained(d, dtype=torch.float32).eval()
    else:
        model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    with torch.no_grad():
        theirs = model(ids).logits.numpy()
    diff = float(np.abs(theirs - ours).max())
    worst = max(worst, diff)
    line = (f"{d}: minillm_arch={cfg.get('minillm_arch')} loaded as {type(model).__name__} "
            f"(transformers {transformers.__version__}): max |logits diff| = {diff:.3g}")
    if "train_loss" in meta:  # the training objective, aux loss included
        model.train()
        with torch.no_grad():
            moe = {"output_router_logits": True} if cfg.get("num_experts", 0) > 0 else {}
            loss = float(model(ids, labels=ids, **moe).loss)
        loss_diff = abs(loss - meta["train_loss"])
        worst = max(worst, loss_diff)
        line += f"; training loss {loss:.6f} vs ours {meta['train_loss']:.6f} (|diff| {loss_diff:.3g})"
    print(line)
print("PASS" if worst <= 1e-4 else "FAIL", f"worst {worst:.3g}")
sys.exit(0 if worst <= 1e-4 else 1)

"""Loads checkpoints written by minillm's save_pretrained with their reference implementation and
compares logits: transformers' AutoModelForCausalLM, or for Mini-LLM's layout (model_type
mini_deepseekv3) Mini-LLM's own model code, imported from PYTHONPATH (the mini_models folder of a
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
    if cfg.get("model_type") == "mini_deepseekv3":
        from mini_models import MiniDeepSeekV3ForCausalLM  # Mini-LLM's code, not transformers'
        model = MiniDeepSeekV3ForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    else:
        model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    with torch.no_grad():
        theirs = model(ids).logits.numpy()
    diff = float(np.abs(theirs - ours).max())
    worst = max(worst, diff)
    print(f"{d}: minillm_arch={cfg.get('minillm_arch')} loaded as {type(model).__name__} "
          f"(transformers {transformers.__version__}): max |logits diff| = {diff:.3g}")
print("PASS" if worst <= 1e-4 else "FAIL", f"worst {worst:.3g}")
sys.exit(0 if worst <= 1e-4 else 1)

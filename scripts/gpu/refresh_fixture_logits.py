"""Recomputes a fixture's expected logits with transformers from the checkpoint stored beside them.

The deepseek_v3_tiny fixture's logits files were written from a model state its saved checkpoint
does not hold (transformers 5.17 itself, loading that directory, differs from the files by up to
2.7e-4, growing with the position); the parity test compares against what the reference computes
from the stored weights.

Usage: python3 scripts/gpu/refresh_fixture_logits.py FIXTURE_DIR OUT_DIR
Writes OUT_DIR/caseN_logits.f32 and OUT_DIR/greedy.json (12 greedy tokens of row 0 per case); for
cases with a "train_mode" entry and an MoE model, also the training-mode loss and aux loss
(transformers' objective with output_router_logits) in OUT_DIR/train_mode.json.
"""
import json
import os
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
expected = json.load(open(f"{src}/expected.json"))
model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32, attn_implementation="eager").eval()
greedy, train_mode = [], []
with torch.no_grad():
    for case in expected["cases"]:
        ids = torch.tensor(case["input_ids"])
        logits = model(ids).logits
        old = np.fromfile(f"{src}/{case['logits_file']}", dtype="<f4").reshape(case["logits_shape"])
        print(case["logits_file"], "max |new - old|", float(np.abs(logits.numpy() - old).max()))
        logits.numpy().astype("<f4").tofile(f"{out}/{case['logits_file']}")
        seq = ids[:1]
        row = []
        for _ in range(12):
            nxt = int(model(seq).logits[0, -1].argmax())
            row.append(nxt)
            seq = torch.cat([seq, torch.tensor([[nxt]])], 1)
        greedy.append(row)
        print("greedy", row, "fixture", case["greedy_first_row"])
        if "train_mode" in case and model.config.to_dict().get("num_experts", 0) > 0:
            model.train()
            r = model(ids, labels=ids, output_router_logits=True)
            model.eval()
            train_mode.append({"loss": float(r.loss), "aux_loss": float(r.aux_loss)})
            print("train_mode", train_mode[-1], "fixture", case["train_mode"])
json.dump(greedy, open(f"{out}/greedy.json", "w"))
if train_mode:
    json.dump(train_mode, open(f"{out}/train_mode.json", "w"))

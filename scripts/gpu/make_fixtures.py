"""Makes parity fixtures with HF transformers, in the layout of tests/data/hf/*:
config.json + model.safetensors (float32, random seeded weights, 1-D weights perturbed away from 1,
router gates scaled so routing is decisive), caseN_logits.f32 (raw little-endian float32
[batch, time, vocab]) and expected.json (input ids, logits files, 12 greedy tokens for row 0, each
from a full forward).

Usage: python3 scripts/gpu/make_fixtures.py OUT_DIR
Fixtures:
  qwen3_moe_tiny      Qwen3MoeForCausalLM, 4 experts top-2, untied
  minimind3_moe_tiny  MiniMind-3 MoE (4 experts, top-1, tied) computed by Qwen3MoeForCausalLM, whose math
                      MiniMind's convert_model.py maps it onto; stored in MiniMind's format
                      (model_type "minimind", use_moe, per-expert tensors, no lm_head)
  llama_yarn_tiny     LlamaForCausalLM with YaRN rope scaling (factor 4 over 64 positions, attention_factor 1)
  qwen3_vocab12k_mqa  Qwen3ForCausalLM with a 12000-token vocabulary and one kv head (MQA)
  qwen2_tiny          Qwen2ForCausalLM: biases on q/k/v (randomised so they matter), untied
"""
import json
import os
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import (LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM,
                          Qwen3MoeConfig, Qwen3MoeForCausalLM)

OUT = sys.argv[1]


def perturb(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("proj.bias"):
                p.normal_(0.0, 0.5)
            elif p.dim() == 1:
                p.uniform_(0.5, 1.5)
            if name.endswith("mlp.gate.weight"):
                p.mul_(200.0)


def per_expert_state(model):
    """State dict with experts as mlp.experts.N.{gate,up,down}_proj.weight, whatever transformers keeps."""
    out = {}
    hidden, inter = model.config.hidden_size, model.config.moe_intermediate_size
    for k, v in model.state_dict().items():
        if k.endswith(("mlp.experts.gate_up_proj", "mlp.experts.down_proj")):
            print("fused expert tensor:", k, tuple(v.shape))
        if k.endswith("mlp.experts.gate_up_proj"):
            prefix = k[: -len("gate_up_proj")]
            if v.shape[1:] == (hidden, 2 * inter):  # stored (E, H, 2I): make it (E, 2I, H)
                v = v.transpose(1, 2)
            assert v.shape[1:] == (2 * inter, hidden), v.shape
            for e in range(v.shape[0]):
                gate, up = v[e].chunk(2, dim=0)
                out[f"{prefix}{e}.gate_proj.weight"] = gate.contiguous()
                out[f"{prefix}{e}.up_proj.weight"] = up.contiguous()
        elif k.endswith("mlp.experts.down_proj"):
            prefix = k[: -len("down_proj")]
            if v.shape[1:] == (inter, hidden):  # stored (E, I, H): make it (E, H, I)
                v = v.transpose(1, 2)
            assert v.shape[1:] == (hidden, inter), v.shape
            for e in range(v.shape[0]):
                out[f"{prefix}{e}.down_proj.weight"] = v[e].contiguous()
        else:
            out[k] = v.contiguous()
    return out


def write_cases(model, path, vocab, seed):
    g = torch.Generator().manual_seed(seed)
    cases = [torch.randint(0, vocab, (1, 13), generator=g), torch.randint(0, vocab, (2, 7), generator=g)]
    expected = {"name": os.path.basename(path), "transformers": transformers.__version__, "torch": torch.__version__,
                "cases": []}
    for i, ids in enumerate(cases):
        with torch.no_grad():
            logits = model(ids).logits.float()
            seq, greedy = ids[:1], []
            for _ in range(12):
                nxt = int(model(seq).logits[0, -1].argmax())
                greedy.append(nxt)
                seq = torch.cat([seq, torch.tensor([[nxt]])], 1)
        logits.numpy().astype("<f4").tofile(f"{path}/case{i}_logits.f32")
        expected["cases"].append({"input_ids": ids.tolist(), "logits_file": f"case{i}_logits.f32",
                                  "logits_shape": list(logits.shape), "greedy_first_row": greedy})
    json.dump(expected, open(f"{path}/expected.json", "w"), indent=1)


def make(name, model, seed, state=None, config_edit=None):
    path = f"{OUT}/{name}"
    os.makedirs(path, exist_ok=True)
    model.eval()
    model.save_pretrained(path)
    if state is not None:  # rewrite the weights in a given layout
        for f in os.listdir(path):
            if f.startswith("model") and f.endswith((".safetensors", ".json")) and f != "config.json":
                os.remove(f"{path}/{f}")
        save_file(state, f"{path}/model.safetensors", metadata={"format": "pt"})
    if config_edit is not None:
        cfg = json.load(open(f"{path}/config.json"))
        config_edit(cfg)
        json.dump(cfg, open(f"{path}/config.json", "w"), indent=2)
    write_cases(model, path, model.config.vocab_size, seed)
    print(name, "written:", sorted(os.listdir(path)))


torch.manual_seed(0)
common = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
              max_position_embeddings=256, rms_norm_eps=1e-6)

m = Qwen3MoeForCausalLM(Qwen3MoeConfig(vocab_size=512, intermediate_size=160, moe_intermediate_size=48,
                                       num_experts=4, num_experts_per_tok=2, norm_topk_prob=True,
                                       tie_word_embeddings=False, **common))
perturb(m)
make("qwen3_moe_tiny", m, 1, state=per_expert_state(m))

m = Qwen3MoeForCausalLM(Qwen3MoeConfig(vocab_size=512, intermediate_size=128, moe_intermediate_size=128,
                                       num_experts=4, num_experts_per_tok=1, norm_topk_prob=True,
                                       tie_word_embeddings=True, **common))
perturb(m)
mm_state = {k: v for k, v in per_expert_state(m).items() if k != "lm_head.weight"}


def to_minimind(cfg):
    keep = {k: cfg[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                                "head_dim", "max_position_embeddings", "rms_norm_eps", "vocab_size",
                                "intermediate_size", "moe_intermediate_size", "num_experts_per_tok",
                                "norm_topk_prob", "tie_word_embeddings")}
    keep["num_experts"] = cfg.get("num_experts", cfg.get("num_local_experts"))
    theta = (cfg.get("rope_parameters") or {}).get("rope_theta", cfg.get("rope_theta"))
    cfg.clear()
    cfg.update(keep)
    cfg.update({"architectures": ["MiniMindForCausalLM"], "model_type": "minimind", "use_moe": True,
                "rope_theta": theta, "rope_parameters": None, "router_aux_loss_coef": 0.0005,
                "hidden_act": "silu", "dropout": 0.0, "flash_attn": True, "bos_token_id": 1, "eos_token_id": 2})


make("minimind3_moe_tiny", m, 2, state=mm_state, config_edit=to_minimind)

llama_cfg = LlamaConfig(vocab_size=512, intermediate_size=176, tie_word_embeddings=False,
                        rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                         "original_max_position_embeddings": 64, "beta_fast": 32.0,
                                         "beta_slow": 1.0, "attention_factor": 1.0}, **common)
m = LlamaForCausalLM(llama_cfg)
perturb(m)
make("llama_yarn_tiny", m, 3)

m = Qwen3ForCausalLM(Qwen3Config(vocab_size=12000, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 num_key_value_heads=1, head_dim=16, intermediate_size=64,
                                 max_position_embeddings=256, rms_norm_eps=1e-6, tie_word_embeddings=True))
perturb(m)
make("qwen3_vocab12k_mqa", m, 4)

m = Qwen2ForCausalLM(Qwen2Config(vocab_size=512, intermediate_size=176, tie_word_embeddings=False,
                                 use_sliding_window=False, **{k: v for k, v in common.items() if k != "head_dim"}))
perturb(m)
make("qwen2_tiny", m, 5)

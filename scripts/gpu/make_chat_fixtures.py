"""Renders tests/data/chat/conversations.json with transformers' apply_chat_template and writes
tests/data/chat/expected.json: for each conversation, format and option set, the exact string.

minimind3 uses MiniMind's own tokenizer_config.json (tests/data/tokenizer/minimind). minimind2 and
llama3 use the Jinja templates below: MiniMind2's ChatML template and Llama-3 Instruct's template as
published with those models (written here from their published text).
Usage: python3 scripts/gpu/make_chat_fixtures.py REPO_ROOT OUT_JSON
"""
import json
import sys

import transformers
from transformers import AutoTokenizer

MINIMIND2 = ("{% if messages[0]['role'] == 'system' %}{% set system_message = messages[0]['content'] %}"
             "{{ '<|im_start|>system\\n' + system_message + '<|im_end|>\\n' }}{% else %}"
             "{{ '<|im_start|>system\\nYou are a helpful assistant<|im_end|>\\n' }}{% endif %}"
             "{% for message in messages %}{% set content = message['content'] %}"
             "{% if message['role'] == 'user' %}{{ '<|im_start|>user\\n' + content + '<|im_end|>\\n<|im_start|>assistant\\n' }}"
             "{% elif message['role'] == 'assistant' %}{{ content + '<|im_end|>' + '\\n' }}{% endif %}{% endfor %}")
LLAMA3 = ("{% set loop_messages = messages %}{% for message in loop_messages %}"
          "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' %}"
          "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")

root, out_path = sys.argv[1], sys.argv[2]
tok = AutoTokenizer.from_pretrained(f"{root}/tests/data/tokenizer/minimind")
convs = json.load(open(f"{root}/tests/data/chat/conversations.json"))
options = [{"add_generation_prompt": False}, {"add_generation_prompt": True},
           {"add_generation_prompt": True, "open_thinking": True}]
results = []
for conv in convs:
    for fmt, template in (("minimind3", None), ("minimind2", MINIMIND2), ("llama3", LLAMA3)):
        if fmt != "minimind3" and (conv.get("tools") or any(m["role"] == "tool" or "tool_calls" in m for m in conv["messages"])):
            continue
        for opt in options:
            if fmt != "minimind3" and "open_thinking" in opt:
                continue
            kwargs = dict(opt)
            if template is not None:
                kwargs["chat_template"] = template
                if fmt == "llama3":
                    kwargs["bos_token"] = "<|begin_of_text|>"
            text = tok.apply_chat_template(conv["messages"], tools=conv.get("tools"), tokenize=False, **kwargs)
            results.append({"name": conv["name"], "format": fmt, "options": opt, "text": text})
json.dump({"transformers": transformers.__version__, "results": results}, open(out_path, "w"), ensure_ascii=False, indent=1)
print(len(results), "renderings written to", out_path)

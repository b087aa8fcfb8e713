"""Loads a tokenizer directory written by `minillm-tokenizer train` with transformers' AutoTokenizer
and checks: (1) it encodes the held-out texts to the ids minillm gives (VAL_JSONL + OURS_IDS, one
line of ids per text); (2) its chat template (from our tokenizer_config.json) renders every
minimind3 conversation of tests/data/chat exactly as tests/data/chat/expected.json.
Usage: python3 scripts/gpu/check_trained_tokenizer.py TOKENIZER_DIR VAL_JSONL OURS_IDS
"""
import json
import sys

import transformers
from transformers import AutoTokenizer

tok_dir, val_path, ours_path = sys.argv[1:4]
tok = AutoTokenizer.from_pretrained(tok_dir)
texts = [json.loads(l)["text"] for l in open(val_path, encoding="utf-8") if l.strip()]
ours = open(ours_path).read().split("\n")
same = sum(1 for i, t in enumerate(texts) if " ".join(map(str, tok.encode(t, add_special_tokens=False))) == ours[i])
print(f"transformers {transformers.__version__} {type(tok).__name__}: {same}/{len(texts)} held-out texts give minillm's ids")
convs = {c["name"]: c for c in json.load(open("tests/data/chat/conversations.json", encoding="utf-8"))}
expected = json.load(open("tests/data/chat/expected.json", encoding="utf-8"))["results"]
checked = ok = 0
for r in expected:
    if r["format"] != "minimind3":
        continue
    c = convs[r["name"]]
    text = tok.apply_chat_template(c["messages"], tools=c.get("tools"), tokenize=False, **r["options"])
    checked += 1
    ok += text == r["text"]
print(f"chat template from our tokenizer_config.json: {ok}/{checked} minimind3 renderings identical")
sys.exit(0 if same == len(texts) and ok == checked else 1)

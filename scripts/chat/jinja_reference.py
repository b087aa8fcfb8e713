#!/usr/bin/env python3
"""Reference renderings of chat templates by Jinja2 itself, configured as transformers'
apply_chat_template configures it (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks,
loopcontrols, tojson = json.dumps(ensure_ascii=False), raise_exception, strftime_now; the special
tokens of tokenizer_config.json as variables).

  jinja_reference.py CONVERSATIONS.json NAME=tokenizer_config.json... > expected.json
  jinja_reference.py --features FEATURES.json > expected.json

Output: {"jinja2": version, "results": [{"template", "conversation", "add_generation_prompt",
"text" | "error"}]}; "error" is the exception's class when Jinja2 refuses the conversation.
With --features: each {"name", "template"} of FEATURES.json rendered over FEATURE_VARIABLES,
{"jinja2", "variables", "results": [{"name", "text" | "error"}]}."""
import json
import sys
from datetime import datetime

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

SPECIAL = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"]


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(fmt):
    return datetime.now().strftime(fmt)


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def special_tokens(config):
    out = {}
    for key in SPECIAL:
        v = config.get(key)
        if isinstance(v, dict):
            v = v.get("content")
        if v is not None:
            out[key] = v
    extra = config.get("additional_special_tokens")
    if extra:
        out["additional_special_tokens"] = [t["content"] if isinstance(t, dict) else t for t in extra]
    return out


# The variables of the feature cases: a conversation with a tool, special tokens, and x = 1.
FEATURE_VARIABLES = {
    "bos_token": "<s>", "eos_token": "</s>", "add_generation_prompt": True, "x": 1,
    "messages": [{"role": "user", "content": "Hi ☃"}, {"role": "assistant", "content": "Hello", "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]}, {"role": "user", "content": "Bye"}],
    "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city", "unit"]}}}],
}


def features(path):
    env = environment()
    results = []
    for case in json.load(open(path, encoding="utf-8")):
        r = {"name": case["name"]}
        try:
            r["text"] = env.from_string(case["template"]).render(**FEATURE_VARIABLES)
        except Exception as e:
            r["error"] = type(e).__name__
        results.append(r)
    json.dump({"jinja2": jinja2.__version__, "variables": FEATURE_VARIABLES, "results": results}, sys.stdout,
              ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


def main():
    if sys.argv[1] == "--features":
        return features(sys.argv[2])
    conversations = json.load(open(sys.argv[1], encoding="utf-8"))
    env = environment()
    results = []
    for spec in sys.argv[2:]:
        name, path = spec.split("=", 1)
        config = json.load(open(path, encoding="utf-8"))
        template = env.from_string(config["chat_template"])
        specials = special_tokens(config)
        for conv in conversations:
            for gen in (False, True):
                variables = dict(specials)
                variables.update(messages=conv["messages"], tools=conv.get("tools"), documents=None,
                                 add_generation_prompt=gen, **conv.get("kwargs", {}))
                r = {"template": name, "conversation": conv["name"], "add_generation_prompt": gen}
                try:
                    r["text"] = template.render(**variables)
                except Exception as e:  # the template (or Python under it) refuses this conversation
                    r["error"] = type(e).__name__
                results.append(r)
    json.dump({"jinja2": jinja2.__version__, "results": results}, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

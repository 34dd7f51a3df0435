"""Renders real chat templates (llama.cpp's models/templates, from the llama-cpp-python
0.3.36 sdist) for a set of conversations the way transformers renders them: jinja2's
sandbox with trim_blocks, lstrip_blocks and loop controls, `tojson` without ASCII
escaping, `raise_exception`, and `strftime_now` at a fixed instant (2026-12-01 UTC, the
clock the Rust test gives our renderer). Writes testdata/templates/goldens.json, which
crates/tokenizer/tests/template_goldens.rs compares our minijinja rendering against.

Usage: python3 scripts/template_goldens.py TEMPLATES_DIR   (needs jinja2)
"""
import datetime
import json
import os
import sys

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

NOW = datetime.datetime(2026, 12, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)

# Template file → (bos_token, eos_token), as each model's tokenizer config has them.
TEMPLATES = {
    "Qwen-Qwen2.5-7B-Instruct": ("", "<|im_end|>"),
    "Qwen-Qwen3-0.6B": ("", "<|im_end|>"),
    "Qwen-QwQ-32B": ("", "<|im_end|>"),
    "meta-llama-Llama-3.1-8B-Instruct": ("<|begin_of_text|>", "<|eot_id|>"),
    "meta-llama-Llama-3.2-3B-Instruct": ("<|begin_of_text|>", "<|eot_id|>"),
    "meta-llama-Llama-3.3-70B-Instruct": ("<|begin_of_text|>", "<|eot_id|>"),
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use": ("<|begin_of_text|>", "<|im_end|>"),
    "mistralai-Mistral-Nemo-Instruct-2407": ("<s>", "</s>"),
    "microsoft-Phi-3.5-mini-instruct": ("<s>", "<|endoftext|>"),
    "google-gemma-2-2b-it": ("<bos>", "<eos>"),
    "GLM-4.6": ("", "<|endoftext|>"),
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "HuggingFaceTB-SmolLM3-3B": ("", "<|im_end|>"),
}

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]
CALL_ID = "A1b2C3d4E"  # nine alphanumerics: Mistral's templates insist

CASES = {
    "single": {"messages": [{"role": "user", "content": "Hello!"}]},
    "system_multi_turn": {"messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3? Answer in \"quotes\" — ünïcode ok."}]},
    "tools_round_trip": {"tools": TOOLS, "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": CALL_ID, "type": "function",
             "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "tool_call_id": CALL_ID, "content": "{\"temperature\": 19}"}]},
}


def env():
    e = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                      extensions=["jinja2.ext.loopcontrols"])

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent,
                          separators=separators, sort_keys=sort_keys)

    def raise_exception(msg):
        raise TemplateError(msg)

    e.filters["tojson"] = tojson
    e.globals["raise_exception"] = raise_exception
    e.globals["strftime_now"] = lambda fmt: NOW.strftime(fmt)
    return e


def main():
    src_dir = sys.argv[1]
    out = []
    for name, (bos, eos) in TEMPLATES.items():
        source = open(os.path.join(src_dir, name + ".jinja"), encoding="utf-8").read()
        t = env().from_string(source)
        for case, conv in CASES.items():
            if "tools" in conv and "tools" not in source:
                continue
            for gen in (True, False):
                ctx = dict(messages=conv["messages"], add_generation_prompt=gen,
                           bos_token=bos, eos_token=eos)
                if "tools" in conv:
                    ctx["tools"] = conv["tools"]
                row = {"template": name, "case": case, "add_generation_prompt": gen,
                       "bos": bos, "eos": eos, "tools": conv.get("tools"),
                       "messages": conv["messages"]}
                try:
                    row["rendered"] = t.render(**ctx)
                except TemplateError as ex:
                    row["error"] = str(ex)
                out.append(row)
    os.makedirs("testdata/templates", exist_ok=True)
    with open("testdata/templates/goldens.json", "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
    print(f"{len(out)} renderings of {len(TEMPLATES)} templates", file=sys.stderr)


main()

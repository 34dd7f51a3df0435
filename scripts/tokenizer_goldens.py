"""llama.cpp's token ids for our hard strings, per vocabulary.

For every vocab-only GGUF in llama.cpp's models/ that autoglm supports, runs
bench/oracle/llama_oracle (llama.cpp's own tokenizer) over the tricky strings of
testdata/reference/tokenizer_cases.json plus chat-turn strings with the special tokens
of the common families, with add_special (BOS as the vocab says) and parse_special on
and off. Writes testdata/tokenizer/llamacpp_ids.json, which
crates/tokenizer/tests/vocab_vectors.rs compares autoglm's tokenizer against.

Usage: python3 scripts/tokenizer_goldens.py MODELS_DIR ORACLE
"""
import json
import os
import subprocess
import sys

VOCABS = ["gpt-2", "llama-bpe", "qwen2", "qwen35", "starcoder", "refact", "command-r",
          "mpt", "falcon", "deepseek-coder", "deepseek-llm", "llama-spm", "phi-3"]

CHAT_TURNS = [
    "<s>[INST] What is 2+2? [/INST] 4</s>",
    "<|user|>\nHello there<|end|>\n<|assistant|>\n",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>",
    "<bos><start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n",
    "[gMASK]<sop><|user|>\nhello<|assistant|>",
    " <|im_start|> spaced <|im_end|> ",
]


def main():
    models, oracle = sys.argv[1], sys.argv[2]
    root = os.path.join(os.path.dirname(__file__), "..")
    cases = json.load(open(os.path.join(root, "testdata/reference/tokenizer_cases.json")))
    texts = [c["text"] for c in cases["strings"]] + CHAT_TURNS
    out = {"source": "llama.cpp (llama-cpp-python 0.3.36) via bench/oracle/llama_oracle tokenize",
           "vocabs": {}}
    for v in VOCABS:
        path = os.path.join(models, f"ggml-vocab-{v}.gguf")
        r = subprocess.run([oracle, "tokenize", path], input=json.dumps({"texts": texts}),
                           capture_output=True, text=True, check=True)
        out["vocabs"][v] = json.loads(r.stdout)["cases"]
    dest = os.path.join(root, "testdata/tokenizer/llamacpp_ids.json")
    with open(dest, "w") as f:
        # One case per line: readable diffs when llama.cpp changes.
        f.write('{"source": %s,\n "vocabs": {\n' % json.dumps(out["source"]))
        for i, (v, cs) in enumerate(out["vocabs"].items()):
            f.write('  %s: [\n' % json.dumps(v))
            f.write(",\n".join("   " + json.dumps(c, ensure_ascii=False) for c in cs))
            f.write("\n  ]%s\n" % ("," if i + 1 < len(out["vocabs"]) else ""))
        f.write(" }\n}\n")
    print(f"{dest}: {len(VOCABS)} vocabs x {len(texts)} strings")


if __name__ == "__main__":
    main()

"""llama.cpp's teacher-forced top-5 log-probabilities on random-weight models of every
supported architecture: the goldens crates/model/tests/archs.rs checks autoglm against.

For each test-* shape of `autoglm synth` (crates/model/src/synth/shapes.rs), writes the
model with its vocab from llama.cpp's models/ (the same bytes the Rust test writes; the
file's SHA-256 goes into the golden so a drift is caught), runs
bench/oracle/llama_oracle on the prompts below with an f32 KV cache (the golden) and with
llama.cpp's default f16 KV cache (llama.cpp's own spread, recorded beside it), and
writes testdata/archs/<shape>.json.

Usage: python3 scripts/arch_goldens.py MODELS_DIR ORACLE AUTOGLM OUT_DIR
(bench/oracle/build.sh builds the oracle; bench/arch_goldens.sh runs it all.)
"""
import hashlib
import json
import os
import subprocess
import sys

# (shape, vocab file under models/), as model::synth::SHAPES lists them.
SHAPES = [
    ("test-llama3", "llama-bpe"),
    ("test-llama-linear", "llama-spm"),
    ("test-llama-yarn", "llama-spm"),
    ("test-mistral", "llama-spm"),
    ("test-qwen2", "qwen2"),
    ("test-qwen3", "qwen2"),
    ("test-glm4", "qwen2"),
    ("test-phi3", "phi-3"),
    ("test-gemma2", "llama-spm"),
    ("test-gemma3", "llama-spm"),
]

PROMPTS = [
    "The quick brown fox jumps over the lazy dog. 東京は日本の首都です。"
    " def add(a, b):\n    return a + b  # 12345, naïve café",
    "Once upon a time, in a small village by the sea, there lived an old fisherman"
    " who told stories about the stars, the tides and the ships that never came back.",
]


def oracle_logits(oracle, model, kv):
    r = subprocess.run([oracle, "logits", model, "--kv", kv, "--top", "5"],
                       input=json.dumps({"prompts": PROMPTS}), capture_output=True,
                       text=True, check=True)
    return json.loads(r.stdout)["prompts"]


def spread(a, b):
    """Per step: the largest |difference| of the two runs' log-probabilities over the
    first run's top-5 ids that both runs list."""
    out = []
    for pa, pb in zip(a, b):
        for sa, sb in zip(pa["steps"], pb["steps"]):
            db = dict((i, l) for i, l in sb)
            diffs = [abs(l - db[i]) for i, l in sa if i in db]
            out.append(max(diffs) if diffs else float("nan"))
    return out


def main():
    models, oracle, autoglm, out_dir = sys.argv[1:5]
    os.makedirs(out_dir, exist_ok=True)
    dest = os.path.join(os.path.dirname(__file__), "..", "testdata", "archs")
    os.makedirs(dest, exist_ok=True)
    for shape, vocab in SHAPES:
        model = os.path.join(out_dir, f"{shape}.gguf")
        subprocess.run([autoglm, "synth", "--shape", shape, "--vocab",
                        os.path.join(models, f"ggml-vocab-{vocab}.gguf"), "--out", model,
                        "--force"], check=True, capture_output=True)
        sha = hashlib.sha256(open(model, "rb").read()).hexdigest()
        f32 = oracle_logits(oracle, model, "f32")
        f16 = oracle_logits(oracle, model, "f16")
        s = sorted(spread(f32, f16))
        golden = {
            "shape": shape,
            "vocab": vocab,
            "sha256": sha,
            "source": "llama.cpp (llama-cpp-python 0.3.36), bench/oracle/llama_oracle logits"
                      " --kv f32, flash attention off",
            "llamacpp_f16_kv_spread": {"median": s[len(s) // 2], "max": s[-1]},
            "prompts": [{"text": p["text"], "tokens": p["tokens"], "steps": p["steps"]}
                        for p in f32],
        }
        with open(os.path.join(dest, f"{shape}.json"), "w") as f:
            json.dump(golden, f, ensure_ascii=False)
            f.write("\n")
        tops = [st[0][1] for p in f32 for st in p["steps"]]
        print(f"{shape}: {sum(len(p['tokens']) for p in f32)} steps, top-1 logprob median "
              f"{sorted(tops)[len(tops) // 2]:.3f}, llama.cpp f16-vs-f32 KV spread median "
              f"{s[len(s) // 2]:.4f} max {s[-1]:.4f}")


if __name__ == "__main__":
    main()

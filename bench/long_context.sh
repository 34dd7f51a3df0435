#!/usr/bin/env bash
# Long context on the Llama-3.2-1B shape (random weights, Q4_K_M): prefill of 512 tokens
# and batch-1 decode with DEPTH tokens already in the KV cache, autoglm vs llama.cpp
# (llama-bench -d) and ik_llama.cpp (llama-bench -gp: decode only; it has no -d).
#   bench/long_context.sh [DEPTHS]      DEPTHS default: "8192"
#   MODEL=<file.gguf> bench/long_context.sh "1024 4096"   the same on another model
# Prints a markdown table (bench/out/long_context.md) and writes it into docs/benchmarks.md
# between the markers named by TABLE (default long-context-table).
set -euo pipefail
cd "$(dirname "$0")/.."
depths="${1:-8192}"
lc="$(bench/build_llamacpp.sh)"
ik="$(bench/build_ikllama.sh)"
cargo build --release -p autoglm >&2
ag=./target/release/autoglm
# MODEL=<a .gguf> measures another file (e.g. the default SmolLM2) instead of the 1B shape.
model="${MODEL:-$($ag synth --shape llama-3.2-1b --quant q4_k_m --vocab bench/llama.cpp/src/models/ggml-vocab-llama-bpe.gguf)}"
if [ -n "${MODEL:-}" ]; then label="$(basename "$model")"; else label="Llama-3.2-1B shape Q4_K_M"; fi
export label
threads="$(nproc)"
mkdir -p bench/out
out=bench/out/long_context.jsonl
: > "$out"
for d in $depths; do
  echo "== depth $d" >&2
  "$lc/llama-bench" -m "$model" -t "$threads" -d "$d" -p 512 -n 32 -r 1 -o json 2>/dev/null > bench/out/lc_long.json
  "$ik/llama-bench" -m "$model" -t "$threads" -gp "$d,32" -p 0 -n 0 -r 1 -rtr 1 -o json 2>/dev/null > bench/out/ik_long.json
  for bits in 16 8; do
    $ag perf --model "$model" --threads "$threads" --prompt-tokens 512 --prefill-depth "$d" \
      --decode-context "$d" --gen-tokens 32 --batch 1 --repetitions 1 --activation-bits "$bits" --json \
      > "bench/out/ag_long_$bits.json"
  done
  python3 - "$d" >> "$out" <<'PY'
import json, sys
d = int(sys.argv[1])
lc = json.load(open("bench/out/lc_long.json"))
ik = json.load(open("bench/out/ik_long.json"))
lc_pp = next(x["avg_ts"] for x in lc if x["n_prompt"] == 512 and x["n_gen"] == 0)
lc_tg = next(x["avg_ts"] for x in lc if x["n_gen"] == 32 and x["n_prompt"] == 0)
ik_tg = next(x["avg_ts"] for x in ik if x["n_gen"] == 32)
ag = {b: json.load(open(f"bench/out/ag_long_{b}.json")) for b in (16, 8)}
print(json.dumps({"depth": d, "lc_pp": lc_pp, "lc_tg": lc_tg, "ik_tg": ik_tg,
                  "ag_pp": {b: ag[b]["prefill_tokens_per_s"] for b in ag},
                  "ag_tg": {b: ag[b]["decode"][0]["tokens_per_s"] for b in ag}}))
PY
done
python3 - <<'PY' | tee bench/out/long_context.md
import json, os, subprocess, datetime
rows = [json.loads(l) for l in open("bench/out/long_context.jsonl")]
cpu = subprocess.run(["sh", "-c", "lscpu | grep 'Model name' | sed 's/.*: *//'"], capture_output=True, text=True).stdout.strip()
print(f"Measured {datetime.date.today()} on {cpu}, command `bench/long_context.sh`, one repetition, {os.environ['label']}.\n")
print("| depth | test | llama.cpp | ik_llama.cpp | autoglm 16-bit | autoglm 8-bit | 16-bit / 8-bit vs llama.cpp |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    a, b = r["ag_pp"], r["ag_tg"]
    print(f"| {r['depth']} | prefill pp512 tok/s | {r['lc_pp']:.1f} | — | {a['16']:.1f} | {a['8']:.1f} | {a['16'] / r['lc_pp']:.2f}x / {a['8'] / r['lc_pp']:.2f}x |")
    print(f"| {r['depth']} | decode batch 1 tok/s | {r['lc_tg']:.1f} | {r['ik_tg']:.1f} | {b['16']:.1f} | {b['8']:.1f} | {b['16'] / r['lc_tg']:.2f}x / {b['8'] / r['lc_tg']:.2f}x |")
PY
python3 bench/update_docs.py "${TABLE:-long-context-table}" bench/out/long_context.md

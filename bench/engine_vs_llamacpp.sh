#!/usr/bin/env bash
# Engine speed, autoglm vs llama.cpp, same model, same machine, same run.
#   bench/engine_vs_llamacpp.sh [REPS]
# Prints a markdown table with ratios (and writes it to bench/out/engine.md).
set -euo pipefail
cd "$(dirname "$0")/.."
reps="${1:-3}"
bin="$(bench/build_llamacpp.sh)"
cargo build --release -p autoglm >&2
model="$(./target/release/autoglm pull)"
mkdir -p bench/out
threads="$(nproc)"
echo "llama-bench (pp512, tg128) ..." >&2
"$bin/llama-bench" -m "$model" -t "$threads" -p 512 -n 128 -r "$reps" -o json > bench/out/llama_bench.json
echo "llama-batched-bench (npp 128, ntg 128, npl 1,4,16,32) ..." >&2
"$bin/llama-batched-bench" -m "$model" -t "$threads" -c 8192 -b 2048 -ub 512 -npp 128 -ntg 128 -npl 1,4,16,32 --output-format jsonl 2>/dev/null | grep '^{' > bench/out/llama_batched.jsonl
echo "autoglm perf ..." >&2
./target/release/autoglm perf --model "$model" --threads "$threads" --prompt-tokens 512 --gen-tokens 128 --decode-context 128 --batch 1,4,16,32 --repetitions "$reps" --json > bench/out/autoglm_perf.json
python3 - "$reps" <<'PY' | tee bench/out/engine.md
import json, sys, platform, subprocess, datetime
lb = json.load(open("bench/out/llama_bench.json"))
pp = next(r["avg_ts"] for r in lb if r["n_prompt"] == 512 and r["n_gen"] == 0)
tg = next(r["avg_ts"] for r in lb if r["n_gen"] == 128 and r["n_prompt"] == 0)
bb = {}
for line in open("bench/out/llama_batched.jsonl"):
    r = json.loads(line)
    bb[r["pl"]] = r["speed_tg"]
ours = json.load(open("bench/out/autoglm_perf.json"))
dec = {d["batch"]: d["tokens_per_s"] for d in ours["decode"]}
cpu = subprocess.run(["sh", "-c", "lscpu | grep 'Model name' | sed 's/.*: *//'"], capture_output=True, text=True).stdout.strip()
print(f"Measured {datetime.date.today()} on {cpu}, {ours['threads']} threads, kernels {ours['isa']}, {sys.argv[1]} repetitions (medians).\n")
print("| test | llama.cpp tok/s | autoglm tok/s | ratio |")
print("|---|---|---|---|")
print(f"| prefill pp512 (llama-bench) | {pp:.1f} | {ours['prefill_tokens_per_s']:.1f} | {ours['prefill_tokens_per_s']/pp:.2f}x |")
print(f"| decode tg128, batch 1 (llama-bench) | {tg:.1f} | {dec[1]:.1f} | {dec[1]/tg:.2f}x |")
for b in (1, 4, 16, 32):
    if b in bb:
        print(f"| decode, batch {b} (llama-batched-bench S_TG, npp 128) | {bb[b]:.1f} | {dec[b]:.1f} | {dec[b]/bb[b]:.2f}x |")
PY
python3 bench/update_docs.py engine-table bench/out/engine.md

#!/usr/bin/env bash
# Long prompts on the Llama-3.2-1B shape (random weights, Q4_K_M): one sequence ingests a
# DEPTH-token prompt, then decodes 32 tokens after it, in every engine from one fill of
# the cache (a 32k context takes this 2-core host a quarter of an hour per fill, so the
# two-fill protocol of bench/long_context.sh is too slow there):
#   llama.cpp, ik_llama.cpp: llama-batched-bench -npp DEPTH -ntg 32 -npl 1 (S_PP, S_TG)
#   autoglm: autoglm perf --prompt-tokens DEPTH --decode-after-prefill --gen-tokens 32
#   bench/long_prompt.sh [DEPTHS] [ENGINES]  defaults: "8192 32768", "autoglm llama.cpp ik_llama.cpp"
#   (KEEP=1 keeps the rows of earlier runs, so depths and engines can be measured apart)
# Prints a markdown table (bench/out/long_prompt.md) and writes it into docs/benchmarks.md
# (TABLE, default long-prompt-table). Prefill is the whole prompt's rate; decode the
# rate of the 32 tokens after it.
set -euo pipefail
cd "$(dirname "$0")/.."
depths="${1:-8192 32768}"
engines="${2:-autoglm llama.cpp ik_llama.cpp}"
table="${TABLE:-long-prompt-table}"
lc="$(bench/build_llamacpp.sh)"
ik="$(bench/build_ikllama.sh)"
cargo build --release -p autoglm >&2
ag=./target/release/autoglm
model="$($ag synth --shape llama-3.2-1b --quant q4_k_m --vocab bench/llama.cpp/src/models/ggml-vocab-llama-bpe.gguf)"
threads="$(nproc)"
ntg=32
mkdir -p bench/out
out=bench/out/long_prompt.jsonl
# KEEP=1 adds to the rows of earlier runs (a depth and engine measured again replaces its row).
[ "${KEEP:-0}" = 1 ] || : > "$out"
for d in $depths; do
  for engine in $engines; do
    echo "== depth $d: $engine ($(date -u +%H:%M:%S))" >&2
    case "$engine" in
      autoglm)
        $ag perf --model "$model" --threads "$threads" --prompt-tokens "$d" --decode-after-prefill \
          --gen-tokens "$ntg" --batch 1 --repetitions 1 --json > bench/out/lp_ag.json
        python3 - "$d" >> "$out" <<'PY'
import json, sys
r = json.load(open("bench/out/lp_ag.json"))
print(json.dumps({"depth": int(sys.argv[1]), "engine": "autoglm", "pp": r["prefill_tokens_per_s"],
                  "tg": r["decode"][0]["tokens_per_s"],
                  "rss_peak_mib": r["memory"]["rss_peak_bytes"] / 2**20 if r["memory"] else None}))
PY
        ;;
      llama.cpp|ik_llama.cpp)
        bin="$lc"; extra=()
        # ik_llama.cpp's fastest CPU setting: weights repacked at load for its kernels.
        [ "$engine" = ik_llama.cpp ] && { bin="$ik"; extra=(-rtr); }
        "$bin/llama-batched-bench" -m "$model" -t "$threads" -c $((d + ntg + 64)) -b 2048 -ub 512 \
          -npp "$d" -ntg "$ntg" -npl 1 "${extra[@]}" 2>&1 | grep -E '^\|' > bench/out/lp_bb.md || true
        python3 - "$d" "$engine" >> "$out" <<'PY'
import json, sys
d, engine = int(sys.argv[1]), sys.argv[2]
for line in open("bench/out/lp_bb.md"):
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    # | PP | TG | B | N_KV | T_PP s | S_PP t/s | T_TG s | S_TG t/s | T s | S t/s |
    if len(cells) >= 8 and cells[2].isdigit():
        print(json.dumps({"depth": d, "engine": engine, "pp": float(cells[5]), "tg": float(cells[7])}))
        break
else:
    sys.exit(f"{engine}: no result row from llama-batched-bench at depth {d}")
PY
        ;;
      *) echo "unknown engine $engine" >&2; exit 2 ;;
    esac
    tail -1 "$out" >&2
  done
done
python3 - "$threads" <<'PY' | tee bench/out/long_prompt.md
import json, subprocess, datetime, sys
rows = list({(r["depth"], r["engine"]): r for r in map(json.loads, open("bench/out/long_prompt.jsonl"))}.values())
cpu = subprocess.run(["sh", "-c", "lscpu | grep 'Model name' | sed 's/.*: *//'"], capture_output=True, text=True).stdout.strip()
print(f"Measured {datetime.date.today()} on {cpu}, {sys.argv[1]} threads, command `bench/long_prompt.sh`, one run per engine and depth, Llama-3.2-1B shape Q4_K_M, autoglm with its default 16-bit activation codes.\n")
print("| prompt tokens | test | llama.cpp | ik_llama.cpp | autoglm | autoglm vs llama.cpp / ik |")
print("|---|---|---|---|---|---|")
fmt = lambda v: f"{v:.1f}" if v is not None else "—"
ratio = lambda a, b: f"{a / b:.2f}x" if a is not None and b else "—"
for d in sorted({r["depth"] for r in rows}):
    by = {r["engine"]: r for r in rows if r["depth"] == d}
    for key, name in (("pp", "prefill of the whole prompt, tok/s"), ("tg", "decode batch 1 after it, tok/s")):
        v = {e: by[e][key] if e in by else None for e in ("llama.cpp", "ik_llama.cpp", "autoglm")}
        print(f"| {d} | {name} | {fmt(v['llama.cpp'])} | {fmt(v['ik_llama.cpp'])} | {fmt(v['autoglm'])} | "
              f"{ratio(v['autoglm'], v['llama.cpp'])} / {ratio(v['autoglm'], v['ik_llama.cpp'])} |")
PY
python3 bench/update_docs.py "$table" bench/out/long_prompt.md

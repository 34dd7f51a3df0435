#!/usr/bin/env bash
# Start-up cost: wall time of a whole process that loads a model and runs a trivial job
# (8 prompt tokens, 2 generated), autoglm vs llama.cpp vs ik_llama.cpp (-rtr, its
# repacking setting), rounds interleaved on the same file. llama.cpp maps the file and
# reads weights lazily, so only the whole process is a fair comparison; autoglm's own
# load time (`autoglm perf`'s "loaded in") is printed beside it.
#   bench/load_time.sh [SHAPE]     SHAPE default llama-3.2-1b (or smollm2)
# Env: QUANT (default q4_k_m), ROUNDS (default 5). Prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
shape="${1:-llama-3.2-1b}"
quant="${QUANT:-q4_k_m}"
rounds="${ROUNDS:-5}"
lc="$(bench/build_llamacpp.sh)"
ik="$(bench/build_ikllama.sh)"
cargo build --release -p autoglm >&2
ag=./target/release/autoglm
if [ "$shape" = smollm2 ]; then
  model="$($ag pull)"
else
  model="$($ag synth --shape "$shape" --quant "$quant" --vocab bench/llama.cpp/src/models/ggml-vocab-llama-bpe.gguf)"
fi
threads="$(nproc)"
mkdir -p bench/out
out=bench/out/load_time.tsv
: > "$out"
# One untimed pass puts the file in the page cache for everyone.
cat "$model" > /dev/null
bb=(-m "$model" -c 256 -b 256 -ub 256 -npp 8 -ntg 2 -npl 1 -t "$threads")
for _ in $(seq "$rounds"); do
  for engine in llama.cpp ik_llama.cpp autoglm; do
    start=$(date +%s.%N)
    case "$engine" in
      llama.cpp) "$lc/llama-batched-bench" "${bb[@]}" > /dev/null 2>&1 ;;
      ik_llama.cpp) "$ik/llama-batched-bench" "${bb[@]}" -rtr > /dev/null 2>&1 ;;
      autoglm)
        "$ag" perf --model "$model" --threads "$threads" --prompt-tokens 8 --batch 1 \
          --gen-tokens 2 --decode-context 8 --repetitions 1 --json > bench/out/load_ag.json ;;
    esac
    end=$(date +%s.%N)
    load=""
    [ "$engine" = autoglm ] && load="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["load_seconds"])' bench/out/load_ag.json)"
    printf '%s\t%s\t%s\n' "$engine" "$(echo "$end - $start" | bc)" "$load" >> "$out"
  done
done
python3 - "$out" "$shape" "$(nproc)" "$rounds" <<'PY'
import statistics, sys
path, shape, threads, rounds = sys.argv[1:]
rows = [l.rstrip("\n").split("\t") for l in open(path)]
by = {}
for e, wall, load in rows:
    by.setdefault(e, []).append((float(wall), float(load) if load else None))
base = statistics.median(w for w, _ in by["llama.cpp"])
print(f"{shape}, {threads} threads, {rounds} rounds interleaved, median (min–max):\n")
print("| engine | process wall s | vs llama.cpp | model load s (autoglm's own) |")
print("|---|---|---|---|")
for e in ["llama.cpp", "ik_llama.cpp", "autoglm"]:
    ws = [w for w, _ in by[e]]
    loads = [l for _, l in by[e] if l is not None]
    load = f"{statistics.median(loads):.2f} ({min(loads):.2f}–{max(loads):.2f})" if loads else ""
    print(f"| {e} | {statistics.median(ws):.2f} ({min(ws):.2f}–{max(ws):.2f}) | "
          f"{statistics.median(ws) / base:.2f}x | {load} |")
PY

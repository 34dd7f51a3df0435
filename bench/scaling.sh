#!/usr/bin/env bash
# Engine speed and memory at real model sizes: autoglm vs llama.cpp vs ik_llama.cpp on
# random-weight GGUFs of real shapes (speed does not depend on weight values), same
# machine, same run. SmolLM2 (the default model, real weights) stays in the table.
#   bench/scaling.sh [SHAPES]      SHAPES default: "smollm2 llama-3.2-1b llama-3.1-8b"
# Env: QUANT (default q4_k_m), REPS (default 2; 8B runs once), TABLE (the marker in
# docs/benchmarks.md the table goes to; default scaling-table).
# Prints a markdown table (bench/out/scaling.md) and writes it into docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
shapes="${1:-smollm2 llama-3.2-1b llama-3.1-8b}"
quant="${QUANT:-q4_k_m}"
reps="${REPS:-2}"
lc="$(bench/build_llamacpp.sh)"
ik="$(bench/build_ikllama.sh)"
cargo build --release -p autoglm >&2
ag=./target/release/autoglm
vocab=bench/llama.cpp/src/models/ggml-vocab-llama-bpe.gguf
mkdir -p bench/out
cc -O3 -march=native -fopenmp bench/membw.c -o bench/out/membw
threads="$(nproc)"
out=bench/out/scaling.jsonl
: > "$out"
for shape in $shapes; do
  if [ "$shape" = smollm2 ]; then
    model="$($ag pull)"; q=q4_1
  else
    model="$($ag synth --shape "$shape" --quant "$quant" --vocab "$vocab")"; q="$quant"
  fi
  r="$reps"; npp=128; ntg=128; pp=512; tg=128
  case "$shape" in *8b*) r=1; npp=32; ntg=32; tg=32 ;; esac
  echo "== $shape $q: $model" >&2
  bw_before="$(bench/out/membw 1024 "$threads")"
  for engine in llama.cpp ik_llama.cpp; do
    bin="$lc"; extra=(); bextra=()
    # ik_llama.cpp's fastest CPU setting: weights repacked at load for its kernels. Its
    # flash attention aborts in llama-batched-bench (GGML_ASSERT(S > 0) in
    # iqk_fa_templates.h), so the batched runs go without it.
    [ "$engine" = ik_llama.cpp ] && { bin="$ik"; extra=(-rtr 1); bextra=(-rtr -fa 0); }
    echo "  $engine llama-bench pp$pp tg$tg" >&2
    "$bin/llama-bench" -m "$model" -t "$threads" -p "$pp" -n "$tg" -r "$r" "${extra[@]}" -o json 2>/dev/null \
      > "bench/out/lb_$engine.json"
    echo "  $engine llama-batched-bench npl 16,32" >&2
    "$bin/llama-batched-bench" -m "$model" -t "$threads" -c $(( (npp + ntg) * 32 + 64 )) -b 2048 -ub 512 \
      -npp "$npp" -ntg "$ntg" -npl 16,32 "${bextra[@]}" 2>&1 \
      | grep -E '^\|' > "bench/out/bb_$engine.md" || true
    python3 - "$engine" "$shape" "$q" "$pp" "$tg" >> "$out" <<'PY'
import json, sys
engine, shape, q, pp, tg = sys.argv[1:]
lb = json.load(open(f"bench/out/lb_{engine}.json"))
ppv = next(x["avg_ts"] for x in lb if x["n_prompt"] == int(pp) and x["n_gen"] == 0)
tgv = next(x["avg_ts"] for x in lb if x["n_gen"] == int(tg) and x["n_prompt"] == 0)
bb = {}
for line in open(f"bench/out/bb_{engine}.md"):
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    # | PP | TG | B | N_KV | T_PP s | S_PP t/s | T_TG s | S_TG t/s | T s | S t/s |
    if len(cells) >= 8 and cells[2].isdigit():
        bb[int(cells[2])] = float(cells[7])
print(json.dumps({"engine": engine, "shape": shape, "quant": q, "pp": ppv, "b1": tgv,
                  "b16": bb.get(16), "b32": bb.get(32)}))
PY
  done
  for bits in 16 8; do
    echo "  autoglm (activation bits $bits)" >&2
    $ag perf --model "$model" --threads "$threads" --prompt-tokens "$pp" --gen-tokens "$ntg" \
      --decode-context "$npp" --batch 1,16,32 --repetitions "$r" --activation-bits "$bits" --json \
      > bench/out/ag.json
    python3 - "$shape" "$q" "$bits" >> "$out" <<'PY'
import json, sys
shape, q, bits = sys.argv[1:]
a = json.load(open("bench/out/ag.json"))
d = {x["batch"]: x["tokens_per_s"] for x in a["decode"]}
print(json.dumps({"engine": f"autoglm-{bits}", "shape": shape, "quant": q,
                  "pp": a["prefill_tokens_per_s"], "b1": d[1], "b16": d[16], "b32": d[32],
                  "bytes_per_token": a["weight_bytes_per_token"], "memory": a["memory"]}))
PY
  done
  bw_after="$(bench/out/membw 1024 "$threads")"
  echo "{\"shape\": \"$shape\", \"bandwidth_gbs\": [$bw_before, $bw_after]}" >> "$out"
done
python3 - "$reps" "$shapes" <<'PY' | tee bench/out/scaling.md
import json, sys, subprocess, datetime
rows = [json.loads(l) for l in open("bench/out/scaling.jsonl")]
cpu = subprocess.run(["sh", "-c", "lscpu | grep 'Model name' | sed 's/.*: *//'"], capture_output=True, text=True).stdout.strip()
print(f"Measured {datetime.date.today()} on {cpu}, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} threads, "
      f"command `bench/scaling.sh {sys.argv[2]}`, {sys.argv[1]} repetitions (8B: 1).\n")
print("| shape / quant | test | llama.cpp | ik_llama.cpp | autoglm 16-bit | autoglm 8-bit | 16-bit vs llama.cpp / ik | 8-bit vs llama.cpp / ik |")
print("|---|---|---|---|---|---|---|---|")
shapes = []
for r in rows:
    if "engine" in r and r["shape"] not in shapes:
        shapes.append(r["shape"])
for s in shapes:
    e = {r["engine"]: r for r in rows if r.get("shape") == s and "engine" in r}
    bw = next(r["bandwidth_gbs"] for r in rows if r.get("shape") == s and "bandwidth_gbs" in r)
    lc, ik, a16, a8 = e["llama.cpp"], e["ik_llama.cpp"], e["autoglm-16"], e["autoglm-8"]
    for key, name in [("pp", "prefill pp512 tok/s"), ("b1", "decode batch 1 tok/s"), ("b16", "decode batch 16 tok/s"), ("b32", "decode batch 32 tok/s")]:
        v = lambda r: r.get(key)
        f = lambda x: "—" if x is None else f"{x:.1f}"
        ratio = lambda a, b: "—" if a is None or b is None else f"{a / b:.2f}x"
        print(f"| {s} {a16['quant']} | {name} | {f(v(lc))} | {f(v(ik))} | {f(v(a16))} | {f(v(a8))} | "
              f"{ratio(v(a16), v(lc))} / {ratio(v(a16), v(ik))} | {ratio(v(a8), v(lc))} / {ratio(v(a8), v(ik))} |")
    m = a16["memory"]
    bpt = a16["bytes_per_token"]
    lim = min(bw) * 1e9 / bpt
    frac = lambda r: f"{r['b1'] / lim * 100:.0f}%"
    print(f"| {s} {a16['quant']} | batch-1 limit (bandwidth {min(bw):.1f}–{max(bw):.1f} GB/s ÷ {bpt / 2**20:.1f} MiB/token) | "
          f"{frac(lc)} | {frac(ik)} | {frac(a16)} | {frac(a8)} | | |")
    print(f"| {s} {a16['quant']} | memory (file {m['file_bytes'] / 2**20:.0f} MiB, KV ≤ {m['kv_peak_bytes'] / 2**20:.0f} MiB) | | | "
          f"RSS after load {m['rss_after_load_bytes'] / 2**20:.0f} MiB, peak {m['rss_peak_bytes'] / 2**20:.0f} MiB "
          f"({m['rss_peak_bytes'] / (m['file_bytes'] + m['kv_peak_bytes']):.3f}× file + KV) | | | |")
PY
python3 bench/update_docs.py "${TABLE:-scaling-table}" bench/out/scaling.md

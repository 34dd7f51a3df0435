#!/usr/bin/env bash
# Serving throughput and latency, autoglm serve vs llama-server, same model, same
# machine, same run, measured by `autoglm bench` (streaming chat, ignore_eos).
#   bench/serve_vs_llamaserver.sh [CONCURRENCY_LIST] [OUTPUT_TOKENS] [PROMPT_WORDS]
# Writes bench/out/serve_{llama,autoglm}_cN/ and a side-by-side table bench/out/serve.md.
# Env: MODEL (default: the default model), ENDPOINT (chat or completions; models without
# a chat template need completions), AUTOGLM_ARGS (extra `autoglm serve` flags, e.g.
# --activation-bits 8), TABLE (the docs/benchmarks.md table to update, serve-table).
set -euo pipefail
cd "$(dirname "$0")/.."
conc="${1:-1,16,32}"
out_len="${2:-128}"
in_len="${3:-32}"
bin="$(bench/build_llamacpp.sh)"
cargo build --release -p autoglm >&2
model="${MODEL:-$(./target/release/autoglm pull)}"
endpoint="${ENDPOINT:-chat}"
table="${TABLE:-serve-table}"
read -r -a autoglm_args <<< "${AUTOGLM_ARGS:-}"
threads="$(nproc)"
mkdir -p bench/out
wait_healthy() {
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$1/health" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "server on port $1 did not become healthy" >&2; return 1
}
run_bench() { # port outdir concurrency
  # Requests per run: twice the largest concurrency, at least 8. The seed differs per
  # client count (so no run finds its prompts in a cache) and is the same for both servers.
  local n=$(( max_conc * 2 > 8 ? max_conc * 2 : 8 ))
  ./target/release/autoglm bench --base-url "http://127.0.0.1:$1/v1" --endpoint "$endpoint" --concurrency "$3" \
    --requests "$n" --input-len "$in_len" --output-len "$out_len" --warmup 2 --seed "$3" --no-progress --out "$2" >&2
}
port_l=18090; port_a=18091
# Both servers stay up and the runs alternate (llama-server then autoglm at each client
# count), so that each pair in the table is measured minutes, not a whole run, apart on
# this noisy machine. An idle server sleeps: its threads park.
echo "llama-server -np 16 -c 8192 ..." >&2
"$bin/llama-server" -m "$model" --host 127.0.0.1 --port $port_l -t "$threads" -c 8192 -np 16 --metrics >bench/out/llama-server.log 2>&1 &
lpid=$!
trap 'kill $lpid 2>/dev/null || true; kill $apid 2>/dev/null || true' EXIT
echo "autoglm serve ..." >&2
./target/release/autoglm serve --model "$model" --host 127.0.0.1 --port $port_a --threads "$threads" "${autoglm_args[@]}" >bench/out/autoglm-serve.log 2>&1 &
apid=$!
wait_healthy $port_l
wait_healthy $port_a
IFS=, read -ra levels <<< "$conc"
max_conc=0
for c in "${levels[@]}"; do [ "$c" -gt "$max_conc" ] && max_conc=$c; done
for c in "${levels[@]}"; do
  run_bench $port_l "bench/out/serve_llama_c$c" "$c"
  run_bench $port_a "bench/out/serve_autoglm_c$c" "$c"
done
kill $lpid; wait $lpid 2>/dev/null || true
kill -TERM $apid; wait $apid 2>/dev/null || true
python3 - "$conc" "$out_len" "$in_len" "$endpoint" "$(basename "$model")" "${AUTOGLM_ARGS:-}" <<'PY' | tee bench/out/serve.md
import json, sys, datetime, subprocess
levels = sys.argv[1].split(",")
step = lambda server, c: json.load(open(f"bench/out/serve_{server}_c{c}/results.json"))["steps"][0]
l = {"steps": [step("llama", c) for c in levels]}
a = {"steps": [step("autoglm", c) for c in levels]}
cpu = subprocess.run(["sh", "-c", "lscpu | grep 'Model name' | sed 's/.*: *//'"], capture_output=True, text=True).stdout.strip()
extra = f", autoglm serve {sys.argv[6]}" if sys.argv[6] else ""
print(f"Measured {datetime.date.today()} on {cpu}; {sys.argv[5]}, streaming {sys.argv[4]}, ~{sys.argv[3]}-word random prompts, {sys.argv[2]} output tokens with ignore_eos; llama-server -np 16 -c 8192{extra}.\n")
print("| clients | server | out tok/s | ratio | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms | E2E p99 ms | errors |")
print("|---|---|---|---|---|---|---|---|---|---|")
for sl, sa in zip(l["steps"], a["steps"]):
    for name, s in (("llama-server", sl), ("autoglm", sa)):
        ratio = f"{sa['output_throughput']/sl['output_throughput']:.2f}x" if name == "autoglm" and sl["output_throughput"] else ""
        print(f"| {int(s['load'])} | {name} | {s['output_throughput']:.1f} | {ratio} | {s['ttft_ms']['median']:.0f} | {s['ttft_ms']['p99']:.0f} | {s['itl_ms']['median']:.1f} | {s['itl_ms']['p99']:.1f} | {s['e2el_ms']['p99']:.0f} | {s['failed']} |")
PY
python3 bench/update_docs.py "$table" bench/out/serve.md

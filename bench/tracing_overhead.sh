#!/usr/bin/env bash
# What OpenTelemetry tracing costs: `autoglm serve` on the same model without tracing
# and exporting every request's spans (--otlp-sample-ratio 1.0) over
# OTLP/HTTP to a local receiver, measured by `autoglm bench` as in
# serve_vs_llamaserver.sh (streaming chat, ignore_eos), in alternating rounds.
#   bench/tracing_overhead.sh [CONCURRENCY_LIST] [OUTPUT_TOKENS] [PROMPT_WORDS] [ROUNDS]
# Writes bench/out/tracing_{off,on}_cN_rR/ and bench/out/tracing.md, and updates the
# tracing-table in docs/benchmarks.md. Env: MODEL (default: the default model).
set -euo pipefail
cd "$(dirname "$0")/.."
conc="${1:-1,32}"
out_len="${2:-128}"
in_len="${3:-32}"
rounds="${4:-3}"
cargo build --release -p autoglm >&2
model="${MODEL:-$(./target/release/autoglm pull)}"
threads="$(nproc)"
mkdir -p bench/out
port=18095; port_rx=18097
wait_healthy() {
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$1/health" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "server on port $1 did not become healthy" >&2; return 1
}
# The receiver accepts every export (an empty ExportTraceServiceResponse) and counts
# the bytes, as a collector's OTLP/HTTP endpoint would.
python3 - "$port_rx" >bench/out/otlp-receiver.log 2>&1 <<'PY' &
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    exports = 0
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        H.exports += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
rpid=$!
spid=""
trap 'kill $rpid $spid 2>/dev/null || true' EXIT
# One server at a time, started afresh for each run, so that neither setting keeps the
# better place on this machine; the order alternates by round.
start_server() { # off|on
  local extra=()
  [ "$1" = on ] && extra=(--otlp-traces-endpoint "http://127.0.0.1:$port_rx" --otlp-sample-ratio 1.0)
  ./target/release/autoglm serve --model "$model" --host 127.0.0.1 --port $port --threads "$threads" \
    "${extra[@]}" >"bench/out/tracing-$1.log" 2>&1 &
  spid=$!
  wait_healthy $port
}
stop_server() {
  kill -TERM "$spid"; wait "$spid" 2>/dev/null || true; spid=""
}
IFS=, read -ra levels <<< "$conc"
exported=0; dropped=0
for r in $(seq 1 "$rounds"); do
  order=(off on); [ $((r % 2)) -eq 0 ] && order=(on off)
  for t in "${order[@]}"; do
    start_server "$t"
    for c in "${levels[@]}"; do
      n=$(( c * 2 > 8 ? c * 2 : 8 ))
      # Seeds differ per round and client count, the same for both settings.
      ./target/release/autoglm bench --base-url "http://127.0.0.1:$port/v1" --endpoint chat --concurrency "$c" \
        --requests "$n" --input-len "$in_len" --output-len "$out_len" --warmup 2 --seed "$((r * 100 + c))" \
        --no-progress --out "bench/out/tracing_${t}_c${c}_r${r}" >&2
    done
    if [ "$t" = on ]; then
      sleep 6 # one export interval, so the count below has them all
      metrics="$(curl -sf "http://127.0.0.1:$port/metrics")"
      exported=$((exported + $(grep '^autoglm_otlp_spans_exported_total' <<< "$metrics" | awk '{s+=$NF} END {print s+0}')))
      dropped=$((dropped + $(grep '^autoglm_otlp_spans_dropped_total' <<< "$metrics" | awk '{s+=$NF} END {print s+0}')))
    fi
    stop_server
  done
done
python3 - "$conc" "$rounds" "$out_len" "$in_len" "$(basename "$model")" "$exported" "$dropped" <<'PY' | tee bench/out/tracing.md
import json, sys, datetime, subprocess, statistics
levels, rounds = sys.argv[1].split(","), int(sys.argv[2])
step = lambda t, c, r: json.load(open(f"bench/out/tracing_{t}_c{c}_r{r}/results.json"))["steps"][0]
cpu = subprocess.run(["sh", "-c", "lscpu | grep 'Model name' | sed 's/.*: *//'"], capture_output=True, text=True).stdout.strip()
print(f"Measured {datetime.date.today()} on {cpu}; {sys.argv[5]}, streaming chat, ~{sys.argv[4]}-word random prompts, {sys.argv[3]} output tokens with ignore_eos; {rounds} alternating rounds per row (median, with the rounds' range); the traced server exported {sys.argv[6]} spans and dropped {sys.argv[7]}.\n")
# (Server CPU time is no measure here: the pool's workers spin between steps, so it
# tracks wall time.)
print("| clients | tracing | out tok/s (median) | range | on/off, paired by round (median) | TTFT p50 ms | ITL p50 ms | E2E p99 ms | errors |")
print("|---|---|---|---|---|---|---|---|---|")
for c in levels:
    rs = range(1, rounds + 1)
    tp = {t: [step(t, c, r)["output_throughput"] for r in rs] for t in ("off", "on")}
    paired = statistics.median(a / b for a, b in zip(tp["on"], tp["off"]))
    for t in ("off", "on"):
        s = [step(t, c, r) for r in rs]
        label = "off" if t == "off" else "OTLP, ratio 1.0"
        print(f"| {c} | {label} | {statistics.median(tp[t]):.1f} | {min(tp[t]):.1f}–{max(tp[t]):.1f} | "
              f"{f'{paired:.3f}' if t == 'on' else ''} | "
              f"{statistics.median(x['ttft_ms']['median'] for x in s):.0f} | "
              f"{statistics.median(x['itl_ms']['median'] for x in s):.1f} | "
              f"{statistics.median(x['e2el_ms']['p99'] for x in s):.0f} | {sum(x['failed'] for x in s)} |")
PY
python3 bench/update_docs.py tracing-table bench/out/tracing.md

#!/usr/bin/env bash
# What a JSON schema costs while decoding, autoglm vs llama-server on the same model in
# the same run (bench/structured_outputs.py does the measuring). Writes
# bench/out/structured.md and updates the structured-table in docs/benchmarks.md.
# Env: MODEL (default: the default model).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(bench/build_llamacpp.sh)"
cargo build --release -p autoglm >&2
model="${MODEL:-$(./target/release/autoglm pull)}"
threads="$(nproc)"
mkdir -p bench/out
port_l=18190; port_a=18191
wait_healthy() {
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$1/health" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "server on port $1 did not become healthy" >&2; return 1
}
"$bin/llama-server" -m "$model" --host 127.0.0.1 --port $port_l -t "$threads" -c 8192 -np 16 >bench/out/llama-server-structured.log 2>&1 &
lpid=$!
trap 'kill $lpid $apid 2>/dev/null || true' EXIT
./target/release/autoglm serve --model "$model" --host 127.0.0.1 --port $port_a --threads "$threads" --no-cache >bench/out/autoglm-structured.log 2>&1 &
apid=$!
wait_healthy $port_l
wait_healthy $port_a
python3 bench/structured_outputs.py "http://127.0.0.1:$port_a/v1" "http://127.0.0.1:$port_l/v1" | tee bench/out/structured.md
python3 bench/update_docs.py structured-table bench/out/structured.md

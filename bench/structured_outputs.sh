#!/usr/bin/env bash
# What a JSON schema costs while decoding, autoglm vs llama-server on the same model in
# the same run (bench/structured_outputs.py does the measuring). Writes
# bench/out/structured.md and updates the structured-table in docs/benchmarks.md.
# Env: MODEL (default: the default model). LARGE_VOCAB=1: a random-weight Llama-3.2-1B
# shape with Qwen2's 151,936-token vocabulary instead (made with `autoglm synth` from the
# vocab llama.cpp's sources ship), written to bench/out/structured-large.md and the
# structured-large-table.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(bench/build_llamacpp.sh)"
cargo build --release -p autoglm >&2
out=bench/out/structured.md; table=structured-table
if [ "${LARGE_VOCAB:-0}" = 1 ]; then
  home="${AUTOGLM_HOME:-$HOME/.cache/autoglm}"
  model="$(./target/release/autoglm synth --shape llama-3.2-1b --vocab bench/llama.cpp/src/models/ggml-vocab-qwen2.gguf \
    --out "$home/models/synth/llama-3.2-1b-qwen2vocab-q4_k_m.gguf" | tail -1)"
  export MODEL_NAME="a random-weight Llama-3.2-1B shape (Q4_K_M) with Qwen2's 151,936-token vocabulary"
  out=bench/out/structured-large.md; table=structured-large-table
else
  model="${MODEL:-$(./target/release/autoglm pull)}"
fi
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
python3 bench/structured_outputs.py "http://127.0.0.1:$port_a/v1" "http://127.0.0.1:$port_l/v1" | tee "$out"
python3 bench/update_docs.py "$table" "$out"

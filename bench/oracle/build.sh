#!/usr/bin/env bash
# Builds bench/oracle/llama_oracle (llama.cpp's token ids and teacher-forced logits, for
# the golden files) against the llama.cpp tree bench/build_llamacpp.sh builds. Prints the
# binary's path. Idempotent.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin_dir="$(bash "$here/../build_llamacpp.sh")"
src="$here/../llama.cpp/src"
out="$here/../llama.cpp/build/bin/llama_oracle"
if [ ! -x "$out" ] || [ "$here/llama_oracle.cpp" -nt "$out" ]; then
  g++ -O2 -std=c++17 -I "$src/include" -I "$src/ggml/include" -I "$src/vendor" \
    "$here/llama_oracle.cpp" -o "$out" -L "$bin_dir" -lllama -lggml -lggml-base \
    -Wl,-rpath,"$bin_dir" >&2
fi
echo "$out"

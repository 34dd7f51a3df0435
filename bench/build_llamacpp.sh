#!/usr/bin/env bash
# Builds llama.cpp's llama-bench, llama-batched-bench, llama-perplexity and llama-server
# from the tree vendored in the llama-cpp-python 0.3.36 sdist (PyPI), for side-by-side
# benchmarks. Output: bench/llama.cpp/build/bin/. Idempotent.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="$here/llama.cpp"
bin="$dest/build/bin"
if [ -x "$bin/llama-bench" ] && [ -x "$bin/llama-batched-bench" ] && [ -x "$bin/llama-server" ] && [ -x "$bin/llama-quantize" ]; then
  echo "$bin"; exit 0
fi
command -v cmake >/dev/null || { apt-get update -qq && apt-get install -y -qq cmake; }
mkdir -p "$dest"
tmp="$(mktemp -d)"
python3 -m pip download --no-deps --no-binary llama-cpp-python llama-cpp-python==0.3.36 -d "$tmp" >&2
tar -xzf "$tmp"/llama_cpp_python-0.3.36.tar.gz -C "$tmp"
rm -rf "$dest/src"; mv "$tmp/llama_cpp_python-0.3.36/vendor/llama.cpp" "$dest/src"
rm -rf "$tmp"
cmake -S "$dest/src" -B "$dest/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_SERVER=ON >&2
cmake --build "$dest/build" -j "$(nproc)" --target llama-bench llama-batched-bench llama-perplexity llama-server llama-quantize llama-tokenize >&2
echo "$bin"

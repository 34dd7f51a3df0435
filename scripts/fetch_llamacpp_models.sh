#!/usr/bin/env bash
# Unpacks llama.cpp's models/ directory (vocab-only GGUFs of real tokenizers with their
# .inp/.out test vectors, and real chat templates) from the llama-cpp-python 0.3.36 sdist
# on PyPI into $AUTOGLM_HOME/llama-cpp-python-0.3.36/models (default home:
# ~/.cache/autoglm), for the tokenizer tests. Idempotent; prints the directory.
set -euo pipefail
home="${AUTOGLM_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/autoglm}"
dest="$home/llama-cpp-python-0.3.36/models"
if [ -f "$dest/ggml-vocab-llama-bpe.gguf" ]; then echo "$dest"; exit 0; fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python llama-cpp-python==0.3.36 -d "$tmp" >&2
tar -xzf "$tmp"/llama_cpp_python-0.3.36.tar.gz -C "$tmp" llama_cpp_python-0.3.36/vendor/llama.cpp/models
mkdir -p "$(dirname "$dest")"
rm -rf "$dest"
mv "$tmp/llama_cpp_python-0.3.36/vendor/llama.cpp/models" "$dest"
echo "$dest"

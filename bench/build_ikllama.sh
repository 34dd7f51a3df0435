#!/usr/bin/env bash
# Builds ik_llama.cpp's llama-bench and llama-batched-bench from the tree vendored in the
# ik-llama-cpp-python 0.1.5 sdist (PyPI), the second anchor of the benchmarks.
# Output: bench/ik_llama.cpp/build/bin/. Idempotent.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="$here/ik_llama.cpp"
bin="$dest/build/bin"
if [ -x "$bin/llama-bench" ] && [ -x "$bin/llama-batched-bench" ]; then
  echo "$bin"; exit 0
fi
command -v cmake >/dev/null || { apt-get update -qq && apt-get install -y -qq cmake; }
mkdir -p "$dest"
tmp="$(mktemp -d)"
python3 -m pip download --no-deps --no-binary ik-llama-cpp-python ik-llama-cpp-python==0.1.5 -d "$tmp" >&2
tar -xzf "$tmp"/ik_llama_cpp_python-0.1.5.tar.gz -C "$tmp"
rm -rf "$dest/src"; mv "$tmp/ik_llama_cpp_python-0.1.5/vendor/ik_llama.cpp" "$dest/src"
rm -rf "$tmp"
# The sdist leaves out this generator; all it has to do is fill in the build-info template.
gen="$dest/src/common/cmake/build-info-gen-cpp.cmake"
mkdir -p "$(dirname "$gen")"
  printf '%s\n' 'set(BUILD_NUMBER 0)' 'set(BUILD_COMMIT "ik-llama-cpp-python-0.1.5")' \
    'set(BUILD_COMPILER "")' 'set(BUILD_TARGET "")' \
    'configure_file(${CMAKE_CURRENT_LIST_DIR}/../build-info.cpp.in ${CMAKE_CURRENT_LIST_DIR}/../build-info.cpp)' > "$gen"
cmake -S "$dest/src" -B "$dest/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_SERVER=OFF >&2
cmake --build "$dest/build" -j "$(nproc)" --target llama-bench llama-batched-bench >&2
echo "$bin"

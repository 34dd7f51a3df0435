#!/usr/bin/env bash
# The response cache under `autoglm bench`'s repeated-request workload (a fraction of
# requests exact repeats of earlier ones), at 1 and 16 clients, streaming and not, for:
# the cache off, L1 only (the default), L1 + a real redis-server L2, and L2 only (no L1,
# so every hit is a Redis round trip). Then the L1 TinyLFU-vs-LRU hit-rate simulation.
#   bench/response_cache.sh [REQUESTS_PER_STEP] [REPEAT_FRACTION]
# Writes bench/out/cache_<mode>_<stream>/ and the tables bench/out/cache.md and
# bench/out/cache_hit_rate.md, and puts both into docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
requests="${1:-64}"
fraction="${2:-0.5}"
command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server; }
cargo build --release -p autoglm >&2
cargo build --release -p cache --example hit_rate >&2
model="$(./target/release/autoglm pull)"
mkdir -p bench/out
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_healthy() {
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$1/health" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "server on port $1 did not become healthy" >&2; return 1
}
rport="$(free_port)"
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no \
  --maxmemory 256mb --maxmemory-policy allkeys-lfu >bench/out/redis.log 2>&1 &
rpid=$!
for _ in $(seq 1 100); do redis-cli -p "$rport" PING >/dev/null 2>&1 && break; sleep 0.1; done
apid=
trap 'kill $rpid 2>/dev/null || true; [ -n "$apid" ] && kill $apid 2>/dev/null || true' EXIT
for mode in off l1 l1+l2 l2; do
  case $mode in
    off) args=(--no-cache) ;;
    l1) args=() ;;
    l1+l2) args=(--cache-redis "redis://127.0.0.1:$rport") ;;
    l2) args=(--cache-redis "redis://127.0.0.1:$rport" --cache-l1-bytes 0) ;;
  esac
  for stream in stream nostream; do
    redis-cli -p "$rport" FLUSHALL >/dev/null
    port="$(free_port)"
    ./target/release/autoglm serve --model "$model" --host 127.0.0.1 --port "$port" "${args[@]}" \
      >"bench/out/cache-serve-$mode.log" 2>&1 &
    apid=$!
    wait_healthy "$port"
    flag=(); [ $stream = nostream ] && flag=(--no-stream)
    # The same seed for every mode: the same request sequence, the same repeats.
    ./target/release/autoglm bench --base-url "http://127.0.0.1:$port/v1" --workload repeated \
      --repeat-fraction "$fraction" --concurrency 1,16 --requests "$requests" --input-len 32 \
      --output-len 128 --seed 11 --no-progress "${flag[@]}" --out "bench/out/cache_${mode}_$stream" >&2
    kill -TERM $apid; wait $apid 2>/dev/null || true; apid=
  done
done
python3 - "$requests" "$fraction" <<'PY' | tee bench/out/cache.md
import json, sys, datetime, subprocess
requests, fraction = sys.argv[1], float(sys.argv[2])
cpu = subprocess.run(["sh", "-c", "lscpu | grep 'Model name' | sed 's/.*: *//'"], capture_output=True, text=True).stdout.strip()
print(f"Measured {datetime.date.today()} on {cpu}; SmolLM2-135M Q4_1, chat, {requests} requests per step, {fraction:.0%} exact repeats, 128 output tokens (ignore_eos), ~32-word prompts; Redis 7 on 127.0.0.1.\n")
print("| cache | stream | clients | req/s | out tok/s | TTFT p50 ms | E2E p50 ms | hits | hit E2E p50 ms | hit E2E p99 ms | coalesced | ran the model |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for mode in ["off", "l1", "l1+l2", "l2"]:
    for stream in ["nostream", "stream"]:
        r = json.load(open(f"bench/out/cache_{mode}_{stream}/results.json"))
        for s in r["steps"]:
            g = s.get("by_cache", {})
            hits = {k: v for k, v in g.items() if k.startswith("hit")}
            n_hits = sum(v["e2el_ms"]["count"] for v in hits.values())
            # One level per mode holds nearly every hit; report the biggest group.
            big = max(hits.values(), key=lambda v: v["e2el_ms"]["count"]) if hits else None
            hp50 = f"{big['e2el_ms']['median']:.2f}" if big else "-"
            hp99 = f"{big['e2el_ms']['p99']:.2f}" if big else "-"
            level = "/".join(sorted(hits)) if hits else ""
            count = lambda k: g.get(k, {}).get("e2el_ms", {}).get("count", 0)
            print(f"| {mode} | {'yes' if stream == 'stream' else 'no'} | {int(s['load'])} | {s['request_throughput']:.2f} | {s['output_throughput']:.1f} | {s['ttft_ms']['median']:.1f} | {s['e2el_ms']['median']:.1f} | {n_hits} {level} | {hp50} | {hp99} | {count('coalesced')} | {count('miss') + count('bypass')} |")
PY
python3 bench/update_docs.py cache-table bench/out/cache.md
{ echo "Measured $(date +%F) by \`cargo run --release -p cache --example hit_rate\`."; echo; ./target/release/examples/hit_rate | grep '^|'; } | tee bench/out/cache_hit_rate.md
python3 bench/update_docs.py cache-hit-rate-table bench/out/cache_hit_rate.md

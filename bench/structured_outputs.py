"""What a JSON schema costs while decoding: the same prompts with and without
`response_format: json_schema`, at batch 1 and 16, streamed, against autoglm and
llama-server in the same run (python stdlib only; bench/structured_outputs.sh starts
the servers). Unconstrained runs decode as many tokens as the constrained ones did
(ignore_eos), so both decode the same lengths. From autoglm's /metrics: the mask time
per token (p50, p99) and the schema compile times.

Usage: python3 structured_outputs.py AUTOGLM_URL [LLAMA_URL] > table.md
Env: MODEL_NAME, the model's description in the table's header line.
"""
import os
import datetime
import json
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

ITEM = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "minimum": 0, "maximum": 999},
        "name": {"type": "string", "maxLength": 12},
        "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3},
    },
    "required": ["id", "name", "tags"],
    "additionalProperties": False,
}
SCHEMA = {
    "type": "object",
    "properties": {"items": {"type": "array", "items": ITEM, "minItems": 8, "maxItems": 8}},
    "required": ["items"],
    "additionalProperties": False,
}
# A large schema for the compile time: 60 properties, nested objects, enums, bounds.
LARGE = {
    "type": "object",
    "properties": {
        f"field_{i}": (
            ITEM if i % 3 == 0 else
            {"type": "integer", "minimum": -i, "maximum": 1000 + i} if i % 3 == 1 else
            {"enum": [f"v{i}_{j}" for j in range(8)]}
        )
        for i in range(60)
    },
    "required": [f"field_{i}" for i in range(60)],
    "additionalProperties": False,
}
PROMPTS = [f"List eight inventory items for shop number {i} as JSON." for i in range(32)]


def post(url, body, stream):
    req = urllib.request.Request(url + "/chat/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json", "Cache-Control": "no-store"})
    return urllib.request.urlopen(req, timeout=600)


def run_one(url, prompt, schema, max_tokens):
    """(completion tokens, seconds from first to last token)"""
    body = {"messages": [{"role": "user", "content": prompt}], "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}, "max_tokens": max_tokens}
    if schema is None:
        body["ignore_eos"] = True
    else:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}
    first = last = None
    tokens = 0
    with post(url, body, True) as r:
        for line in r:
            line = line.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            ev = json.loads(line[6:])
            if ev.get("usage"):
                tokens = ev["usage"]["completion_tokens"]
            if ev.get("choices") and ev["choices"][0].get("delta", {}).get("content"):
                now = time.perf_counter()
                first = first or now
                last = now
    return tokens, (last - first) if first and last else 0.0


def batch(url, prompts, schema, lengths):
    """Per-request decode tok/s (median) and aggregate generated tok/s of the batch."""
    out = [None] * len(prompts)
    t0 = time.perf_counter()

    def go(i):
        out[i] = run_one(url, prompts[i], schema, lengths[i])

    ts = [threading.Thread(target=go, args=(i,)) for i in range(len(prompts))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    per = [(n - 1) / d for n, d in out if d > 0 and n > 1]
    return out, statistics.median(per), sum(n for n, _ in out) / wall


def measure(url, size):
    prompts = PROMPTS[:size]
    # Constrained first: it decides the lengths; a warm-up request compiles nothing twice.
    run_one(url, "Warm up.", SCHEMA, 200)
    got, c_tok, c_agg = batch(url, prompts, SCHEMA, [400] * size)
    lengths = [max(n, 2) for n, _ in got]
    _, u_tok, u_agg = batch(url, prompts, None, lengths)
    return statistics.median(lengths), u_tok, c_tok, u_agg, c_agg


def metrics(url):
    base = url.rsplit("/v1", 1)[0]
    return urllib.request.urlopen(base + "/metrics", timeout=30).read().decode()


def histogram(text, name):
    """{le: cumulative count}, sum, count of one histogram (all label sets summed)."""
    buckets, total, count = {}, 0.0, 0.0
    for line in text.splitlines():
        if line.startswith(name + "_bucket"):
            le = line.split('le="')[1].split('"')[0]
            buckets[float("inf") if le == "+Inf" else float(le)] = buckets.get(
                float("inf") if le == "+Inf" else float(le), 0.0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith(name + "_sum"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith(name + "_count"):
            count += float(line.rsplit(" ", 1)[1])
    return dict(sorted(buckets.items())), total, count


def quantile(buckets, q):
    """Linear interpolation inside the bucket, as Prometheus' histogram_quantile does."""
    total = list(buckets.values())[-1]
    rank, prev_le, prev_c = q * total, 0.0, 0.0
    for le, c in buckets.items():
        if c >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_c) / max(c - prev_c, 1e-12)
        prev_le, prev_c = le, c
    return prev_le


def compile_seconds(url, schema):
    before = histogram(metrics(url), "autoglm_grammar_compile_seconds")
    body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1,
            "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}}
    post(url, body, False).read()
    after = histogram(metrics(url), "autoglm_grammar_compile_seconds")
    return (after[1] - before[1]) / max(after[2] - before[2], 1)


def main():
    autoglm = sys.argv[1]
    llama = sys.argv[2] if len(sys.argv) > 2 else None
    rows = []
    for name, url in [("autoglm", autoglm)] + ([("llama-server", llama)] if llama else []):
        for size in (1, 16):
            rows.append((name, size) + measure(url, size))
    m = metrics(autoglm)
    buckets, _, count = histogram(m, "autoglm_grammar_mask_seconds")
    small, large = compile_seconds(autoglm, SCHEMA), compile_seconds(autoglm, LARGE)
    cpu = subprocess.run(["sh", "-c", "lscpu | grep 'Model name' | sed 's/.*: *//'"],
                         capture_output=True, text=True).stdout.strip()
    print(f"Measured {datetime.date.today()} on {cpu}; {os.environ.get('MODEL_NAME', 'the default model')}, greedy, streamed chat; "
          f"an 8-item JSON array schema; unconstrained runs decode the constrained lengths with ignore_eos. "
          f"autoglm's mask time per token p50 {quantile(buckets, 0.5) * 1e6:.0f} µs, p99 {quantile(buckets, 0.99) * 1e6:.0f} µs "
          f"over {count:.0f} masks; compile {small * 1e3:.1f} ms for this schema, {large * 1e3:.1f} ms for a 60-property one.\n")
    print("| server | batch | tokens (median) | decode tok/s per request, free | with schema | ratio | generated tok/s of the batch, free | with schema | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, size, n, u, c, ua, ca in rows:
        print(f"| {name} | {size} | {n:.0f} | {u:.1f} | {c:.1f} | {c / u:.2f} | {ua:.1f} | {ca:.1f} | {ca / ua:.2f} |")

main()

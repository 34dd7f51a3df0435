#!/usr/bin/env python3
"""What a batch job costs interactive traffic, and what it gets done.

1. `autoglm serve` alone with streaming chat requests arriving open loop (Poisson,
   `--rate` req/s, at most 8 in flight, a fixed seed so both runs see the same arrival
   schedule): interactive TTFT and ITL percentiles.
2. The same load while a 2,000-line batch (POST /v1/files, /v1/batches) runs: the same
   percentiles, and the batch's lines finished during the run.
3. The batch alone afterwards: its lines per second with the engine to itself.

Prints a markdown table (and writes it into docs/benchmarks.md between the
`batch-table` markers with --update-docs). Standard library only.

Usage: python3 bench/batch_beside_interactive.py [--model FILE] [--lines 2000] [--rate 3]
       [--duration 60] [--update-docs]
"""
import argparse
import datetime
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from update_docs import replace_block  # noqa: E402
AUTOGLM = os.path.join(ROOT, "target", "release", "autoglm")
WORDS = ("river stone lamp garden copper window orange violin harbor pepper silver "
         "meadow rocket candle forest marble thunder basket island anchor").split()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def http(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def start_server(args, port, batch_dir):
    cmd = [AUTOGLM, "serve", "--port", str(port), "--no-cache", "--batch-dir", batch_dir]
    if args.model:
        cmd += ["--model", args.model]
    cmd += args.serve_args.split()
    log = open(os.path.join(batch_dir, "serve.log"), "w")
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    for _ in range(600):
        try:
            if http("GET", f"http://127.0.0.1:{port}/health")["status"] == "ok":
                return p
        except Exception:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not start")


def bench(port, duration, rate, out):
    r = subprocess.run([AUTOGLM, "bench", "--base-url", f"http://127.0.0.1:{port}/v1",
                        "--request-rate", str(rate), "--max-inflight", "8", "--seed", "7",
                        "--duration", str(duration), "--input-len", "128",
                        "--output-len", "64", "--json", "--no-progress"],
                       capture_output=True, text=True, check=True)
    with open(out, "w") as f:
        f.write(r.stdout)
    return json.loads(r.stdout)["steps"][0]


def batch_file(n, model):
    lines = []
    for i in range(n):
        words = " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(24))
        lines.append(json.dumps({"custom_id": f"line-{i}", "method": "POST",
                                 "url": "/v1/chat/completions",
                                 "body": {"model": model, "max_tokens": 24, "temperature": 0,
                                          "messages": [{"role": "user", "content":
                                                        f"Write one sentence using: {words}"}]}}))
    return ("\n".join(lines) + "\n").encode()


def submit(port, data):
    b = "autoglmBenchBoundary"
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
            f"--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.jsonl\"\r\n\r\n"
            ).encode() + data + f"\r\n--{b}--\r\n".encode()
    f = http("POST", f"http://127.0.0.1:{port}/v1/files", body,
             {"Content-Type": f"multipart/form-data; boundary={b}"})
    return http("POST", f"http://127.0.0.1:{port}/v1/batches",
                json.dumps({"input_file_id": f["id"], "endpoint": "/v1/chat/completions",
                            "completion_window": "24h"}).encode(),
                {"Content-Type": "application/json"})["id"]


def done(port, bid):
    b = http("GET", f"http://127.0.0.1:{port}/v1/batches/{bid}")
    return b["request_counts"]["completed"] + b["request_counts"]["failed"], b["status"]


def pct(d, metric, p):
    return d[metric][p]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--lines", type=int, default=2000)
    ap.add_argument("--duration", type=int, default=60)
    ap.add_argument("--rate", type=float, default=3.0)
    ap.add_argument("--serve-args", default="", help="more `autoglm serve` flags")
    ap.add_argument("--update-docs", action="store_true")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="autoglm-batch-bench-")
    port = free_port()
    srv = start_server(args, port, work)
    try:
        model = http("GET", f"http://127.0.0.1:{port}/v1/models")["data"][0]["id"]
        alone = bench(port, args.duration, args.rate, os.path.join(work, "alone.json"))
        bid = submit(port, batch_file(args.lines, model))
        t0 = time.time()
        n0, _ = done(port, bid)
        beside = bench(port, args.duration, args.rate, os.path.join(work, "beside.json"))
        n1, _ = done(port, bid)
        during = (n1 - n0) / (time.time() - t0)
        t1, m1 = time.time(), n1
        status = "in_progress"
        while status not in ("completed", "failed", "cancelled", "expired"):
            time.sleep(1)
            m2, status = done(port, bid)
            if time.time() - t1 >= args.duration and status == "in_progress":
                break
        alone_rate = (m2 - m1) / (time.time() - t1)
    finally:
        srv.terminate()
        srv.wait()
    rows = []
    for name, d in (("interactive alone", alone), ("interactive + batch", beside)):
        rows.append((name, d))
    def row(name, d, batch_rate):
        return (f"| {name} | {d['output_throughput']:.1f} | {d['ttft_ms']['median']:.0f} | "
                f"{d['ttft_ms']['p99']:.0f} | {d['itl_ms']['median']:.1f} | {d['itl_ms']['p99']:.1f} | "
                f"{batch_rate} |")
    ratio = lambda k, p: beside[k][p] / alone[k][p]
    table = "\n".join([
        f"Measured {datetime.date.today()} on {os.uname().nodename}, 2 threads; "
        f"`python3 bench/batch_beside_interactive.py --lines {args.lines} --duration {args.duration} --rate {args.rate}`; "
        f"{model}, streaming chat requests open loop at {args.rate} req/s (Poisson, same seed in both runs, "
        f"at most 8 in flight; 128-word prompts, 64 tokens), a {args.lines}-line chat "
        f"batch (24-word prompts, 24 tokens), server defaults {args.serve_args}.",
        "",
        "| load | interactive out tok/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms | batch lines/s |",
        "|---|---|---|---|---|---|---|",
        row("interactive alone", alone, "—"),
        row("interactive + batch", beside, f"{during:.2f}"),
        f"| batch alone | — | — | — | — | — | {alone_rate:.2f} |",
        "",
        f"With the batch running: TTFT p99 {ratio('ttft_ms', 'p99'):.2f}×, ITL p99 "
        f"{ratio('itl_ms', 'p99'):.2f}× the interactive-only run.",
    ])
    print(table)
    if args.update_docs:
        replace_block("batch-table", table)


if __name__ == "__main__":
    main()

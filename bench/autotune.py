#!/usr/bin/env python3
"""The SLO tuner against fixed step budgets, under a load that steps up and down.

For each server setting — `--max-batch-tokens` 256, 512 and 2048, and `--auto-tune`
with the ITL and TTFT objectives — runs `autoglm bench` open loop over the same request
rates (e.g. 0.5, 1, 1.5, 1, 0.5 req/s, one step each) and reports goodput under the
objectives (`--slo ttft:T,tpot:I`) per step. During the tuned run it samples the
tuner's step budget from /metrics and writes an SVG chart of it over time beside the
offered load.

Prints a markdown table (written into docs/benchmarks.md between the `autotune-table`
markers with --update-docs; the chart goes to docs/autotune.svg). Standard library only.

Usage: python3 bench/autotune.py [--model FILE] [--rates 0.5,1,1.5,1,0.5]
       [--duration 40] [--itl-ms 50] [--ttft-ms 2000] [--input-len 400] [--update-docs]
"""
import argparse
import datetime
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from update_docs import replace_block  # noqa: E402
AUTOGLM = os.path.join(ROOT, "target", "release", "autoglm")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read().decode()


def start(model, port, extra):
    cmd = [AUTOGLM, "serve", "--port", str(port), "--no-cache", "--no-batch",
           "--log-format", "text"] + extra
    if model:
        cmd += ["--model", model]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            if json.loads(get(f"http://127.0.0.1:{port}/health"))["status"] == "ok":
                return p
        except Exception:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not start")


def gauge(text, name):
    m = re.search(rf"^{name}{{[^}}]*}} ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else None


def run(args, label, extra, sample=False):
    port = free_port()
    srv = start(args.model, port, extra)
    samples, stop = [], threading.Event()

    def sampler():
        t0 = time.time()
        while not stop.is_set():
            try:
                m = get(f"http://127.0.0.1:{port}/metrics")
                samples.append((time.time() - t0, gauge(m, "autoglm_tuner_step_budget_tokens"),
                                gauge(m, "autoglm_tuner_itl_p95_seconds")))
            except Exception:
                pass
            stop.wait(0.5)

    th = threading.Thread(target=sampler, daemon=True)
    if sample:
        th.start()
    try:
        r = subprocess.run(
            [AUTOGLM, "bench", "--base-url", f"http://127.0.0.1:{port}/v1",
             "--request-rate", args.rates, "--duration", str(args.duration),
             "--input-len", str(args.input_len), "--output-len", "64",
             "--slo", f"ttft:{args.ttft_ms},tpot:{args.itl_ms}", "--json", "--no-progress"],
            capture_output=True, text=True, check=True)
    finally:
        stop.set()
        srv.terminate()
        srv.wait()
    steps = json.loads(r.stdout)["steps"]
    return label, steps, samples


def svg(samples, rates, duration, path):
    """The budget over time, with the offered rate as a step line."""
    w, h, pad = 720, 260, 40
    t_max = max(duration * len(rates), max((s[0] for s in samples), default=1))
    b_max = max([s[1] or 0 for s in samples] + [64])
    r_max = max(rates)
    x = lambda t: pad + (w - 2 * pad) * t / t_max
    yb = lambda b: h - pad - (h - 2 * pad) * b / b_max
    yr = lambda r: h - pad - (h - 2 * pad) * r / r_max
    budget = " ".join(f"{x(t):.1f},{yb(b):.1f}" for t, b, _ in samples if b is not None)
    load = []
    for i, r in enumerate(rates):
        load += [f"{x(i * duration):.1f},{yr(r):.1f}", f"{x((i + 1) * duration):.1f},{yr(r):.1f}"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="black"/>',
           f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="black"/>',
           f'<polyline points="{" ".join(load)}" fill="none" stroke="#999" stroke-dasharray="4 3"/>',
           f'<polyline points="{budget}" fill="none" stroke="#c0392b" stroke-width="1.5"/>',
           f'<text x="{pad}" y="{pad - 8}">step budget (tokens, red; 0–{b_max:.0f}) and offered load (req/s, grey; 0–{r_max})</text>',
           f'<text x="{w - pad}" y="{h - pad + 16}" text-anchor="end">{t_max:.0f} s</text>',
           "</svg>"]
    open(path, "w").write("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--rates", default="0.5,1,1.5,1,0.5")
    ap.add_argument("--duration", type=int, default=40)
    ap.add_argument("--itl-ms", type=int, default=50)
    ap.add_argument("--ttft-ms", type=int, default=2000)
    ap.add_argument("--input-len", type=int, default=400)
    ap.add_argument("--update-docs", action="store_true")
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    runs = [run(args, f"fixed {b}", ["--max-batch-tokens", str(b)]) for b in (256, 512, 2048)]
    runs.append(run(args, "auto-tune", ["--auto-tune", "--slo-itl-ms", str(args.itl_ms),
                                        "--slo-ttft-ms", str(args.ttft_ms)], sample=True))
    samples = runs[-1][2]
    head = "| step budget | " + " | ".join(f"{r:g} req/s" for r in rates) + " | total good requests |"
    lines = [
        f"Measured {datetime.date.today()} on {os.uname().nodename}, 2 threads; "
        f"`python3 bench/autotune.py --rates {args.rates} --duration {args.duration} "
        f"--itl-ms {args.itl_ms} --ttft-ms {args.ttft_ms} --input-len {args.input_len}`. "
        f"Goodput (req/s meeting TTFT ≤ {args.ttft_ms} ms and TPOT ≤ {args.itl_ms} ms), "
        f"open loop, {args.input_len}-word prompts, 64 output tokens; cells: goodput / "
        "offered-rate completions, TPOT p99 ms.",
        "",
        head,
        "|---" * (len(rates) + 2) + "|",
    ]
    best = [max(r[1][i]["goodput"] or 0 for r in runs[:-1]) for i in range(len(rates))]
    for label, steps, _ in runs:
        cells = []
        total = 0
        for i, s in enumerate(steps):
            g = s["goodput"] or 0
            total += g * s["duration_s"]
            mark = " ✓" if label == "auto-tune" and g >= 0.95 * best[i] else ""
            cells.append(f"{g:.2f}{mark} / {s['request_throughput']:.2f}, {s['tpot_ms']['p99']:.0f}")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {total:.0f} |")
    budgets = [b for _, b, _ in samples if b is not None]
    if budgets:
        lines += ["", f"The tuner's budget moved between {min(budgets):.0f} and {max(budgets):.0f} "
                  f"tokens ({len(budgets)} samples, every 0.5 s); ✓ marks steps where it is within "
                  "5% of the best fixed setting's goodput."]
    table = "\n".join(lines)
    print(table)
    if args.update_docs:
        svg(samples, rates, args.duration, os.path.join(ROOT, "docs", "autotune.svg"))
        replace_block("autotune-table", table)


if __name__ == "__main__":
    main()

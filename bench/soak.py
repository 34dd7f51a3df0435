#!/usr/bin/env python3
"""Soak: hold twice the server's capacity for a while with a mix of streaming,
non-streaming, cancelled and malformed requests, then check that admitted requests
completed, the excess got 429 with Retry-After, no 5xx, RSS stayed flat and the KV
blocks in use went back to zero. Stdlib only. Prints a Markdown summary.

    python3 bench/soak.py --binary target/release/autoglm --minutes 5
"""
import argparse, http.client, json, os, random, signal, socket, subprocess, sys, threading, time
from collections import Counter


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def get_json(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", path); r = c.getresponse(); body = r.read(); c.close()
    return r.status, json.loads(body or b"{}")


def one(port, kind, rng, stats, lock):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    prompt = " ".join(rng.choice(["alpha", "beta", "gamma", "delta", "story", "CPU"]) for _ in range(rng.randint(5, 60)))
    try:
        if kind == "malformed":
            body = rng.choice([b"{not json", b'{"prompt": 5}', b'{"messages": []}', b'{"prompt":"x","temperature":"hot"}', b'[]'])
            c.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
            r = c.getresponse(); r.read(); key = f"malformed {r.status}"
        else:
            stream = kind in ("stream", "cancel")
            body = json.dumps({"prompt": prompt, "max_tokens": rng.randint(8, 48), "temperature": 0.7, "seed": rng.randint(0, 1 << 30), "stream": stream})
            c.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
            r = c.getresponse()
            if r.status != 200:
                r.read()
                retry = r.getheader("Retry-After")
                key = f"{kind} {r.status}" + (" retry-after" if retry else "")
                if retry:
                    # A well-behaved client waits as told (with jitter), then comes back.
                    time.sleep(float(retry) * rng.uniform(0.5, 1.0))
            elif kind == "cancel":
                for _ in range(3):
                    r.fp.readline()
                c.sock.shutdown(socket.SHUT_RDWR); key = "cancel 200 (dropped mid-stream)"
            else:
                data = r.read().decode()
                ok = ("[DONE]" in data) if stream else ('"finish_reason"' in data)
                key = f"{kind} 200 {'complete' if ok else 'INCOMPLETE'}"
    except Exception as e:  # noqa: BLE001 - a soak counts every failure kind
        key = f"{kind} error {type(e).__name__}"
    finally:
        c.close()
    with lock:
        stats[key] += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/autoglm")
    ap.add_argument("--minutes", type=float, default=5)
    ap.add_argument("--max-seqs", type=int, default=16)
    ap.add_argument("--max-waiting", type=int, default=32)
    a = ap.parse_args()
    port = free_port()
    capacity = a.max_seqs + a.max_waiting
    clients = 2 * capacity
    srv = subprocess.Popen([a.binary, "serve", "--port", str(port), "--max-seqs", str(a.max_seqs),
                            "--max-waiting", str(a.max_waiting), "--kv-cache-tokens", "8192"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                if get_json(port, "/health")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        rss_start = rss_kib(srv.pid)
        stats, lock = Counter(), threading.Lock()
        deadline = time.time() + a.minutes * 60
        rss_samples = []

        def client(i):
            rng = random.Random(i)
            while time.time() < deadline:
                kind = rng.choices(["stream", "plain", "cancel", "malformed"], [40, 30, 15, 15])[0]
                one(port, kind, rng, stats, lock)

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
        for t in threads:
            t.start()
        while time.time() < deadline:
            time.sleep(10)
            rss_samples.append(rss_kib(srv.pid))
        for t in threads:
            t.join(timeout=180)
        time.sleep(1)
        _, health = get_json(port, "/health")
        rss_end = rss_kib(srv.pid)
        total = sum(stats.values())
        fivexx = sum(n for k, n in stats.items() if " 5" in k)
        print(f"## Soak: {clients} clients (2x capacity {capacity}) for {a.minutes} min, {time.strftime('%Y-%m-%d')}\n")
        print("| outcome | requests |\n|---|---|")
        for k, n in sorted(stats.items()):
            print(f"| {k} | {n} |")
        warm = rss_samples[min(5, len(rss_samples) - 1)] if rss_samples else rss_end
        print(f"\nrequests {total}; 5xx {fivexx}; RSS idle before the load {rss_start/1024:.1f} MiB, "
              f"after 1 min {warm/1024:.1f} MiB, max {max(rss_samples or [rss_end])/1024:.1f} MiB, end {rss_end/1024:.1f} MiB; "
              f"KV blocks in use after the load {health.get('kv_blocks_used')}, running {health.get('running')}, waiting {health.get('waiting')}")
        bad = fivexx or health.get("kv_blocks_used") != 0 or any("INCOMPLETE" in k or "error" in k for k in stats)
        sys.exit(1 if bad else 0)
    finally:
        srv.send_signal(signal.SIGTERM)
        try:
            srv.wait(timeout=40)
        except subprocess.TimeoutExpired:
            srv.kill()


if __name__ == "__main__":
    main()

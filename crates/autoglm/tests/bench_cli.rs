//! `autoglm bench` against a real `autoglm serve`: short runs (seconds), not benchmarks.

mod common;

use common::Server;
use serde_json::Value;
use std::process::{Command, Output};

/// These tests compare timings, so they run one at a time, not beside each other.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_autoglm"))
        .arg("bench")
        .args(args)
        .arg("--no-progress")
        .output()
        .expect("run autoglm bench")
}

fn bench_json(args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = bench(&a);
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn tmpdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("autoglm-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn closed_loop_metrics_are_plausible_agree_with_a_stopwatch_and_with_server_usage() {
    let _one_at_a_time = serial();
    let s = Server::start(&[]);
    let dir = tmpdir("closed");
    // Warm the server first (weights paged in, KV pages touched, threads spun up) with
    // other prompts, so that neither measurement pays the cold start.
    let warm = bench_json(&[
        "--base-url",
        &s.url(),
        "--endpoint",
        "completions",
        "--requests",
        "6",
        "--input-len",
        "230",
        "--output-len",
        "48",
        "--concurrency",
        "1",
        "--seed",
        "99",
    ]);
    assert_eq!(warm["steps"][0]["completed"], 6);

    // Distinct prompts of equal length (no prefix-cache help), one bench request and one
    // request from an independent stopwatch per round, in alternating order, so that the
    // machine's drift hits both. The stopwatch is a few lines of Python over the standard
    // library's HTTP client: on two cores the openai SDK's per-chunk parsing competes with
    // the server for CPU and slows the very request it times (by ~10% in CI).
    let prompt = |i: usize| {
        format!("Request {i}. ") + &"the history of every river and road in the world ".repeat(22)
    };
    let stopwatch = r#"
import sys, time, json, http.client, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
body = json.dumps({"model": "", "prompt": sys.argv[2], "max_tokens": 48, "temperature": 0,
                   "stream": True, "ignore_eos": True})
t0 = time.perf_counter(); first = None; tokens = 0
c = http.client.HTTPConnection(u.hostname, u.port)
c.request("POST", u.path.rstrip("/") + "/completions", body, {"Content-Type": "application/json"})
r = c.getresponse()
assert r.status == 200, r.status
for line in r:
    if not line.startswith(b"data: "):
        continue
    data = line[6:].strip()
    if data == b"[DONE]":
        break
    chunk = json.loads(data)
    if chunk["choices"] and chunk["choices"][0]["text"]:
        tokens += 1
        if first is None:
            first = time.perf_counter()
print(json.dumps({"ttft": first - t0, "e2e": time.perf_counter() - t0, "chunks": tokens}))
"#;
    let independent = |text: &str| -> (f64, f64) {
        let out = Command::new("python3")
            .args(["-c", stopwatch, &s.url(), text])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(v["chunks"].as_u64().unwrap() >= 40, "{v}");
        (
            v["ttft"].as_f64().unwrap() * 1e3,
            v["e2e"].as_f64().unwrap() * 1e3,
        )
    };
    let (mut b_ttft, mut b_e2e, mut s_ttft, mut s_e2e) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // The server's own TTFT of the very request the bench timed: the engine stamps its
    // arrival after the HTTP parse and tokenization and its first token before the SSE
    // write, so the bench's interval holds the server's.
    let server_ttft_ms = || s.metric("autoglm_time_to_first_token_seconds_sum") * 1e3;
    let mut engine_ttft = Vec::new();
    let mut last_step = Value::Null;
    for round in 0..9 {
        if round % 2 == 1 {
            let (t, e) = independent(&prompt(2 * round + 1));
            s_ttft.push(t);
            s_e2e.push(e);
        }
        let file = dir.join(format!("p{round}.jsonl"));
        std::fs::write(
            &file,
            serde_json::json!({"prompt": prompt(2 * round)}).to_string() + "\n",
        )
        .unwrap();
        let engine_before = server_ttft_ms();
        let r = bench_json(&[
            "--base-url",
            &s.url(),
            "--endpoint",
            "completions",
            "--workload",
            "file",
            "--file",
            file.to_str().unwrap(),
            "--requests",
            "1",
            "--output-len",
            "48",
            "--concurrency",
            "1",
        ]);
        let st = r["steps"][0].clone();
        assert_eq!(st["completed"], 1);
        assert_eq!(st["failed"], 0);
        assert_eq!(st["output_tokens"], 48);
        // Totals agree exactly with the server's own counters over the step.
        assert_eq!(
            st["server"]["autoglm_prompt_tokens_total"]
                .as_f64()
                .unwrap(),
            st["prompt_tokens"].as_f64().unwrap(),
            "{st}"
        );
        assert_eq!(
            st["server"]["autoglm_generation_tokens_total"]
                .as_f64()
                .unwrap(),
            48.0,
            "{st}"
        );
        engine_ttft.push(server_ttft_ms() - engine_before);
        b_ttft.push(st["ttft_ms"]["median"].as_f64().unwrap());
        b_e2e.push(st["e2el_ms"]["median"].as_f64().unwrap());
        if round % 2 == 0 {
            let (t, e) = independent(&prompt(2 * round + 1));
            s_ttft.push(t);
            s_e2e.push(e);
        }
        last_step = st;
    }
    let st = &last_step;
    for k in ["ttft_ms", "tpot_ms", "itl_ms", "e2el_ms"] {
        for q in ["mean", "median", "p90", "p99", "max"] {
            assert!(st[k][q].as_f64().unwrap() > 0.0, "{k}.{q}: {st}");
        }
    }
    assert!(st["e2el_ms"]["median"].as_f64().unwrap() > st["ttft_ms"]["median"].as_f64().unwrap());
    assert!(
        st["output_throughput"].as_f64().unwrap() > 0.0
            && st["request_throughput"].as_f64().unwrap() > 0.0
    );
    // Against the server's clock, request by request: no drift between the two readings.
    for (b, e) in b_ttft.iter().zip(&engine_ttft) {
        assert!(
            *b >= e * 0.999,
            "the bench saw the first token before the engine made it: {b:?} vs {e:?} ms"
        );
    }
    let over_engine = median(
        b_ttft
            .iter()
            .zip(&engine_ttft)
            .map(|(b, e)| b / e)
            .collect(),
    );
    // Against an independent client, whose request runs beside the bench's in the same
    // round (alternating order, so drift hits both). A two-core machine adds time to one
    // of the two now and then: CI saw the stopwatch +70 ms in 4 rounds of 9 (median ratio
    // 0.856), and a fast spell that only the stopwatch's first rounds caught (fastest
    // samples 1.146 apart, medians 1.007). The same-request check above is the tight
    // one; this one catches a gross error in what the bench times.
    let ratio = |a: &[f64], b: &[f64]| median(a.iter().zip(b).map(|(x, y)| x / y).collect());
    let (ttft_ratio, e2e_ratio) = (ratio(&b_ttft, &s_ttft), ratio(&b_e2e, &s_e2e));
    eprintln!(
        "TTFT bench {:.1} ms, engine {:.1} ms (median ratio {over_engine:.3}), stopwatch {:.1} ms (median ratio {ttft_ratio:.3}); \
         E2E bench {:.1} ms, stopwatch {:.1} ms (median ratio {e2e_ratio:.3})",
        median(b_ttft.clone()),
        median(engine_ttft.clone()),
        median(s_ttft.clone()),
        median(b_e2e.clone()),
        median(s_e2e.clone())
    );
    assert!(
        over_engine < 1.10,
        "TTFT bench/engine {over_engine:.3}: {b_ttft:?} vs {engine_ttft:?}"
    );
    assert!(
        (ttft_ratio - 1.0).abs() < 0.20,
        "TTFT bench/stopwatch {ttft_ratio:.3}: {b_ttft:?} vs {s_ttft:?}"
    );
    assert!(
        (e2e_ratio - 1.0).abs() < 0.20,
        "E2E bench/stopwatch {e2e_ratio:.3}: {b_e2e:?} vs {s_e2e:?}"
    );
}

#[test]
fn open_loop_sweep_charts_and_workloads() {
    let _one_at_a_time = serial();
    let s = Server::start(&[]);
    let r = bench_json(&[
        "--base-url",
        &s.url(),
        "--request-rate",
        "4,8",
        "--burstiness",
        "0.5",
        "--requests",
        "6",
        "--input-len",
        "16",
        "--output-len",
        "8",
        "--max-inflight",
        "4",
    ]);
    let steps = r["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert!(steps
        .iter()
        .all(|s| s["open_loop"] == true && s["completed"] == 6));
    assert_eq!(steps[1]["load"], 8.0);

    let dir = tmpdir("charts");
    let out = bench(&[
        "--base-url",
        &s.url(),
        "--concurrency",
        "1,2",
        "--requests",
        "4",
        "--input-len",
        "16",
        "--output-len",
        "8",
        "--workload",
        "shared-prefix",
        "--prefix-count",
        "1",
        "--prefix-len",
        "64",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("c=1") && table.contains("c=2") && table.contains("TTFT p99"),
        "{table}"
    );
    assert!(
        table.contains("autoglm_prefix_cache_hits_total"),
        "server deltas show prefix hits: {table}"
    );
    for name in ["throughput", "latency", "e2e_histogram"] {
        let png = std::fs::read(dir.join(format!("{name}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{name}.png");
        let svg = std::fs::read_to_string(dir.join(format!("{name}.svg"))).unwrap();
        assert!(
            svg.contains("<svg") && svg.trim_end().ends_with("</svg>"),
            "{name}.svg"
        );
    }
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["steps"].as_array().unwrap().len(), 2);
    assert!(std::fs::read_to_string(dir.join("results.md"))
        .unwrap()
        .contains("| c=2 |"));

    let agent = bench_json(&[
        "--base-url",
        &s.url(),
        "--workload",
        "agent",
        "--turns",
        "3",
        "--concurrency",
        "2",
        "--requests",
        "6",
        "--input-len",
        "40",
        "--output-len",
        "8",
    ]);
    let st = &agent["steps"][0];
    assert_eq!(st["completed"], 6);
    assert!(
        st["server"]["autoglm_prefix_cache_hits_total"]
            .as_f64()
            .unwrap_or(0.0)
            > 0.0,
        "later turns reuse the conversation: {st}"
    );
}

#[test]
fn errors_are_counted_by_kind() {
    let _one_at_a_time = serial();
    let s = Server::start(&["--api-key", "secret"]);
    let r = bench_json(&[
        "--base-url",
        &s.url(),
        "--requests",
        "3",
        "--input-len",
        "8",
        "--output-len",
        "4",
    ]);
    assert_eq!(r["steps"][0]["failed"], 3);
    assert_eq!(r["steps"][0]["errors"]["http_401"], 3);
    let ok = bench_json(&[
        "--base-url",
        &s.url(),
        "--api-key",
        "secret",
        "--requests",
        "2",
        "--input-len",
        "8",
        "--output-len",
        "4",
    ]);
    assert_eq!(ok["steps"][0]["completed"], 2);
}

#[test]
fn a_baseline_from_a_faster_configuration_flags_the_regression() {
    let _one_at_a_time = serial();
    let dir = tmpdir("baselines");
    let args = |url: &str| -> Vec<String> {
        [
            "--base-url",
            url,
            "--concurrency",
            "1",
            "--requests",
            "2",
            "--input-len",
            "12",
            "--output-len",
            "8",
            "--baseline-dir",
            dir.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    {
        let fast = Server::start(&[]);
        let mut a = args(&fast.url());
        a.extend(["--save-baseline".into(), "fast".into()]);
        let out = bench(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(dir.join("fast.json").exists());
    }
    // Same workload on one thread with the scalar reference kernels: many times slower.
    let slow = {
        std::env::set_var("AUTOGLM_FORCE_SCALAR", "1");
        let s = Server::start(&["--threads", "1"]);
        std::env::remove_var("AUTOGLM_FORCE_SCALAR");
        s
    };
    let mut a = args(&slow.url());
    a.extend([
        "--compare".into(),
        "fast".into(),
        "--fail-on-regression".into(),
        "25".into(),
    ]);
    let out = bench(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("REGRESSION") && text.contains("output tok/s"),
        "{text}"
    );
}

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
fn closed_loop_metrics_are_plausible_agree_with_the_sdk_and_with_server_usage() {
    let _one_at_a_time = serial();
    let s = Server::start(&[]);
    let dir = tmpdir("closed");
    // Distinct prompts of equal length: the bench sends the first five, the SDK the next
    // five, so neither side is helped by the prefix cache.
    let prompts: Vec<String> = (0..10)
        .map(|i| {
            format!("Request {i}. ")
                + &"the history of every river and road in the world ".repeat(22)
        })
        .collect();
    let file = dir.join("prompts.jsonl");
    std::fs::write(
        &file,
        prompts[..5]
            .iter()
            .map(|p| serde_json::json!({"prompt": p}).to_string() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    let before_prompt = s.metric("autoglm_prompt_tokens_total");
    let before_gen = s.metric("autoglm_generation_tokens_total");
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
        "5",
        "--output-len",
        "48",
        "--concurrency",
        "1",
    ]);
    let st = &r["steps"][0];
    assert_eq!(st["completed"], 5);
    assert_eq!(st["failed"], 0);
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
    assert_eq!(st["output_tokens"], 5 * 48);
    // Totals agree exactly with the server's own counters and its deltas in the report.
    assert_eq!(
        st["prompt_tokens"].as_f64().unwrap(),
        s.metric("autoglm_prompt_tokens_total") - before_prompt
    );
    assert_eq!(
        st["output_tokens"].as_f64().unwrap(),
        s.metric("autoglm_generation_tokens_total") - before_gen
    );
    assert_eq!(st["server"]["autoglm_generation_tokens_total"], 240.0);

    // An independent measurement of the same kind of request with the openai SDK.
    let script = r#"
import sys, time, json
from openai import OpenAI
c = OpenAI(base_url=sys.argv[1], api_key="x", max_retries=0)
ttft, e2e = [], []
for p in json.loads(sys.argv[2]):
    t0 = time.perf_counter(); first = None
    for ch in c.completions.create(model="", prompt=p, max_tokens=48, temperature=0, stream=True, extra_body={"ignore_eos": True}):
        if ch.choices and ch.choices[0].text and first is None:
            first = time.perf_counter()
    e2e.append(time.perf_counter() - t0); ttft.append(first - t0)
print(json.dumps({"ttft": ttft, "e2e": e2e}))
"#;
    let out = Command::new("python3")
        .args([
            "-c",
            script,
            &s.url(),
            &serde_json::to_string(&prompts[5..]).unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sdk: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sdk_ttft = median(
        sdk["ttft"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() * 1e3)
            .collect(),
    );
    let sdk_e2e = median(
        sdk["e2e"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() * 1e3)
            .collect(),
    );
    let (ttft, e2e) = (
        st["ttft_ms"]["median"].as_f64().unwrap(),
        st["e2el_ms"]["median"].as_f64().unwrap(),
    );
    assert!(
        (ttft / sdk_ttft - 1.0).abs() < 0.10,
        "TTFT bench {ttft:.1} ms vs SDK {sdk_ttft:.1} ms"
    );
    assert!(
        (e2e / sdk_e2e - 1.0).abs() < 0.10,
        "E2E bench {e2e:.1} ms vs SDK {sdk_e2e:.1} ms"
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
        table.contains("autoglm_prefix_cache_hit_tokens_total"),
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
        st["server"]["autoglm_prefix_cache_hit_tokens_total"]
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

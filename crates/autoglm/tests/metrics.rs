//! `/metrics` of a real server: vLLM's serving set with vLLM's types and meanings, every
//! series there from the start, values that move with the requests, `promtool check
//! metrics` clean, and `--metrics-names vllm` for tools built for vLLM.

mod common;

use common::Server;
use serde_json::json;
use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `# TYPE` of every metric family.
fn types(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
}

/// The value of one series, chosen by name and a label fragment (`""`: any).
fn value(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split([' ', '{']).next() == Some(name) && l.contains(labels))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

fn promtool_check(text: &str) {
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/test.sh installs it)");
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

const SERVING: &[(&str, &str)] = &[
    ("num_requests_running", "gauge"),
    ("num_requests_waiting", "gauge"),
    ("kv_cache_usage_perc", "gauge"),
    ("prefix_cache_queries_total", "counter"),
    ("prefix_cache_hits_total", "counter"),
    ("num_preemptions_total", "counter"),
    ("prompt_tokens_total", "counter"),
    ("generation_tokens_total", "counter"),
    ("request_success_total", "counter"),
    ("request_prompt_tokens", "histogram"),
    ("request_generation_tokens", "histogram"),
    ("request_params_max_tokens", "histogram"),
    ("request_params_n", "histogram"),
    ("request_max_num_generation_tokens", "histogram"),
    ("time_to_first_token_seconds", "histogram"),
    ("inter_token_latency_seconds", "histogram"),
    ("time_per_output_token_seconds", "histogram"),
    ("e2e_request_latency_seconds", "histogram"),
    ("request_queue_time_seconds", "histogram"),
    ("request_inference_time_seconds", "histogram"),
    ("request_prefill_time_seconds", "histogram"),
    ("request_decode_time_seconds", "histogram"),
];

#[test]
fn the_serving_metrics_exist_from_the_start_and_move_with_the_requests() {
    let s = Server::start(&["--served-model-name", "smol"]);
    let scrape = || s.request("GET", "/metrics", &[], b"").text();
    let before = scrape();
    promtool_check(&before);
    let t = types(&before);
    for (name, kind) in SERVING {
        let full = format!("autoglm_{name}");
        assert_eq!(t.get(&full).map(String::as_str), Some(*kind), "{full}");
        assert!(
            before.contains(&format!("# HELP {full} ")),
            "{full} has help"
        );
    }
    for name in [
        "autoglm_iteration_tokens",
        "autoglm_engine_step_seconds",
        "autoglm_engine_step_sequences",
        "autoglm_engine_step_decode_tokens_total",
        "autoglm_engine_step_prefill_tokens_total",
        "autoglm_kv_cache_blocks",
        "autoglm_thread_pool_seconds_total",
        "autoglm_http_requests_total",
        "autoglm_http_connections_open",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_threads",
    ] {
        assert!(t.contains_key(name), "{name} missing:\n{before}");
    }
    // Present at 0 before any request (a rate() over them works from the first scrape).
    assert_eq!(value(&before, "autoglm_num_preemptions_total", ""), 0.0);
    assert_eq!(
        value(
            &before,
            "autoglm_request_success_total",
            "finished_reason=\"abort\""
        ),
        0.0
    );
    assert_eq!(
        value(&before, "autoglm_time_to_first_token_seconds_count", ""),
        0.0
    );
    assert!(before.contains("model_name=\"smol\""));
    // vLLM's TTFT edges, with 2 s added for SLOs.
    assert!(
        before.contains("autoglm_time_to_first_token_seconds_bucket{model_name=\"smol\",le=\"2\"}")
    );

    // Three requests: 4 + 4 greedy tokens (n = 2) and one of 6; one more that is cut short
    // by a stop string, which ends at the server as "stop".
    let mut generated = 0.0;
    let mut prompt = 0.0;
    let bodies = [
        json!({"prompt": "Count: one, two,", "max_tokens": 4, "n": 2, "temperature": 0.5, "ignore_eos": true}),
        json!({"prompt": "The sky is", "max_tokens": 6, "temperature": 0, "ignore_eos": true}),
    ];
    for b in &bodies {
        let r = s.post_json("/v1/completions", b);
        assert_eq!(r.status, 200, "{}", r.text());
        let u = &r.json()["usage"];
        generated += u["completion_tokens"].as_f64().unwrap();
        prompt += u["prompt_tokens"].as_f64().unwrap();
    }
    let r = s.post_json(
        "/v1/completions",
        &json!({"prompt": "Count: one, two,", "max_tokens": 16, "temperature": 0, "stop": [","], "ignore_eos": true}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["choices"][0]["finish_reason"], "stop");
    // The engine goes idle: the gauges come back to 0.
    let t0 = Instant::now();
    let after = loop {
        let m = scrape();
        if value(&m, "autoglm_num_requests_running", "") == 0.0
            || t0.elapsed() > Duration::from_secs(10)
        {
            break m;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    promtool_check(&after);
    assert_eq!(value(&after, "autoglm_num_requests_running", ""), 0.0);
    assert_eq!(value(&after, "autoglm_num_requests_waiting", ""), 0.0);
    assert_eq!(value(&after, "autoglm_kv_cache_usage_perc", ""), 0.0);
    // Four choices in all: a first token each, and vLLM's per-request series once each.
    for name in [
        "autoglm_time_to_first_token_seconds_count",
        "autoglm_e2e_request_latency_seconds_count",
        "autoglm_request_queue_time_seconds_count",
        "autoglm_request_prefill_time_seconds_count",
        "autoglm_request_decode_time_seconds_count",
        "autoglm_request_inference_time_seconds_count",
        "autoglm_request_generation_tokens_count",
    ] {
        assert_eq!(value(&after, name, ""), 4.0, "{name}");
    }
    // Three prompts' worth of n.
    assert_eq!(value(&after, "autoglm_request_params_n_count", ""), 3.0);
    assert_eq!(value(&after, "autoglm_request_params_n_sum", ""), 4.0);
    assert_eq!(
        value(
            &after,
            "autoglm_request_success_total",
            "finished_reason=\"length\""
        ),
        3.0
    );
    assert_eq!(
        value(
            &after,
            "autoglm_request_success_total",
            "finished_reason=\"stop\""
        ),
        1.0
    );
    // Counters agree with the usage the API reported (the stop-string request adds its
    // own tokens: read them off its usage too).
    let u = &r.json()["usage"];
    let gen_total = generated + u["completion_tokens"].as_f64().unwrap();
    // The engine may run a token past a stop string before the server cancels it.
    let counted = value(&after, "autoglm_generation_tokens_total", "");
    assert!(
        (gen_total..=gen_total + 2.0).contains(&counted),
        "{counted} generated, usage says {gen_total}"
    );
    // Usage counts a prompt once; the engine counts it for each of its n sequences.
    let prompt_total = prompt + u["prompt_tokens"].as_f64().unwrap();
    let prompt_counted = value(&after, "autoglm_prompt_tokens_total", "");
    assert!(
        prompt_counted > prompt_total,
        "{prompt_counted} vs {prompt_total}"
    );
    assert_eq!(
        value(&after, "autoglm_prefix_cache_queries_total", ""),
        value(&after, "autoglm_prompt_tokens_total", "")
    );
    // The compute threads' time by state: a counter of seconds; the requests kept them
    // busy, and no state has run backwards since the first scrape.
    assert_eq!(
        types(&after)
            .get("autoglm_thread_pool_seconds_total")
            .map(String::as_str),
        Some("counter")
    );
    for state in ["busy", "spin", "parked"] {
        let l = format!("state=\"{state}\"");
        assert!(
            value(&after, "autoglm_thread_pool_seconds_total", &l)
                >= value(&before, "autoglm_thread_pool_seconds_total", &l),
            "{state}"
        );
    }
    assert!(
        value(
            &after,
            "autoglm_thread_pool_seconds_total",
            "state=\"busy\""
        ) > 0.0
    );
    // The TPOT of the 6-token request: its decode over 5 gaps, so within the ITL range.
    assert!(value(&after, "autoglm_time_per_output_token_seconds_count", "") >= 3.0);
    assert!(value(&after, "autoglm_engine_step_decode_tokens_total", "") > 0.0);
    assert!(value(&after, "process_resident_memory_bytes", "") > 50e6);
}

#[test]
fn metrics_names_vllm_serves_the_set_under_vllms_names() {
    let s = Server::start(&["--metrics-names", "vllm"]);
    let r = s.post_json(
        "/v1/completions",
        &json!({"prompt": "Hi", "max_tokens": 3, "ignore_eos": true}),
    );
    assert_eq!(r.status, 200);
    let m = s.request("GET", "/metrics", &[], b"").text();
    let t = types(&m);
    for (name, kind) in SERVING {
        let v = format!("vllm:{name}");
        assert_eq!(t.get(&v).map(String::as_str), Some(*kind), "{v}");
        assert!(!t.contains_key(&format!("autoglm_{name}")), "{name} twice");
    }
    // vLLM's histogram with a counter's suffix, as vLLM names it.
    assert_eq!(
        t.get("vllm:iteration_tokens_total").map(String::as_str),
        Some("histogram")
    );
    assert_eq!(value(&m, "vllm:generation_tokens_total", ""), 3.0);
    assert_eq!(value(&m, "vllm:time_to_first_token_seconds_count", ""), 1.0);
    // vLLM's deprecated name, which its own Grafana example still reads.
    assert_eq!(
        t.get("vllm:gpu_cache_usage_perc").map(String::as_str),
        Some("gauge")
    );
    // Internals keep their names.
    assert!(t.contains_key("autoglm_engine_step_seconds"));
}

//! The API end to end: a real server on 127.0.0.1, real sockets, the real model.

mod common;

use common::chaos_proxy::Proxy;

use common::{reference, Server};
use serde_json::{json, Value};
use std::io::BufRead;
use std::process::Command;
use std::time::{Duration, Instant};

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

fn run_sdk_checks(base_url: &str) -> String {
    common::python_check("openai_sdk_check.py", &[base_url, "sk-test"], "0 failed")
}

#[test]
fn the_official_openai_sdk_works_unmodified() {
    let s = Server::start(&["--api-key", "sk-test"]);
    run_sdk_checks(&s.url());
}

#[test]
fn the_openai_sdk_works_through_a_proxy_that_gzips_its_request_bodies() {
    let s = Server::start(&["--api-key", "sk-test"]);
    let p = Proxy::start(s.port, &["--gzip-requests"]);
    run_sdk_checks(&format!("http://127.0.0.1:{}/v1", p.port));
    let posts: Vec<_> = p
        .events("request")
        .into_iter()
        .filter(|r| r["line"].as_str().unwrap().starts_with("POST"))
        .collect();
    assert!(posts.len() > 10, "{} POSTs", posts.len());
    for r in &posts {
        assert_eq!(r["content_encoding"], "gzip", "{r}");
        assert!(
            r["accept_encoding"].as_str().unwrap().contains("gzip"),
            "{r}"
        );
    }
}

#[test]
fn greedy_api_output_equals_autoglm_generate() {
    let s = &Server::start(&[]);
    let r = reference("llamacpp_smollm2_q4_1.json");
    let prompt = r["completion"]["request"]["prompt"].as_str().unwrap();
    let cli = Command::new(env!("CARGO_BIN_EXE_autoglm"))
        .args([
            "generate",
            "--prompt",
            prompt,
            "--max-tokens",
            "24",
            "--temperature",
            "0",
            "--json",
        ])
        .output()
        .unwrap();
    let cli: Value = serde_json::from_slice(&cli.stdout).unwrap();
    let api = s.post_json(
        "/v1/completions",
        &json!({"prompt": prompt, "max_tokens": 24, "temperature": 0}),
    );
    assert_eq!(api.status, 200, "{}", api.text());
    assert_eq!(api.json()["choices"][0]["text"], cli["text"]);

    let dir = std::env::temp_dir().join(format!("autoglm-api-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let msgs = json!([{"role": "user", "content": "Name three colors."}]);
    std::fs::write(dir.join("m.json"), msgs.to_string()).unwrap();
    let cli = Command::new(env!("CARGO_BIN_EXE_autoglm"))
        .args([
            "generate",
            "--messages",
            dir.join("m.json").to_str().unwrap(),
            "--max-tokens",
            "24",
            "--temperature",
            "0",
            "--json",
        ])
        .output()
        .unwrap();
    let cli: Value = serde_json::from_slice(&cli.stdout).unwrap();
    let api = s
        .post_json(
            "/v1/chat/completions",
            &json!({"messages": msgs, "max_tokens": 24, "temperature": 0}),
        )
        .json();
    assert_eq!(api["choices"][0]["message"]["content"], cli["text"]);
    assert_eq!(
        api["usage"]["prompt_tokens"].as_u64().unwrap() as usize,
        ids(&cli["prompt_token_ids"]).len()
    );
}

#[test]
fn thirty_two_concurrent_greedy_streams_match_each_alone() {
    // Without the response cache: the batched run must compute what each computed alone.
    let s = Server::start(&["--no-cache"]);
    let prompts: Vec<String> = (0..32)
        .map(|i| format!("Story {i}: once upon a time in a village number {}", i * 7))
        .collect();
    let body = |p: &str| json!({"prompt": p, "max_tokens": 24, "temperature": 0, "ignore_eos": true, "logprobs": 1});
    let alone: Vec<Value> = prompts
        .iter()
        .map(|p| s.post_json("/v1/completions", &body(p)).json())
        .collect();
    let port = s.port;
    let together: Vec<Value> = std::thread::scope(|sc| {
        let hs: Vec<_> = prompts
            .iter()
            .map(|p| {
                let b = body(p);
                sc.spawn(move || {
                    let srv = Server {
                        port,
                        child: Command::new("true").spawn().unwrap(),
                    };
                    let r = srv.post_json("/v1/completions", &b).json();
                    std::mem::forget(srv);
                    r
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (a, t)) in alone.iter().zip(&together).enumerate() {
        assert_eq!(
            a["choices"][0]["text"], t["choices"][0]["text"],
            "prompt {i}"
        );
        assert_eq!(
            a["choices"][0]["logprobs"]["token_logprobs"],
            t["choices"][0]["logprobs"]["token_logprobs"],
            "prompt {i}: logprobs must be bitwise equal"
        );
    }
}

#[test]
fn a_disconnected_stream_frees_its_blocks() {
    let s = Server::start(&[]);
    let before = s.health()["kv_blocks_used"].as_u64().unwrap();
    let mut r = s.open_stream("/v1/completions", &json!({"prompt": "Count: one, two, three,", "max_tokens": 2000, "temperature": 0, "ignore_eos": true, "stream": true}));
    let mut seen = 0;
    let mut line = String::new();
    while seen < 5 {
        line.clear();
        r.read_line(&mut line).unwrap();
        seen += line.starts_with("data: ") as usize;
    }
    let during = s.health()["kv_blocks_used"].as_u64().unwrap();
    assert!(
        during > before,
        "blocks in use while streaming: {during} vs {before}"
    );
    drop(r);
    let t = Instant::now();
    loop {
        let h = s.health();
        if h["kv_blocks_used"].as_u64().unwrap() == before && h["running"] == 0 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "blocks not freed: {h}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_shared_system_prompt_is_prefilled_once() {
    let s = Server::start(&[]);
    let system = "You are a meticulous assistant. ".repeat(20);
    let ask = |q: &str| {
        s.post_json("/v1/chat/completions", &json!({"messages": [{"role": "system", "content": system}, {"role": "user", "content": q}], "max_tokens": 4, "temperature": 0})).json()
    };
    let first = ask("What is two plus two?");
    assert_eq!(first["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    let hits0 = s.metric("autoglm_prefix_cache_hits_total");
    let second = ask("Name a color.");
    let cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    let hits = s.metric("autoglm_prefix_cache_hits_total") - hits0;
    // The system prompt is about 130 tokens: all its full 16-token blocks are reused.
    assert!(cached >= 112, "cached {cached}");
    assert_eq!(hits as u64, cached);
    let both = first["usage"]["prompt_tokens"].as_u64().unwrap()
        + second["usage"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(s.metric("autoglm_prefix_cache_queries_total") as u64, both);
}

#[test]
fn errors_have_openai_shape_and_status() {
    let s = &Server::start(&[]);
    let check = |r: common::Response, status: u16, param: Option<&str>| {
        assert_eq!(r.status, status, "{}", r.text());
        let e = r.json();
        assert!(
            e["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{e}"
        );
        assert!(e["error"]["type"].is_string());
        if let Some(p) = param {
            assert_eq!(e["error"]["param"], p, "{e}");
        }
    };
    check(
        s.request("POST", "/v1/chat/completions", &[], b"{not json"),
        400,
        None,
    );
    check(
        s.post_json("/v1/chat/completions", &json!({"messages": "hi"})),
        400,
        Some("messages"),
    );
    check(
        s.post_json(
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": "x"}], "top_p": "high"}),
        ),
        400,
        Some("top_p"),
    );
    check(
        s.post_json(
            "/v1/completions",
            &json!({"prompt": "x", "max_tokens": 9000}),
        ),
        400,
        Some("max_tokens"),
    );
    check(
        s.post_json("/v1/completions", &json!({"prompt": [60000]})),
        400,
        Some("prompt"),
    );
    check(
        s.post_json("/v1/completions", &json!({"prompt": "x", "model": "gpt-4"})),
        404,
        None,
    );
    check(s.request("GET", "/v1/nothing", &[], b""), 404, None);
    let big = vec![b' '; 5 << 20];
    check(s.request("POST", "/v1/completions", &[], &big), 413, None);
    // Never silently truncated: a prompt alone over the context is refused too.
    let long = "word ".repeat(9000);
    check(
        s.post_json("/v1/completions", &json!({"prompt": long})),
        400,
        Some("prompt"),
    );
}

#[test]
fn api_keys_are_enforced_but_health_stays_open() {
    let s = Server::start(&["--api-key", "k1", "--api-key", "k2"]);
    let body = json!({"prompt": "x", "max_tokens": 1}).to_string();
    assert_eq!(
        s.request("POST", "/v1/completions", &[], body.as_bytes())
            .status,
        401
    );
    assert_eq!(
        s.request(
            "POST",
            "/v1/completions",
            &[("Authorization", "Bearer nope")],
            body.as_bytes()
        )
        .status,
        401
    );
    assert_eq!(
        s.request(
            "POST",
            "/v1/completions",
            &[("Authorization", "Bearer k2")],
            body.as_bytes()
        )
        .status,
        200
    );
    assert_eq!(s.request("GET", "/health", &[], b"").status, 200);
    assert_eq!(s.request("GET", "/v1/models", &[], b"").status, 401);
}

#[test]
fn a_full_queue_answers_429_with_retry_after() {
    let s = Server::start(&["--max-seqs", "1", "--max-waiting", "1"]);
    let port = s.port;
    let statuses: Vec<(u16, Option<String>)> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..6)
            .map(|i| {
                sc.spawn(move || {
                    std::thread::sleep(Duration::from_millis(20 * i));
                    let srv = Server { port, child: Command::new("true").spawn().unwrap() };
                    let r = srv.post_json("/v1/completions", &json!({"prompt": "Tell me a long story", "max_tokens": 64, "ignore_eos": true}));
                    std::mem::forget(srv);
                    (r.status, r.headers.get("retry-after").cloned())
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(statuses.iter().any(|s| s.0 == 200), "{statuses:?}");
    let refused: Vec<_> = statuses.iter().filter(|s| s.0 == 429).collect();
    assert!(!refused.is_empty(), "{statuses:?}");
    assert!(
        refused.iter().all(|s| s.1.is_some()),
        "429 without Retry-After: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| s.0 == 200 || s.0 == 429),
        "{statuses:?}"
    );
}

#[test]
fn request_ids_gzip_h2c_models_and_metrics() {
    let s = &Server::start(&[]);
    let r = s.request("GET", "/v1/models", &[("X-Request-Id", "abc-123")], b"");
    assert_eq!(
        r.headers.get("x-request-id").map(String::as_str),
        Some("abc-123")
    );
    assert_eq!(r.json()["data"][0]["id"], "SmolLM2-135M-Instruct.Q4_1");
    let generated = s.request("GET", "/health", &[], b"");
    assert!(generated
        .headers
        .get("x-request-id")
        .is_some_and(|v| v.len() >= 16));

    let body = json!({"prompt": "Hello", "max_tokens": 32, "n": 4}).to_string();
    let r = s.request(
        "POST",
        "/v1/completions",
        &[("Accept-Encoding", "gzip")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers.get("content-encoding").map(String::as_str),
        Some("gzip")
    );

    let out = Command::new("curl")
        .args([
            "-s",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
            &format!("http://127.0.0.1:{}/v1/models", s.port),
        ])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2 200");

    s.post_json("/v1/completions", &json!({"prompt": "Hi", "max_tokens": 3}));
    let m = s.request("GET", "/metrics", &[], b"").text();
    for name in [
        "autoglm_num_requests_running",
        "autoglm_num_requests_waiting",
        "autoglm_kv_cache_blocks_used",
        "autoglm_kv_cache_blocks",
        "autoglm_prefix_cache_queries_total",
        "autoglm_prefix_cache_hits_total",
        "autoglm_prompt_tokens_total",
        "autoglm_generation_tokens_total",
        "autoglm_time_to_first_token_seconds_bucket",
        "autoglm_inter_token_latency_seconds_bucket",
    ] {
        assert!(m.contains(name), "{name} missing from /metrics");
    }
}

#[test]
fn streams_end_with_done_and_keep_tokens_per_chunk() {
    let s = &Server::start(&[]);
    let r = s.post_json("/v1/chat/completions", &json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6, "temperature": 0, "ignore_eos": true, "stream": true}));
    assert!(r
        .headers
        .get("content-type")
        .is_some_and(|c| c.starts_with("text/event-stream")));
    let data = r.sse();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content_chunks = chunks
        .iter()
        .filter(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        })
        .count();
    assert!(
        content_chunks >= 5,
        "a chunk per token expected, got {content_chunks}"
    );
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "length"
    );
}

#[test]
fn sigterm_lets_in_flight_requests_finish_then_exits_zero() {
    let mut s = Server::start(&["--shutdown-grace-s", "60"]);
    let mut r = s.open_stream("/v1/completions", &json!({"prompt": "Once", "max_tokens": 40, "temperature": 0, "ignore_eos": true, "stream": true}));
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let pid = s.child.id();
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let mut body = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        body.push_str(&line);
    }
    assert!(
        body.contains("[DONE]"),
        "in-flight stream cut short: {body}"
    );
    assert!(body.contains("\"finish_reason\":\"length\""));
    let status = s.terminate();
    assert!(status.success(), "{status:?}");
}

//! A real Prometheus (Debian's package) scraping a real `autoglm serve
//! --metrics-names vllm` under load, then every query of vLLM's own Grafana dashboard
//! (examples/online_serving/prometheus_grafana/grafana.json) through Prometheus's HTTP
//! API: each must evaluate without error and return data.

mod common;

use common::{free_port, Server};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The expressions of vLLM's dashboard, with its `$model_name` and `$__rate_interval`.
const VLLM_DASHBOARD: &[&str] = &[
    r#"histogram_quantile(0.99, sum by(le) (rate(vllm:e2e_request_latency_seconds_bucket{model_name="$model_name"}[$__rate_interval])))"#,
    r#"histogram_quantile(0.5, sum by(le) (rate(vllm:e2e_request_latency_seconds_bucket{model_name="$model_name"}[$__rate_interval])))"#,
    r#"rate(vllm:e2e_request_latency_seconds_sum{model_name="$model_name"}[$__rate_interval]) / rate(vllm:e2e_request_latency_seconds_count{model_name="$model_name"}[$__rate_interval])"#,
    r#"rate(vllm:prompt_tokens_total{model_name="$model_name"}[$__rate_interval])"#,
    r#"rate(vllm:generation_tokens_total{model_name="$model_name"}[$__rate_interval])"#,
    r#"histogram_quantile(0.99, sum by(le) (rate(vllm:time_per_output_token_seconds_bucket{model_name="$model_name"}[$__rate_interval])))"#,
    r#"rate(vllm:time_per_output_token_seconds_sum{model_name="$model_name"}[$__rate_interval]) / rate(vllm:time_per_output_token_seconds_count{model_name="$model_name"}[$__rate_interval])"#,
    r#"vllm:num_requests_running{model_name="$model_name"}"#,
    r#"vllm:num_requests_waiting{model_name="$model_name"}"#,
    r#"histogram_quantile(0.99, sum by(le) (rate(vllm:time_to_first_token_seconds_bucket{model_name="$model_name"}[$__rate_interval])))"#,
    r#"histogram_quantile(0.9, sum by(le) (rate(vllm:time_to_first_token_seconds_bucket{model_name="$model_name"}[$__rate_interval])))"#,
    r#"rate(vllm:time_to_first_token_seconds_sum{model_name="$model_name"}[$__rate_interval]) / rate(vllm:time_to_first_token_seconds_count{model_name="$model_name"}[$__rate_interval])"#,
    r#"vllm:gpu_cache_usage_perc{model_name="$model_name"}"#,
    r#"sum by(le) (increase(vllm:request_prompt_tokens_bucket{model_name="$model_name"}[$__rate_interval]))"#,
    r#"sum by(le) (increase(vllm:request_generation_tokens_bucket{model_name="$model_name"}[$__rate_interval]))"#,
    r#"sum by(finished_reason) (increase(vllm:request_success_total{model_name="$model_name"}[$__rate_interval]))"#,
    r#"rate(vllm:request_queue_time_seconds_sum{model_name="$model_name"}[$__rate_interval])"#,
    r#"rate(vllm:request_prefill_time_seconds_sum{model_name="$model_name"}[$__rate_interval])"#,
    r#"rate(vllm:request_decode_time_seconds_sum{model_name="$model_name"}[$__rate_interval])"#,
    r#"rate(vllm:request_max_num_generation_tokens_sum{model_name="$model_name"}[$__rate_interval])"#,
    r#"label_values({__name__=~"vllm:.*"},model_name)"#,
];

struct Prometheus {
    port: u16,
    child: Child,
    dir: std::path::PathBuf,
}

impl Prometheus {
    fn start(target: u16) -> Prometheus {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("autoglm-prometheus-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: autoglm\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
            ),
        )
        .unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("log")).unwrap())
            .spawn()
            .expect("prometheus (Debian's package; scripts/test.sh installs it)");
        let p = Prometheus { port, child, dir };
        let t = Instant::now();
        while p.get("/-/ready").map(|(s, _)| s) != Some(200) {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "prometheus did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut raw = String::new();
        s.read_to_string(&mut raw).ok()?;
        let status = raw.split(' ').nth(1)?.parse().ok()?;
        let body = raw.split_once("\r\n\r\n")?.1.to_string();
        Some((status, body))
    }

    fn query(&self, q: &str) -> Value {
        let enc: String = q
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (status, body) = self
            .get(&format!("/api/v1/query?query={enc}"))
            .expect("prometheus answers");
        assert_eq!(status, 200, "{q}: {body}");
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn vllms_dashboard_queries_return_data_from_autoglm_with_vllm_names() {
    let s = Server::start(&["--metrics-names", "vllm", "--served-model-name", "smol"]);
    let p = Prometheus::start(s.port);
    // Load over a few scrapes: requests of a few tokens, two at a time.
    let load = Instant::now();
    while load.elapsed() < Duration::from_secs(6) {
        std::thread::scope(|sc| {
            for i in 0..2 {
                let s = &s;
                sc.spawn(move || {
                    let r = s.post_json(
                        "/v1/completions",
                        &json!({"prompt": format!("Item {i}:"), "max_tokens": 4, "ignore_eos": true}),
                    );
                    assert_eq!(r.status, 200);
                });
            }
        });
    }
    // label_values() is Grafana's, not PromQL: its PromQL twin is a series query.
    let t = Instant::now();
    loop {
        let v = p.query("count_over_time(vllm:generation_tokens_total[1m])");
        let n = v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|x| x.parse::<f64>().ok())
            .unwrap_or(0.0);
        if n >= 6.0 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "too few scrapes: {v}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    for q in VLLM_DASHBOARD {
        let q = q
            .replace("$model_name", "smol")
            .replace("$__rate_interval", "1m");
        let q = match q.strip_prefix("label_values(") {
            Some(_) => r#"count by (model_name) ({__name__=~"vllm:.*"})"#.to_string(),
            None => q,
        };
        let v = p.query(&q);
        assert_eq!(v["status"], "success", "{q}: {v}");
        let result = v["data"]["result"].as_array().unwrap();
        assert!(!result.is_empty(), "no data for {q}");
        let finite = result.iter().any(|r| {
            r["value"][1]
                .as_str()
                .and_then(|x| x.parse::<f64>().ok())
                .is_some_and(f64::is_finite)
        });
        assert!(finite, "only NaN for {q}: {v}");
    }
}

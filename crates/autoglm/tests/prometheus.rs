//! A real Prometheus (Debian's package) scraping a real `autoglm serve` under load:
//! every query of deploy/grafana/autoglm.json and every rule of deploy/prometheus/rules.yml
//! (loaded by that Prometheus) must evaluate without error and return data; the same for
//! every query of vLLM's own Grafana dashboard (examples/online_serving/
//! prometheus_grafana/grafana.json) against `--metrics-names vllm`. The rules' unit
//! tests run under `promtool test rules`.

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
    fn start(target: u16, rules: Option<&str>) -> Prometheus {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("autoglm-prometheus-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("prometheus.yml");
        let rule_files = rules
            .map(|r| format!("rule_files:\n  - {r}\n"))
            .unwrap_or_default();
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n{rule_files}scrape_configs:\n  - job_name: autoglm\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
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
    let p = Prometheus::start(s.port, None);
    load_and_wait(&s, &p, "vllm:generation_tokens_total");
    for q in VLLM_DASHBOARD {
        let q = q
            .replace("$model_name", "smol")
            .replace("$__rate_interval", "1m");
        let q = match q.strip_prefix("label_values(") {
            Some(_) => r#"count by (model_name) ({__name__=~"vllm:.*"})"#.to_string(),
            None => q,
        };
        p.expect_data(&q);
    }
}

/// Waits for Prometheus's first scrape of `counter`, sends requests of a few tokens two at
/// a time for 6 s (about six scrapes see them), then waits for two scrapes more.
fn load_and_wait(s: &Server, p: &Prometheus, counter: &str) {
    let scrapes = || {
        let v = p.query(&format!("count_over_time({counter}[5m])"));
        v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|x| x.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let t = Instant::now();
    while scrapes() < 1.0 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no scrape of {counter}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let load = Instant::now();
    while load.elapsed() < Duration::from_secs(6) {
        std::thread::scope(|sc| {
            for i in 0..2 {
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
    let during = scrapes();
    let t = Instant::now();
    while scrapes() < during + 2.0 {
        assert!(t.elapsed() < Duration::from_secs(30), "scrapes stopped");
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Prometheus {
    /// The query evaluates, returns series, and at least one finite value.
    fn expect_data(&self, q: &str) {
        let v = self.query(q);
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

fn deploy(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(path)
}

fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "promtool {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn our_dashboard_and_rules_evaluate_against_a_real_prometheus() {
    let rules = deploy("prometheus/rules.yml");
    promtool(&[
        "check",
        "config",
        deploy("prometheus/prometheus.yml").to_str().unwrap(),
    ]);
    promtool(&[
        "test",
        "rules",
        deploy("prometheus/rules_test.yml").to_str().unwrap(),
    ]);
    let s = Server::start(&["--served-model-name", "smol"]);
    let p = Prometheus::start(s.port, Some(rules.to_str().unwrap()));
    load_and_wait(&s, &p, "autoglm_generation_tokens_total");
    let dash: Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana/autoglm.json")).unwrap())
            .unwrap();
    let mut n = 0;
    for panel in dash["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            let q = t["expr"]
                .as_str()
                .unwrap()
                .replace("$model_name", "smol")
                .replace("$__rate_interval", "1m");
            p.expect_data(&q);
            n += 1;
        }
    }
    assert!(n >= 25, "{n} dashboard queries");
    // The model variable's query.
    p.expect_data("count by (model_name) (autoglm_num_requests_running)");
    // Prometheus evaluated every rule without error; the recording rules hold data.
    let t = Instant::now();
    let groups = loop {
        let (status, body) = p.get("/api/v1/rules").unwrap();
        assert_eq!(status, 200);
        let v: Value = serde_json::from_str(&body).unwrap();
        let groups = v["data"]["groups"].as_array().unwrap().clone();
        let all_ran = groups.iter().all(|g| {
            g["rules"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["health"] == "ok")
        });
        if all_ran || t.elapsed() > Duration::from_secs(15) {
            break groups;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let rules: Vec<&Value> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    assert_eq!(rules.len(), 15);
    for r in &rules {
        assert_eq!(r["health"], "ok", "{r}");
        if r["type"] == "recording" {
            p.expect_data(r["name"].as_str().unwrap());
        }
    }
    // A healthy server fires nothing.
    let firing: Vec<&&Value> = rules
        .iter()
        .filter(|r| r["type"] == "alerting" && r["state"] != "inactive")
        .collect();
    assert!(firing.is_empty(), "{firing:?}");
}

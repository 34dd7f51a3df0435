//! The retry-storm experiment: open-loop arrivals at `RATE` requests/s for `SECS` seconds
//! (16-token greedy chats), each call allowed 4 attempts under a first-byte timeout of
//! `TIMEOUT_MS`, once with the client-wide retry budget (retries add at most 10% to the
//! request rate) and once without it. Run it through `autoglm chaos-proxy --delay-ms 300
//! --log-requests` and give the proxy's log as `CONN_LOG`: the attempts are the requests
//! it saw. Prints
//! attempts, goodput (answers per second) and the latency of the answers.
//!
//!     CONN_LOG=proxy.jsonl cargo run --release -p autoglm-client --example retry_storm -- URL [RATE] [SECS] [TIMEOUT_MS]

use autoglm_client::{Client, RetryPolicy, Timeouts};
use std::time::{Duration, Instant};

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn conns() -> Option<usize> {
    std::env::var("CONN_LOG").ok().map(|p| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .matches("\"event\":\"request\"")
            .count()
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:8000/v1".into());
    let rate: f64 = args.next().and_then(|x| x.parse().ok()).unwrap_or(20.0);
    let secs: f64 = args.next().and_then(|x| x.parse().ok()).unwrap_or(15.0);
    let timeout_ms: u64 = args.next().and_then(|x| x.parse().ok()).unwrap_or(1000);
    println!("| retry budget | requests | attempts | answered | goodput /s | answer p50 ms | answer p99 ms |");
    println!("|---|---|---|---|---|---|---|");
    for budget in [false, true, false, true] {
        let retry = RetryPolicy {
            max_attempts: 4,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
            // Without the budget: a bucket too large to ever run dry.
            budget_ratio: if budget { 0.1 } else { 1e9 },
            budget_min: if budget { 10.0 } else { 1e9 },
            ..RetryPolicy::default()
        };
        let client = Client::builder(url.clone())
            .header("Cache-Control", "no-store")
            .retry(retry)
            .timeouts(Timeouts {
                first_byte: Some(Duration::from_millis(timeout_ms)),
                ..Timeouts::default()
            })
            .build()
            .expect("client");
        let before = conns();
        let n = (rate * secs).round() as usize;
        let started = Instant::now();
        let calls = (0..n).map(|i| {
            let c = client.clone();
            let due = started + Duration::from_secs_f64(i as f64 / rate);
            tokio::spawn(async move {
                tokio::time::sleep_until(due.into()).await;
                let req = api::ChatRequest::from_json(&serde_json::json!({
                    "messages": [{"role": "user", "content": format!("Question {i}: name a color.")}],
                    "max_tokens": 16, "temperature": 0, "ignore_eos": true,
                }))
                .expect("a valid request");
                let t = Instant::now();
                c.chat(&req).await.ok().map(|_| t.elapsed().as_secs_f64())
            })
        });
        let mut lat: Vec<f64> = futures::future::join_all(calls)
            .await
            .into_iter()
            .filter_map(|r| r.ok().flatten())
            .collect();
        let wall = started.elapsed().as_secs_f64();
        let attempts = match (before, conns()) {
            (Some(b), Some(a)) => (a - b).to_string(),
            _ => "(set CONN_LOG)".into(),
        };
        println!(
            "| {} | {n} | {attempts} | {} | {:.1} | {:.0} | {:.0} |",
            if budget { "10%" } else { "none" },
            lat.len(),
            lat.len() as f64 / wall,
            pct(&mut lat, 0.5) * 1e3,
            pct(&mut lat, 0.99) * 1e3,
        );
        // Let abandoned generations drain before the next run.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

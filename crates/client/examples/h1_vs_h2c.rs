//! HTTP/1.1 keep-alive pool vs h2c with prior knowledge, through the same client: time
//! to first token (p50, p99) and wall time of `N` concurrent streaming chats, for each
//! `N` given, each protocol twice, alternating (the first runs warm the server). Point it
//! at `autoglm chaos-proxy` (no faults) in front of the server and give the proxy's log as
//! `CONN_LOG` to count the connections each run opened.
//!
//!     CONN_LOG=proxy.jsonl cargo run --release -p autoglm-client --example h1_vs_h2c -- URL [N,N,...] [MAX_TOKENS]

use autoglm_client::{Client, RetryPolicy};
use futures::StreamExt;
use std::time::Instant;

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:8000/v1".into());
    let levels: Vec<usize> = args
        .next()
        .unwrap_or_else(|| "1,16,64".into())
        .split(',')
        .filter_map(|x| x.parse().ok())
        .collect();
    let max_tokens: u32 = args.next().and_then(|x| x.parse().ok()).unwrap_or(16);
    let conns = || {
        std::env::var("CONN_LOG").ok().map(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .matches("\"event\":\"conn\"")
                .count()
        })
    };
    println!("| streams | protocol | TTFT p50 ms | TTFT p99 ms | wall s | connections |");
    println!("|---|---|---|---|---|---|");
    for &n in &levels {
        for h2 in [false, true, false, true] {
            let before = conns();
            let c = Client::builder(url.clone())
                .header("Cache-Control", "no-store")
                .retry(RetryPolicy::none())
                .http2_prior_knowledge(h2)
                .build()
                .expect("client");
            let started = Instant::now();
            let runs = futures::future::join_all((0..n).map(|i| {
                let c = c.clone();
                async move {
                    let req = api::ChatRequest::from_json(&serde_json::json!({
                        "messages": [{"role": "user", "content": format!("Write about topic {i}.")}],
                        "max_tokens": max_tokens, "temperature": 0, "ignore_eos": true,
                    }))
                    .expect("valid");
                    let t = Instant::now();
                    let mut st = c.chat_stream(&req).await?;
                    let mut ttft = None;
                    while let Some(ch) = st.next().await {
                        ch?;
                        ttft.get_or_insert(t.elapsed().as_secs_f64() * 1e3);
                    }
                    Ok::<_, autoglm_client::Error>(ttft.unwrap_or(f64::NAN))
                }
            }))
            .await;
            let wall = started.elapsed().as_secs_f64();
            let mut ttfts: Vec<f64> = runs.into_iter().filter_map(Result::ok).collect();
            if ttfts.len() < n {
                println!(
                    "| {n} | {} | {} of {n} failed | | |",
                    if h2 { "h2c" } else { "HTTP/1.1" },
                    n - ttfts.len()
                );
                continue;
            }
            let opened = conns()
                .zip(before)
                .map_or("-".to_string(), |(a, b)| (a - b).to_string());
            println!(
                "| {n} | {} | {:.1} | {:.1} | {wall:.2} | {opened} |",
                if h2 { "h2c" } else { "HTTP/1.1" },
                pct(&mut ttfts, 0.5),
                pct(&mut ttfts, 0.99)
            );
        }
    }
}

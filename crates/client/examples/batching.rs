//! Whether the batcher helps: `TOTAL` tiny completions (max_tokens 1, a classification
//! call) from one process with `C` concurrent callers, sent one request each and through
//! the [`Batcher`], alternating, for each `C` given. Prints throughput, latency p50/p99 and
//! the HTTP calls made (the batcher reports how many it sent). Point it at the server, or
//! at `autoglm chaos-proxy --delay-ms D` in front of it to put a network in between.
//!
//!     cargo run --release -p autoglm-client --example batching -- URL [C,C,...] [TOTAL] [WAIT_MS]

use autoglm_client::batcher::{BatchConfig, Batcher};
use autoglm_client::{Client, RetryPolicy};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

const REVIEWS: [&str; 8] = [
    "great phone, fast delivery",
    "battery died after two days",
    "works as described",
    "the screen cracked in a week",
    "excellent value for money",
    "never buying this brand again",
    "decent, but the case is flimsy",
    "my kids love it",
];

fn request(i: usize) -> api::CompletionRequest {
    let review = REVIEWS[i % REVIEWS.len()];
    api::CompletionRequest::from_json(&serde_json::json!({
        "prompt": format!("Review #{i}: \"{review}\". Sentiment (positive or negative):"),
        "max_tokens": 1,
        "temperature": 0,
    }))
    .expect("a valid request")
}

/// Runs `total` requests from `callers` concurrent loops; returns (wall s, latencies s).
async fn run(
    callers: usize,
    total: usize,
    send: Arc<
        dyn Fn(api::CompletionRequest) -> futures::future::BoxFuture<'static, bool> + Send + Sync,
    >,
) -> (f64, Vec<f64>, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let loops = (0..callers).map(|_| {
        let (next, send, failed) = (next.clone(), send.clone(), failed.clone());
        tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return lat;
                }
                let t = Instant::now();
                if !send(request(i)).await {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                lat.push(t.elapsed().as_secs_f64());
            }
        })
    });
    let mut lat = Vec::new();
    for l in futures::future::join_all(loops).await {
        lat.extend(l.expect("caller task"));
    }
    (
        started.elapsed().as_secs_f64(),
        lat,
        failed.load(Ordering::Relaxed),
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:8000/v1".into());
    let levels: Vec<usize> = args
        .next()
        .unwrap_or_else(|| "1,8,64".into())
        .split(',')
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: usize = args.next().and_then(|x| x.parse().ok()).unwrap_or(256);
    let wait_ms: u64 = args.next().and_then(|x| x.parse().ok()).unwrap_or(5);
    let client = Client::builder(url)
        .header("Cache-Control", "no-store")
        .retry(RetryPolicy::none())
        .build()
        .expect("client");
    println!("| callers | mode | req/s | latency p50 ms | latency p99 ms | HTTP calls | failed |");
    println!("|---|---|---|---|---|---|---|");
    for &callers in &levels {
        for batched in [false, true, false, true] {
            let calls = Arc::new(AtomicUsize::new(0));
            let mut batcher: Option<Batcher> = None;
            let send: Arc<
                dyn Fn(api::CompletionRequest) -> futures::future::BoxFuture<'static, bool>
                    + Send
                    + Sync,
            > = if batched {
                let b = Batcher::new(
                    client.clone(),
                    BatchConfig {
                        max_batch: 32,
                        max_wait: Duration::from_millis(wait_ms),
                    },
                );
                batcher = Some(b.clone());
                Arc::new(move |r| {
                    let b = b.clone();
                    Box::pin(async move { b.completion(r).await.is_ok() })
                })
            } else {
                let (c, calls) = (client.clone(), calls.clone());
                Arc::new(move |r| {
                    let (c, calls) = (c.clone(), calls.clone());
                    Box::pin(async move {
                        calls.fetch_add(1, Ordering::Relaxed);
                        c.completions(&r).await.is_ok()
                    })
                })
            };
            let (wall, mut lat, failed) = run(callers, total, send).await;
            let mode = if batched {
                format!("batcher ({wait_ms} ms)")
            } else {
                "one request each".into()
            };
            let http = match &batcher {
                Some(b) => b.stats().calls as usize,
                None => calls.load(Ordering::Relaxed),
            };
            println!(
                "| {callers} | {mode} | {:.1} | {:.1} | {:.1} | {http} | {failed} |",
                total as f64 / wall,
                pct(&mut lat, 0.5) * 1e3,
                pct(&mut lat, 0.99) * 1e3,
            );
        }
    }
}
